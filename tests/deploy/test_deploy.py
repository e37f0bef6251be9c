"""lightnets.deploy: BatchNorm folding, every backend against eager, ONNX dynamic batch, int8, errors."""
import gc
import tempfile

import pytest
import torch
from torch import nn

import lightnets
from lightnets import deploy
from lightnets.data import load_dataset, normalize_batch
from representatives import with_nontrivial_batchnorm

# One representative per family, at its small input size (name, create_model kwargs).
FAMILIES = {
    "mobilenet_v1": ("mobilenet_v1_025", {"small_input": True, "num_classes": 10}),
    "shufflenet_v1": ("shufflenet_g3_050", {"small_input": True, "num_classes": 10}),
    "sepcnn": ("sepcnn_both", {}),
    "smallcnn": ("smallcnn_3x2_dw23", {"in_chans": 1}),
    "vgg": ("vgg11_bn", {"small_input": True, "num_classes": 10}),
}
TOLERANCE = 1e-4  # the bound on |optimized − eager|


def make_model(family: str) -> nn.Module:
    name, kwargs = FAMILIES[family]
    return with_nontrivial_batchnorm(lightnets.create_model(name, **kwargs))


def test_fold_batchnorm_is_exact_on_a_hand_example():
    # conv: y = 2x (1 channel, 1×1, no bias); BN: (y − 1) / sqrt(3 + 1) · 4 + 0.5 = 2y − 1.5.
    # Folded: weight 2 · 4/2 = 4, bias (0 − 1) · 4/2 + 0.5 = −1.5 — every number a power-of-two fraction, exact in fp32.
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=1.0), nn.ReLU())
    model[0].weight.data.fill_(2.0)
    model[1].running_mean.fill_(1.0)
    model[1].running_var.fill_(3.0)
    model[1].weight.data.fill_(4.0)
    model[1].bias.data.fill_(0.5)
    folded = deploy.fold_batchnorm(model)
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[2], nn.ReLU)
    assert folded[0].weight.item() == 4.0 and folded[0].bias.item() == -1.5
    x = torch.tensor([-1.0, 0.0, 0.25, 3.0]).view(4, 1, 1, 1)
    assert folded(x).flatten().tolist() == [0.0, 0.0, 0.0, 10.5]
    assert torch.equal(folded(x), model.eval()(x))
    assert isinstance(model[1], nn.BatchNorm2d), "the input model must be left untouched"


def test_fold_batchnorm_follows_the_data_flow_not_the_registration_order():
    class BNFirst(nn.Module):  # registers the BN before the conv it follows, and a BN that follows no conv
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn_input = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(self.bn_input(x)))

    assert deploy.conv_bn_pairs(BNFirst()) == [("conv", "bn")]


@pytest.mark.parametrize("family", FAMILIES)
def test_fold_batchnorm_removes_every_batchnorm_and_keeps_the_outputs(family):
    model = make_model(family)
    folded = deploy.fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert type(folded) is type(model)
    x = deploy.default_input(model, batch_size=3)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() < TOLERANCE


