"""sepcnn_* and smallcnn_3x2*: forms that differ only in conv type, and MobileNet v1's cost formula
(Eq. 2 vs. Eq. 5) checked layer by layer and model by model, in exact integers."""
import pytest
import torch
from torch import nn

import lightnets
from lightnets.profiler import count_macs
from lightnets.layers import ConvBNAct, DepthwiseSeparableConv
from lightnets.models.separable import SEPCNN_FORMS, SEPCNN_LAYERS, SMALLCNN_LAYERS, SepCNN, SmallCNN

SEPCNN_NAMES = ["sepcnn_regular", "sepcnn_both", "sepcnn_separable"]
SMALLCNN_VARIANTS = {"smallcnn_3x2_dw1": (1,), "smallcnn_3x2_dw2": (2,), "smallcnn_3x2_dw3": (3,),
                     "smallcnn_3x2_dw12": (1, 2), "smallcnn_3x2_dw23": (2, 3), "smallcnn_3x2_dw123": (1, 2, 3)}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def standard_macs(m: int, n: int, side: int, dk: int = 3) -> int:
    return dk * dk * m * n * side * side  # MobileNet v1, Eq. 2: DK²·M·N·DF²


def separable_macs(m: int, n: int, side: int, dk: int = 3) -> int:
    return dk * dk * m * side * side + m * n * side * side  # Eq. 5: DK²·M·DF² + M·N·DF²


def conv_layers_with_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Every conv layer (standard or separable) of the model, with the (C, H, W) it is fed, in order."""
    layers = [m for m in model.modules() if isinstance(m, (ConvBNAct, DepthwiseSeparableConv))]
    seen = []
    handles = [layer.register_forward_hook(lambda mod, inp, _out: seen.append((mod, tuple(inp[0].shape[1:]))))
               for layer in layers]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    assert [mod for mod, _ in seen] == layers
    return seen


def formula_macs(layer: nn.Module, input_size: tuple[int, ...]) -> int:
    m, side = input_size[0], input_size[1]  # stride 1, 'same' padding: DF is the input side
    if isinstance(layer, DepthwiseSeparableConv):
        return separable_macs(m, layer.conv_pw.out_channels, side)
    return standard_macs(m, layer.conv.out_channels, side)


# ---------------------------------------------------------------------------------------------
# sepcnn: three forms of one skeleton
# ---------------------------------------------------------------------------------------------


def _skeleton(model: SepCNN) -> list[tuple]:
    """The model with every conv layer's type erased: what must be identical across forms."""
    rows = []
    for layer in model.features:
        if isinstance(layer, (ConvBNAct, DepthwiseSeparableConv)):
            out_chs = (
                layer.conv_pw.out_channels if isinstance(layer, DepthwiseSeparableConv) else layer.conv.out_channels
            )
            norms_then_relu = [type(m) for m in layer if isinstance(m, (nn.BatchNorm2d, nn.ReLU))][-2:]
            rows.append(("conv3x3", out_chs, tuple(norms_then_relu)))
        else:
            rows.append((type(layer).__name__, getattr(layer, "kernel_size", None)))
    head = (type(model.global_pool), model.head_drop.p, model.num_features, tuple(model.classifier.weight.shape))
    return [tuple(model.stem.conv.weight.shape), *rows, head]


def test_sepcnn_forms_share_everything_but_the_conv_type():
    models = {name: lightnets.create_model(name) for name in SEPCNN_NAMES}
    skeletons = {name: _skeleton(model) for name, model in models.items()}
    assert skeletons["sepcnn_regular"] == skeletons["sepcnn_both"] == skeletons["sepcnn_separable"]
    skeleton = skeletons["sepcnn_regular"]
    assert skeleton[0] == (32, 3, 3, 3)  # the stem is a standard conv in every form
    assert [row[1] for row in skeleton[1:-1] if row[0] == "conv3x3"] == [c for c, _ in SEPCNN_LAYERS]
    assert sum(row[0] == "MaxPool2d" for row in skeleton) == 3
    assert all(row[2] == (nn.BatchNorm2d, nn.ReLU) for row in skeleton[1:-1] if row[0] == "conv3x3")
    assert skeleton[-1] == (nn.AdaptiveAvgPool2d, 0.2, 256, (10, 256))
    # ... and the conv types are what the names say: none, the deeper half, all six separable.
    for name, model in models.items():
        separable = [i for i, layer in enumerate((block for block in model.features
                                                  if not isinstance(block, nn.MaxPool2d)), 1)
                     if isinstance(layer, DepthwiseSeparableConv)]
        assert tuple(separable) == SEPCNN_FORMS[name.removeprefix("sepcnn_")] == model.separable_layers
    assert SEPCNN_FORMS == {"regular": (), "both": (4, 5, 6), "separable": (1, 2, 3, 4, 5, 6)}


