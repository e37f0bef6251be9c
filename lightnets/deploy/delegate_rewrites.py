"""Rewrites that keep a network's function but let a mobile runtime's delegate run all of it.

ShuffleNet's stride-2 shortcut (paper, Fig. 2c) is a 3×3 average pool, stride 2, padding 1, counting the
padded zeros (``count_include_pad``). XNNPACK's ExecuTorch partitioner leaves that pool out of the delegate,
which splits the program into one subgraph per stride-2 unit and runs the pools on portable kernels (4×
slower float ShuffleNet on the 2-core machine, ../shared/NOTES.md). The same function is a depthwise 3×3
convolution whose weights are all 1/9 over a zero-padded input: XNNPACK lowers it in float and in int8
(where 1/9 quantizes exactly: every weight is the channel's scale × 127).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["FixedAverageConv", "average_pools_as_convs"]


class FixedAverageConv(nn.Module):
    """A ``count_include_pad`` average pool as a depthwise convolution with fixed weights 1 / (k_h × k_w).

    >>> pool = nn.AvgPool2d(3, stride=2, padding=1)
    >>> conv = FixedAverageConv(pool, channels=4)
    >>> x = torch.randn(1, 4, 9, 9)
    >>> bool((conv(x) - pool(x)).abs().max() < 1e-6)
    True
    """

    def __init__(self, pool: nn.AvgPool2d, channels: int) -> None:
        super().__init__()
        kernel = nn.modules.utils._pair(pool.kernel_size)
        self.stride = nn.modules.utils._pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = nn.modules.utils._pair(pool.padding)
        self.groups = channels
        # A buffer, not a parameter: training never moves an average, and the state dict keeps its keys.
        self.register_buffer("weight", torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1])),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, 1, self.groups)


def _rewritable(module: nn.Module) -> bool:
    return (type(module) is nn.AvgPool2d and module.count_include_pad and not module.ceil_mode
            and module.divisor_override is None)


def average_pools_as_convs(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose padded average pools are :class:`FixedAverageConv` layers (same outputs).

    The channel count of each pool comes from one forward pass on ``example_input``.

    >>> import lightnets
    >>> model = lightnets.create_model("shufflenet_g3_050", small_input=True, num_classes=10).eval()
    >>> x = torch.randn(1, 3, 32, 32)
    >>> rewritten = average_pools_as_convs(model, x)
    >>> sum(isinstance(m, FixedAverageConv) for m in rewritten.modules())
    3
    >>> bool((rewritten(x) - model(x)).abs().max() < 1e-5)
    True
    """
    model = copy.deepcopy(model)
    channels: dict[str, int] = {}

    def record(name: str):
        return lambda _module, inputs, _output: channels.__setitem__(name, inputs[0].shape[1])

    hooks = [module.register_forward_hook(record(name))
             for name, module in model.named_modules() if _rewritable(module)]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    for name, count in channels.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FixedAverageConv(getattr(parent, child), count))
    return model
