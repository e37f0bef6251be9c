"""VGG against the paper (arXiv 1409.1556, Table 1 configurations A, B, D, E) and torchvision's
published counts; the small form on 28 px images. Parameter counts are taken on the meta device
(no memory, no init), and the one 224 px model is built once for the module."""
import pytest
import torch
from torch import nn

import lightnets
from lightnets.profiler import count_macs
from lightnets.models.vgg import CONVS_PER_STAGE, STAGE_CHANNELS, VGG

NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

# torchvision.models.vgg*_Weights.IMAGENET1K_V1.meta["num_params"] (1000 classes).
TORCHVISION_PARAMS = {11: 132_863_336, 13: 133_047_848, 16: 138_357_544, 19: 143_667_240}
TORCHVISION_BN_PARAMS = {11: 132_868_840, 13: 133_053_736, 16: 138_365_992, 19: 143_678_248}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return lightnets.create_model(name, **kwargs)


def _conv_widths(depth: int) -> list[int]:
    return [c for c, n in zip(STAGE_CHANNELS, CONVS_PER_STAGE[depth]) for _ in range(n)]


def closed_form_params(depth: int, batch_norm: bool) -> int:
    """Table 1 by hand: 3×3 convs with bias, [BN γ, β], FC 25088→4096→4096→1000 with bias."""
    widths, params, in_chs = _conv_widths(depth), 0, 3
    for out_chs in widths:
        params += 9 * in_chs * out_chs + out_chs + (2 * out_chs if batch_norm else 0)
        in_chs = out_chs
    return params + (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)


@pytest.fixture(scope="module")
def vgg16_224():
    return lightnets.create_model("vgg16").eval()


@pytest.mark.slow
def test_vgg16_params_and_macs(vgg16_224):
    assert _params(vgg16_224) == 138_357_544
    macs = count_macs(vgg16_224, (3, 224, 224))  # convs + FC, bias adds excluded
    assert macs == pytest.approx(15.47e9, rel=0.005)  # torchvision's published 15.47 GFLOPS (= G mult-adds)
    # Exactly: Σ 9·M·N·side² over the 13 convs (sides 224, 112, 56, 28, 14) + the three FC layers.
    sides = [224 >> stage for stage, n in enumerate(CONVS_PER_STAGE[16]) for _ in range(n)]
    widths = _conv_widths(16)
    conv_macs = sum(9 * m * n * s * s for m, n, s in zip([3, *widths], widths, sides))
    assert macs == conv_macs + 25088 * 4096 + 4096 * 4096 + 4096 * 1000 == 15_470_264_320


def test_vgg16_head(vgg16_224):
    assert (vgg16_224.num_features, vgg16_224.head_hidden_size) == (512, 4096)  # as timm counts them
    assert [m.in_features for m in vgg16_224.modules() if isinstance(m, nn.Linear)] == [25088, 4096, 4096]
    assert vgg16_224.classifier is vgg16_224.get_classifier() and vgg16_224.classifier.out_features == 1000
    assert vgg16_224.pre_logits.drop1.p == vgg16_224.pre_logits.drop2.p == 0.5  # Sec. 3.1
    with torch.no_grad():  # the head alone: any map is pooled to 7×7 first
        features = torch.randn(2, 512, 7, 7)
        assert vgg16_224.forward_head(features, pre_logits=True).shape == (2, 4096)
        assert vgg16_224.forward_head(torch.randn(2, 512, 3, 3)).shape == (2, 1000)


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_params_match_torchvision(depth):
    plain, bn = _meta(f"vgg{depth}"), _meta(f"vgg{depth}_bn")
    assert _params(plain) == closed_form_params(depth, False) == TORCHVISION_PARAMS[depth]
    # BatchNorm adds γ and β per conv output channel: 2 · Σ widths.
    bn_params = 2 * sum(_conv_widths(depth))
    assert _params(bn) - _params(plain) == bn_params == {11: 5_504, 13: 5_888, 16: 8_448, 19: 11_008}[depth]
    assert _params(bn) == closed_form_params(depth, True) == TORCHVISION_BN_PARAMS[depth]


