"""Feature maps for dense tasks: feature_info, forward_intermediates, features_only (timm's API)."""
import pytest
import torch
from torch import nn

import lightnets
from lightnets.compress import prune_l1
from lightnets.models.restructure import restructure

from representatives import FAMILY_REPRESENTATIVES


def _small(name: str) -> nn.Module:
    """The small form at 32 px: every reduction divides it, so reductions can be read off the map sizes."""
    return lightnets.create_model(name, small_input=True, img_size=32).eval()


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_intermediates_match_feature_info_and_forward_features(name):
    model = _small(name)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=0)
    assert [(m.shape[1], 32 // m.shape[-1]) for m in maps] == [
        (f["num_chs"], f["reduction"]) for f in model.feature_info
    ]
    reductions = [f["reduction"] for f in model.feature_info]
    assert reductions == sorted(set(reductions)), "one map per resolution, coarser and coarser"
    assert torch.equal(maps[-1], final), "the last map is the body's output"
    modules = dict(model.named_modules())
    assert all(f["module"] in modules for f in model.feature_info)


@pytest.mark.parametrize("name, channels, reductions", [
    # timm's own mobilenetv1_100 and ResNet-style strides; VGG as timm's vgg (pre-pool maps, then the last pool).
    ("mobilenet_v1_100", [64, 128, 256, 512, 1024], [2, 4, 8, 16, 32]),
    ("mobilenet_v1_025", [16, 32, 64, 128, 256], [2, 4, 8, 16, 32]),
    ("shufflenet_g3", [24, 24, 240, 480, 960], [2, 4, 8, 16, 32]),
    ("shufflenet_g8_050", [16, 16, 192, 384, 768], [2, 4, 8, 16, 32]),
    ("vgg16_bn", [64, 128, 256, 512, 512, 512], [1, 2, 4, 8, 16, 32]),
])
@pytest.mark.slow
def test_full_size_feature_info(name, channels, reductions):
    model = lightnets.create_model(name)
    assert [f["num_chs"] for f in model.feature_info] == channels
    assert [f["reduction"] for f in model.feature_info] == reductions


@pytest.mark.parametrize("ours, theirs", [("mobilenet_v1_100", "mobilenetv1_100"), ("vgg11_bn", "vgg11_bn")])
@pytest.mark.slow
def test_feature_info_agrees_with_timms_twin(ours, theirs):
    import timm

    mine = lightnets.create_model(ours, features_only=True).feature_info
    timms = timm.create_model(theirs, features_only=True).feature_info
    assert mine.channels() == timms.channels()
    assert mine.reduction() == timms.reduction()
    if ours.startswith("vgg"):  # torchvision's layer numbering in both
        assert mine.module_name() == timms.module_name()


def test_indices_as_timm_reads_them():
    model = _small("mobilenet_v1_050")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=(0, -1), intermediates_only=True)
        final, early = model.forward_intermediates(x, indices=[1], stop_early=True)
    assert len(every) == 5
    assert [m.shape for m in last_two] == [m.shape for m in every[-2:]]
    assert [m.shape for m in picked] == [every[0].shape, every[-1].shape]
    assert torch.equal(final, early[0]) and final.shape == every[1].shape


@pytest.mark.parametrize("kwargs, error, message", [
    ({"indices": 6}, ValueError, "has 5 feature maps; an int takes the last n, n from 1 to 5, got 6"),
    ({"indices": (0, 5)}, ValueError,
     "indices 0 to 4, or -5 to -1 from the end\\), got index 5; reductions: \\[1, 2, 4, 8, 16\\]"),
    ({"indices": (3, 1)}, ValueError, "distinct feature maps in increasing order, got \\[3, 1\\]"),
    ({"indices": "all"}, ValueError, "indices must be None, an int or a non-empty sequence of ints, got 'all'"),
    ({"output_fmt": "NHWC"}, ValueError, "output_fmt must be 'NCHW'"),
])
def test_intermediates_refuse_what_they_cannot_give(kwargs, error, message):
    with pytest.raises(error, match=message):
        _small("mobilenet_v1_050").forward_intermediates(torch.zeros(1, 3, 32, 32), **kwargs)


