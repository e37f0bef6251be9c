"""ShuffleNet v1 against the paper (arXiv 1707.01083, Tables 1, 2, 3, 5) and megvii's released widths.

The paper's "MFLOPs" are mult-adds of convs + FC (megvii ShuffleNet-Series#12): what count_macs counts.
"""
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lightnets
from lightnets import layers
from lightnets.profiler import count_macs
from lightnets.layers import ChannelShuffle, channel_shuffle
from lightnets.models.shufflenet_v1 import (
    GROUPS,
    SCALES,
    STAGE_CHANNELS,
    ShuffleNetV1,
    ShuffleUnit,
    round_channels,
    shufflenet_widths,
)

IMAGENET = (3, 224, 224)


def _params(model):
    return sum(p.numel() for p in model.parameters())


# Table 1 (1×, 224 px): complexity in M mult-adds as printed, and what this build measures exactly.
TABLE_1 = [
    (1, 143, 143_078_976),
    (2, 140, 140_836_512),
    (3, 137, 137_460_672),
    (4, 133, 134_339_776),
    (8, 137, 138_365_952),
]


@pytest.mark.parametrize("groups, paper_mmacs, macs", TABLE_1)
def test_table1_complexity(groups, paper_mmacs, macs):
    model = lightnets.create_model(f"shufflenet_g{groups}")
    measured = count_macs(model, IMAGENET)
    assert measured == macs
    assert measured / 1e6 == pytest.approx(paper_mmacs, rel=0.02)


@pytest.mark.parametrize("groups", GROUPS)
def test_table1_layout(groups):
    model = ShuffleNetV1(groups=groups)
    assert model.widths == (24, *STAGE_CHANNELS[groups])
    assert model.stem.conv.out_channels == 24 and model.stem.conv.stride == (2, 2)
    assert isinstance(model.stem_pool, nn.MaxPool2d)
    stages = [model.stage2, model.stage3, model.stage4]
    assert [len(stage) for stage in stages] == [4, 8, 4]
    # Stride-1 units output the stage width; the stride-2 first unit only what the shortcut lacks.
    assert [stage[-1].conv2.out_channels for stage in stages] == list(STAGE_CHANNELS[groups])
    assert [stage[0].conv2.out_channels for stage in stages] == [
        out - inp for inp, out in zip((24, *STAGE_CHANNELS[groups][:2]), STAGE_CHANNELS[groups])]
    for stage, out_chs in zip(stages, STAGE_CHANNELS[groups]):
        assert [unit.conv_dw.stride[0] for unit in stage] == [2] + [1] * (len(stage) - 1)
        for unit in stage:
            assert unit.conv1.out_channels == out_chs // 4  # bottleneck = 1/4 of the output (Sec. 3.3)
            assert unit.conv_dw.groups == unit.conv_dw.in_channels  # depthwise
            assert unit.conv2.groups == groups
    # Stage 2's first 1×1 conv sees only the stem's 24 channels: not grouped. Every other one is.
    conv1_groups = [unit.conv1.groups for stage in stages for unit in stage]
    assert conv1_groups == [1] + [groups] * 15
    assert model.forward_features(torch.zeros(1, *IMAGENET)).shape == (1, STAGE_CHANNELS[groups][-1], 7, 7)
    assert model.num_features == STAGE_CHANNELS[groups][-1]


def test_params_1x_g3():
    """~1.9 M as megvii reports; exactly 904,728 in the body + 961,000 in the FC (960×1000 weights + 1000 biases).

    megvii's classifier has no bias (1,864,728); BN affine parameters are counted, running stats are not.
    """
    model = lightnets.create_model("shufflenet_g3")
    assert _params(model) == 1_865_728
    assert _params(model.classifier) == 961_000


# Table 2 gives one complexity per row (0.5×: 38, 0.25×: 13 M mult-adds) for g = 1..8; Table 5 repeats
# 38 for 0.5× g=4. Measured with the rounding rule of the module docstring.
SCALED = [
    (0.5, 1, 38, 38_517_408),
    (0.5, 2, 38, 38_914_784),
    (0.5, 3, 38, 37_589_856),
    (0.5, 4, 38, 37_943_936),  # Table 5's 0.5× (g=4): 0.5·272 = 136 rounds up to 144 (a multiple of 16)
    (0.25, 1, 13, 13_162_320),
    (0.25, 2, 13, 13_472_728),
    (0.25, 3, 13, 13_300_656),
    (0.25, 4, 13, 13_480_048),
    (1.5, 3, 292, 292_443_552),  # Table 5
    (2.0, 3, 524, 524_045_184),  # Table 5
]


