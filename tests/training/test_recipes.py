"""scripts/train_fmnist_zoo.sh: which entries it trains, where, and when a retrain replaces a shipped weight.

The script runs against a copy of itself in a temporary tree with a stand-in for ``python -m
lightnets.train`` that records its arguments and writes a weight folder with a chosen top-1, so the
bash logic is exercised without training anything. The copy's `retrain` lines are replaced by one
trial recipe of the test's own, so the tests hold whichever trials the real script carries.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_fmnist_zoo.sh"
TRIAL = "retrain shufflenet_g3     50 0.05 --fp16-weights --reprob 0.3\n"

FAKE_PYTHON = """#!/usr/bin/env bash
# Stand-in for the interpreter: "-m lightnets.train ..." logs its arguments and writes a weight
# folder at --output with top-1 $FAKE_TOP1; anything else goes to the real Python.
if [[ "$1" == "-m" && "$2" == "lightnets.train" ]]; then
    echo "$*" >> "$CALLS"
    out=""
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == "--output" ]]; then out=$2; fi
        shift
    done
    mkdir -p "$out"
    echo "new weights" > "$out/model.safetensors"
    printf '{"lightnets": {"metrics": {"top1": %s}}}' "$FAKE_TOP1" > "$out/config.json"
    exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    lines = [line for line in SCRIPT.read_text().splitlines(keepends=True) if not line.startswith("retrain ")]
    end_of_recipes = lines.index('if [[ -n "$RETRAIN" && -z "${retrained:-}" ]]; then\n')
    (tmp_path / "scripts" / SCRIPT.name).write_text("".join(lines[:end_of_recipes] + [TRIAL] + lines[end_of_recipes:]))
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    shipped = tmp_path / "weights" / "shufflenet_g3.fmnist"
    shipped.mkdir(parents=True)
    (shipped / "model.safetensors").write_text("shipped weights")
    (shipped / "config.json").write_text(json.dumps({"lightnets": {"metrics": {"top1": 94.49}}}))
    return tmp_path