def test_intermediates_check_the_input():
    with pytest.raises(ValueError, match="was built for in_chans=3 but the input has 1 channels"):
        _small("shufflenet_g3_050").forward_intermediates(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize(
    "name", ["mobilenet_v1_025", "shufflenet_g3_050", "vgg11_bn", "sepcnn_both", "smallcnn_3x2_dw2"]
)
def test_features_only_backbone(name):
    import timm

    model = _small(name)
    backbone = lightnets.create_model(
        name, small_input=True, img_size=32, features_only=True, out_indices=(1, 2)
    ).eval()
    backbone.load_state_dict(
        {f"model.{k}": v for k, v in model.state_dict().items() if f"model.{k}" in backbone.state_dict()}
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = backbone(x)
        expected = model.forward_intermediates(x, indices=(1, 2), intermediates_only=True)
    assert len(maps) == 2 and all(torch.equal(a, b) for a, b in zip(maps, expected))
    assert backbone.feature_info.channels() == [m.shape[1] for m in maps]
    assert backbone.feature_info.reduction() == [32 // m.shape[-1] for m in maps]
    # The layers after the last map taken and the head hold no parameters any more.
    kept = sum(p.numel() for p in backbone.parameters())
    assert kept < sum(p.numel() for p in model.parameters())
    assert not any("classifier" in key or "pre_logits" in key for key in backbone.state_dict())
    assert "num_classes" not in backbone.pretrained_cfg and backbone.in_chans == 3
    # timm's create_model reaches the same backbone through the bridge.
    through_timm = timm.create_model(lightnets.timm_name(name), small_input=True, img_size=32, features_only=True,
                                     out_indices=(1, 2))
    assert through_timm.feature_info.channels() == backbone.feature_info.channels()


def test_features_only_takes_pretrained_weights():
    full = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True).eval()
    backbone = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True, features_only=True).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        maps, expected = backbone(x), full.forward_intermediates(x, intermediates_only=True)
    assert len(maps) == len(full.feature_info) == 5
    assert all(torch.equal(a, b) for a, b in zip(maps, expected))
    assert backbone.pretrained_cfg["tag"] == "fmnist"


def test_features_only_arguments_are_checked():
    with pytest.raises(TypeError, match="out_indices and feature_cls only apply with features_only=True"):
        lightnets.create_model("mobilenet_v1_025", out_indices=(1, 2))
    with pytest.raises(ValueError, match="feature_cls must be one of 'getter', 'fx'"):
        lightnets.create_model("mobilenet_v1_025", features_only=True, feature_cls="hook")
    with pytest.raises(ValueError, match="MobileNetV1 has 5 feature maps .* got index 7"):
        lightnets.create_model("mobilenet_v1_025", features_only=True, out_indices=(2, 7))


def test_prune_intermediate_layers_leaves_a_smaller_feature_model():
    model = _small("shufflenet_g3_050")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=(0, 1), intermediates_only=True)[-1]
    before = sum(p.numel() for p in model.parameters())
    assert model.prune_intermediate_layers((0, 1)) == [0, 1]
    assert isinstance(model.stage3, nn.Identity) and isinstance(model.stage4, nn.Identity)
    assert isinstance(model.classifier, nn.Identity) and model.num_classes == 0
    assert sum(p.numel() for p in model.parameters()) < before
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_pruning_filters_updates_feature_widths():
    model = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10)
    pruned = prune_l1(model, {"blocks.2.conv_pw": 0.5, "blocks.12.conv_pw": 0.25})
    assert [f["num_chs"] for f in model.feature_info] == [16, 32, 64, 128, 256]
    assert [f["num_chs"] for f in pruned.feature_info] == [16, 16, 64, 128, 192]
    fresh = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10)
    restructure(fresh, pruned.state_dict())
    assert fresh.feature_info == pruned.feature_info
    with torch.no_grad():
        maps = pruned.eval().forward_intermediates(torch.zeros(1, 3, 32, 32), intermediates_only=True)
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in pruned.feature_info]
