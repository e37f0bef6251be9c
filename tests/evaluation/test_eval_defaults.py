"""What `python -m eval` does by default since it answers in seconds: a bundled weight's recorded accuracy
where it answers the same question, other accuracy on the fastest installed backend (same predictions as
eager), latency at batch 1, memory only on request, the machine's load beside the timings, and output files
that are checked before the run and written whole."""
from __future__ import annotations

import json

import pytest

from lightnets.evaluation.cli import build_parser, main
from lightnets.data import load_dataset
from lightnets.deploy import available_backends
from lightnets.evaluation import environment, evaluate, machine_load
from lightnets.evaluation.backends import ACCURACY_BACKENDS, accuracy_backend
from lightnets.pretrained.manifest import WEIGHTS_DIR

QUICK = ["--limit", "300", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress"]
EXPORTS = [backend for backend in ACCURACY_BACKENDS if backend != "eager" and backend in available_backends()]


def test_the_defaults_are_the_quick_ones():
    args = build_parser().parse_args(["--all-pretrained"])
    assert (args.accuracy_backend, args.latency_batch_sizes, args.memory) == ("auto", [1], False)
    assert accuracy_backend("auto") == "auto"  # measured per model, as optimize_for_inference(backend="auto")


@pytest.mark.parametrize("backend", EXPORTS)
@pytest.mark.parametrize("name", ["shufflenet_g3_050.fmnist", "mobilenet_v1_025.fmnist", "vgg11_bn.fmnist"])
@pytest.mark.slow
def test_an_exported_accuracy_pass_predicts_as_eager_does(name, backend):
    data = load_dataset("fashion_mnist", limit=1000)
    quick = dict(latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False, memory=False)
    eager, = evaluate([name], data, **quick)
    exported, = evaluate([name], data, accuracy_backend=backend, **quick)
    # float rounding may move a near-tie: at most one image in a thousand
    assert abs(exported["top1"] - eager["top1"]) <= 0.1 and abs(exported["top5"] - eager["top5"]) <= 0.1
    assert exported["loss"] == pytest.approx(eager["loss"], abs=1e-3)
    assert "peak_mem_mb" not in exported


def test_an_unknown_or_missing_backend_is_refused():
    with pytest.raises(ValueError, match="accuracy backend must be one of auto, openvino, onnxruntime, eager"):
        accuracy_backend("tensorrt")


def test_memory_is_measured_on_request(capsys):
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK, "--format", "json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK, "--format", "json", "--memory"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert "peak_mem_mb" not in plain["rows"][0] and measured["rows"][0]["peak_mem_mb"] > 0
    assert plain["settings"]["accuracy_backend"] == accuracy_backend("auto")
    assert [key for key in plain["rows"][0] if key.startswith("ms_bs")] == ["ms_bs1"]


def test_the_load_is_reported_and_a_busy_machine_is_flagged(monkeypatch, capsys):
    load = machine_load()
    assert load["cores"] >= 1 and load["load_1min"] >= 0 and isinstance(load["busy"], bool)
    busy = {"load_1min": 9.5, "cores": 2, "busy": True}
    assert environment("cpu", load=busy)["load"] == busy
    monkeypatch.setattr("lightnets.evaluation.machine_load", lambda: busy)
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK]) == 0
    out, err = capsys.readouterr()
    assert "machine load before the run: 9.50 (1-minute average) on 2 logical cores (BUSY" in out
    assert "warning: the machine was busy (load 9.50 on 2 cores)" in err


def test_output_files_are_checked_first_and_their_folders_made(tmp_path, capsys):
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK, "--plot", str(folder)]) == 2
    assert f"--plot {folder} is a folder" in capsys.readouterr().err
    output = tmp_path / "new" / "deeper" / "zoo.md"
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK, "--format", "md", "--output", str(output)]) == 0
    assert output.read_text().startswith("| model |") and not list(output.parent.glob(".*partial"))