def run_script(tree: Path, top1: float, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    calls = tree / "calls.txt"
    calls.touch()
    result = subprocess.run(
        ["bash", str(tree / "scripts" / SCRIPT.name)],
        env={**os.environ, "PYTHON": str(tree / "fake-python"), "REAL_PYTHON": sys.executable,
             "CALLS": str(calls), "FAKE_TOP1": str(top1), **env},
        capture_output=True, text=True)
    return result, calls.read_text().splitlines()


def test_shipped_weights_are_skipped_and_only_picks_one_entry(tree: Path) -> None:
    result, calls = run_script(tree, 90.0, ONLY="shufflenet_g3")
    assert result.returncode == 0, result.stderr
    assert "== shufflenet_g3: done (weights/shufflenet_g3.fmnist)" in result.stdout
    assert calls == []

    result, calls = run_script(tree, 90.0, ONLY="smallcnn_3x2")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1 and "--model smallcnn_3x2 " in calls[0]
    assert "--work-dir runs/smallcnn_3x2-fmnist " in calls[0]
    assert "--output weights/smallcnn_3x2.fmnist " in calls[0]
    assert (tree / "weights" / "smallcnn_3x2.fmnist" / "model.safetensors").is_file()


def test_retrain_runs_only_the_trial_recipe_in_its_own_folder_and_replaces_a_worse_weight(tree: Path) -> None:
    result, calls = run_script(tree, 94.61, RETRAIN="shufflenet_g3")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1  # no `train` line runs, though none of the other weights exists in this tree
    call = calls[0]
    assert "--model shufflenet_g3 " in call and "--epochs 50 --lr 0.05 " in call
    assert call.endswith("--fp16-weights --reprob 0.3")
    assert "--work-dir runs/shufflenet_g3-fmnist-retrain --resume " in call
    assert "--output runs/shufflenet_g3-fmnist-retrain/weight " in call
    assert "retrained to 94.61% top-1 (shipped: 94.49%), replacing weights/shufflenet_g3.fmnist" in result.stdout
    shipped = tree / "weights" / "shufflenet_g3.fmnist"
    assert json.loads((shipped / "config.json").read_text())["lightnets"]["metrics"]["top1"] == 94.61
    assert (shipped / "model.safetensors").read_text() == "new weights\n"


def test_retrain_with_nothing_shipped_publishes_the_new_weight(tree: Path) -> None:
    shutil.rmtree(tree / "weights" / "shufflenet_g3.fmnist")
    result, _ = run_script(tree, 80.5, RETRAIN="shufflenet_g3")
    assert result.returncode == 0, result.stderr
    assert "retrained to 80.5% top-1 (shipped: none), replacing weights/shufflenet_g3.fmnist" in result.stdout
    assert (tree / "weights" / "shufflenet_g3.fmnist" / "model.safetensors").read_text() == "new weights\n"


@pytest.mark.parametrize("top1", [94.49, 94.4])
def test_retrain_keeps_the_shipped_weight_unless_the_new_one_scores_higher(tree: Path, top1: float) -> None:
    result, _ = run_script(tree, top1, RETRAIN="shufflenet_g3")
    assert result.returncode == 0, result.stderr
    assert (f"retrained to {top1}% top-1, not above the shipped 94.49%; weights/shufflenet_g3.fmnist stays, "
            "the new weight is in runs/shufflenet_g3-fmnist-retrain/weight") in result.stdout
    shipped = tree / "weights" / "shufflenet_g3.fmnist"
    assert (shipped / "model.safetensors").read_text() == "shipped weights"
    assert (tree / "runs" / "shufflenet_g3-fmnist-retrain" / "weight" / "model.safetensors").is_file()


def test_retrain_of_a_model_without_a_trial_line_is_an_error(tree: Path) -> None:
    result, calls = run_script(tree, 95.0, RETRAIN="vgg11_bn")
    assert result.returncode == 2 and calls == []
    assert "RETRAIN=vgg11_bn: this script has no 'retrain vgg11_bn' line" in result.stderr


def test_a_warm_restart_trains_its_cycles_in_order_each_from_the_last(tree: Path) -> None:
    """`cycle MODEL ...` lines, then `train MODEL ... --finetune-from <the last cycle's weight>`: for a weight not
    shipped all run, in order, the Nth cycle in runs/<model>-fmnist-cycleN; a finished cycle is not trained
    again; a shipped weight skips them all."""
    result, calls = run_script(tree, 94.0, ONLY="mobilenet_v1_100")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 4
    *cycles, last = calls
    for n, call in enumerate(cycles, start=1):
        assert f"--work-dir runs/mobilenet_v1_100-fmnist-cycle{n} --resume " in call
        assert f"--output runs/mobilenet_v1_100-fmnist-cycle{n}/weight " in call
        assert (f"--finetune-from runs/mobilenet_v1_100-fmnist-cycle{n - 1}/weight" in call) == (n > 1)
    assert "--finetune-from" not in cycles[0]
    assert "--teacher runs/mobilenet_v1_100-fmnist-cycle2/weight" in cycles[2]  # a continued line is one command
    assert "--work-dir runs/mobilenet_v1_100-fmnist --resume " in last
    assert "--output weights/mobilenet_v1_100.fmnist " in last
    assert "--finetune-from runs/mobilenet_v1_100-fmnist-cycle3/weight" in last
    assert "--teacher runs/mobilenet_v1_100-fmnist-cycle3/weight,shufflenet_g3.fmnist,sepcnn_regular.fmnist" in last

    # stopped during the second cycle: it and the last run again, the first does not
    shutil.rmtree(tree / "weights" / "mobilenet_v1_100.fmnist")
    for later_cycle in (2, 3):  # stopped in cycle 2, so cycle 3 never began
        shutil.rmtree(tree / "runs" / f"mobilenet_v1_100-fmnist-cycle{later_cycle}")
    (tree / "calls.txt").unlink()
    result, calls = run_script(tree, 94.0, ONLY="mobilenet_v1_100")
    assert result.returncode == 0, result.stderr
    assert "== mobilenet_v1_100: cycle 1 done (runs/mobilenet_v1_100-fmnist-cycle1/weight)" in result.stdout
    assert len(calls) == 3 and "--output runs/mobilenet_v1_100-fmnist-cycle2/weight " in calls[0]
    assert "--output runs/mobilenet_v1_100-fmnist-cycle3/weight " in calls[1]
    assert "--output weights/mobilenet_v1_100.fmnist " in calls[2]

    # shipped: nothing runs
    (tree / "calls.txt").unlink()
    result, calls = run_script(tree, 94.0, ONLY="mobilenet_v1_100")
    assert result.returncode == 0, result.stderr
    assert calls == [] and "== mobilenet_v1_100: done (weights/mobilenet_v1_100.fmnist)" in result.stdout


def test_only_the_runs_that_write_into_weights_pass_overwrite(tree: Path) -> None:
    """save_pretrained refuses to write into weights/ without overwrite=True: a `train` line's run writes its
    weight there and says --overwrite; a cycle or a trial writes into runs/ and does not (a trial's winner is
    copied over by the script itself)."""
    result, calls = run_script(tree, 94.0, ONLY="mobilenet_v1_100")
    assert result.returncode == 0, result.stderr
    *cycles, last = calls
    assert "--output weights/mobilenet_v1_100.fmnist " in last and "--overwrite" in last.split()
    assert cycles and all("--overwrite" not in call.split() for call in cycles)
    (tree / "calls.txt").unlink()
    result, calls = run_script(tree, 94.61, RETRAIN="shufflenet_g3")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 1 and "--overwrite" not in calls[0].split()
