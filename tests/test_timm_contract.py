"""timm's contract, asserted on one configuration per family and per source layout (issue #32): the default cfg
describes the network a name builds, ``pretrained`` never changes that network, FX and TorchScript work, and
``num_features`` / ``head_hidden_size`` / ``pool_size`` mean what timm means. timm's own ``tests/test_models.py`` runs
on these models through ``scripts/timm_suite`` (docs/timm.md)."""
import math

import pytest
import timm
import torch
from timm.data import create_transform, resolve_data_config

import lightnets
import lightnets.pretrained
from lightnets.data import ImageFolderDataset
from lightnets.models import catalog

from representatives import FAMILY_REPRESENTATIVES

# VGG's ImageNet form is 133 M parameters at 224 px: its family is represented here by its bundled
# small-image weight (vgg11_bn.fmnist, in VARIANT_TAGS), built through timm the same way.
NAMES = [name for name in FAMILY_REPRESENTATIVES if not name.startswith("vgg")]
# One weight per kind of source variant: each builds its network through constructor options.
VARIANT_TAGS = ["mobilenet_v1_100.keras_r160_in1k", "mobilenet_v1_125.timm_in1k", "shufflenet_g1_025.osmr_in1k",
                "shufflenet_g8_050.megvii_in1k", "shufflenet_g3.fmnist", "smallcnn_3x2_dw12.fmnist", "vgg11_bn.fmnist"]
ALL_WITH_WEIGHTS = [name for name in lightnets.list_models() if catalog.entry(name).pretrained_tags]
# Built with and without weights: a name with a default weight of each source, and names without one.
WITH_WEIGHTS = ["mobilenet_v1_100", "mobilenet_v1_125", "shufflenet_g1", "shufflenet_g3_050", "vgg11_bn"]


def sample(model, batch=2, side=None):
    channels, height, _ = model.pretrained_cfg["input_size"]
    side = side or height
    return torch.rand(batch, channels, side, side)


def assert_same_network(a, b):
    """Same layers and shapes, and the same function of the same weights (a concatenation order or a
    shuffle layout leaves the layers alone but changes the function)."""
    assert repr(a) == repr(b)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    x = sample(a)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("name", NAMES)
def test_every_model_traces_with_torch_fx(name):
    """torch.fx.symbolic_trace (timm's FX feature extraction, quantisation and pruning tools rely on it):
    the eager input checks step aside for the tracer's proxies."""
    model = lightnets.create_model(name).eval()
    graph = torch.fx.symbolic_trace(model)
    x = sample(model, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES + VARIANT_TAGS)
def test_every_model_scripts_with_torchscript_and_computes_what_eager_does(name):
    model = lightnets.create_model(name).eval()
    scripted = torch.jit.script(model)
    x = sample(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES + VARIANT_TAGS)
def test_num_features_head_hidden_size_and_pool_size_mean_what_timm_means(name):
    """num_features: channels of forward_features' map; head_hidden_size: width of the pre-logits the
    classifier reads; pretrained_cfg["pool_size"]: the map's side at the cfg's input size (and
    feature_map_size at another side, odd ones rounding as the layers do)."""
    model = lightnets.create_model(name).eval()
    x = sample(model, batch=1)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert tuple(features.shape[-2:]) == tuple(model.pretrained_cfg["pool_size"])
        assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
        if not model.fixed_input_size:
            odd = x.shape[-1] + 1
            assert tuple(model.forward_features(sample(model, 1, odd)).shape[-2:]) == model.feature_map_size(odd)
        model.reset_classifier(0)  # timm: the classifier removed, the model returns the pre-logits
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")  # and without pooling, the feature map
        assert model(x).shape == features.shape


@pytest.mark.slow
def test_vgg_counts_its_features_as_timm_does():
    """timm's VGG: num_features is the body's 512 channels, head_hidden_size the FC head's 4096."""
    imagenet, small = lightnets.create_model("vgg11"), lightnets.create_model("vgg11", small_input=True)
    assert (imagenet.num_features, imagenet.head_hidden_size) == (512, 4096)
    assert (small.num_features, small.head_hidden_size) == (512, 512)
    imagenet.reset_classifier(7)
    assert imagenet.get_classifier().in_features == 4096


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_timms_default_cfg_describes_the_network_the_bare_name_builds(name):
    """timm.create_model(name) builds what lightnets.create_model(name) builds, and its default cfg
    (the first tag of timm's DefaultCfg) gives that network's input size and classes."""
    cfg = timm.get_pretrained_cfg(lightnets.timm_name(name)).to_dict()
    via_timm = timm.create_model(lightnets.timm_name(name))
    ours = lightnets.create_model(name)
    assert tuple(cfg["input_size"]) == via_timm.pretrained_cfg["input_size"] == ours.pretrained_cfg["input_size"]
    assert cfg["num_classes"] == via_timm.num_classes == ours.num_classes
    assert_same_network(ours, via_timm)


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_pretrained_true_and_false_build_the_same_network(name, monkeypatch):
    """timm's rule: the pretrained flag never changes the architecture. A name whose weights are all for
    variants of its network (another concatenation order, ReLU6, 1×28×28 inputs) has no default weight."""
    loaded = []
    monkeypatch.setattr(lightnets.pretrained, "load_pretrained", lambda model, cfg, **_: loaded.append(cfg.tag))
    default = catalog.entry(name).default_tag
    without = lightnets.create_model(name)
    if default is None:
        with pytest.raises(ValueError, match=rf"no pretrained weight for the network it builds.*{name}\."):
            lightnets.create_model(name, pretrained=True)
        return
    assert not catalog.entry(name).cfgs[default].model_args
    with_weights = lightnets.create_model(name, pretrained=True)
    via_timm = timm.create_model(lightnets.timm_name(name), pretrained=True)
    assert loaded == [default, default]
    assert_same_network(without, with_weights)
    assert_same_network(without, via_timm)


