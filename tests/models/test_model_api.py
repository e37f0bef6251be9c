"""The shared model API, on one configuration per family and per source layout (tests/representatives.py).

Every registered name is covered by tests/models/test_registered_models.py's expect-file."""
import math

import pytest
import torch
from torch import nn

import lightnets
from lightnets.profiler import count_macs
from representatives import FAMILY_REPRESENTATIVES, SOURCE_LAYOUTS

# Each family, and each source layout's departure from the paper (padding, activation, concatenation order).
CONFIGS = [pytest.param(name, {}, id=name) for name in FAMILY_REPRESENTATIVES] + [
    pytest.param(name, kwargs, id=f"{name}-{layout}") for layout, (name, kwargs) in SOURCE_LAYOUTS.items()]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_has_every_family():
    for family in ("mobilenet_v1", "shufflenet_v1", "sepcnn_regular", "smallcnn_3x2", "vgg16"):
        assert family in lightnets.list_models()


# Default-size canaries: the ImageNet forms at their 224 px (VGG's is covered at its size by tests/models/test_vgg.py).
@pytest.mark.parametrize(
    "name, kwargs", [("mobilenet_v1_025", {}), ("shufflenet_g8_050", {"shuffle_layout": "megvii"})]
)
def test_default_size_forward_backward(name, kwargs):
    model = lightnets.create_model(name, num_classes=7, **kwargs)
    channels, height, width = model.pretrained_cfg["input_size"]
    x = torch.randn(2, channels, height, width)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert model.get_classifier().weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_small_input_form(name, kwargs):
    # Keras's TF padding rounds odd maps down (7 -> 3 where the paper's gets 4): its small form wants 32 px.
    side = 32 if kwargs.get("padding") == "tf" else 28
    model = lightnets.create_model(name, small_input=True, in_chans=1, num_classes=10, img_size=side, **kwargs).eval()
    assert model.pretrained_cfg["input_size"] == (1, side, side)
    x = torch.randn(3, 1, side, side)
    features = model.forward_features(x)
    assert features.dim() == 4 and min(features.shape[-2:]) >= 2, "a 28 px image must end in >= 2x2 features"
    assert model(x).shape == (3, 10)
    model.train()
    model(x).sum().backward()


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_model_api(name):
    model = lightnets.create_model(name, small_input=True, num_classes=5, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pre.shape == (2, model.num_features)
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().out_features == 5
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    cfg = model.pretrained_cfg
    for key in ("architecture", "input_size", "mean", "std", "num_classes", "crop_pct", "first_conv", "classifier"):
        assert key in cfg, key
    assert model.default_cfg is model.pretrained_cfg
    # first_conv / classifier name real modules (used for in_chans / num_classes adaptation)
    modules = dict(model.named_modules())
    assert isinstance(modules[cfg["first_conv"]], nn.Conv2d)
    assert cfg["classifier"] in modules


@pytest.mark.parametrize("name, kwargs", CONFIGS)
@pytest.mark.slow
def test_channels_last_and_trace(name, kwargs):
    model = lightnets.create_model(name, small_input=True, img_size=32, num_classes=4, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(cl, expected, rtol=1e-4, atol=1e-4)
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_in_chans_and_num_classes_change_params_as_expected(name):
    base = lightnets.create_model(name, small_input=True, img_size=32, num_classes=10)
    more_classes = lightnets.create_model(name, small_input=True, img_size=32, num_classes=11)
    assert _params(more_classes) - _params(base) == base.num_features + 1  # one more classifier row + bias
    gray = lightnets.create_model(name, small_input=True, img_size=32, num_classes=10, in_chans=1)
    assert _params(gray) < _params(base)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
@pytest.mark.slow
def test_small_input_keeps_architecture(name):
    """small_input changes strides and pools only: every conv layer keeps its shape."""
    def conv_shapes(model):
        return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Conv2d)]

    full = lightnets.create_model(name, num_classes=10)
    small = lightnets.create_model(name, num_classes=10, small_input=True)
    assert conv_shapes(full) == conv_shapes(small)
    assert count_macs(small, small.pretrained_cfg["input_size"]) > 0


