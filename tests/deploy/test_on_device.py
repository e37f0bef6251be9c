"""lightnets.export to ExecuTorch and LiteRT (issue #41): each file runs in its runtime's own interpreter here.

Float files: one configuration per family and per source layout, random weights (non-trivial BatchNorm
statistics and classifier), logits within 1e-4 × max(1, max |eager|) of the eager model. int8 files: bundled
Fashion-MNIST weights, top-1 agreeing with the float model on ≥ 99% of test images. The whole matrix (every
bundled weight, every format and precision, the full test split) is benchmarks/on_device.py's (results/).
"""
import json

import pytest
import torch
from torch import nn

import lightnets
from lightnets import deploy
from lightnets.data import load_dataset
from lightnets.deploy.calibration import parse_calibration, to_pixels
from lightnets.deploy.delegate_rewrites import FixedAverageConv, average_pools_as_convs
from lightnets.inputs import resolve_input_config
from representatives import SOURCE_LAYOUTS, with_nontrivial_batchnorm

pytest.importorskip("executorch", reason="the mobile extra: pip install 'lightnets[mobile]'")
pytest.importorskip("litert_torch", reason="the mobile extra: pip install 'lightnets[mobile]'")

RUNNERS = {"executorch": deploy.ExecuTorchModule, "litert": deploy.LiteRTModule}
SUFFIX = {"executorch": ".pte", "litert": ".tflite", "onnx": ".onnx"}
# Float files: the layouts and families whose operators differ (TF padding + ReLU6; Megvii's and pytorchcv's
# shuffle and concat orders; the separable CNN; VGG). MobileNet's and ShuffleNet's paper layouts and the small
# CNN are the int8 tests' bundled weights, exported in float there too.
# (timm's layout, ReLU6 alone, is within Keras's.)
FLOAT_CASES = {
    **{layout: SOURCE_LAYOUTS[layout] for layout in ("keras", "megvii", "osmr")},
    "sepcnn": ("sepcnn_both", {}),
    "vgg": ("vgg11_bn", {}),
}
# ShuffleNet's int8 export takes ExecuTorch about a minute (its q/dq graph is 4× MobileNet's): the benchmark's.
# MobileNet at 0.25× (its ExecuTorch int8 export takes half the time of 0.5×'s); the constants ai-edge-quantizer
# stores after the flatbuffer of a larger file: test_int8_litert_constants_after_the_flatbuffer_survive_the_metadata.
INT8_WEIGHTS = ["mobilenet_v1_025.fmnist", "smallcnn_3x2.fmnist"]
CALIBRATION_IMAGES = 64  # LiteRT's quantizer calibrates op by op in Python: 0.1 s per image on ShuffleNet
AGREEMENT_IMAGES = 2000


def random_weights(name: str, kwargs: dict) -> nn.Module:
    """The configuration at its small-input size with seeded weights that make every layer count: BatchNorm
    statistics away from (0, 1) and a classifier that is not zero."""
    model = with_nontrivial_batchnorm(lightnets.create_model(name, small_input=True, num_classes=10, **kwargs))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.1)
    return model