@pytest.mark.parametrize("scale, groups, paper_mmacs, macs", SCALED)
def test_scaled_complexity(scale, groups, paper_mmacs, macs):
    measured = count_macs(ShuffleNetV1(groups=groups, scale=scale), IMAGENET)
    assert measured == macs
    assert measured / 1e6 == pytest.approx(paper_mmacs, rel=0.05)


def test_scaled_g8_is_above_the_printed_row_complexity():
    """g = 8 at 0.5× and 0.25× costs more than the row's printed 38 / 13: asserted as built, not bent.

    The stem is 12 rounded up to a multiple of 8 = 16 channels, megvii's width for its released 0.5× g=8
    (which megvii itself lists at 40 M mult-adds, not 38). At 0.25× that stem (27·16·112² = 5.4 M) and
    stage 2's ungrouped first 1×1 conv (16·24·56² = 1.2 M) do not shrink with g; the printed 13 would need
    an 8-channel stem, which breaks the rule that reproduces megvii's 0.5× g=8.
    """
    half = count_macs(lightnets.create_model("shufflenet_g8_050"), IMAGENET)
    quarter = count_macs(lightnets.create_model("shufflenet_g8_025"), IMAGENET)
    assert half == 40_469_760 and half / 1e6 == pytest.approx(40, rel=0.02)  # megvii README: 40M
    assert quarter == 15_719_040 and quarter / 1e6 == pytest.approx(13, rel=0.25)
    assert 27 * 16 * 112 * 112 == 5_419_008


# megvii ShuffleNet-Series/ShuffleNetV1 network.py: stage_out_channels [stem, stage 2, 3, 4] of the
# released weights, and the M mult-adds its README lists for them.
MEGVII = [
    (3, 0.5, (12, 120, 240, 480), 38),
    (3, 1.0, (24, 240, 480, 960), 138),
    (3, 1.5, (24, 360, 720, 1440), 292),
    (3, 2.0, (48, 480, 960, 1920), 524),
    (8, 0.5, (16, 192, 384, 768), 40),
    (8, 1.0, (24, 384, 768, 1536), 138),
    (8, 1.5, (24, 576, 1152, 2304), 290),
    (8, 2.0, (48, 768, 1536, 3072), 522),
]


@pytest.mark.parametrize("groups, scale, widths, megvii_mmacs", MEGVII)
def test_megvii_released_widths(groups, scale, widths, megvii_mmacs):
    assert shufflenet_widths(groups, scale) == widths
    model = ShuffleNetV1(groups=groups, scale=scale)
    assert model.stem.conv.out_channels == widths[0]
    assert [stage[0].conv1.in_channels for stage in (model.stage2, model.stage3, model.stage4)] == list(widths[:3])
    assert count_macs(model, IMAGENET) / 1e6 == pytest.approx(megvii_mmacs, rel=0.015)  # README: whole M


def test_rounding_rule():
    """Stage widths: s × Table 1 to the nearest multiple of 4g, ties up; stem to the nearest multiple of g."""
    assert round_channels(136, 16) == 144 and round_channels(50, 8) == 48 and round_channels(68, 16) == 64
    assert round_channels(12, 8) == 16 and round_channels(24, 3) == 24
    # The (g, s) pairs where s × Table 1 is not already a multiple of 4g:
    assert shufflenet_widths(2, 0.25) == (12, 48, 104, 200)  # 50 → 48, 100 → 104 (tie up)
    assert shufflenet_widths(2, 0.5) == (12, 104, 200, 400)
    assert shufflenet_widths(2, 1.5) == (24, 304, 600, 1200)
    assert shufflenet_widths(4, 0.25) == (12, 64, 144, 272)  # 68 → 64, 136 → 144 (tie up)
    assert shufflenet_widths(4, 0.5) == (12, 144, 272, 544)
    assert shufflenet_widths(4, 1.5) == (24, 416, 816, 1632)
    assert shufflenet_widths(8, 0.25) == (16, 96, 192, 384)
    # Every supported pair satisfies the unit's constraints: bottleneck and out − in split into g groups.
    for groups in GROUPS:
        for scale in SCALES:
            stem, *stages = shufflenet_widths(groups, scale)
            assert stem % groups == 0
            assert all(width % (4 * groups) == 0 for width in stages)
            assert all(abs(width - scale * base) <= 2 * groups for width, base in zip(stages, STAGE_CHANNELS[groups]))


