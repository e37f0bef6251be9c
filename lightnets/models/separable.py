"""Small depthwise-separable CNNs from the seed experiments (CIFAR-10 / Fashion-MNIST scale).

Two fixed skeletons whose 3×3 conv layers are either standard convs (conv + BN + ReLU) or
MobileNet v1's depthwise-separable convs (dw 3×3 + BN + ReLU, pw 1×1 + BN + ReLU). Which layers
are separable is data — ``separable_layers``, 1-based indices of the skeleton's conv layers — and
nothing else changes between forms, so a difference in accuracy, MACs or speed is the conv type's.

A separable layer from M to N channels on a DF×DF map costs DK²·M·DF² + M·N·DF² mult-adds instead
of DK²·M·N·DF² (MobileNet v1, Eq. 5 vs. Eq. 2): a reduction of 1/N + 1/DK² (Eq. 5 / Eq. 2).

* ``sepcnn_regular`` / ``sepcnn_both`` / ``sepcnn_separable``: a VGG-like net for 32 px images,
  :data:`SEPCNN_LAYERS`. The stem conv always stays standard (a depthwise conv over 3 input
  channels would learn almost nothing).
* ``smallcnn_3x2`` and ``smallcnn_3x2_dw{1,2,3,12,23,123}``: the classic 3+2 CNN for 28 px
  Fashion-MNIST — three conv + BN + ReLU + 2×2 max-pool layers, a hidden FC layer, the classifier;
  the digits name the conv layers made separable.

Both are small-input networks: ``small_input=True`` is their only form (accepted so that zoo-wide
code can pass it to every model). Every model defaults to 3 input channels, as the rest of the zoo;
build a Fashion-MNIST model with ``in_chans=1``.

>>> from lightnets import create_model
>>> model = create_model("smallcnn_3x2_dw23", in_chans=1)
>>> model.separable_layers, model(torch.zeros(2, 1, 28, 28)).shape
((2, 3), torch.Size([2, 10]))
"""

import dataclasses
from collections import OrderedDict
from typing import Any, Iterable

import torch
from torch import nn

from ..layers import ConvBNAct, DepthwiseSeparableConv
from ..weight_cfg import WeightCfg
from .catalog import register_model, variant_kwargs
from .arguments import check_drop_rate, check_num_classes, check_positive_int
from .base import ClassifierNet, classifier_layer, init_weights

# sepcnn: a standard 3×3 stem conv, then three VGG-style stages of two 3×3 conv layers each, as
# (output channels, 2×2 max pool after the layer); global average pool → dropout → classifier.
SEPCNN_STEM_CHANNELS = 32
SEPCNN_LAYERS: tuple[tuple[int, bool], ...] = (
    (64, False), (64, True),     # 32×32 → 16×16 (at 32 px)
    (128, False), (128, True),   # 16×16 → 8×8
    (256, False), (256, True),   # 8×8 → 4×4
)
# The three forms, as the layers made separable: none, the deeper half (layers 4–6), all six.
SEPCNN_FORMS: dict[str, tuple[int, ...]] = {
    "regular": (),
    "both": (4, 5, 6),
    "separable": (1, 2, 3, 4, 5, 6),
}

# smallcnn_3x2: three 3×3 conv layers (each conv + BN + ReLU + 2×2 max pool), as output channels,
# then flatten → FC (hidden) + ReLU + dropout → classifier.
SMALLCNN_LAYERS: tuple[int, ...] = (32, 64, 128)
SMALLCNN_HIDDEN = 128

# Every body pools 2×2 three times (floor): total stride 8, so at least 8 px in, 1 px out.
MIN_INPUT_SIZE = 8


def conv3x3(in_chs: int, out_chs: int, separable: bool) -> nn.Module:
    """A 3×3 conv layer, standard (conv + BN + ReLU) or depthwise-separable (MobileNet v1, Fig. 3)."""
    return DepthwiseSeparableConv(in_chs, out_chs) if separable else ConvBNAct(in_chs, out_chs, kernel_size=3)


def check_separable_layers(value: Any, num_layers: int) -> tuple[int, ...]:
    """``separable_layers`` as a sorted tuple of distinct layer numbers in 1..num_layers, or a ValueError.

    >>> check_separable_layers([3, 1], 3)
    (1, 3)
    """
    allowed = f"distinct layer numbers from 1 to {num_layers}, e.g. (1, 2)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"separable_layers must be a tuple of {allowed}; got {value!r}")
    layers = tuple(value)
    bad = [n for n in layers if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_layers]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"separable_layers must be a tuple of {allowed}; got {value!r}")
    return tuple(sorted(layers))


def check_small_input(model_name: str, small_input: Any) -> bool:
    if small_input is not True:
        raise ValueError(
            f"{model_name} is a small-input network (28–32 px images) with no ImageNet form: "
            f"small_input must be True, got {small_input!r}"
        )
    return True