def offset_buffers(path) -> int:
    """How many of a .tflite file's constants are stored after its flatbuffer, by (offset, size)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    return sum(1 for buffer in model.buffers if (buffer.offset or 0) > 1)


def within_tolerance(file_logits: torch.Tensor, eager: torch.Tensor) -> None:
    bound = 1e-4 * max(1.0, eager.abs().max().item())
    assert (file_logits - eager).abs().max().item() <= bound


@pytest.fixture(scope="module")
def fmnist_test():
    return load_dataset("fashion_mnist", "test")


@pytest.fixture(scope="module")
def bundled_export(fmnist_test, tmp_path_factory):
    """``bundled_export(weight, format, quantize, app_input)``: the file of a bundled weight, exported once per module
    (per xdist worker) and shared by the tests that read it; int8 calibrated on test images 5000 on."""
    folder = tmp_path_factory.mktemp("exports")
    made = {}

    def export(weight: str, file_format: str, quantize=None, app_input: bool = False) -> deploy.ExportedFile:
        key = (weight, file_format, quantize, app_input)
        if key not in made:
            model = lightnets.create_model(weight, pretrained=True).eval()
            images = fmnist_test.images[5000:5000 + CALIBRATION_IMAGES]
            calibration = resolve_input_config(model).normalize(images) if quantize else None
            made[key] = lightnets.export(model, folder / f"{len(made)}{SUFFIX[file_format]}", format=file_format,
                                         quantize=quantize, calibration=calibration, app_input=app_input)
        return made[key]

    return export


# ------------------------------------------------------------------------------------------------
# Float files, every family and source layout


@pytest.mark.slow
@pytest.mark.parametrize("case", FLOAT_CASES)
def test_float_files_give_the_eager_logits_in_their_runtime(case, tmp_path):
    name, kwargs = FLOAT_CASES[case]
    model = random_weights(name, kwargs)
    x = torch.randn(1, *resolve_input_config(model).input_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager = model(x)
    assert eager.abs().max() > 0.1  # a zero classifier would make any file "match"
    for file_format, runner in RUNNERS.items():
        exported = lightnets.export(model, tmp_path / f"{case}{SUFFIX[file_format]}", format=file_format)
        within_tolerance(runner(exported.path)(x), eager)
        if file_format == "executorch":
            # ShuffleNet's stride-2 average pools included: XNNPACK runs the whole network, one subgraph.
            assert exported.undelegated == {}


@pytest.mark.slow
def test_pruned_and_separable_converted_models_export_and_match(tmp_path):
    """A compressed model is a lightnets model like any other to export: a pruned MobileNet (its convs rebuilt
    with fewer channels) and a small CNN with a conv made depthwise-separable (a new block inside)."""
    from lightnets import compress

    mobilenet = random_weights("mobilenet_v1_025", {})
    pruned = compress.prune(mobilenet, 0.5, "l1").eval()
    assert sum(p.numel() for p in pruned.parameters()) < 0.6 * sum(p.numel() for p in mobilenet.parameters())
    separable = compress.to_separable(lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True),
                                      "deepest:1").eval()
    for label, model in (("pruned", pruned), ("separable", separable)):
        x = torch.randn(1, *resolve_input_config(model).input_size, generator=torch.Generator().manual_seed(3))
        exported = lightnets.export(model, tmp_path / f"{label}.pte")
        with torch.no_grad():
            within_tolerance(deploy.ExecuTorchModule(exported.path)(x), model(x))
        assert exported.undelegated == {}


# ------------------------------------------------------------------------------------------------
# int8 files of the bundled weights


@pytest.mark.slow
@pytest.mark.parametrize("weight", INT8_WEIGHTS)
def test_int8_files_agree_with_the_float_model_on_the_test_images(weight, fmnist_test, bundled_export):
    model = lightnets.create_model(weight, pretrained=True).eval()
    config = resolve_input_config(model)
    measured = config.normalize(fmnist_test.images[:AGREEMENT_IMAGES])  # calibrated on images 5000 on
    with torch.no_grad():
        float_top1 = model(measured).argmax(1)
    for file_format, runner in RUNNERS.items():
        # ExecuTorch's file takes the model's float input; LiteRT's the app's uint8 pixels: both forms tested.
        app_input = file_format == "litert"
        exported = bundled_export(weight, file_format, "int8", app_input)
        run = runner(exported.path)
        feed = to_pixels(measured, config) if app_input else measured
        file_top1 = torch.cat([run(feed[i:i + 1]) for i in range(len(feed))]).argmax(1)
        agreement = (file_top1 == float_top1).float().mean().item()
        assert agreement >= 0.99, f"{weight} {file_format} int8: top-1 agrees on {agreement:.2%} of the images"
        if file_format == "executorch":
            assert exported.undelegated == {}
        assert exported.size_bytes < 0.4 * sum(p.numel() * 4 for p in model.parameters()) + 200_000


@pytest.mark.slow
def test_int8_litert_constants_after_the_flatbuffer_survive_the_metadata(tmp_path):
    """ai-edge-quantizer stores a file's constants after its flatbuffer, each by (offset, size), once its constants of
    1 KiB or more add up to 256 KiB (ai_edge_quantizer/model_modifier.py); adding the metadata rewrites the flatbuffer
    and must move every offset with it. A conv and a 1352 → 256 FC (346 KB of int8 weights) is enough to get there:
    MobileNet 0.5× takes ExecuTorch twice 0.25×'s time to quantize, and 0.25× keeps its constants inline."""
    with torch.random.fork_rng():
        torch.manual_seed(4)
        model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 13 * 13, 256),
                              nn.ReLU(), nn.Linear(256, 10)).eval()
    model.pretrained_cfg = {"input_size": (1, 28, 28)}
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    exported = lightnets.export(model, tmp_path / "m.tflite", format="litert", quantize="int8", calibration=images)
    assert offset_buffers(exported.path) > 0
    assert deploy.read_metadata(exported.path) == exported.metadata and exported.metadata["quantize"] == "int8"
    # int8's own error is about 6% of the mean logit here; constants read 64 bytes off (an offset not moved by the
    # metadata's size, rounded to the alignment) give errors larger than the logits (LiteRT refuses one past the end).
    with torch.no_grad():
        eager = model(images)
    run = deploy.LiteRTModule(exported.path)
    file_logits = torch.cat([run(image[None]) for image in images])
    assert (file_logits - eager).abs().mean() < 0.2 * eager.abs().mean()