@pytest.mark.parametrize("name", SEPCNN_NAMES)
def test_sepcnn_cost_formula_layer_by_layer(name):
    """Each conv layer, counted alone by fvcore, costs exactly Eq. 2 (standard) or Eq. 5 (separable);
    the model costs their sum plus the stem and the classifier."""
    model = lightnets.create_model(name)
    layers = conv_layers_with_inputs(model, torch.zeros(1, 3, 32, 32))
    assert [size[1] for _, size in layers] == [32, 32, 32, 16, 16, 8, 8]  # stem, then three stages of two
    for layer, size in layers:
        assert count_macs(layer, size) == formula_macs(layer, size)
    total = sum(formula_macs(layer, size) for layer, size in layers) + 256 * 10
    assert count_macs(model, (3, 32, 32)) == total


def test_sepcnn_costs():
    macs = {name: count_macs(lightnets.create_model(name), (3, 32, 32)) for name in SEPCNN_NAMES}
    # Stem 3·3·3·32·32² = 884,736 and classifier 2,560 in every form; the six layers by Eq. 2 or Eq. 5:
    stem_and_head = 884_736 + 2_560
    regular = [standard_macs(32, 64, 32), standard_macs(64, 64, 32), standard_macs(64, 128, 16),
               standard_macs(128, 128, 16), standard_macs(128, 256, 8), standard_macs(256, 256, 8)]
    separable = [separable_macs(32, 64, 32), separable_macs(64, 64, 32), separable_macs(64, 128, 16),
                 separable_macs(128, 128, 16), separable_macs(128, 256, 8), separable_macs(256, 256, 8)]
    assert macs["sepcnn_regular"] == stem_and_head + sum(regular) == 170_756_608
    assert macs["sepcnn_both"] == stem_and_head + sum(regular[:3]) + sum(separable[3:]) == 87_386_624
    assert macs["sepcnn_separable"] == stem_and_head + sum(separable) == 21_309_952


# ---------------------------------------------------------------------------------------------
# smallcnn_3x2: the 3+2 CNN and its dwK variants (Fashion-MNIST: 1×28×28)
# ---------------------------------------------------------------------------------------------

# Conv layers of the 3+2 CNN at 28 px, one channel: (M, N, DF) — pools halve 28 → 14 → 7 → 3.
SMALLCNN_SHAPES = {1: (1, 32, 28), 2: (32, 64, 14), 3: (64, 128, 7)}


def test_smallcnn_params_by_hand():
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    conv1 = 3 * 3 * 1 * 32 + 2 * 32  # 288 weights + BN γ, β = 352
    conv2 = 3 * 3 * 32 * 64 + 2 * 64  # 18,432 + 128 = 18,560
    conv3 = 3 * 3 * 64 * 128 + 2 * 128  # 73,728 + 256 = 73,984
    fc = 128 * 3 * 3 * 128 + 128  # flattened 128×3×3 map → 128 hidden: 147,456 + 128 = 147,584
    classifier = 128 * 10 + 10  # 1,290
    assert conv1 + conv2 + conv3 + fc + classifier == 241_770
    assert _params(model) == 241_770
    # The zoo's default of 3 input channels adds 2·(3·3·32) = 576 stem weights.
    assert _params(lightnets.create_model("smallcnn_3x2")) == 241_770 + 576


def test_smallcnn_macs_by_hand():
    macs = count_macs(lightnets.create_model("smallcnn_3x2", in_chans=1), (1, 28, 28))
    convs = sum(standard_macs(m, n, side) for m, n, side in SMALLCNN_SHAPES.values())
    assert convs == 225_792 + 3_612_672 + 3_612_672
    assert macs == convs + 1152 * 128 + 128 * 10 == 7_599_872  # + hidden FC + classifier


@pytest.mark.parametrize("name", SMALLCNN_VARIANTS)
def test_smallcnn_dw_reduction_equals_formula(name):
    """MAC and parameter savings of smallcnn_3x2_dwK over smallcnn_3x2, predicted by Eq. 2 − Eq. 5."""
    layers = SMALLCNN_VARIANTS[name]
    base = lightnets.create_model("smallcnn_3x2", in_chans=1)
    variant = lightnets.create_model(name, in_chans=1)
    assert variant.separable_layers == layers
    predicted_macs = sum(standard_macs(*SMALLCNN_SHAPES[k]) - separable_macs(*SMALLCNN_SHAPES[k]) for k in layers)
    assert count_macs(base, (1, 28, 28)) - count_macs(variant, (1, 28, 28)) == predicted_macs
    # Params: 9·M·N weights become 9·M (dw) + M·N (pw), and the depthwise conv adds a BN (2·M).
    predicted_params = sum(9 * m * n - (9 * m + m * n + 2 * m) for m, n, _ in (SMALLCNN_SHAPES[k] for k in layers))
    assert _params(base) - _params(variant) == predicted_params


