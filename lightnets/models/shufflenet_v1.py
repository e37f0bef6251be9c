"""ShuffleNet v1 — Zhang et al. 2017, "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices" (arXiv 1707.01083).

A 3×3 stem conv and max pool, three stages of ShuffleNet units (Table 1: 4, 8 and 4 units; the
first unit of each stage halves the map), global average pool, FC. A unit (Fig. 2) is a grouped
1×1 conv, a channel shuffle, a 3×3 depthwise conv and a second grouped 1×1 conv; ``groups`` g
sets how many groups the 1×1 convs use, ``scale`` s thins or widens every layer ("ShuffleNet s×").

Widths under ``scale`` (the paper only says "scale the number of filters by s"):

* stage widths: s × Table 1, rounded to the nearest multiple of 4g (ties up), so that the
  bottleneck (a quarter of the width) splits into g groups;
* stem: 12, 12, 18, 24, 24, 48 channels at s = 0.25, 0.5, 0.75, 1, 1.5, 2 — the stems of megvii's
  released models (ShuffleNet-Series/ShuffleNetV1: 1.5× keeps 24) and pytorchcv's 0.75× (int(24 × 0.75)),
  held at 12 below 0.5× — rounded to the nearest multiple of g (ties up), so that a stride-2 unit's main
  branch (out − in) splits into g groups. ``stem_channels`` overrides it (pytorchcv's 0.25× uses 6).

This reproduces every width megvii publishes weights for (g = 3 and 8 at 0.5×–2×: 0.5× g=8 is
[16, 192, 384, 768]) and keeps 0.5× and 0.25× within 4% of the paper's 38 and 13 M mult-adds for g ≤ 4.
The paper's "MFLOPs" are mult-adds of the convs and the FC (megvii ShuffleNet-Series#12); so are ours.

>>> from lightnets import create_model
>>> model = create_model("shufflenet_v1", groups=8, scale=0.5)
>>> model.widths
(16, 192, 384, 768)
"""

from typing import Any, Optional

import torch
from torch import nn

from ..layers import ActLayer, ChannelShuffle, ConvBNAct, get_act_layer, make_activation
from ..weight_cfg import WeightCfg
from .catalog import register_model, variant_kwargs
from .arguments import check_bool, check_min_input_size, check_positive_int
from .base import ClassifierNet, init_weights
from .shufflenet_v1_weights import IMAGENET_WEIGHTS

# Table 1: output channels of stages 2, 3 and 4 at 1×, for each number of groups g.
STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STAGE_UNITS = (4, 8, 4)  # Table 1: units in stages 2, 3, 4; the first unit of each has stride 2
GROUPS = tuple(STAGE_CHANNELS)

# Stem channels per scale: megvii's released models at 0.5×–2.0×, pytorchcv's at 0.75×; 0.25× keeps
# 0.5×'s 12 (a 6-channel stem would put 0.25× g=3 at 11.0 MMACs, not the paper's 13 — Table 2).
STEM_CHANNELS: dict[float, int] = {0.25: 12, 0.5: 12, 0.75: 18, 1.0: 24, 1.5: 24, 2.0: 48}
# Where a unit shuffles: "paper" (Fig. 2: after the first 1×1 conv's ReLU, viewing (g, C/g)) or
# "megvii" (the authors' released code: after the depthwise conv's BN, viewing (C/g, g) — the inverse).
SHUFFLE_LAYOUTS = ("paper", "megvii")
SCALES = tuple(STEM_CHANNELS)


def check_shuffle_layout(shuffle_layout: str) -> str:
    """``shuffle_layout`` if it is one of :data:`SHUFFLE_LAYOUTS`, else a ValueError naming it."""
    if shuffle_layout not in SHUFFLE_LAYOUTS:
        raise ValueError(
            f"shuffle_layout must be one of {', '.join(map(repr, SHUFFLE_LAYOUTS))}, got {shuffle_layout!r}"
        )
    return shuffle_layout


def round_channels(channels: float, divisor: int) -> int:
    """Nearest multiple of ``divisor``, ties rounded up: ``round_channels(136, 16) == 144``."""
    return int(channels / divisor + 0.5) * divisor


