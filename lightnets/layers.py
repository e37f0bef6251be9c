"""Building blocks shared by every lightnets family.

Each block is an ``nn.Sequential`` with named children, so a state dict reads like the paper
(``blocks.3.conv_dw.weight``) and surgery tools can swap a child by name.
"""

from collections import OrderedDict
from typing import Callable, Union

import torch.nn.functional as F

import torch
from torch import nn

ActLayer = Union[str, Callable[..., nn.Module]]

# How a k×k conv pads: "symmetric" (k // 2 on every side, PyTorch's and the papers' convention) or
# "tf" (TensorFlow's "SAME" as Keras Applications builds it: a stride-2 conv pads its extra row and
# column at the bottom and right only; stride 1 is symmetric either way).
PADDINGS = ("symmetric", "tf")


def check_padding(padding: str) -> str:
    """``padding`` if it is one of :data:`PADDINGS`, else a ValueError naming it.

    >>> check_padding("same")
    Traceback (most recent call last):
    ...
    ValueError: padding must be one of 'symmetric', 'tf', got 'same'
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
    return padding


def tf_same_padding(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Pad ``x`` as TensorFlow's "SAME" does before a k×k, stride-s conv: ceil(n / s) outputs, and the odd
    pixel of padding at the bottom/right.

    >>> tf_same_padding(torch.ones(1, 1, 4, 4), 3, 2)[0, 0]
    tensor([[1., 1., 1., 1., 0.],
            [1., 1., 1., 1., 0.],
            [1., 1., 1., 1., 0.],
            [1., 1., 1., 1., 0.],
            [0., 0., 0., 0., 0.]])
    """
    height, width = x.shape[-2], x.shape[-1]
    pad_h = max((height + stride - 1) // stride * stride - stride + kernel_size - height, 0)
    pad_w = max((width + stride - 1) // stride * stride - stride + kernel_size - width, 0)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


# The padding depends on the map's size: torch.fx records the call instead of tracing into it.
torch.fx.wrap("tf_same_padding")


class TFSamePad2d(nn.Module):
    """Module form of :func:`tf_same_padding`, placed before a conv built with ``padding=0``."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tf_same_padding(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def get_act_layer(act_layer: ActLayer) -> Callable[..., nn.Module]:
    """Resolve an activation given by name (``"relu"``, ``"relu6"``, ...) or by class.

    >>> get_act_layer("relu6")
    <class 'torch.nn.modules.activation.ReLU6'>
    """
    if isinstance(act_layer, str):
        key = act_layer.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(
                f"act_layer must be one of {sorted(_ACTIVATIONS)} or an nn.Module class, got {act_layer!r}"
            )
        return _ACTIVATIONS[key]
    if isinstance(act_layer, type) and issubclass(act_layer, nn.Module):
        return act_layer
    raise ValueError(f"act_layer must be one of {sorted(_ACTIVATIONS)} or an nn.Module class, got {act_layer!r}")


def make_activation(act_layer: ActLayer) -> nn.Module:
    """Instantiate an activation, in place where the activation supports it."""
    layer = get_act_layer(act_layer)
    try:
        return layer(inplace=True)
    except TypeError:
        return layer()


class ConvBNAct(nn.Sequential):
    """k×k convolution (no bias) → BatchNorm → activation, 'same' padding for odd k.

    ``padding="tf"`` pads a strided conv as TensorFlow's "SAME" (a ``pad`` child before the conv);
    ``bn_eps`` is the BatchNorm epsilon (Keras: 1e-3).

    >>> ConvBNAct(3, 32, kernel_size=3, stride=2)(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 32, 112, 112])
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act_layer: ActLayer = "relu",
        apply_act: bool = True,
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
    ) -> None:
        tf_pad = check_padding(padding) == "tf" and stride > 1
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if tf_pad:
            layers["pad"] = TFSamePad2d(kernel_size, stride)
        layers["conv"] = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=0 if tf_pad else kernel_size // 2,
                                   groups=groups, bias=False)
        layers["bn"] = nn.BatchNorm2d(out_chs, eps=bn_eps)
        layers["act"] = make_activation(act_layer) if apply_act else nn.Identity()
        super().__init__(layers)


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k×k conv + BN + act, then pointwise 1×1 conv + BN + act (MobileNet v1, Fig. 3).

    Costs DK²·M·DF² + M·N·DF² mult-adds instead of DK²·M·N·DF² (MobileNet v1, Eq. 2 vs. Eq. 5).

    ``padding="tf"`` pads a stride-2 depthwise conv as Keras Applications' MobileNet does (one row and
    column of zeros at the bottom/right, then an unpadded conv: a ``pad`` child before ``conv_dw``);
    ``bn_eps`` is the BatchNorm epsilon.

    >>> DepthwiseSeparableConv(32, 64)(torch.zeros(1, 32, 56, 56)).shape
    torch.Size([1, 64, 56, 56])
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        kernel_size: int = 3,
        act_layer: ActLayer = "relu",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
    ) -> None:
        tf_pad = check_padding(padding) == "tf" and stride > 1
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if tf_pad:
            # Keras: ZeroPadding2D(((0, 1), (0, 1))) and a "valid" 3×3 conv, whatever the map's size:
            # TF "SAME" for even-sized maps (k − s pixels, the odd one after).
            before, after = (kernel_size - stride) // 2, kernel_size - stride - (kernel_size - stride) // 2
            layers["pad"] = nn.ZeroPad2d((before, after, before, after))
        layers["conv_dw"] = nn.Conv2d(in_chs, in_chs, kernel_size, stride, padding=0 if tf_pad else kernel_size // 2,
                                      groups=in_chs, bias=False)
        layers["bn_dw"] = nn.BatchNorm2d(in_chs, eps=bn_eps)
        layers["act_dw"] = make_activation(act_layer)
        layers["conv_pw"] = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        layers["bn_pw"] = nn.BatchNorm2d(out_chs, eps=bn_eps)
        layers["act_pw"] = make_activation(act_layer)
        super().__init__(layers)