def test_the_defaults_that_follow_from_the_rule():
    """The ImageNet weights that are the paper's network are defaults; the source variants are tags only."""
    defaults = {name: catalog.entry(name).default_tag for name in ALL_WITH_WEIGHTS}
    for name, tag in defaults.items():  # pretrained=True loads a default only where it is the network the name builds
        assert tag is None or not catalog.entry(name).cfgs[tag].model_args, name
    assert defaults["mobilenet_v1_100"] == "osmr_in1k"  # not timm's, which is ReLU6
    assert defaults["mobilenet_v1_125"] is None and defaults["shufflenet_g3"] is None and defaults["vgg11_bn"] is None
    with pytest.raises(ValueError, match=r"no pretrained weight for the network it builds .*vgg11_bn\.fmnist"):
        lightnets.create_model("vgg11_bn", pretrained=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES + VARIANT_TAGS)
def test_timm_features_only_through_fx_gives_the_intermediate_maps_and_scripts(name):
    """timm.create_model(..., features_only=True, feature_cls="fx"), and the feature_cfg form timm's own
    tests script."""
    base, _, tag = name.partition(".")
    timm_name = lightnets.timm_name(base) + (f".{tag}" if tag else "")
    torch.manual_seed(0)  # the same seed before each build: the same weights
    backbone = timm.create_model(timm_name, features_only=True, feature_cls="fx").eval()
    torch.manual_seed(0)
    with timm.layers.set_scriptable(True):
        scripted = torch.jit.script(timm.create_model(timm_name, feature_cfg={"feature_cls": "fx"}).eval())
    torch.manual_seed(0)
    model = lightnets.create_model(name).eval()
    x = sample(model, batch=1)
    with torch.no_grad():
        expected = model.forward_intermediates(x, intermediates_only=True)
        for maps in (backbone(x), scripted(x)):
            assert len(maps) == len(expected) and all(torch.equal(a, b) for a, b in zip(maps, expected))
    assert backbone.feature_info.channels() == [m.shape[1] for m in expected]


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANT_TAGS + ["shufflenet_g3.megvii_in1k", "mobilenet_v1_025.osmr_in1k"])
def test_timms_data_config_and_transform_are_the_weights_own(name, tmp_path):
    """resolve_data_config + create_transform give the transform the weight's cfg (and model card) states,
    and the eval harness's image folders apply exactly that transform."""
    from PIL import Image

    model = lightnets.create_model(name)
    cfg = model.pretrained_cfg
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg == {"input_size": cfg["input_size"], "interpolation": cfg["interpolation"],
                        "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]), "crop_pct": cfg["crop_pct"],
                        "crop_mode": "center"}
    transform = create_transform(**data_cfg)
    side = cfg["input_size"][-1]
    resize, crop = transform.transforms[:2]
    assert resize.size == math.floor(side / cfg["crop_pct"]) and resize.interpolation.value == cfg["interpolation"]
    assert tuple(crop.size) == (side, side)
    if cfg["input_size"][0] != 3:
        return  # a grey-scale weight: Fashion-MNIST's own loader, not image folders, feeds it
    (tmp_path / "class").mkdir()
    image = Image.fromarray(torch.randint(0, 256, (301, 257, 3), dtype=torch.uint8).numpy())
    image.save(tmp_path / "class" / "image.png")
    ours, _ = ImageFolderDataset(tmp_path, img_size=side, crop_pct=cfg["crop_pct"], interpolation=cfg["interpolation"])[
        0
    ]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (cfg["mean"], cfg["std"]))
    torch.testing.assert_close((ours / 255 - mean) / std, transform(image))


@pytest.mark.parametrize(
    "name", ["mobilenet_v1_025", "shufflenet_g3_050", "sepcnn_both", "smallcnn_3x2_dw1"]
)
@pytest.mark.slow
def test_timms_layer_decay_optimizer_and_model_ema_work(name):
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2
    from timm.utils.model_ema import ModelEmaV3

    model = lightnets.create_model(name, num_classes=5)
    optimizer = create_optimizer_v2(model, "sgd", lr=0.1, layer_decay=0.5)
    scales = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    layers = len(group_parameters(model, model.group_matcher()))  # stem, each body layer with weights, the head
    # timm scales layer i of n by 0.5 ** (n - 1 - i): the stem least, the classifier by 1, in the order layers run.
    in_order = [scales[id(p)] for p in model.parameters()]
    assert sorted(set(in_order)) == [0.5**power for power in range(layers - 1, -1, -1)] and in_order == sorted(in_order)
    classifier_group = next(
        g for g in optimizer.param_groups if any(p is model.get_classifier().weight for p in g["params"])
    )
    assert classifier_group["lr_scale"] == 1.0

    ema = ModelEmaV3(model, decay=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model(sample(model)).square().mean()
    loss.backward()
    optimizer.step()
    ema.update(model)
    weight = "classifier.weight"
    torch.testing.assert_close(ema.module.state_dict()[weight], (before[weight] + model.state_dict()[weight]) / 2)
    assert not torch.equal(model.state_dict()[weight], before[weight])
