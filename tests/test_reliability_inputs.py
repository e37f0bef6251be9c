"""Bad arguments and inputs that used to reach torch, PIL or ONNX Runtime raw (issue #40, items 3, 6 and 7):
each is refused at our boundary with a message naming the argument, the value given and what is allowed.

3. accepted, but wrong: empty synthetic images, a std of 0; 6. inputs a model cannot take: a dtype outside
autocast, a ``forward_head`` input of the wrong width, an ``example_input`` or int8 calibration batch of other
channels; 7. arguments that reach torch or PIL unchecked: synthetic and image-folder sizes, ``crop_pct``, a
forward pass too large for memory in ``lightnets-flops``, a model name with a path in it.
"""
from __future__ import annotations

import copy
import re

import pytest
import torch

import lightnets
from lightnets import deploy
from lightnets.cli.flops import main as flops_main
from lightnets.data import load_dataset, normalize_batch

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = "smallcnn_3x2"  # 1×28×28 when built with in_chans=1: the cheapest model of the zoo


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    return lightnets.create_model(SMALL, in_chans=1, num_classes=10).eval()


@pytest.fixture(scope="module")
def pooling_model() -> torch.nn.Module:
    return lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10).eval()


@pytest.fixture()
def image_folder(tmp_path):
    from PIL import Image

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (12, 10), (200, 100, 50)).save(tmp_path / "cat" / "a.png")
    return f"imagefolder:{tmp_path}"


def _names(argument: str, value: object) -> str:
    """A pattern that finds ``argument`` and the value as it was given (its repr) in one message."""
    return rf"{re.escape(argument)}.*{re.escape(repr(value))}"


# ------------------------------------------------------------------------------------------------
# 3 and 7: dataset and normalisation arguments
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argument, value", [
    ("img_size", 0), ("img_size", -8), ("img_size", 2.5), ("in_chans", -1), ("in_chans", 0),
    ("num_classes", 0), ("num_classes", -2), ("num_classes", True),
])
def test_synthetic_refuses_a_size_it_would_make_empty_or_torch_would_reject(argument, value):
    with pytest.raises(ValueError, match=rf"^{argument} must be an integer >= 1, got {re.escape(repr(value))}$"):
        load_dataset("synthetic", limit=2, **{argument: value})


@pytest.mark.parametrize("argument, value", [("img_size", 0), ("img_size", -1), ("crop_pct", 0), ("crop_pct", -0.5),
                                             ("crop_pct", 1.5), ("crop_pct", float("nan")), ("crop_pct", "0.9")])
def test_imagefolder_refuses_a_size_or_crop_before_pil_divides_by_it(image_folder, argument, value):
    with pytest.raises(ValueError, match=_names(argument, value)) as error:
        load_dataset(image_folder, split="val", **{argument: value})
    assert ("(0, 1]" if argument == "crop_pct" else ">= 1") in str(error.value)  # what is allowed


def test_imagefolder_still_reads_a_full_crop(image_folder):
    image, label = load_dataset(image_folder, split="val", img_size=8, crop_pct=1)[0]
    assert image.shape == (3, 8, 8) and label == 0


@pytest.mark.parametrize("std", [(0.0,), (0.5, 0.0, 0.5), (-1.0,), (float("nan"),), (float("inf"),), ()])
def test_normalize_batch_refuses_a_std_it_would_divide_into_inf(std):
    with pytest.raises(ValueError, match=_names("std", std)):
        normalize_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 3, 8, (0.5,), std)


@pytest.mark.parametrize("argument, value", [("mean", (float("nan"),)), ("mean", ("a",)), ("img_size", 0),
                                             ("in_chans", 0)])
def test_normalize_batch_refuses_other_arguments_torch_would_reject(argument, value):
    kwargs = {"in_chans": 3, "img_size": 8, "mean": (0.5,), "std": (0.25,), argument: value}
    with pytest.raises(ValueError, match=_names(argument, value)):
        normalize_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), **kwargs)


# ------------------------------------------------------------------------------------------------
# 6: inputs a model cannot take
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "dtype, fix",
    [
        (torch.float64, "convert it with x.float(), or the model with model.to(torch.float64)"),
        (
            torch.float16,
            "convert it with x.float(), or the model with model.to(torch.float16), or run it under torch.autocast",
        ),
        (torch.bfloat16, "or the model with model.to(torch.bfloat16), or run it under torch.autocast"),
    ],
)
def test_a_float32_model_refuses_another_float_dtype_outside_autocast(small_model, dtype, fix):
    with pytest.raises(TypeError, match=rf"weights are torch.float32 but the input is {dtype}") as error:
        small_model(torch.zeros(2, 1, 28, 28, dtype=dtype))
    assert str(error.value).endswith(fix)


def test_a_half_model_refuses_a_float32_input(small_model):
    half = copy.deepcopy(small_model).half()
    with pytest.raises(
        TypeError, match=r"weights are torch.float16 but the input is torch.float32; convert it with x.half\(\)"
    ):
        half(torch.zeros(2, 1, 28, 28))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpu_autocast_still_takes_float_inputs(small_model, dtype):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = small_model(x.to(dtype))
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 10)
    torch.testing.assert_close(logits.float(), small_model(x), atol=0.1, rtol=0.1)