@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime", "openvino"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow
def test_backend_matches_eager(family, backend):
    if backend not in deploy.available_backends():
        pytest.skip(f"{backend} is not installed (pip install 'lightnets[{backend}]')")
    model = make_model(family)
    fast = deploy.optimize_for_inference(model, backend=backend, channels_last=backend == "eager")
    x = deploy.default_input(model, batch_size=2)  # traced / exported at batch 1: another batch size must work
    with torch.no_grad():
        expected, got = model(x), fast(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < TOLERANCE


@pytest.mark.slow
@pytest.mark.skipif("compile" not in deploy.available_backends(), reason="torch.compile needs a C++ compiler")
def test_compile_backend_matches_eager():
    model = make_model("shufflenet_v1")
    fast = deploy.optimize_for_inference(model, backend="compile")
    x = deploy.default_input(model, batch_size=1)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < TOLERANCE


@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime", "openvino", "export_onnx"])
def test_a_float64_model_goes_through_every_backend(backend, tmp_path):
    """float64 stands in for a CUDA model: the example input must follow the model's parameters."""
    if backend != "export_onnx" and backend not in deploy.available_backends():
        pytest.skip(f"{backend} is not installed (pip install 'lightnets[{backend}]')")
    model = make_model("smallcnn").double()
    if backend == "export_onnx":
        fast = deploy.OnnxRuntimeModule(deploy.export_onnx(model, tmp_path / "m.onnx"))
    else:
        fast = deploy.optimize_for_inference(model, backend=backend)
    x = deploy.default_input(model, batch_size=2)
    assert x.dtype == torch.float64
    with torch.no_grad():
        expected, got = model(x), fast(x)
    # The ONNX-based backends run a CPU float32 copy and return float32 logits on the input's device.
    assert got.dtype == (torch.float64 if backend in ("eager", "torchscript") else torch.float32)
    assert got.device == x.device
    assert (got - expected).abs().max() < TOLERANCE


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_temporary_onnx_folder_goes_with_the_module(backend, tmp_path, monkeypatch):
    if backend not in deploy.available_backends():
        pytest.skip(f"{backend} is not installed (pip install 'lightnets[{backend}]')")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes its folders
    model = make_model("smallcnn")
    fast = deploy.optimize_for_inference(model, backend=backend)
    [folder] = tmp_path.glob("lightnets-onnx-*")
    x = deploy.default_input(model, batch_size=3)  # a new batch size: OpenVINO reads the file again
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < TOLERANCE
    del fast
    gc.collect()
    assert not folder.exists()
    kept = tmp_path / "kept" / "m.onnx"  # a path the caller chose is the caller's
    deploy.optimize_for_inference(model, backend=backend, onnx_path=kept)
    gc.collect()
    assert kept.exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.slow
def test_onnx_backends_take_another_image_size_when_the_model_pools_globally(backend):
    if backend not in deploy.available_backends():
        pytest.skip(f"{backend} is not installed (pip install 'lightnets[{backend}]')")
    model = make_model("shufflenet_v1")  # exported at 32 px
    fast = deploy.optimize_for_inference(model, backend=backend)
    for side in (32, 48):
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            assert (fast(x) - model(x)).abs().max() < TOLERANCE


@pytest.mark.slow
def test_export_onnx_leaves_height_and_width_symbolic_only_when_the_model_pools_globally(tmp_path):
    import onnx

    def input_dims(path):
        return [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]

    assert (input_dims(deploy.export_onnx(make_model("shufflenet_v1"), tmp_path / "a.onnx"))
            == ["batch", 3, "height", "width"])
    # flattens
    assert input_dims(deploy.export_onnx(make_model("smallcnn"), tmp_path / "b.onnx")) == ["batch", 1, 28, 28]
    fixed = deploy.export_onnx(
        make_model("shufflenet_v1"), tmp_path / "c.onnx", dynamic_batch=False, dynamic_size=False
    )
    assert input_dims(fixed) == [1, 3, 32, 32]
    grid = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(4 * 49, 2))  # VGG's head
    assert not deploy.pools_globally(grid)
    assert deploy.pools_globally(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten()))


def test_export_onnx_with_dynamic_batch_runs_batch_1_and_5_through_one_file(tmp_path):
    import onnx

    model = make_model("shufflenet_v1")  # channel shuffle is where a constant batch would sneak in
    path = deploy.export_onnx(model, tmp_path / "shufflenet.onnx", opset=17)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    runner = deploy.OnnxRuntimeModule(path)
    for batch_size in (1, 5):
        x = deploy.default_input(model, batch_size=batch_size)
        with torch.no_grad():
            assert (runner(x) - model(x)).abs().max() < TOLERANCE


def test_onnxruntime_without_spin_wait_sets_the_session_entry_and_gives_the_same_logits(tmp_path):
    model = make_model("smallcnn")
    path = deploy.export_onnx(model, tmp_path / "m.onnx")
    spinning, sleeping = deploy.OnnxRuntimeModule(path), deploy.OnnxRuntimeModule(path, spin_wait=False)
    entry = "session.intra_op.allow_spinning"
    assert sleeping.session.get_session_options().get_session_config_entry(entry) == "0"
    with pytest.raises(Exception, match="does not have configuration"):  # unset: onnxruntime's default, spinning
        spinning.session.get_session_options().get_session_config_entry(entry)
    x = deploy.default_input(model, batch_size=3)
    assert torch.equal(spinning(x), sleeping(x))


def test_export_onnx_with_a_fixed_batch_refuses_another(tmp_path):
    model = make_model("smallcnn")
    path = deploy.export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False)
    runner = deploy.OnnxRuntimeModule(path)
    assert runner(deploy.default_input(model, batch_size=1)).shape == (1, 10)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        runner(deploy.default_input(model, batch_size=5))