@pytest.mark.parametrize("name", NAMES)
def test_table1_layers(name):
    model = _meta(name)
    depth, batch_norm = int(name[3:5]), name.endswith("_bn")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth  # "weight layers" in Table 1
    assert [c.out_channels for c in convs] == _conv_widths(depth)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == (len(convs) if batch_norm else 0)
    assert (model.depth, model.batch_norm) == (depth, batch_norm)
    assert model.pretrained_cfg["first_conv"] == "features.0" and model.features[0] is convs[0]


def test_torchvision_state_dict_layout():
    keys = list(_meta("vgg11_bn").state_dict())
    # torchvision's vgg11_bn numbers its features the same way: conv 0, bn 1, relu 2, pool 3, conv 4 ...
    assert keys[:6] == ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                        "features.1.running_mean", "features.1.running_var"]
    assert "features.4.weight" in keys and "features.8.weight" in keys


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn", "vgg19"])
def test_small_form_on_28px(name):
    full, small = _meta(name), lightnets.create_model(name, small_input=True, in_chans=1, img_size=28).eval()
    assert small.pretrained_cfg["input_size"] == (1, 28, 28)
    with torch.no_grad():
        features = small.forward_features(torch.zeros(2, 1, 28, 28))
        assert features.shape == (2, 512, 3, 3)  # three pools: 28 → 14 → 7 → 3, at least 2×2
        assert small.forward_head(features, pre_logits=True).shape == (2, 512)
    assert small.num_features == 512 and small.classifier.in_features == 512
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.features) == 3
    # The dropped pools are Identities: the features' state-dict keys are the full form's (ImageNet weights fit).
    assert {k: v.shape for k, v in small.features.state_dict().items() if k != "0.weight"} == \
        {k: v.shape for k, v in full.features.state_dict().items() if k != "0.weight"}
    assert not any(isinstance(m, nn.Linear) and m is not small.classifier for m in small.modules())
    convs = [tuple(m.weight.shape[:1] + m.weight.shape[2:]) for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [tuple(m.weight.shape[:1] + m.weight.shape[2:]) for m in full.modules() if isinstance(m, nn.Conv2d)]


def test_small_form_cost():
    small = lightnets.create_model("vgg16", small_input=True)
    assert small.img_size == 32 and small.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    # Stages at 32, 16, 8, 4, 4 px (the last two pools dropped) + the 512 → 1000 classifier.
    sides = [(32, 16, 8, 4, 4)[stage] for stage, n in enumerate(CONVS_PER_STAGE[16]) for _ in range(n)]
    widths = _conv_widths(16)
    expected = sum(9 * m * n * s * s for m, n, s in zip([3, *widths], widths, sides)) + 512 * 1000
    assert count_macs(small, (3, 32, 32)) == expected == 398_643_200


def test_too_small_image_is_a_clear_error():
    model = _meta("vgg11")  # the input is checked before any compute
    with pytest.raises(ValueError, match=r"at least 32x32, got 28x28; build it with small_input=True"):
        model(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 15}, r"depth must be one of 11, 13, 16, 19 \(Table 1\), got 15"),
    ({"depth": True}, "depth must be one of"),
    ({"img_size": 16}, "img_size must be at least 32 for this form, got 16; use small_input=True"),
    ({"img_size": 4, "small_input": True}, "img_size must be at least 8 for this form, got 4"),
    ({"drop_rate": -0.1}, r"drop_rate must be a float in \[0, 1\)"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        with torch.device("meta"):
            VGG(**kwargs)


def test_named_variant_fixes_depth():
    with pytest.raises(ValueError, match=r"this variant fixes depth=16; .* create_model\('vgg', depth=11\)"):
        _meta("vgg16", depth=11)
    assert _params(_meta("vgg", depth=19, batch_norm=True)) == TORCHVISION_BN_PARAMS[19]
