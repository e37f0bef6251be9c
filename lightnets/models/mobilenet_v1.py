"""MobileNet v1 — Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications" (arXiv 1704.04861).

A 3×3 stem conv, 13 depthwise-separable blocks (Table 1), global average pool, FC.
Width multiplier α thins every layer; resolution multiplier ρ sets the input side (224·ρ).

>>> from lightnets import create_model
>>> model = create_model("mobilenet_v1", alpha=0.5, rho=160 / 224)
>>> model.pretrained_cfg["input_size"]
(3, 160, 160)
"""

from typing import Any, Optional

import torch
from torch import nn

from ..layers import ActLayer, ConvBNAct, DepthwiseSeparableConv, check_padding, get_act_layer
from ..weight_cfg import WeightCfg
from .catalog import register_model, variant_kwargs
from .arguments import check_bool, check_min_input_size, check_positive_int
from .base import ClassifierNet, init_weights
from .mobilenet_v1_weights import IMAGENET_WEIGHTS

# Table 1: the stem is a full 3×3 conv, stride 2, 32 channels ...
STEM_CHANNELS = 32
# ... followed by 13 depthwise-separable layers, as (pointwise output channels, depthwise stride).
# The paper prints "s2" on the last depthwise layer; that is a typo (the feature map stays 7×7,
# and TF-slim, Keras and timm all use stride 1 there).
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
MIN_CHANNELS = 8  # TF-slim's min_depth: no layer is thinned below 8 channels


def scale_channels(channels: int, alpha: float) -> int:
    """Channels of a layer under width multiplier α: ``max(8, int(channels·α))`` (TF-slim's rule)."""
    return max(MIN_CHANNELS, int(channels * alpha + 1e-6))


class MobileNetV1(ClassifierNet):
    """MobileNet v1 with width multiplier ``alpha`` and resolution multiplier ``rho``.

    Args:
        alpha: width multiplier α > 0 (Section 3.3); 1.0, 0.75, 0.5, 0.25 in the paper.
        rho: resolution multiplier ρ in (0, 1] (Section 3.4): default input side = round(224·ρ)
            (round(32·ρ) with ``small_input``). Give ``img_size`` instead to set the side directly.
        img_size: default input side; exclusive with ``rho``.
        num_classes, in_chans, drop_rate: classifier classes, input channels, dropout before the FC.
        act_layer: ``"relu"`` (default, as the paper says) or ``"relu6"`` (TF-slim, Keras, timm, and
            therefore every weight ported from them).
        small_input: stem stride 1 instead of 2, for 28–32 px images (total stride 16: 28 px → 2×2).
        padding: ``"symmetric"`` (default: k // 2 on every side, as the paper's PyTorch ports) or ``"tf"``
            (Keras Applications: a stride-2 layer pads its extra row/column at the bottom/right only).
        bn_eps: BatchNorm epsilon (1e-5 as PyTorch; Keras's weights were trained with 1e-3).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        rho: Optional[float] = None,
        img_size: Optional[int] = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        act_layer: ActLayer = "relu",
        small_input: bool = False,
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.padding = check_padding(padding)
        if self.padding == "tf":  # one extra row/column at the bottom/right: a stride-2 layer takes 225 px to 112
            self.odd_side_rounding = "floor"
        if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or not 0 < bn_eps < 1:
            raise ValueError(f"bn_eps must be a number in (0, 1), got {bn_eps!r}")
        self.bn_eps = float(bn_eps)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < float("inf"):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        base_size = 32 if small_input else 224
        if rho is not None and img_size is not None:
            raise ValueError(f"give rho or img_size, not both (got rho={rho!r}, img_size={img_size!r})")
        self.small_input = check_bool("small_input", small_input)
        if rho is not None:
            if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho <= 1:
                raise ValueError(f"rho must be in (0, 1], got {rho!r}")
            img_size = round(base_size * rho)
        self.img_size = check_positive_int("img_size", img_size if img_size is not None else base_size)
        self.in_chans = check_positive_int("in_chans", in_chans)
        self.alpha = float(alpha)
        self.act_layer = get_act_layer(act_layer)
        stride = 1 if small_input else 2
        self.min_input_size = 16 * stride  # total stride of the body: one pixel left at the end
        self.small_input_min_size = 16
        check_min_input_size("MobileNetV1", self.img_size, self.min_input_size, small_input, 16,
                             f" (rho={rho} of {base_size})" if rho is not None else "")

        stem_chs = scale_channels(STEM_CHANNELS, alpha)
        self.stem = ConvBNAct(in_chans, stem_chs, kernel_size=3, stride=stride, act_layer=act_layer,
                              padding=padding, bn_eps=bn_eps)
        blocks = []
        in_chs, reduction = stem_chs, stride
        body = [("stem", stem_chs, reduction)]
        for index, (out_chs, block_stride) in enumerate(BLOCKS):
            out_chs = scale_channels(out_chs, alpha)
            blocks.append(DepthwiseSeparableConv(in_chs, out_chs, stride=block_stride, act_layer=act_layer,
                                                 padding=padding, bn_eps=bn_eps))
            in_chs, reduction = out_chs, reduction * block_stride
            body.append((f"blocks.{index}", out_chs, reduction))
        self.blocks = nn.Sequential(*blocks)
        self.init_head(in_chs, num_classes, drop_rate)
        self.init_feature_info(body)  # blocks 0, 2, 4, 10, 12 at reductions 2-32, as timm's mobilenetv1
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.checkpointing_body():
            return self.forward_body_checkpointed(x)
        return self.blocks(self.stem(x))


# Pretrained cfgs, read as each entry point registers (timm's convention): the ImageNet weights its
# publishers give, declared beside this file; the registry adds the bundled Fashion-MNIST weights
# (weights/index.json).
default_cfgs: dict[str, WeightCfg] = IMAGENET_WEIGHTS


@register_model
def mobilenet_v1(**kwargs: Any) -> MobileNetV1:
    """MobileNet v1 with any ``alpha`` and ``rho`` (defaults: α = 1.0, 224 px)."""
    return MobileNetV1(**kwargs)


@register_model
def mobilenet_v1_100(**kwargs: Any) -> MobileNetV1:
    """1.0 MobileNet-224: 569 M mult-adds, 4.2 M params (Table 6)."""
    return MobileNetV1(**variant_kwargs("mobilenet_v1", kwargs, alpha=1.0))


@register_model
def mobilenet_v1_075(**kwargs: Any) -> MobileNetV1:
    """0.75 MobileNet-224: 325 M mult-adds, 2.6 M params (Table 6)."""
    return MobileNetV1(**variant_kwargs("mobilenet_v1", kwargs, alpha=0.75))


@register_model
def mobilenet_v1_050(**kwargs: Any) -> MobileNetV1:
    """0.5 MobileNet-224: 149 M mult-adds, 1.3 M params (Table 6)."""
    return MobileNetV1(**variant_kwargs("mobilenet_v1", kwargs, alpha=0.5))


@register_model
def mobilenet_v1_025(**kwargs: Any) -> MobileNetV1:
    """0.25 MobileNet-224: 41 M mult-adds, 0.5 M params (Table 6)."""
    return MobileNetV1(**variant_kwargs("mobilenet_v1", kwargs, alpha=0.25))


@register_model
def mobilenet_v1_125(**kwargs: Any) -> MobileNetV1:
    """1.25 MobileNet-224, the width timm publishes ImageNet weights for."""
    return MobileNetV1(**variant_kwargs("mobilenet_v1", kwargs, alpha=1.25))