def test_smallcnn_dw1_saving_by_hand():
    # Layer 1 (M=1, N=32, DF=28): 9·1·32·784 − (9·1·784 + 1·32·784) = 784·(288 − 41) = 193,648 MACs.
    saving = count_macs(lightnets.create_model("smallcnn_3x2", in_chans=1), (1, 28, 28)) - \
        count_macs(lightnets.create_model("smallcnn_3x2_dw1", in_chans=1), (1, 28, 28))
    assert saving == 193_648


def test_smallcnn_layers_and_head():
    model = lightnets.create_model("smallcnn_3x2_dw23", in_chans=1, num_classes=10)
    assert isinstance(model.features.conv1, ConvBNAct)
    assert isinstance(model.features.conv2, DepthwiseSeparableConv)
    assert isinstance(model.features.conv3, DepthwiseSeparableConv)
    assert [model.features[i].__class__ for i in (1, 3, 5)] == [nn.MaxPool2d] * 3
    assert [layer.conv_pw.out_channels if hasattr(layer, "conv_pw") else layer.conv.out_channels
            for layer in (model.features.conv1, model.features.conv2, model.features.conv3)] == list(SMALLCNN_LAYERS)
    x = torch.randn(4, 1, 28, 28)
    features = model.forward_features(x)
    assert features.shape == (4, 128, 3, 3)
    assert model.pre_logits.fc.in_features == 128 * 3 * 3
    assert model.forward_head(features, pre_logits=True).shape == (4, model.num_features) == (4, 128)
    assert model.classifier.in_features == 128 and model.classifier.out_features == 10
    assert model.pre_logits.drop.p == 0.5


def test_named_variants_equal_generic():
    for name, layers in SMALLCNN_VARIANTS.items():
        named = lightnets.create_model(name).state_dict()
        generic = lightnets.create_model("smallcnn_3x2", separable_layers=layers).state_dict()
        assert {k: v.shape for k, v in named.items()} == {k: v.shape for k, v in generic.items()}, name
    for form, layers in SEPCNN_FORMS.items():
        assert lightnets.create_model(f"sepcnn_{form}").separable_layers == \
            lightnets.create_model("sepcnn", separable_layers=layers).separable_layers


def test_fixed_input_size_is_a_clear_error():
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    assert model.fixed_input_size and model.img_size == 28
    with pytest.raises(ValueError, match=r"fixed input size of 28x28 .* got 32x32; create it with img_size=32"):
        model(torch.zeros(1, 1, 32, 32))
    assert lightnets.create_model("smallcnn_3x2", in_chans=1, img_size=32)(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    # sepcnn pools globally: any side >= 8 works.
    sepcnn = lightnets.create_model("sepcnn_both").eval()
    assert not sepcnn.fixed_input_size
    assert sepcnn(torch.zeros(1, 3, 28, 28)).shape == sepcnn(torch.zeros(1, 3, 40, 40)).shape == (1, 10)
    with pytest.raises(ValueError, match="at least 8x8, got 7x7"):
        sepcnn(torch.zeros(1, 3, 7, 7))


def test_small_input_is_the_only_form():
    assert SmallCNN(small_input=True).small_input and SepCNN().small_input
    with pytest.raises(ValueError, match="small-input network .* small_input must be True, got False"):
        lightnets.create_model("sepcnn_regular", small_input=False)


@pytest.mark.parametrize("name, kwargs, message", [
    ("smallcnn_3x2", {"separable_layers": (4,)},
     r"separable_layers must be a tuple of distinct layer numbers from 1 to 3"),
    ("smallcnn_3x2", {"separable_layers": (1, 1)}, "distinct layer numbers"),
    ("smallcnn_3x2", {"separable_layers": "12"}, r"got '12'"),
    ("sepcnn", {"separable_layers": (0,)}, "from 1 to 6"),
    ("smallcnn_3x2_dw1", {"separable_layers": (2,)}, r"this variant fixes separable_layers=\(1,\)"),
    ("sepcnn_both", {"separable_layers": ()}, r"create_model\('sepcnn', separable_layers=\(\)\)"),
    ("smallcnn_3x2", {"img_size": 7}, "img_size must be at least 8"),
    ("sepcnn_regular", {"drop_rate": 1.0}, r"drop_rate must be a float in \[0, 1\)"),
    ("smallcnn_3x2", {"num_classes": 1.5},
     r"num_classes must be an integer >= 0 \(0: no classifier, the model returns features\), got 1.5"),
])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lightnets.create_model(name, **kwargs)


def test_saved_list_of_layers_rebuilds_the_named_variant():
    # config.json stores separable_layers as a list: building the named variant from it must work.
    model = lightnets.create_model("smallcnn_3x2_dw12", separable_layers=[2, 1])
    assert model.separable_layers == (1, 2)