# ------------------------------------------------------------------------------------------------
# What the file says about itself, and the app's input


@pytest.mark.slow
def test_a_file_carries_the_models_name_input_and_labels(bundled_export):
    """Each format's file taking the app's pixels (LiteRT's: the int8 test's file, float or int8 alike here)."""
    weight = "smallcnn_3x2.fmnist"
    files = [bundled_export(weight, "executorch", app_input=True), bundled_export(weight, "litert", "int8", True),
             bundled_export(weight, "onnx", app_input=True)]
    for exported in files:
        meta = deploy.read_metadata(exported.path)
        assert meta == exported.metadata
        assert (meta["model"], meta["tag"], meta["format"]) == ("smallcnn_3x2", "fmnist", exported.format)
        assert meta["quantize"] == exported.quantize
        assert meta["input"] == {"shape": [1, 28, 28, 1], "layout": "NHWC", "dtype": "uint8",
                                 "normalised_inside": True, "mean": [0.286], "std": [0.353]}
        assert meta["label_names"][:2] == ["T-shirt/top", "Trouser"] and len(meta["label_names"]) == 10


def test_the_app_input_wrapper_normalises_pixels_as_the_model_does():
    model = lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True).eval()
    config = resolve_input_config(model)
    pixels = load_dataset("fashion_mnist", "test", limit=8).images
    wrapped = deploy.app_input.UInt8NHWCInput(model, config.mean, config.std)
    with torch.no_grad():
        expected = model(config.normalize(pixels))
        got = wrapped(pixels.permute(0, 2, 3, 1).contiguous())
    assert (got - expected).abs().max() < 1e-4
    assert torch.equal(to_pixels(config.normalize(pixels), config), pixels.permute(0, 2, 3, 1))


def test_shufflenets_padded_average_pools_become_fixed_depthwise_convs():
    model = random_weights("shufflenet_g3_050", {})
    x = torch.randn(2, 3, 32, 32)
    rewritten = average_pools_as_convs(model, x)
    convs = [m for m in rewritten.modules() if isinstance(m, FixedAverageConv)]
    assert len(convs) == 3 and not any(type(m) is nn.AvgPool2d for m in rewritten.modules())
    # The inputs of stages 2-4 of g3 at 0.5×: Table 1's 24, 240, 480 halved (the stem too, as in Megvii's code).
    assert [c.weight.shape[0] for c in convs] == [12, 120, 240]
    assert set(rewritten.state_dict()) == set(model.state_dict())  # fixed weights are not state
    with torch.no_grad():
        assert (rewritten(x) - model(x)).abs().max() < 1e-5
    assert any(type(m) is nn.AvgPool2d for m in model.modules())  # the model given is not changed