@pytest.mark.parametrize("weight", ["smallcnn_3x2.fmnist", "shufflenet_g3_050.fmnist"])
@pytest.mark.slow
def test_int8_onnxruntime_agrees_with_fp32_on_fashion_mnist(weight):
    model = lightnets.create_model(weight, pretrained=True).eval()
    cfg = model.pretrained_cfg
    images = load_dataset("fashion_mnist", split="test", limit=1024).images
    x = normalize_batch(images, 1, 28, cfg["mean"], cfg["std"])
    calibration, held_out = x[:256], x[256:]
    int8 = deploy.optimize_for_inference(model, backend="onnxruntime-int8", calibration_images=calibration)
    with torch.no_grad():
        agreement = (int8(held_out).argmax(1) == model(held_out).argmax(1)).float().mean().item()
    assert agreement >= 0.99  # 8-bit weights on an AVX2 CPU (saturating vpmaddubsw) gave 0.96


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow
def test_int8_builds_for_every_family_and_keeps_its_input_sizes(family):
    """A ShuffleNet exported with symbolic height and width once stopped onnxruntime's shape inference."""
    model = make_model(family)
    x = deploy.default_input(model, batch_size=8)
    int8 = deploy.optimize_for_inference(model, backend="onnxruntime-int8", calibration_images=x)
    with torch.no_grad():
        assert int8(x[:3]).shape == model(x[:3]).shape
        if deploy.pools_globally(model):  # the file takes another size too
            bigger = torch.randn(2, model.in_chans, model.img_size + 8, model.img_size + 8)
            assert int8(bigger).shape == model(bigger).shape


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="backend must be one of .*'onnxruntime'.*got 'tensorrt'"):
        deploy.optimize_for_inference(make_model("smallcnn"), backend="tensorrt")


def test_int8_needs_calibration_images_and_only_int8_takes_them():
    model = make_model("smallcnn")
    with pytest.raises(ValueError, match="needs calibration_images"):
        deploy.optimize_for_inference(model, backend="onnxruntime-int8")
    with pytest.raises(ValueError, match="only used by the int8 backends"):
        deploy.optimize_for_inference(model, backend="eager", calibration_images=torch.zeros(2, 1, 28, 28))
    with pytest.raises(
        ValueError, match=r"calibration_images must be a non-empty \(N, C, H, W\) tensor, got \(28, 28\)"
    ):
        deploy.quantize_onnx("unused.onnx", "unused.int8.onnx", torch.zeros(28, 28))


@pytest.mark.parametrize("opset", [8, 21, "17"])
def test_export_onnx_rejects_an_opset_the_exporter_lacks(tmp_path, opset):
    with pytest.raises(ValueError, match=f"opset must be an integer from 9 to 20 .*got {opset!r}"):
        deploy.export_onnx(make_model("smallcnn"), tmp_path / "m.onnx", opset=opset)


@pytest.mark.parametrize("opset", [9, 20])
def test_export_onnx_at_the_ends_of_the_opset_range(tmp_path, opset):
    model = make_model("shufflenet_v1")
    runner = deploy.OnnxRuntimeModule(deploy.export_onnx(model, tmp_path / "m.onnx", opset=opset))
    x = deploy.default_input(model, batch_size=3)
    with torch.no_grad():
        assert (runner(x) - model(x)).abs().max() < TOLERANCE


def test_compile_without_a_compiler_is_a_clear_error_and_auto_degrades(monkeypatch):
    monkeypatch.setattr(deploy, "cpp_compiler", lambda: None)
    with pytest.raises(deploy.BackendUnavailableError, match="needs a C\\+\\+ compiler"):
        deploy.optimize_for_inference(make_model("smallcnn"), backend="compile")
    monkeypatch.setattr(deploy, "available_backends", lambda: ["eager", "torchscript"])
    monkeypatch.delenv("LIGHTNETS_AUTO_BACKEND", raising=False)  # measured, not pinned as the suite pins it
    model = make_model("smallcnn")
    choice = deploy.choose_backend(model, deploy.default_input(model), cache=False)  # measures what is installed
    assert set(choice.milliseconds) == {"eager", "torchscript"} and choice.backend in choice.milliseconds


def test_fold_batchnorm_on_an_untraceable_model_says_why():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="cannot fold BatchNorm in DataDependent: its forward is not traceable"):
        deploy.fold_batchnorm(DataDependent())


def test_lazy_public_api():
    assert lightnets.optimize_for_inference is deploy.optimize_for_inference
    assert lightnets.export_onnx is deploy.export_onnx
