"""VGG — Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (arXiv 1409.1556).

Five stages of 3×3 convs (with bias, ReLU, optional BatchNorm), each ending in a 2×2 max pool;
then the FC head: 7×7×512 = 25088 → 4096 → ReLU → dropout → 4096 → ReLU → dropout (the
``pre_logits``, whose 4096 features ``forward_head(pre_logits=True)`` returns) → classifier. As in
timm, ``num_features`` is the body's 512 channels and ``head_hidden_size`` the head's 4096.
The layout is torchvision's, so ``features.*`` keys and all parameter counts match its ``vgg*``.

Small form (``small_input=True``, 32 px by default) for CIFAR / Fashion-MNIST images: every conv
layer is kept as it is, but

* the pools after stages 4 and 5 are dropped (total stride 8 instead of 32; ``nn.Identity`` in
  their place keeps the layer numbering), so a 32 px image ends in a 4×4 map and a 28 px one in 3×3. Dropping the last
  pools rather than the first keeps the cost near the common CIFAR VGG's, which keeps all five pools and ends in 1×1:
  VGG-16 at 32 px costs 399 M MACs here, 313 M there, and 1.13 G with the first and last pools dropped instead;
* the 120 M-parameter FC head, sized for a 7×7 map, is replaced by global average pool → dropout →
  classifier on the 512 features (``num_features = 512``).

>>> from lightnets import create_model
>>> model = create_model("vgg16_bn", small_input=True)
>>> model.forward_features(torch.zeros(1, 3, 32, 32)).shape, model.num_features
(torch.Size([1, 512, 4, 4]), 512)
"""

from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import nn

from ..weight_cfg import WeightCfg
from .catalog import register_model, variant_kwargs
from .arguments import check_bool, check_drop_rate, check_num_classes, check_positive_int
from .base import ClassifierNet, classifier_layer, init_weights

# Table 1: output channels of the five stages, and 3×3 conv layers per stage for configurations
# A (VGG-11), B (VGG-13), D (VGG-16) and E (VGG-19); the key counts weight layers (convs + 3 FC).
STAGE_CHANNELS = (64, 128, 256, 512, 512)
CONVS_PER_STAGE: dict[int, tuple[int, int, int, int, int]] = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
DEPTHS = tuple(CONVS_PER_STAGE)
POOL_AFTER_STAGE = (True, True, True, True, True)
SMALL_INPUT_POOL_AFTER_STAGE = (True, True, True, False, False)  # see the module docstring
HIDDEN_FEATURES = 4096  # Sec. 2.1: two FC layers of 4096 channels
POOL_SIZE = 7  # 224 px / 2⁵: the first FC layer sees a 7×7×512 map


def vgg_features(depth: int, in_chans: int, batch_norm: bool, pool_after_stage: tuple[bool, ...]) -> nn.Sequential:
    """The conv body, torchvision's layout: Conv2d (bias) [→ BatchNorm2d] → ReLU per layer, a max pool after each
    stage."""
    layers: list[nn.Module] = []
    in_chs = in_chans
    for out_chs, num_convs, pool in zip(STAGE_CHANNELS, CONVS_PER_STAGE[depth], pool_after_stage):
        for _ in range(num_convs):
            layers.append(nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_chs))
            layers.append(nn.ReLU(inplace=True))
            in_chs = out_chs
        # A dropped pool stays as an Identity: every form numbers its layers as torchvision does,
        # so ImageNet weights load into the small form's features unchanged.
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2) if pool else nn.Identity())
    return nn.Sequential(*layers)


def _layer_table(prefix: str, layers: nn.Sequential, in_chans: int) -> list[tuple[str, int, int]]:
    """(name, output channels, reduction) of each layer of a plain conv / pool stack."""
    table, chs, reduction = [], in_chans, 1
    for index, layer in layers.named_children():
        chs = getattr(layer, "out_channels", chs)
        reduction *= 2 if isinstance(layer, nn.MaxPool2d) else 1
        table.append((f"{prefix}.{index}", chs, reduction))
    return table