def _has_native_channel_shuffle(device_type: str) -> bool:
    # ATen has channel_shuffle kernels for CPU and CUDA only: MPS has none, and no generic fallback.
    return device_type in ("cpu", "cuda")


def _reshape_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    _, channels, height, width = x.shape
    x = x.reshape(-1, groups, channels // groups, height, width)
    x = x.transpose(1, 2)
    return x.reshape(-1, channels, height, width)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across ``groups`` (ShuffleNet v1, Fig. 1c): view as (g, C/g), transpose, flatten.

    Runs ATen's native ``channel_shuffle`` kernel on CPU (1.1–1.7× faster than the reshape–transpose–reshape
    it computes, benchmarks/speed.py) and CUDA, and the reshapes on devices without that kernel (MPS).
    ONNX has no such operator, so under export the permutation is written as reshapes too, with ``-1``
    for the batch, which keeps a dynamic batch (torchvision PR #3158).

    >>> channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1), 3).flatten().tolist()
    [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    """
    if torch.jit.is_scripting():  # TorchScript: the native op (a scripted model is for CPU or CUDA)
        return torch.channel_shuffle(x, groups)
    else:
        return _eager_channel_shuffle(x, groups)


@torch.jit.unused
def _eager_channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    if torch.onnx.is_in_onnx_export():
        return _reshape_shuffle(x, groups)
    # A torch.fx proxy has no device: a traced graph (BatchNorm folding, pruning) records the native op.
    if isinstance(x, torch.fx.Proxy) or _has_native_channel_shuffle(x.device.type):
        return torch.channel_shuffle(x, groups)
    return _reshape_shuffle(x, groups)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle`, so profilers and surgery see it as a layer."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
