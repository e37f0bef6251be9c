"""Evaluation is one subpackage (issue #39): `eval/` is a repository-root runner that is not installed, an
installed lightnets runs `lightnets-eval` / `python -m lightnets.eval`, the scripts and benchmarks import the
package and never each other, and training, the sensitivity analysis and evaluation feed a model alike."""
import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_DIRS = ("benchmarks", "scripts")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_eval_is_not_installed_as_a_top_level_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    top_level = {name.split(".")[0] for name in setuptools["packages"]}
    assert top_level == {"lightnets"}, f"installed top-level packages: {sorted(top_level)}"
    assert "lightnets.evaluation" in setuptools["packages"]


@pytest.mark.parametrize("module, prog", [("lightnets.eval", "lightnets-eval"), ("eval", "python -m eval")])
def test_both_runners_answer_help_with_the_name_they_were_run_by(module, prog):
    result = _run("-m", module, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {prog} [-h] [--model NAME]")


def test_the_repository_root_runner_is_a_few_lines():
    source = (ROOT / "eval" / "__main__.py").read_text()
    assert len(source.splitlines()) <= 10 and "lightnets.evaluation.cli" in source


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for d in SCRIPT_DIRS for p in (ROOT / d).glob("*.py")))
def test_scripts_and_benchmarks_import_the_package_not_each_other(path):
    source = (ROOT / path).read_text()
    assert "sys.path" not in source, f"{path} changes sys.path: import the installed lightnets instead"
    others = {p.stem for d in SCRIPT_DIRS for p in (ROOT / d).glob("*.py")} | {*SCRIPT_DIRS, "eval"}
    imported = {name for name in _imports(ROOT / path) if name.split(".")[0] in others}
    assert not imported, f"{path} imports {sorted(imported)}: import what it needs from lightnets"


def test_a_write_the_harness_cannot_make_is_one_line_before_any_measuring(tmp_path, capsys):
    from lightnets.evaluation.cli import main

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status = main(["--model", "smallcnn_3x2.fmnist", "--no-progress", "--output", str(folder / "zoo.md")])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"python -m eval: error: cannot write {folder / 'zoo.md'}: the folder {folder} is read-only")


def test_output_dash_is_standard_output(capsys):
    from lightnets.evaluation.cli import main

    assert main(["--model", "smallcnn_3x2.fmnist", "--dataset", "synthetic", "--repeats", "1", "--warmup", "0",
                 "--no-progress", "--format", "csv", "--output", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model,tag,input_size,") and not (ROOT / "-").exists()


def test_training_sensitivity_and_evaluation_feed_a_model_alike():
    """One resolver (lightnets.inputs): a model without statistics of its own is normalised with ImageNet's
    everywhere (training used to fail on it), and the sensitivity analysis scores what evaluation scores."""
    import torch

    import lightnets
    from lightnets.compress import top1_accuracy
    from lightnets.data import load_dataset
    from lightnets.evaluation import evaluate
    from lightnets.inputs import IMAGENET_MEAN, resolve_input_config
    from lightnets.training import prepare_for

    model = lightnets.create_model("smallcnn_3x2", num_classes=10)
    model.pretrained_cfg.pop("mean"), model.pretrained_cfg.pop("std")
    assert resolve_input_config(model).mean == IMAGENET_MEAN
    batch = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(prepare_for(model)(batch), resolve_input_config(model).normalize(batch))

    data = load_dataset("fashion_mnist", limit=200)
    weight = lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True)
    (row,) = evaluate([weight], data, latency_batch_sizes=(1,), repeats=1, warmup=0, memory=False, progress=False)
    assert top1_accuracy(weight, data) == round(row["top1"], 2)