@pytest.mark.slow
def test_named_variants_equal_generic():
    # Every g × s is a name: shufflenet_g3 (1×), shufflenet_g3_050 (0.5×), ...
    expected = {f"shufflenet_g{g}" + ("" if s == 1.0 else f"_{round(s * 100):03d}"): (g, s)
                for g in GROUPS for s in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)}
    expected["shufflenet_v1"] = (3, 1.0)
    assert len(expected) == 31
    assert set(lightnets.list_models("shufflenet*")) == set(expected)
    for name, (groups, scale) in expected.items():
        model = lightnets.create_model(name, num_classes=10)
        assert (model.groups, model.scale) == (groups, scale)
        assert model.pretrained_cfg["first_conv"] == "stem.conv"
    with pytest.raises(ValueError, match=r"this variant fixes groups=3; .*create_model\('shufflenet_v1', groups=8\)"):
        lightnets.create_model("shufflenet_g3", groups=8)


def test_channel_shuffle_hand_example():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    # Shuffling with C/g groups undoes a shuffle with g groups.
    y = torch.randn(2, 12, 3, 3)
    assert torch.equal(channel_shuffle(channel_shuffle(y, 3), 4), y)
    assert torch.equal(channel_shuffle(y, 3), torch.channel_shuffle(y, 3))  # torch's native op agrees


@pytest.mark.parametrize("channels_last", [False, True])
def test_channel_shuffle_reshape_form_matches_the_native_op_and_its_gradient(channels_last):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 24, 5, 4).contiguous(memory_format=memory_format)
    upstream = torch.randn(3, 24, 5, 4)
    native_input, reshape_input = x.clone().requires_grad_(), x.clone().requires_grad_()
    native, reshaped = torch.channel_shuffle(native_input, 8), layers._reshape_shuffle(reshape_input, 8)
    assert torch.equal(reshaped, native)
    (native * upstream).sum().backward()
    (reshaped * upstream).sum().backward()
    assert torch.equal(reshape_input.grad, native_input.grad)


def test_channel_shuffle_takes_the_reshape_form_on_devices_without_the_native_kernel(monkeypatch):
    assert layers._has_native_channel_shuffle("cpu") and layers._has_native_channel_shuffle("cuda")
    assert not layers._has_native_channel_shuffle("mps")  # ATen has no MPS kernel and no fallback
    y = torch.randn(2, 12, 3, 3)
    expected = torch.channel_shuffle(y, 3)

    def no_kernel(*args, **kwargs):
        raise NotImplementedError("Could not run 'aten::channel_shuffle' with arguments from the 'MPS' backend")

    # MPS stand-in: CPU tensors dispatched as if their device had no kernel, which then must not be called.
    monkeypatch.setattr(layers, "_has_native_channel_shuffle", lambda device_type: False)
    monkeypatch.setattr(torch, "channel_shuffle", no_kernel)
    assert torch.equal(channel_shuffle(y, 3), expected)
    assert torch.equal(ChannelShuffle(3)(y), expected)


@pytest.mark.parametrize("groups", [3, 8])
def test_no_shuffle_ablation_differs_only_by_the_shuffle(groups):
    """Table 3: same parameters and mult-adds; putting the shuffles back gives the shuffled network."""
    shuffled = ShuffleNetV1(groups=groups, scale=0.5, small_input=True, num_classes=10).eval()
    plain = ShuffleNetV1(groups=groups, scale=0.5, small_input=True, num_classes=10, shuffle=False).eval()
    assert _params(plain) == _params(shuffled)
    assert count_macs(plain, (3, 32, 32)) == count_macs(shuffled, (3, 32, 32))
    plain.load_state_dict(shuffled.state_dict())  # same names, same shapes
    units = [unit for stage in (plain.stage2, plain.stage3, plain.stage4) for unit in stage]
    assert all(isinstance(unit.shuffle, nn.Identity) for unit in units)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(x), shuffled(x), atol=1e-4)
        for unit in units:
            unit.shuffle = ChannelShuffle(groups)
        torch.testing.assert_close(plain(x), shuffled(x))


def test_g1_has_nothing_to_shuffle():
    model = ShuffleNetV1(groups=1)
    assert all(isinstance(unit.shuffle, nn.Identity) for unit in model.stage3)