def shufflenet_widths(groups: int, scale: float, stem_channels: Optional[int] = None) -> tuple[int, int, int, int]:
    """Channels of (stem, stage 2, stage 3, stage 4) for ``groups`` and ``scale`` (rule in the module docstring).

    >>> shufflenet_widths(3, 1.0)
    (24, 240, 480, 960)
    >>> shufflenet_widths(1, 0.25, stem_channels=6)
    (6, 36, 72, 144)
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or groups not in STAGE_CHANNELS:
        raise ValueError(f"groups must be one of {', '.join(map(str, GROUPS))} (Table 1), got {groups!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale not in STEM_CHANNELS:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    if stem_channels is None:
        stem = round_channels(STEM_CHANNELS[scale], groups)
    else:
        stem = check_positive_int("stem_channels", stem_channels)
    stages = tuple(round_channels(scale * channels, 4 * groups) for channels in STAGE_CHANNELS[groups])
    return (stem, *stages)


class ShuffleUnit(nn.Module):
    """ShuffleNet unit (Fig. 2b, 2c): 1×1 GConv → shuffle → 3×3 DWConv → 1×1 GConv, joined with a shortcut.

    Stride 1 adds the identity; stride 2 concatenates a 3×3 average-pooled shortcut, so the main
    branch outputs ``out_chs − in_chs`` channels. No activation follows the depthwise conv (Sec. 3.2).
    ``grouped_first_conv=False`` leaves the first 1×1 conv dense (stage 2's first unit, Sec. 3.3).
    ``shortcut_first=False`` concatenates (main branch, shortcut) instead, as pytorchcv's port;
    ``shuffle_layout="megvii"`` shuffles as the authors' released code (see :data:`SHUFFLE_LAYOUTS`).

    >>> ShuffleUnit(240, 480, groups=3, stride=2)(torch.zeros(1, 240, 28, 28)).shape
    torch.Size([1, 480, 14, 14])
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        groups: int,
        stride: int = 1,
        grouped_first_conv: bool = True,
        shuffle: bool = True,
        act_layer: ActLayer = "relu",
        shortcut_first: bool = True,
        shuffle_layout: str = "paper",
    ) -> None:
        super().__init__()
        check_shuffle_layout(shuffle_layout)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"a stride-1 unit adds its input: in_chs ({in_chs}) must equal out_chs ({out_chs})")
        mid_chs = out_chs // 4  # Sec. 3.3: bottleneck = 1/4 of the output channels
        main_chs = out_chs - in_chs if stride == 2 else out_chs
        # The grouped convs' channels must split evenly into groups (then so does in_chs = out_chs − main).
        main_name = "out_chs - in_chs" if stride == 2 else "out_chs"
        must_split = (("out_chs/4", out_chs / 4), (main_name, main_chs))
        uneven = [f"{name} = {chs:g}" for name, chs in must_split if chs <= 0 or chs % groups]
        if uneven:
            raise ValueError(
                f"ShuffleUnit {in_chs}→{out_chs} (stride {stride}) with groups={groups}: "
                f"{', '.join(uneven)} must be a positive multiple of {groups}"
            )
        self.concat = stride == 2
        self.shortcut_first = shortcut_first
        self.shuffle_after_dw = shuffle_layout == "megvii"
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, groups=groups if grouped_first_conv else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = make_activation(act_layer)
        # With one group there is nothing to interleave; `shuffle=False` is Table 3's ablation.
        # megvii's reshape to (C/g, g) and transpose is a shuffle with C/g "groups".
        shuffle_groups = mid_chs // groups if self.shuffle_after_dw else groups
        self.shuffle = ChannelShuffle(shuffle_groups) if shuffle and groups > 1 else nn.Identity()
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, 3, stride, padding=1, groups=mid_chs, bias=False)
        self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.conv2 = nn.Conv2d(mid_chs, main_chs, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(main_chs)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if self.concat else nn.Identity()
        self.act = make_activation(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act1(self.bn1(self.conv1(x)))
        if not self.shuffle_after_dw:
            x = self.shuffle(x)
        x = self.bn_dw(self.conv_dw(x))
        if self.shuffle_after_dw:
            x = self.shuffle(x)
        x = self.bn2(self.conv2(x))
        if self.concat:
            x = torch.cat((shortcut, x) if self.shortcut_first else (x, shortcut), dim=1)
        else:
            x = x + shortcut
        return self.act(x)


class ShuffleNetV1(ClassifierNet):
    """ShuffleNet v1 with ``groups`` g and ``scale`` s ("ShuffleNet s×, g = …").

    Args:
        groups: groups of the 1×1 convs, one of 1, 2, 3, 4, 8 (Table 1). The first 1×1 conv of
            stage 2 is never grouped: its input has only the stem's few channels (Sec. 3.3).
        scale: width multiplier s, one of 0.25, 0.5, 0.75, 1.0, 1.5, 2.0 (widths: see the module docstring).
        shuffle: channel shuffle in every unit; ``False`` builds Table 3's no-shuffle ablation
            (same parameters and MACs).
        num_classes, in_chans, drop_rate: classifier classes, input channels, dropout before the FC.
        img_size: default input side (224, or 32 with ``small_input``).
        small_input: stem stride 1 and no max pool, for 28–32 px images (total stride 8: 28 px → 4×4).
        act_layer: activation after the first 1×1 conv and after each join (``"relu"``, as the paper).
        stem_channels: the stem's width instead of the module docstring's rule (pytorchcv's 0.25×: 6).
        shortcut_first: a stride-2 unit concatenates (shortcut, main branch), as megvii's code; ``False``
            puts the main branch first, as pytorchcv's port (the paper gives no order).
        shuffle_layout: ``"paper"`` or ``"megvii"`` (see :data:`SHUFFLE_LAYOUTS`): where the shuffle sits
            and which permutation it is. Same parameters and MACs; only weights trained with a layout
            fit it.
    """

    def __init__(
        self,
        groups: int = 3,
        scale: float = 1.0,
        shuffle: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        img_size: Optional[int] = None,
        small_input: bool = False,
        act_layer: ActLayer = "relu",
        stem_channels: Optional[int] = None,
        shortcut_first: bool = True,
        shuffle_layout: str = "paper",
    ) -> None:
        super().__init__()
        self.widths = shufflenet_widths(groups, scale, stem_channels)
        self.stem_channels = stem_channels
        self.shortcut_first = check_bool("shortcut_first", shortcut_first)
        check_shuffle_layout(shuffle_layout)
        self.shuffle_layout = shuffle_layout
        self.groups = groups
        self.scale = float(scale)
        self.shuffle = check_bool("shuffle", shuffle)
        self.small_input = check_bool("small_input", small_input)
        default_size = 32 if small_input else 224
        self.img_size = check_positive_int("img_size", img_size if img_size is not None else default_size)
        self.in_chans = check_positive_int("in_chans", in_chans)
        get_act_layer(act_layer)  # fail here, naming act_layer, rather than inside the first unit
        self.min_input_size = 8 if small_input else 32  # total stride of the body
        self.small_input_min_size = 8
        check_min_input_size("ShuffleNetV1", self.img_size, self.min_input_size, small_input, 8)

        stem_chs = self.widths[0]
        self.stem = ConvBNAct(in_chans, stem_chs, kernel_size=3, stride=1 if small_input else 2, act_layer=act_layer)
        self.stem_pool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        in_chs = stem_chs
        reduction = 1 if small_input else 2
        body = [("stem", stem_chs, reduction), ("stem_pool", stem_chs, reduction if small_input else 2 * reduction)]
        reduction = body[-1][2]
        stages = []
        for stage_index, (out_chs, num_units) in enumerate(zip(self.widths[1:], STAGE_UNITS)):
            units = []
            for unit_index in range(num_units):
                first_unit = unit_index == 0
                units.append(ShuffleUnit(
                    in_chs, out_chs, groups,
                    stride=2 if first_unit else 1,
                    grouped_first_conv=not (stage_index == 0 and first_unit),
                    shuffle=shuffle,
                    act_layer=act_layer,
                    shortcut_first=shortcut_first,
                    shuffle_layout=shuffle_layout,
                ))
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
            reduction *= 2
            body.append((f"stage{stage_index + 2}", out_chs, reduction))
        self.stage2, self.stage3, self.stage4 = stages
        self.init_head(in_chs, num_classes, drop_rate)
        self.init_feature_info(body)  # stem, pool, stages 2-4: as timm's ResNets (reductions 2-32)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.checkpointing_body():
            return self.forward_body_checkpointed(x)
        x = self.stem_pool(self.stem(x))
        return self.stage4(self.stage3(self.stage2(x)))


# Pretrained cfgs, read as each entry point registers (timm's convention): the ImageNet weights its
# publishers give, declared beside this file; the registry adds the bundled Fashion-MNIST weights
# (weights/index.json).
default_cfgs: dict[str, WeightCfg] = IMAGENET_WEIGHTS


@register_model
def shufflenet_v1(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet v1 with any ``groups`` and ``scale`` (defaults: g = 3, 1×)."""
    return ShuffleNetV1(**kwargs)


# Every g × s is a registered name: ``shufflenet_g3`` (1×), ``shufflenet_g3_050`` (0.5×), ... The paper's
# numbers for the variants it reports; mult-adds are the paper's "FLOPs" (Table 1, 2, 5).
_VARIANT_NOTES: dict[tuple[int, float], str] = {
    (1, 1.0): "143 M mult-adds (Table 1), 33.6% top-1 error (Table 2)",
    (2, 1.0): "140 M mult-adds (Table 1), 32.7% top-1 error (Table 2)",
    (3, 1.0): "137 M mult-adds (Table 1); top-1 error 32.6%, 34.5% without shuffle (Tables 2, 3)",
    (4, 1.0): "133 M mult-adds (Table 1), 32.8% top-1 error (Table 2)",
    (8, 1.0): "137 M mult-adds (Table 1); top-1 error 32.4%, 37.6% without shuffle (Tables 2, 3)",
    (3, 0.25): "13 M mult-adds, 55.0% top-1 error (Table 2)",
    (8, 0.25): "13 M mult-adds printed (this build: 15.7), 52.7% top-1 error (Table 2)",
    (3, 0.5): "38 M mult-adds, 43.2% top-1 error (Table 2); megvii's release: 42.7%",
    (8, 0.5): "38 M mult-adds, 42.3% top-1 error (Table 2); megvii's release: 40 M, 41.2%",
    (3, 1.5): "292 M mult-adds, 28.5% top-1 error (Table 5); megvii's release: 28.4%",
    (8, 1.5): "not in the paper; megvii's release: 290 M mult-adds, 29.0% top-1 error",
    (3, 2.0): "524 M mult-adds, 26.3% top-1 error (Table 5); megvii's release: 25.9%",
    (8, 2.0): "not in the paper; megvii's release: 522 M mult-adds, 27.1% top-1 error",
}


def variant_name(groups: int, scale: float) -> str:
    """The registered name of ShuffleNet s× with g groups.

    >>> variant_name(3, 1.0), variant_name(1, 0.75)
    ('shufflenet_g3', 'shufflenet_g1_075')
    """
    return f"shufflenet_g{groups}" + ("" if scale == 1.0 else f"_{round(scale * 100):03d}")


def _register_variant(groups: int, scale: float) -> None:
    def entry_point(**kwargs: Any) -> ShuffleNetV1:
        return ShuffleNetV1(**variant_kwargs("shufflenet_v1", kwargs, groups=groups, scale=scale))

    entry_point.__name__ = entry_point.__qualname__ = variant_name(groups, scale)
    note = _VARIANT_NOTES.get((groups, scale), "not among the models the paper reports")
    entry_point.__doc__ = f"ShuffleNet {scale:g}× (g = {groups}): {note}."
    globals()[entry_point.__name__] = register_model(entry_point)


for _scale in (1.0, *(s for s in SCALES if s != 1.0)):
    for _groups in GROUPS:
        _register_variant(_groups, _scale)