@pytest.mark.parametrize("name, kwargs", [
    ("mobilenet_v1_025", {"small_input": True}),
    ("shufflenet_g3_050", {"small_input": True}),
    ("smallcnn_3x2", {}),      # its own hidden FC layer before the classifier
    ("sepcnn_both", {"small_input": True}),
    ("vgg11", {"small_input": False}),  # the two hidden FC layers of the ImageNet form
])
@pytest.mark.slow
def test_num_classes_zero_builds_a_feature_extractor(name, kwargs, tmp_path):
    model = lightnets.create_model(name, num_classes=0, img_size=32, **kwargs).eval()
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model(x)
        assert features.shape == (2, model.head_hidden_size)  # timm's pre-logits width
        torch.testing.assert_close(features, model.forward_head(model.forward_features(x), pre_logits=True))
    if name == "mobilenet_v1_025":  # a feature extractor saves and loads back like any model (timm's num_classes=0)
        folder = lightnets.save_pretrained(model, tmp_path / "features")
        loaded = lightnets.create_model(name, pretrained=True, pretrained_path=str(folder)).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), features, atol=0, rtol=0)


GLOBALLY_POOLED = [name for name in FAMILY_REPRESENTATIVES if not name.startswith("smallcnn")]


@pytest.mark.parametrize("name", GLOBALLY_POOLED)
def test_global_pool_off_returns_the_feature_map_as_in_timm(name):
    model = lightnets.create_model(name, small_input=True, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feature_map = model.forward_features(x)
        model.reset_classifier(0, "")  # timm's way to a feature-map extractor
        torch.testing.assert_close(model(x), feature_map)
        with pytest.raises(ValueError, match="global_pool='' \\(no pooling\\) needs num_classes=0, got 4"):
            model.reset_classifier(4)
        model.reset_classifier(4, "avg")
        assert model(x).shape == (2, 4)


def test_global_pool_through_create_model_and_timm():
    import timm

    mapped = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True, num_classes=0, global_pool="")
    assert mapped(torch.zeros(1, 1, 28, 28)).shape == (1, 256, 2, 2)  # the weights are loaded before pooling is set
    assert (timm.create_model("shufflenet_g3_050", num_classes=0, global_pool="")(torch.zeros(1, 3, 64, 64)).shape
            == (1, 480, 2, 2))
    # A head that flattens the map (with hidden layers) is skipped as well: the model returns its last map.
    assert (lightnets.create_model("smallcnn_3x2", num_classes=0, global_pool="")(torch.zeros(1, 3, 28, 28)).shape
            == (1, 128, 3, 3))
    with pytest.raises(ValueError, match=r"global_pool='' \(no pooling\) needs num_classes=0, got 10"):
        lightnets.create_model("smallcnn_3x2", global_pool="")
    with pytest.raises(ValueError, match="global_pool must be 'avg' or '' \\(no pooling\\), got 'max'"):
        lightnets.create_model("mobilenet_v1_025", global_pool="max")


@pytest.mark.parametrize("name, kwargs, message", [
    ("mobilenet_v1", {"rho": 0.1}, "MobileNetV1 takes images of at least 32x32, got img_size=22 \\(rho=0.1 of 224\\); "
                                   "build it with small_input=True for images down to 16x16"),
    ("mobilenet_v1", {"img_size": 12, "small_input": True}, "at least 16x16, got img_size=12$"),
    ("shufflenet_v1", {"img_size": 16}, "ShuffleNetV1 takes images of at least 32x32, got img_size=16; .* down to 8x8"),
    ("mobilenet_v1", {"small_input": "no"}, "small_input must be True or False, got 'no'"),
    ("shufflenet_v1", {"small_input": "off"}, "small_input must be True or False, got 'off'"),
    ("shufflenet_v1", {"shuffle": "no"}, "shuffle must be True or False, got 'no'"),
    ("shufflenet_v1", {"scale": [1]}, "scale must be one of 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, got \\[1\\]"),
    ("vgg", {"depth": 16.0}, "depth must be one of 11, 13, 16, 19 \\(Table 1\\), got 16.0"),
    ("vgg", {"depth": 11, "batch_norm": "yes"}, "batch_norm must be True or False, got 'yes'"),
])
def test_a_model_refuses_arguments_it_would_misread(name, kwargs, message):
    # Each of these used to build a model: one that refused its own default input, or a string read as True.
    with pytest.raises(ValueError, match=message):
        lightnets.create_model(name, **kwargs)