@pytest.mark.slow
def test_an_identical_accuracy_measurement_is_reused_and_remeasure_measures_again(monkeypatch, tmp_path):
    """The accuracy cache: a second run of the same weight on the same data takes the first run's numbers
    (and says so); another image count, or accuracy_cache=False, measures again."""
    import lightnets.evaluation.engine as evaluation

    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path))  # an empty cache: earlier tests measured the same weight
    measured = []
    real = evaluation.measure_accuracy
    monkeypatch.setattr(evaluation, "measure_accuracy", lambda *a, **k: measured.append(1) or real(*a, **k))
    common = dict(latency_batch_sizes=(1,), repeats=1, warmup=0, memory=False, progress=False)
    first, = evaluation.evaluate(["smallcnn_3x2.fmnist"], limit=200, **common)
    second, = evaluation.evaluate(["smallcnn_3x2.fmnist"], limit=200, **common)
    assert len(measured) == 1 and (first["accuracy_cached"], second["accuracy_cached"]) == (False, True)
    assert {k: second[k] for k in ("top1", "top5", "loss", "images")} == {
        k: first[k] for k in ("top1", "top5", "loss", "images")
    }
    evaluation.evaluate(["smallcnn_3x2.fmnist"], limit=100, **common)
    again, = evaluation.evaluate(["smallcnn_3x2.fmnist"], limit=200, accuracy_cache=False, **common)
    assert len(measured) == 3 and again["accuracy_cached"] is False and again["top1"] == first["top1"]
    random_init, = evaluation.evaluate(["smallcnn_3x2"], limit=50, pretrained=False, **common)
    random_again, = evaluation.evaluate(["smallcnn_3x2"], limit=50, pretrained=False, **common)
    assert len(measured) == 5 and not random_again["accuracy_cached"]  # no identity: never cached


def test_the_cache_key_changes_with_each_input_it_names():
    from lightnets.data import load_dataset
    from lightnets.evaluation import accuracy_cache_key, build_candidate

    data = load_dataset("fashion_mnist", limit=100)
    candidate = build_candidate("smallcnn_3x2.fmnist", data)
    key = accuracy_cache_key(candidate, data, "eager", 100)
    assert key == accuracy_cache_key(build_candidate("smallcnn_3x2.fmnist", data), data, "eager", 100)
    others = {
        accuracy_cache_key(candidate, data, "openvino", 100),
        accuracy_cache_key(candidate, data, "eager", 50),
        accuracy_cache_key(candidate, load_dataset("fashion_mnist", limit=99), "eager", 100),
        accuracy_cache_key(build_candidate("mobilenet_v1_025.fmnist", data), data, "eager", 100),
    }
    assert key not in others and len(others) == 4
    candidate.model.pretrained_cfg = {**candidate.model.pretrained_cfg, "sha256": "0" * 64}
    assert accuracy_cache_key(candidate, data, "eager", 100) != key


@pytest.mark.slow
def test_each_models_accuracy_is_shown_as_soon_as_it_is_known(capsys):
    """The table waits for the latency of every model; the accuracy of each is on stderr when it is measured,
    in order, and a second run says it came from the cache."""
    argv = ["--model", "smallcnn_3x2.fmnist", "--model", "mobilenet_v1_025.fmnist",
            *[a for a in QUICK if a != "--no-progress"]]
    # measured whatever ran before; then measured or read (and now stored); then read from the cache
    for how, again in (("s)", ["--remeasure"]), ("", []), ("(cached)", [])):
        assert main(argv + ["--format", "json", *again]) == 0
        captured = capsys.readouterr()
        rows = json.loads(captured.out)["rows"]
        lines = [line for line in captured.err.splitlines() if ": top-1 " in line]
        assert [line.split(":")[0].split("\r")[-1] for line in lines] == [row["model"] for row in rows]
        for line, row in zip(lines, rows):
            assert f"top-1 {row['top1']:.2f}%, top-5 {row['top5']:.2f}% on 300 images" in line and line.endswith(how)


INDEX = json.loads((WEIGHTS_DIR / "index.json").read_text())["weights"]


@pytest.fixture()
def accuracy_passes(monkeypatch, tmp_path):
    """Count the accuracy passes; an empty cache, so a pass is not hidden by an earlier test's measurement."""
    import lightnets.evaluation.engine as evaluation

    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path))
    passes = []
    real = evaluation.measure_accuracy
    monkeypatch.setattr(evaluation, "measure_accuracy", lambda c, *a, **k: passes.append(c.label) or real(c, *a, **k))
    return passes