def check_img_size(img_size: Any) -> int:
    img_size = check_positive_int("img_size", img_size)
    if img_size < MIN_INPUT_SIZE:
        raise ValueError(f"img_size must be at least {MIN_INPUT_SIZE} (three 2x2 max pools), got {img_size}")
    return img_size


class SepCNN(ClassifierNet):
    """VGG-like small CNN (:data:`SEPCNN_LAYERS`) with the layers in ``separable_layers`` depthwise-separable.

    Args:
        separable_layers: 1-based numbers of the :data:`SEPCNN_LAYERS` rows built as depthwise-separable
            convs; the stem is always a standard conv. ``()`` is ``sepcnn_regular``.
        num_classes, in_chans, drop_rate: classifier classes, input channels, dropout before the classifier.
        img_size: default input side (32: CIFAR-10). The global pool takes any side >= 8.
        small_input: must be True (the only form; see the module docstring).
    """

    odd_side_rounding = "floor"  # 2×2 max pools

    def __init__(
        self,
        separable_layers: Iterable[int] = (),
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        img_size: int = 32,
        small_input: bool = True,
    ) -> None:
        super().__init__()
        self.small_input = check_small_input(type(self).__name__, small_input)
        self.separable_layers = check_separable_layers(separable_layers, len(SEPCNN_LAYERS))
        self.img_size = check_img_size(img_size)
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.min_input_size = MIN_INPUT_SIZE

        self.stem = ConvBNAct(in_chans, SEPCNN_STEM_CHANNELS, kernel_size=3)
        layers: list[nn.Module] = []
        in_chs, reduction = SEPCNN_STEM_CHANNELS, 1
        body = [("stem", in_chs, reduction)]
        for number, (out_chs, pool) in enumerate(SEPCNN_LAYERS, start=1):
            layers.append(conv3x3(in_chs, out_chs, separable=number in self.separable_layers))
            body.append((f"features.{len(layers) - 1}", out_chs, reduction))
            if pool:
                layers.append(nn.MaxPool2d(2))
                reduction *= 2
                body.append((f"features.{len(layers) - 1}", out_chs, reduction))
            in_chs = out_chs
        self.features = nn.Sequential(*layers)
        self.init_head(in_chs, num_classes, drop_rate)
        self.init_feature_info(body)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.checkpointing_body():
            return self.forward_body_checkpointed(x)
        return self.features(self.stem(x))


