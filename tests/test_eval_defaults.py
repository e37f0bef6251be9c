"""What `python -m eval` does by default since it answers in about a minute: the accuracy pass on the
fastest installed backend (same predictions as eager), latency at batch 1, memory only on request, the
machine's load beside the timings, and output files that are checked before the run and written whole."""
from __future__ import annotations

import json

import pytest

from eval.__main__ import build_parser, main
from lightnets.data import load_dataset
from lightnets.deploy import available_backends
from lightnets.evaluation import environment, evaluate, machine_load
from lightnets.measure import ACCURACY_BACKENDS, accuracy_backend

QUICK = ["--limit", "300", "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-progress"]
EXPORTS = [backend for backend in ACCURACY_BACKENDS if backend != "eager" and backend in available_backends()]


def test_the_defaults_are_the_quick_ones():
    args = build_parser().parse_args(["--all-pretrained"])
    assert (args.accuracy_backend, args.latency_batch_sizes, args.memory) == ("auto", [1], False)
    assert accuracy_backend("auto") == next(b for b in ACCURACY_BACKENDS if b in available_backends())


@pytest.mark.parametrize("backend", EXPORTS)
@pytest.mark.parametrize("name", ["shufflenet_g3_050.fmnist", "mobilenet_v1_025.fmnist", "vgg11_bn.fmnist"])
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
