"""MobileNet v1 against the paper (arXiv 1704.04861): Tables 1, 6 and 7."""
import pytest
import torch
from torch import nn

import lightnets
from lightnets.profiler import count_macs
from lightnets.models.mobilenet_v1 import BLOCKS, MobileNetV1, scale_channels


def _params(model):
    return sum(p.numel() for p in model.parameters())


# Table 6 (224 px) — mult-adds in millions as printed, and exact parameter counts (1000 classes,
# FC bias and BN affine included; the paper rounds them to 4.2 / 2.6 / 1.3 / 0.5 M).
TABLE_6 = [
    (1.0, 569, 4_231_976),
    (0.75, 325, 2_585_560),
    (0.5, 149, 1_331_592),
    (0.25, 41, 470_072),
]


@pytest.mark.parametrize("alpha, paper_mmacs, params", TABLE_6)
def test_table6_width_multiplier(alpha, paper_mmacs, params):
    model = lightnets.create_model("mobilenet_v1", alpha=alpha)
    assert _params(model) == params
    macs = count_macs(model, (3, 224, 224))  # convs + FC, as the paper counts
    assert macs / 1e6 == pytest.approx(paper_mmacs, rel=0.01)


@pytest.mark.parametrize("name, alpha", [("mobilenet_v1_100", 1.0), ("mobilenet_v1_075", 0.75),
                                         ("mobilenet_v1_050", 0.5), ("mobilenet_v1_025", 0.25)])
def test_named_variants_equal_generic(name, alpha):
    assert _params(lightnets.create_model(name)) == _params(lightnets.create_model("mobilenet_v1", alpha=alpha))


# Table 7 (α = 1.0): resolution multiplier ρ → input side 224·ρ.
@pytest.mark.parametrize("size, paper_mmacs", [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_table7_resolution_multiplier(size, paper_mmacs):
    by_rho = lightnets.create_model("mobilenet_v1", rho=size / 224)
    by_size = lightnets.create_model("mobilenet_v1", img_size=size)
    assert by_rho.pretrained_cfg["input_size"] == by_size.pretrained_cfg["input_size"] == (3, size, size)
    assert count_macs(by_rho, (3, size, size)) / 1e6 == pytest.approx(paper_mmacs, rel=0.01)
    assert _params(by_rho) == 4_231_976  # ρ changes cost, never parameters


def test_table1_body():
    model = MobileNetV1()
    assert model.stem.conv.out_channels == 32 and model.stem.conv.stride == (2, 2)
    assert len(model.blocks) == 13
    strides = [block.conv_dw.stride[0] for block in model.blocks]
    # The paper's Table 1 prints s2 on the last depthwise layer: a typo, the map stays 7x7 (stride 1).
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [block.conv_pw.out_channels for block in model.blocks] == [c for c, _ in BLOCKS]
    for block in model.blocks:
        assert block.conv_dw.groups == block.conv_dw.in_channels  # depthwise
        assert block.conv_pw.kernel_size == (1, 1)
    assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape == (1, 1024, 7, 7)
    assert model.num_features == 1024


def test_depthwise_separable_cost_formula_per_layer():
    """Eq. 5: a separable layer costs DK²·M·DF² + M·N·DF² mult-adds."""
    model = MobileNetV1().eval()
    side = 112
    for block in model.blocks:
        m, n = block.conv_dw.in_channels, block.conv_pw.out_channels
        side = side // block.conv_dw.stride[0]
        expected = 9 * m * side * side + m * n * side * side
        assert count_macs(block, (m, side * block.conv_dw.stride[0], side * block.conv_dw.stride[0])) == expected


def test_width_rounding_and_minimum():
    assert scale_channels(32, 0.25) == 8
    assert scale_channels(32, 0.1) == 8  # never below 8
    assert scale_channels(1024, 0.3) == 307  # int() truncation, as TF-slim
    model = lightnets.create_model("mobilenet_v1", alpha=0.1)
    assert min(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) == 8


def test_activation_is_a_parameter():
    assert isinstance(MobileNetV1().stem.act, nn.ReLU)  # the paper's ReLU by default
    relu6 = MobileNetV1(act_layer="relu6")
    assert isinstance(relu6.stem.act, nn.ReLU6) and isinstance(relu6.blocks[0].act_pw, nn.ReLU6)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0}, "alpha must be a finite number > 0, got 0"),
    ({"alpha": -1}, "alpha must be a finite number > 0, got -1"),
    ({"rho": 0}, "rho must be in (0, 1], got 0"),
    ({"rho": 1.5}, "rho must be in (0, 1], got 1.5"),
    ({"rho": 0.5, "img_size": 112}, "give rho or img_size, not both"),
    ({"num_classes": -1}, "num_classes must be an integer >= 0 (0: no classifier, the model returns features), got -1"),
    ({"in_chans": 0}, "in_chans must be an integer >= 1, got 0"),
    ({"act_layer": "swish2"}, "act_layer must be one of"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        lightnets.create_model("mobilenet_v1", **kwargs)
    assert message in str(err.value)


def test_too_small_image_is_a_clear_error():
    model = lightnets.create_model("mobilenet_v1_025")
    with pytest.raises(
        ValueError, match=r"at least 32x32, got 28x28; build it with small_input=True for images down to 16x16$"
    ):
        model(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"at least 32x32, got 8x8$"):  # too small for the small form too: no such hint
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="in_chans=3 but the input has 1 channels"):
        model(torch.zeros(1, 1, 224, 224))


def test_tf_padding_puts_the_odd_row_and_column_at_the_bottom_right():
    """Keras Applications' stride-2 layers pad as TensorFlow's "SAME": the extra row and column go at the bottom
    and right (../shared/NOTES.md), which is what lets their weights give their logits."""
    from lightnets.layers import tf_same_padding

    padded = tf_same_padding(torch.ones(1, 1, 4, 4), 3, 2)[0, 0]
    assert padded.shape == (5, 5)
    assert padded[:4, :4].eq(1).all() and padded[4].eq(0).all() and padded[:, 4].eq(0).all()
    assert tf_same_padding(torch.ones(1, 1, 5, 5), 3, 2).shape[-2:] == (7, 7)  # odd sides: one pixel each side