class SmallCNN(ClassifierNet):
    """The 3+2 CNN: three 3×3 conv layers (:data:`SMALLCNN_LAYERS`), a hidden FC layer and the classifier.

    The conv map is flattened into the hidden FC layer, as in the classic 3+2 CNN, rather than
    pooled to a fixed grid: the model stays the one the seed experiments measured, and the first
    FC layer is sized from ``img_size``, so the input size is fixed (``fixed_input_size``; another
    size is a clear error: build the model with that ``img_size``).

    Args:
        separable_layers: 1-based numbers of the conv layers built as depthwise-separable convs
            (``(1, 2)`` is ``smallcnn_3x2_dw12``); ``()`` is the standard 3+2 CNN.
        num_classes, in_chans: classifier classes and input channels (1 for Fashion-MNIST).
        drop_rate: dropout after the hidden FC layer's ReLU (0.5 by default, the classic choice).
        img_size: the input side (28: Fashion-MNIST); the hidden FC takes 128·(img_size // 8)² features.
        small_input: must be True (the only form; see the module docstring).
    """

    fixed_input_size = True
    odd_side_rounding = "floor"  # 2×2 max pools

    def __init__(
        self,
        separable_layers: Iterable[int] = (),
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        img_size: int = 28,
        small_input: bool = True,
    ) -> None:
        super().__init__()
        self.small_input = check_small_input(type(self).__name__, small_input)
        self.separable_layers = check_separable_layers(separable_layers, len(SMALLCNN_LAYERS))
        self.img_size = check_img_size(img_size)
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.min_input_size = MIN_INPUT_SIZE
        self.num_classes = check_num_classes(num_classes)
        self.drop_rate = check_drop_rate(drop_rate)
        self.num_features = SMALLCNN_LAYERS[-1]  # the last conv's channels, as in timm
        self.head_hidden_size = SMALLCNN_HIDDEN

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        body = []
        in_chs = in_chans
        for number, out_chs in enumerate(SMALLCNN_LAYERS, start=1):
            layers[f"conv{number}"] = conv3x3(in_chs, out_chs, separable=number in self.separable_layers)
            layers[f"pool{number}"] = nn.MaxPool2d(2)
            body += [
                (f"features.conv{number}", out_chs, 2 ** (number - 1)),
                (f"features.pool{number}", out_chs, 2**number),
            ]
            in_chs = out_chs
        self.features = nn.Sequential(layers)
        self.init_feature_info(body)
        side = self.img_size // 2 ** len(SMALLCNN_LAYERS)  # three floor-mode 2×2 pools
        self.pre_logits = nn.Sequential(OrderedDict(
            fc=nn.Linear(in_chs * side * side, SMALLCNN_HIDDEN),
            act=nn.ReLU(inplace=True),
            drop=nn.Dropout(self.drop_rate),
        ))
        self.classifier = classifier_layer(SMALLCNN_HIDDEN, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.checkpointing_body():
            return self.forward_body_checkpointed(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_eager_head_input(x)
        if self.pool_type == "":  # global_pool="" with num_classes=0: the feature map, as timm returns it
            return x
        x = self.pre_logits(x.flatten(1))
        return x if pre_logits else self.classifier(x)


def _form_kwargs(generic_name: str, kwargs: dict[str, Any], separable_layers: tuple[int, ...]) -> dict[str, Any]:
    """variant_kwargs fixing ``separable_layers``; the same layers as a list (read back from a
    config.json) or in another order are the same form, not a conflict."""
    given = kwargs.get("separable_layers")
    if isinstance(given, (list, tuple)) and len(given) == len(separable_layers) and set(given) == set(separable_layers):
        kwargs = {**kwargs, "separable_layers": separable_layers}
    return variant_kwargs(generic_name, kwargs, separable_layers=separable_layers)


_CIFAR10_CFG = WeightCfg(
    num_classes=10,
    input_size=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465),  # CIFAR-10 train set, per channel
    std=(0.2470, 0.2435, 0.2616),
    crop_pct=1.0,
    first_conv="stem.conv",
)
# Fashion-MNIST's grey-level statistics; a 3-channel model sees the grey image replicated, hence
# the same value per channel. Fashion-MNIST weights (tags) declare input_size (1, 28, 28).
_FMNIST_CFG = WeightCfg(
    num_classes=10,
    input_size=(3, 28, 28),
    mean=(0.2860,) * 3,
    std=(0.3530,) * 3,
    crop_pct=1.0,
    first_conv="features.conv1.conv",
)
_FMNIST_DW1_CFG = dataclasses.replace(_FMNIST_CFG, first_conv="features.conv1.conv_dw")

default_cfgs: dict[str, WeightCfg] = {
    "sepcnn": _CIFAR10_CFG,
    "sepcnn_regular": _CIFAR10_CFG,
    "sepcnn_both": _CIFAR10_CFG,
    "sepcnn_separable": _CIFAR10_CFG,
    "smallcnn_3x2": _FMNIST_CFG,
    "smallcnn_3x2_dw1": _FMNIST_DW1_CFG,
    "smallcnn_3x2_dw2": _FMNIST_CFG,
    "smallcnn_3x2_dw3": _FMNIST_CFG,
    "smallcnn_3x2_dw12": _FMNIST_DW1_CFG,
    "smallcnn_3x2_dw23": _FMNIST_CFG,
    "smallcnn_3x2_dw123": _FMNIST_DW1_CFG,
}


@register_model
def sepcnn(**kwargs: Any) -> SepCNN:
    """The sepcnn skeleton with any ``separable_layers`` (default: none, i.e. ``sepcnn_regular``)."""
    return SepCNN(**kwargs)


@register_model
def sepcnn_regular(**kwargs: Any) -> SepCNN:
    """sepcnn with standard 3×3 convs only."""
    return SepCNN(**_form_kwargs("sepcnn", kwargs, SEPCNN_FORMS["regular"]))


@register_model
def sepcnn_both(**kwargs: Any) -> SepCNN:
    """sepcnn with standard convs in the first half (layers 1–3), depthwise-separable in the deeper half."""
    return SepCNN(**_form_kwargs("sepcnn", kwargs, SEPCNN_FORMS["both"]))


@register_model
def sepcnn_separable(**kwargs: Any) -> SepCNN:
    """sepcnn with every layer but the stem depthwise-separable."""
    return SepCNN(**_form_kwargs("sepcnn", kwargs, SEPCNN_FORMS["separable"]))


@register_model
def smallcnn_3x2(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with standard convs; give ``separable_layers`` for any other mix."""
    return SmallCNN(**kwargs)


@register_model
def smallcnn_3x2_dw1(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with conv layer 1 depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (1,)))


@register_model
def smallcnn_3x2_dw2(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with conv layer 2 depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (2,)))


@register_model
def smallcnn_3x2_dw3(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with conv layer 3 depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (3,)))


@register_model
def smallcnn_3x2_dw12(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with conv layers 1 and 2 depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (1, 2)))


@register_model
def smallcnn_3x2_dw23(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with conv layers 2 and 3 depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (2, 3)))


@register_model
def smallcnn_3x2_dw123(**kwargs: Any) -> SmallCNN:
    """The 3+2 CNN with all three conv layers depthwise-separable."""
    return SmallCNN(**_form_kwargs("smallcnn_3x2", kwargs, (1, 2, 3)))