class VGG(ClassifierNet):
    """VGG-``depth`` (Table 1: 11, 13, 16 or 19 weight layers), with or without BatchNorm.

    Args:
        depth: weight layers, 11 / 13 / 16 / 19 (configurations A / B / D / E).
        batch_norm: BatchNorm after every conv (the ``_bn`` variants; not in the paper, which predates it).
        num_classes, in_chans: classifier classes and input channels.
        drop_rate: dropout after each hidden FC layer (0.5, Sec. 3.1); before the classifier in the small form.
        img_size: default input side (224, or 32 with ``small_input``). The adaptive pool takes any side
            >= 32 (>= 8 in the small form).
        small_input: the small form for 28–32 px images (see the module docstring).
    """

    odd_side_rounding = "floor"  # 2×2 max pools

    def __init__(
        self,
        depth: int = 16,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        img_size: Optional[int] = None,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth not in CONVS_PER_STAGE:
            raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))} (Table 1), got {depth!r}")
        self.depth = depth
        self.batch_norm = check_bool("batch_norm", batch_norm)
        self.small_input = check_bool("small_input", small_input)
        self.img_size = check_positive_int(
            "img_size", img_size if img_size is not None else (32 if small_input else 224)
        )
        self.in_chans = check_positive_int("in_chans", in_chans)
        pools = SMALL_INPUT_POOL_AFTER_STAGE if small_input else POOL_AFTER_STAGE
        self.min_input_size = 2 ** sum(pools)  # one pixel left after the floor-mode pools
        self.small_input_min_size = 2 ** sum(SMALL_INPUT_POOL_AFTER_STAGE)
        if self.img_size < self.min_input_size:
            raise ValueError(f"img_size must be at least {self.min_input_size} for this form, got {self.img_size}"
                             + ("" if small_input else "; use small_input=True for small images"))

        self.features = vgg_features(depth, in_chans, self.batch_norm, pools)
        self.init_feature_info(_layer_table("features", self.features, in_chans))
        width = STAGE_CHANNELS[-1]
        if small_input:
            self.init_head(width, num_classes, drop_rate)
            self.pre_logits = None  # TorchScript drops the branch of forward_head this form has no layers for
        else:
            self.num_features, self.head_hidden_size = width, HIDDEN_FEATURES  # as timm's VGG: 512 and 4096
            self.num_classes = check_num_classes(num_classes)
            self.drop_rate = check_drop_rate(drop_rate)
            self.pool = nn.AdaptiveAvgPool2d(POOL_SIZE)
            self.pre_logits = nn.Sequential(OrderedDict(
                fc1=nn.Linear(width * POOL_SIZE * POOL_SIZE, HIDDEN_FEATURES),
                act1=nn.ReLU(inplace=True),
                drop1=nn.Dropout(self.drop_rate),
                fc2=nn.Linear(HIDDEN_FEATURES, HIDDEN_FEATURES),
                act2=nn.ReLU(inplace=True),
                drop2=nn.Dropout(self.drop_rate),
            ))
            self.classifier = classifier_layer(HIDDEN_FEATURES, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self.checkpointing_body():
            return self.forward_body_checkpointed(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_eager_head_input(x)
        if self.pre_logits is None:  # the small form: the usual head (written out: TorchScript has no super())
            if self.pool_type != "":
                x = self.global_pool(x).flatten(1)
            x = self.head_drop(x)
        elif self.pool_type == "":  # global_pool="" with num_classes=0: the feature map, as timm returns it
            return x
        else:
            x = self.pre_logits(self.pool(x).flatten(1))
        return x if pre_logits else self.classifier(x)


_IMAGENET_CFG = WeightCfg(first_conv="features.0", classifier="classifier")

default_cfgs: dict[str, WeightCfg] = {
    name: _IMAGENET_CFG
    for name in ("vgg", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
}


@register_model
def vgg(**kwargs: Any) -> VGG:
    """VGG with any ``depth`` and ``batch_norm`` (default: VGG-16 without BatchNorm)."""
    return VGG(**kwargs)


@register_model
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A): 132.9 M params, 7.6 G MACs at 224 px."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=11, batch_norm=False))


@register_model
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A) with BatchNorm."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=11, batch_norm=True))


@register_model
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B): 133.0 M params, 11.3 G MACs at 224 px."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=13, batch_norm=False))


@register_model
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B) with BatchNorm."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=13, batch_norm=True))


@register_model
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D): 138.4 M params, 15.5 G MACs at 224 px."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=16, batch_norm=False))


@register_model
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D) with BatchNorm."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=16, batch_norm=True))


@register_model
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E): 143.7 M params, 19.6 G MACs at 224 px."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=19, batch_norm=False))


@register_model
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E) with BatchNorm."""
    return VGG(**variant_kwargs("vgg", kwargs, depth=19, batch_norm=True))