# ------------------------------------------------------------------------------------------------
# Mistakes: one error each, nothing written


@pytest.mark.parametrize("kwargs, error, message", [
    ({"format": "coreml"}, ValueError, "format must be one of executorch, litert, onnx"),
    ({"format": "onnx", "quantize": "int8-per-tensor", "calibration": "fashion_mnist"}, ValueError,
     "quantize must be None or one of int8 for format 'onnx'"),
    ({"quantize": "int4", "calibration": "fashion_mnist"}, ValueError, "quantize must be None or one of int8"),
    ({"quantize": "int8"}, ValueError, "needs calibration"),
    ({"calibration": "fashion_mnist"}, ValueError, "calibration is only used with quantize"),
    ({"quantize": "int8", "calibration": torch.zeros(0, 1, 28, 28)}, ValueError, "calibration images must be"),
    ({"quantize": "int8", "calibration": torch.zeros(4, 3, 28, 28)}, ValueError, "(N ≥ 1, 1, 28, 28)"),
    ({"quantize": "int8", "calibration": torch.zeros(4, 1, 28, 28, dtype=torch.uint8)}, ValueError, "must be float"),
    ({"quantize": "int8", "calibration": "mnist_digits:64"}, ValueError, "unknown dataset 'mnist_digits'"),
])
def test_a_bad_argument_is_one_error_and_no_file(kwargs, error, message, tmp_path):
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        lightnets.export(model, tmp_path / "m.pte", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_output_path_must_fit_the_format_exist_as_a_folder_and_not_as_a_file(tmp_path):
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    with pytest.raises(ValueError, match=r"must end in \.tflite for format 'litert'"):
        lightnets.export(model, tmp_path / "m.pte", format="litert")
    with pytest.raises(FileNotFoundError, match="the folder .*missing does not exist"):
        lightnets.export(model, tmp_path / "missing" / "m.pte")
    (tmp_path / "m.pte").write_text("an earlier file")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        lightnets.export(model, tmp_path / "m.pte")
    assert (tmp_path / "m.pte").read_text() == "an earlier file"


@pytest.mark.slow
def test_a_model_the_converter_cannot_take_is_an_error_naming_the_line_and_no_file(tmp_path):
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            if y.mean() > 0:  # a branch on a value: torch.export cannot trace it
                return y.amax(dim=(2, 3))
            return y.amin(dim=(2, 3))

    model = DataDependent()
    model.pretrained_cfg = {"input_size": (1, 28, 28)}
    with pytest.raises(deploy.ExportError, match=r"could not export DataDependent to executorch: .*") as caught:
        lightnets.export(model, tmp_path / "m.pte")
    assert "y.mean() > 0" in str(caught.value)  # the line of the layer that failed
    assert list(tmp_path.iterdir()) == []


def test_calibration_names_a_dataset_and_a_count():
    assert parse_calibration("fashion_mnist:64") == ("fashion_mnist", 64)
    assert parse_calibration("imagefolder:/data/cats:9") == ("imagefolder:/data/cats", 9)
    assert parse_calibration("imagefolder:/data/cats") == ("imagefolder:/data/cats", 512)
    with pytest.raises(ValueError, match="at least 1"):
        parse_calibration("fashion_mnist:0")


# ------------------------------------------------------------------------------------------------
# The command line


@pytest.mark.slow
def test_the_command_line_writes_a_file_that_runs_and_says_what_xnnpack_runs(tmp_path, capsys):
    from lightnets.cli.export import main

    output = tmp_path / "smallcnn.pte"
    assert main(["smallcnn_3x2.fmnist", "--format", "executorch", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {output} (executorch, float32" in printed and "input float32 NCHW 1x1x28x28" in printed
    assert "XNNPACK runs every operator" in printed
    model = lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True).eval()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        within_tolerance(deploy.ExecuTorchModule(output)(x), model(x))
    assert json.loads(json.dumps(deploy.read_metadata(output)))["tag"] == "fmnist"


@pytest.mark.parametrize("argv, message", [
    (["smallcnn_3x2.fmnist", "--format", "executorch", "--output", "{tmp}/m.pte", "--quantize", "int8"],
     "--quantize needs --calibration"),
    (["smallcnn_3x2.fmnist", "--format", "executorch", "--output", "{tmp}/m.pte", "--calibration", "fashion_mnist"],
     "--calibration is used only with --quantize"),
    (["smallcnn_3x2.fmnist", "--format", "onnx", "--output", "{tmp}/nowhere/m.onnx"], "does not exist"),
    (["smallcnn_3x2.nope", "--format", "onnx", "--output", "{tmp}/m.onnx"], "nope"),
    (["smallcnn_3x2.fmnist", "--format", "onnx", "--output", "{tmp}/m.onnx", "--model-arg", "alpha=2"],
     "--model-arg applies to a bare model name"),
])
def test_the_command_line_answers_a_mistake_in_one_line(argv, message, tmp_path, capsys):
    from lightnets.cli.export import main

    try:
        status = main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after argparse's usage line, when it is a usage error
    assert last.startswith("lightnets-export: error: ") and message in last and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_runtimes_trace_times_each_operator_kind_of_a_file(bundled_export):
    from lightnets.deploy.executorch_profile import operator_times

    exported = bundled_export("mobilenet_v1_025.fmnist", "executorch", "int8")  # the int8 test's file
    times = operator_times(exported.path, torch.randn(1, 1, 28, 28), runs=5, warmup=1, num_threads=1)
    # MobileNet's int8 layers as XNNPACK runs them: depthwise convs, the stem, and the 1×1 convs as GEMMs
    assert {"Convolution (NHWC, QC8) DWConv", "Convolution (NHWC, QC8) IGEMM",
            "Fully Connected (NC, QS8, QC8W) GEMM"} <= set(times)
    assert not any(kind.startswith("native_call") for kind in times)  # nothing on portable kernels
    assert all(value >= 0 for value in times.values())
    assert times["total"] >= max(value for kind, value in times.items() if kind != "total") > 0


@pytest.mark.slow
def test_litert_int8_keeps_the_constant_output_of_dead_channels(fmnist_test, tmp_path, monkeypatch):
    """Network slimming leaves channels with γ ≈ 0 that output their β; ai-edge-quantizer's int32 bias of such a
    channel overflows unless export lifts one of its weights (lightnets.deploy.dead_channels)."""
    import lightnets.deploy.on_device as on_device

    model = lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # half the channels dead, as slimming leaves them
        for norm in [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]:
            dead = torch.rand(norm.num_features, generator=generator) < 0.5
            norm.weight[dead] = 1e-15
            norm.bias[dead] = norm.bias[dead].abs() + 0.5
    images = resolve_input_config(model).normalize(fmnist_test.images[:300])
    with torch.no_grad():
        float_top1 = model(images).argmax(1)

    def agreement(name: str) -> float:
        exported = lightnets.export(model, tmp_path / name, format="litert", quantize="int8", calibration=images[:64])
        run = deploy.LiteRTModule(exported.path)
        return (torch.cat([run(images[i:i + 1]) for i in range(len(images))]).argmax(1) == float_top1).float().mean()

    assert agreement("lifted.tflite") >= 0.99
    monkeypatch.setattr(on_device, "lift_dead_channels", lambda model: 0)
    assert agreement("as_folded.tflite") < 0.5  # what the rewrite prevents
