"""lightnets.quantize: quantization-aware training for ExecuTorch's and LiteRT's int8 (issue #41).

One bundled weight, per-tensor int8 (the layout where post-training quantization loses most), trained briefly
for each runtime: the file runs in its runtime as the quantized graph does in PyTorch and keeps the float
model's accuracy. Which weights need QAT, and how much it recovers, is benchmarks/on_device.py's (results/).
"""
import pytest
import torch

import lightnets
from lightnets import deploy
from lightnets.data import load_dataset
from lightnets.inputs import resolve_input_config

pytest.importorskip("executorch", reason="the mobile extra: pip install 'lightnets[mobile]'")
pytest.importorskip("litert_torch", reason="the mobile extra: pip install 'lightnets[mobile]'")

WEIGHT = "smallcnn_3x2.fmnist"
RUNNERS = {"executorch": (deploy.ExecuTorchModule, ".pte"), "litert": (deploy.LiteRTModule, ".tflite")}
TEST_IMAGES = 1000


@pytest.fixture(scope="module")
def float_model():
    return lightnets.create_model(WEIGHT, pretrained=True).eval()


@pytest.fixture(scope="module")
def test_batch(float_model):
    test = load_dataset("fashion_mnist", "test", limit=TEST_IMAGES)
    return resolve_input_config(float_model).normalize(test.images), test.labels


@pytest.fixture(scope="module")
def trained(float_model):
    """One quantization-aware model per runtime, trained once per module (per xdist worker)."""
    made = {}

    def get(file_format: str) -> deploy.QuantizedModel:
        if file_format not in made:
            made[file_format] = lightnets.quantize(float_model, "fashion_mnist:1024", format=file_format,
                                                   mode="int8-per-tensor", qat_epochs=1, lr=1e-3)
        return made[file_format]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("file_format", RUNNERS)
def test_a_quantization_aware_file_runs_as_its_graph_and_keeps_the_accuracy(file_format, float_model, test_batch,
                                                                           trained, tmp_path):
    model = trained(file_format)
    assert len(model.history) == 1 and model.images == 1024
    assert 0 < model.history[0]["loss"] < 1.0 and model.history[0]["train_top1"] > 80  # it trained from the weight
    runner, suffix = RUNNERS[file_format]
    exported = lightnets.export(model, tmp_path / f"qat{suffix}", format=file_format)
    assert exported.quantize == "int8-per-tensor"
    assert deploy.read_metadata(exported.path)["quantization_aware_training"] == {"epochs": 1, "images": 1024}
    assert exported.undelegated == {}
    images, labels = test_batch
    run = runner(exported.path)
    with torch.no_grad():
        file_logits = torch.cat([run(images[i:i + 1]) for i in range(len(images))])
        graph_logits = model(images)
        float_logits = float_model(images)
    agreement = (file_logits.argmax(1) == graph_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.99, f"{file_format}: the file agrees with its PyTorch graph on {agreement:.1%}"
    file_top1 = (file_logits.argmax(1) == labels).float().mean().item() * 100
    float_top1 = (float_logits.argmax(1) == labels).float().mean().item() * 100
    assert file_top1 >= float_top1 - 1.0, f"{file_format}: QAT file {file_top1:.1f}% against float {float_top1:.1f}%"
    assert exported.size_bytes < 0.4 * sum(p.numel() * 4 for p in float_model.parameters()) + 200_000


@pytest.mark.slow
def test_a_quantization_aware_model_exports_only_as_it_was_trained(trained, tmp_path):
    model = trained("executorch")
    for kwargs, message in [({"format": "litert"}, "trained for 'executorch'"),
                            ({"format": "executorch", "quantize": "int8"}, "trained as 'int8-per-tensor'"),
                            ({"format": "executorch", "calibration": "fashion_mnist:8"}, "calibration is not used"),
                            ({"format": "executorch", "img_size": 32}, "trained at 28 px")]:
        suffix = ".tflite" if kwargs["format"] == "litert" else ".pte"
        with pytest.raises(ValueError, match=message):
            lightnets.export(model, tmp_path / f"m{suffix}", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error, message", [
    ({"format": "onnx"}, ValueError, "format must be one of executorch, litert"),
    ({"mode": "int4"}, ValueError, "mode must be one of int8, int8-per-tensor"),
    ({"qat_epochs": 0}, ValueError, "qat_epochs must be a whole number"),
    ({"lr": float("nan")}, ValueError, "lr must be a positive number"),
    ({"data": (torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.zeros(4))}, ValueError,
     r"the model takes \(1, 28, 28\)"),
    ({"data": (torch.zeros(4, 1, 28, 28), torch.zeros(4))}, ValueError, "must be a non-empty uint8 tensor"),
    ({"data": (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(3))}, ValueError, "labels of shape"),
    ({"data": 7}, TypeError, "data must be 'DATASET"),
])
def test_a_bad_quantize_argument_is_one_error_before_any_training(kwargs, error, message):
    model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=10)
    arguments = {"data": (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4)), **kwargs}
    with pytest.raises(error, match=message):
        lightnets.quantize(model, **arguments)


@pytest.mark.parametrize("argv, message", [
    (["--quantize", "int8", "--qat-epochs", "1"], "--qat-epochs needs --qat-data"),
    (["--qat-epochs", "1", "--qat-data", "fashion_mnist:64"], "--qat-epochs needs --quantize"),
    (["--quantize", "int8", "--qat-epochs", "1", "--qat-data", "fashion_mnist", "--calibration", "fashion_mnist"],
     "--calibration is not used with --qat-epochs"),
    (["--quantize", "int8", "--calibration", "fashion_mnist", "--qat-data", "fashion_mnist"],
     "--qat-data is used only with --qat-epochs"),
    (["--quantize", "int8", "--qat-epochs", "1", "--qat-data", "fashion_mnist:64", "--output", "{tmp}/no/m.pte"],
     "does not exist"),
])
def test_the_command_line_answers_a_qat_mistake_in_one_line_before_training(argv, message, tmp_path, capsys):
    from lightnets.cli.export import main

    output = [] if "--output" in argv else ["--output", f"{tmp_path}/m.pte"]
    try:
        status = main(["smallcnn_3x2.fmnist", "--format", "executorch", *output,
                       *[arg.replace("{tmp}", str(tmp_path)) for arg in argv]])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lightnets-export: error: ") and message in last and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_command_line_trains_and_writes_a_quantization_aware_file(tmp_path, capsys):
    from lightnets.cli.export import main

    output = tmp_path / "m.tflite"
    assert main(["smallcnn_3x2.fmnist", "--format", "litert", "--quantize", "int8", "--qat-epochs", "1",
                 "--qat-data", "fashion_mnist:128", "--output", str(output)]) == 0
    assert "litert, int8" in capsys.readouterr().out
    assert deploy.read_metadata(output)["quantization_aware_training"] == {"epochs": 1, "images": 128}