def test_a_bundled_weight_on_its_whole_test_split_shows_its_recorded_accuracy(accuracy_passes, capsys):
    assert main(["--model", "smallcnn_3x2.fmnist", "--model", "mobilenet_v1_025.fmnist", "--repeats", "1",
                 "--warmup", "0", "--threads", "1", "--format", "json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert accuracy_passes == [] and report["settings"]["accuracy_recorded"] == 2
    for row in report["rows"]:
        metrics = INDEX[row["model"]]["metrics"]
        assert ((row["top1"], row["top5"], row["images"], row["loss"])
                == (metrics["top1"], metrics["top5"], 10_000, None))
        assert row["accuracy_recorded"] and not row["accuracy_cached"]
        assert (
            f"{row['model']}: top-1 {metrics['top1']:.2f}%, top-5 {metrics['top5']:.2f}% on 10,000 images (recorded)"
            in captured.err
        )
    assert main(["--model", "smallcnn_3x2.fmnist", "--repeats", "1", "--warmup", "0", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "top-1 / top-5 of 1 bundled weight(s): as weights/index.json records them" in table
    assert "accuracy pass:" not in table  # there was none
    # not recorded: no column of dashes
    assert "top-1 %" in table.splitlines()[0] and "loss" not in table.splitlines()[0]


@pytest.mark.parametrize("changed", [["--limit", "9999"], ["--remeasure"],
                                     ["--accuracy-backend", "eager"], ["--no-pretrained"]])
@pytest.mark.slow
def test_accuracy_is_measured_when_the_record_does_not_answer_the_question(accuracy_passes, capsys, changed):
    """Fewer images, --remeasure, a backend asked for by name, random init: measured."""
    assert main(["--model", "smallcnn_3x2.fmnist" if changed != ["--no-pretrained"] else "smallcnn_3x2",
                 "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress", "--format", "json",
                 *changed]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert accuracy_passes == [row["model"]] and not row["accuracy_recorded"] and row["loss"] is not None


@pytest.mark.slow
def test_a_copy_of_a_bundled_weight_loaded_as_a_checkpoint_is_measured(accuracy_passes, tmp_path):
    """A checkpoint is the user's file: its bytes may match, but it is measured, not looked up."""
    folder = WEIGHTS_DIR / INDEX["smallcnn_3x2.fmnist"]["folder"]
    (row,) = evaluate(["smallcnn_3x2"], checkpoint=str(folder), latency_batch_sizes=(1,), repeats=1, warmup=0,
                      memory=False, progress=False, recorded=True)
    assert accuracy_passes == ["smallcnn_3x2"] and not row["accuracy_recorded"]
    assert row["top1"] == INDEX["smallcnn_3x2.fmnist"]["metrics"]["top1"]


def test_the_record_answers_only_its_own_input_and_data():
    import dataclasses

    from lightnets.evaluation import build_candidate, recorded_accuracy

    data = load_dataset("fashion_mnist")
    candidate = build_candidate("smallcnn_3x2.fmnist", data)
    assert recorded_accuracy(candidate, data)["top1"] == INDEX["smallcnn_3x2.fmnist"]["metrics"]["top1"]
    for changed in ({"input_size": (1, 32, 32)}, {"mean": (0.5,)}, {"std": (0.5,)}, {"tag": "ckpt:x"}):
        assert recorded_accuracy(dataclasses.replace(candidate, **changed), data) is None, changed
    assert recorded_accuracy(candidate, load_dataset("fashion_mnist", limit=9999)) is None
    candidate.model.pretrained_cfg = {**candidate.model.pretrained_cfg, "sha256": "0" * 64}  # not bundled bytes
    assert recorded_accuracy(candidate, data) is None


def test_latency_backends_add_a_row_per_path_timed_side_by_side(capsys):
    argv = ["--model", "smallcnn_3x2.fmnist", *QUICK, "--format", "json", "--latency-backends", "torchscript,litert"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [row["backend"] for row in rows] == ["eager", "torchscript", "litert"]
    assert rows[0]["top1"] is not None and rows[1]["top1"] is None and rows[2]["file_kib"] > 100
    assert all(row["ms_bs1"] > 0 for row in rows)
    assert main(["--model", "smallcnn_3x2.fmnist", *QUICK, "--latency-backends", "tensorrt"]) == 2
    assert "--latency-backends: unknown tensorrt" in capsys.readouterr().err