def test_autocast_still_refuses_float64(small_model):
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError, match="the input is torch.float64"):
        small_model(torch.zeros(2, 1, 28, 28, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA fp16 autocast needs a GPU")
def test_cuda_fp16_autocast_still_takes_float32_inputs(small_model):
    model = copy.deepcopy(small_model).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        assert model(torch.randn(2, 1, 28, 28, device="cuda")).dtype == torch.float16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_weights_still_take_matching_inputs(small_model, dtype):
    model = copy.deepcopy(small_model).to(dtype)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        logits = model(x.to(dtype))
    assert logits.dtype == dtype
    torch.testing.assert_close(logits.float(), small_model(x), atol=0.1, rtol=0.1)


@pytest.mark.parametrize("shape", [(2, 7, 3, 3), (2, 128), (2, 128, 4, 4)])
def test_forward_head_refuses_a_map_of_another_width_naming_what_it_takes(small_model, shape):
    with pytest.raises(ValueError, match=re.escape(f"takes the map forward_features returns, (N, 128, 3, 3) "
                                                   f"(num_features=128), got a tensor of shape {shape}")):
        small_model.forward_head(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 7, 1, 1), (2, 256)])
def test_forward_head_of_a_pooling_model_takes_any_side_but_only_its_width(pooling_model, shape):
    with pytest.raises(
        ValueError, match=re.escape(f"(N, 256, H, W) (num_features=256), got a tensor of shape {shape}")
    ):
        pooling_model.forward_head(torch.zeros(shape))
    assert pooling_model.forward_head(torch.zeros(2, 256, 5, 3)).shape == (2, 10)


def test_forward_head_refuses_a_dtype_the_head_cannot_take(small_model):
    with pytest.raises(TypeError, match="the forward_head input is torch.float64"):
        small_model.forward_head(torch.zeros(2, 128, 3, 3, dtype=torch.float64))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_the_checks_still_skip_tracing_and_scripting(small_model):
    x = torch.randn(2, 1, 28, 28)
    expected = small_model(x)
    for traced in (torch.fx.symbolic_trace(small_model), torch.jit.script(small_model)):
        torch.testing.assert_close(traced(x), expected)


def test_optimize_for_inference_refuses_an_example_input_of_other_channels(small_model):
    with pytest.raises(ValueError, match=re.escape("example_input (1, 3, 28, 28) does not fit the model: SmallCNN was "
                                                   "built for in_chans=1 but the input has 3 channels")):
        deploy.optimize_for_inference(small_model, backend="torchscript", example_input=torch.zeros(1, 3, 28, 28))


def test_export_onnx_refuses_an_example_input_of_other_channels(small_model, tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match=re.escape("example_input (1, 3, 28, 28) does not fit the model")):
        deploy.export_onnx(small_model, tmp_path / "m.onnx", example_input=torch.zeros(1, 3, 28, 28))
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def small_onnx(small_model, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return deploy.export_onnx(small_model, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.mark.parametrize("shape, why", [
    ((8, 3, 28, 28), "the model takes 1-channel images, these have 3 channels"),
    ((8, 1, 32, 32), "the graph was exported at a fixed 28x28 size"),
])
def test_int8_calibration_images_the_graph_cannot_take_are_refused(small_onnx, tmp_path, shape, why):
    with pytest.raises(ValueError, match=re.escape(f"calibration_images has shape {shape}, but small.onnx takes "
                                                   f"(batch, 1, 28, 28): {why}")):
        deploy.quantize_onnx(small_onnx, tmp_path / "q.onnx", torch.zeros(shape))
    assert not (tmp_path / "q.onnx").exists()


def test_onnxruntime_module_refuses_an_input_of_other_channels(small_onnx):
    runner = deploy.OnnxRuntimeModule(small_onnx)
    with pytest.raises(
        ValueError, match=re.escape("the input has shape (2, 3, 28, 28), but small.onnx takes (batch, 1, 28, 28)")
    ):
        runner(torch.zeros(2, 3, 28, 28))
    assert runner(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# ------------------------------------------------------------------------------------------------
# 7: a forward pass too large for memory, a model name with a path
# ------------------------------------------------------------------------------------------------

def test_flops_cli_refuses_an_image_too_large_for_memory_in_one_line(capsys):
    code = flops_main(["--model", "mobilenet_v1_025", "--img-size", "100000"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert re.fullmatch(
        r"lightnets-flops: error: MobileNetV1: a forward pass of a \(1, 3, 100000, 100000\) batch needs "
        r"about [\d.]+ GiB for its largest feature maps, more than half of this machine's [\d.]+ GiB; "
        r"pass a smaller batch or smaller images\n",
        err,
    )


def test_count_macs_estimates_before_allocating_the_input(pooling_model):
    with pytest.raises(ValueError, match=re.escape("a forward pass of a (1, 3, 100000, 100000) batch needs about")):
        lightnets.count_macs(pooling_model, (3, 100_000, 100_000))


@pytest.mark.parametrize("name", ["./mobilenet_v1", "weights/mobilenet_v1_050.fmnist", "runs\\best.pt", "/tmp/model"])
def test_a_model_name_with_a_path_is_named_as_given(name):
    with pytest.raises(
        lightnets.UnknownModelError, match=re.escape(f"unknown model {name!r}: ") + ".*not a path.*pretrained_path="
    ):
        lightnets.create_model(name)


def test_a_tag_without_a_name_is_named_as_given():
    with pytest.raises(lightnets.UnknownModelError, match=re.escape("unknown model '.fmnist': no name before the tag")):
        lightnets.create_model(".fmnist")