def test_every_family_class_is_exported():
    from lightnets import models

    names = ("shufflenet_g3_050", "vgg11_bn", "sepcnn_both", "smallcnn_3x2", "mobilenet_v1_025")
    classes = {type(lightnets.create_model(name, small_input=True, img_size=32)).__name__ for name in names}
    assert len(classes) == 5 and classes <= set(models.__all__)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_grad_checkpointing_gives_the_same_gradients_from_fewer_saved_activations(name):
    torch.manual_seed(0)
    model = lightnets.create_model(name, small_input=True, in_chans=1, num_classes=10, img_size=28).train()
    x = torch.randn(4, 1, 28, 28)

    def run() -> tuple[torch.Tensor, list[torch.Tensor], int]:
        saved = []
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks in both runs
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = model(x)
        out.logsumexp(1).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()], sum(saved)

    plain_out, plain_grads, plain_saved = run()
    model.set_grad_checkpointing()
    out, grads, saved = run()
    torch.testing.assert_close(out, plain_out)
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert saved < plain_saved / 2, (saved, plain_saved)  # only the segments' inputs and the head's activations
    model.eval()  # evaluation and no-grad passes run the body as usual
    assert not model.checkpointing_body()
    with pytest.raises(ValueError, match="enable must be True or False"):
        model.set_grad_checkpointing("yes")


def _ranks(keys: dict[str, tuple]) -> dict[str, int]:
    """Each name's position among the distinct keys, sorted: the layer ids timm gives parameter groups."""
    order = sorted(set(keys.values()))
    return {name: order.index(key) for name, key in keys.items()}


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_group_matcher_lists_the_layers_in_the_order_they_run(name):
    from timm.models import group_parameters

    model = lightnets.create_model(name, small_input=True, in_chans=1, num_classes=10, img_size=28)
    position = {layer: index for index, layer in enumerate(model.body_layers)}
    stage_ends = [position[info["module"]] for info in model.feature_info]
    head = (math.inf,)
    layer_key, stage_key = {}, {}
    for param_name, _ in model.named_parameters():
        layer = next((layer for layer in model.body_layers if param_name.startswith(layer + ".")), None)
        if layer is None:  # classifier, MLP head: after every body layer
            layer_key[param_name] = stage_key[param_name] = head
        else:
            layer_key[param_name] = (position[layer],)
            # the stem alone, then one group per feature map: the maps that end before this layer
            stage_key[param_name] = (
                (-1,) if position[layer] == 0 else (sum(end < position[layer] for end in stage_ends),)
            )
    assert group_parameters(model, model.group_matcher(), reverse=True) == _ranks(layer_key)
    coarse = group_parameters(model, model.group_matcher(coarse=True), reverse=True)
    assert coarse == _ranks(stage_key)
    assert max(coarse.values()) >= 2  # stem, at least one stage, head


def test_timm_layer_decay_follows_the_group_matcher():
    from timm.optim import param_groups_layer_decay

    model = lightnets.create_model("mobilenet_v1_025")  # stem, 13 blocks, classifier
    scales = {
        id(p): group["lr_scale"] for group in param_groups_layer_decay(model, layer_decay=0.5) for p in group["params"]
    }
    assert scales[id(model.classifier.weight)] == 1.0
    assert scales[id(model.blocks[12].conv_pw.weight)] == 0.5
    assert scales[id(model.stem.conv.weight)] == 0.5 ** 14


def test_timm_training_script_can_turn_on_grad_checkpointing():
    timm = pytest.importorskip("timm")
    model = timm.create_model("shufflenet_g3_050", small_input=True, num_classes=4)
    model.set_grad_checkpointing(enable=True)  # what timm's train.py --grad-checkpointing calls
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.grad_checkpointing and model.checkpointing_body()