def test_stride2_unit_concatenates_avg_pooled_input():
    unit = ShuffleUnit(240, 480, groups=3, stride=2).eval()
    assert unit.conv2.out_channels == 480 - 240  # the main branch makes only the new channels
    x = torch.rand(2, 240, 28, 28)  # non-negative, as every unit's input is (it follows a ReLU)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (2, 480, 14, 14)
    torch.testing.assert_close(out[:, :240], F.avg_pool2d(x, 3, stride=2, padding=1))


def test_stride1_unit_adds_identity():
    unit = ShuffleUnit(240, 240, groups=3).eval()
    assert unit.conv2.out_channels == 240
    x = torch.randn(2, 240, 14, 14)
    with torch.no_grad():
        nn.init.zeros_(unit.bn2.weight)  # silence the main branch: what is left is ReLU(x + 0)
        torch.testing.assert_close(unit(x), x.relu())
        nn.init.ones_(unit.bn2.weight)
        assert not torch.allclose(unit(x), x.relu())


def test_unit_activations():
    """Fig. 2: ReLU after the first 1×1 conv and after the join, none after the depthwise conv (Sec. 3.2)."""
    unit = ShuffleUnit(240, 240, groups=3).eval()
    assert [name for name, _ in unit.named_children()] == [
        "conv1", "bn1", "act1", "shuffle", "conv_dw", "bn_dw", "conv2", "bn2", "shortcut", "act"]
    graph = torch.jit.trace(unit, torch.randn(1, 240, 7, 7)).inlined_graph
    assert [node.kind() for node in graph.nodes()].count("aten::relu_") == 2


def test_unit_checks_its_widths():
    with pytest.raises(ValueError, match=r"groups=3: out_chs/4 = 50, out_chs - in_chs = 176 must be a positive"):
        ShuffleUnit(24, 200, groups=3, stride=2, grouped_first_conv=False)
    # Why megvii's 0.5× g=8 has a 16-channel stem: 192 − 12 = 180 does not split into 8 groups.
    with pytest.raises(ValueError, match=r"groups=8: out_chs - in_chs = 180 must be a positive multiple of 8"):
        ShuffleUnit(12, 192, groups=8, stride=2, grouped_first_conv=False)
    assert ShuffleUnit(16, 192, groups=8, stride=2, grouped_first_conv=False).conv2.out_channels == 176
    with pytest.raises(ValueError, match=r"in_chs \(240\) must equal out_chs \(480\)"):
        ShuffleUnit(240, 480, groups=3, stride=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"groups": 5}, "groups must be one of 1, 2, 3, 4, 8 (Table 1), got 5"),
    ({"groups": "3"}, "groups must be one of 1, 2, 3, 4, 8 (Table 1), got '3'"),
    ({"groups": 3.0}, "groups must be one of 1, 2, 3, 4, 8 (Table 1), got 3.0"),
    ({"scale": 0.7}, "scale must be one of 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, got 0.7"),
    ({"num_classes": -1}, "num_classes must be an integer >= 0 (0: no classifier, the model returns features), got -1"),
    ({"in_chans": 0}, "in_chans must be an integer >= 1, got 0"),
    ({"act_layer": "swish2"}, "act_layer must be one of"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        lightnets.create_model("shufflenet_v1", **kwargs)
    assert message in str(err.value)


def test_small_input_form():
    model = lightnets.create_model("shufflenet_g3_050", small_input=True, in_chans=1, num_classes=10)
    assert model.stem.conv.stride == (1, 1) and isinstance(model.stem_pool, nn.Identity)
    assert model.min_input_size == 8 and model.img_size == 32
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 480, 4, 4)
    full = lightnets.create_model("shufflenet_g3_050", in_chans=1)
    assert full.min_input_size == 32
    with pytest.raises(ValueError, match="at least 32x32, got 28x28; build it with small_input=True"):
        full(torch.zeros(1, 1, 28, 28))


@pytest.mark.slow
def test_trace_and_onnx_keep_a_dynamic_batch():
    """The shuffle reads sizes symbolically (torchvision PR #3158), so a traced / exported model takes any batch."""
    ort = pytest.importorskip("onnxruntime")
    model = lightnets.create_model("shufflenet_g3_025", small_input=True, num_classes=4).eval()
    traced = torch.jit.trace(model, torch.randn(2, 3, 32, 32))
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), buffer, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue())
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(traced(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), expected,
                                   rtol=1e-4, atol=1e-4)
