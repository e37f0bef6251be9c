"""Dead channels and LiteRT's int8 biases: a rewrite that keeps a dead channel's constant output through int8.

Network slimming (Liu et al. 2017) trains most BatchNorm scales γ to ~0: once BatchNorm is folded into its
convolution, such a channel has weights of ~1e-15 and a bias β, so it outputs the constant β. ai-edge-quantizer,
LiteRT's int8 quantizer, gives each output channel the weight scale max|w| / 127 (floored at 1e-9) and stores
the bias as int32 with scale ``input scale × weight scale``: a dead channel's β then needs far more than 32 bits
and is clipped, and the constant the next layer sees is wrong. On ``shufflenet_g3_050.fmnist_slim`` (64% of
its BatchNorm scales below 1e-6) that took LiteRT's per-channel int8 file to 50.58% top-1 on the 10,000 test
images, against 90.55% in float.

Raising one weight of each dead channel to 1/1024 of its bias gives it a weight scale that keeps the int32
bias in range, and changes the channel's float output by at most ``|β| / 1024 × |x|`` for an input ``x`` at
that tap (2.7e-5 in the logits of that network, whose int8 file then scores 89.77%:
results/on_device_accuracy.md).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DEAD_RATIO", "BIAS_TO_WEIGHT", "lift_dead_channels"]

DEAD_RATIO = 1e-6  # a channel whose largest |weight| is below this share of its layer's largest is dead
BIAS_TO_WEIGHT = 2.0 ** -10  # the weight a dead channel gets, as a share of its |bias|


def lift_dead_channels(model: nn.Module) -> int:
    """In place: give each dead output channel of ``model``'s biased convolutions and linear layers one weight of
    ``|bias| × BIAS_TO_WEIGHT`` (at the kernel's centre tap of its first input channel). Returns how many.

    >>> conv = nn.Conv2d(1, 2, 3, padding=1)
    >>> with torch.no_grad():
    ...     _ = conv.weight[1].fill_(1e-15), conv.bias.fill_(2.0)
    >>> lift_dead_channels(conv), conv.weight[1, 0, 1, 1].item() == 2.0 / 1024
    (1, True)
    """
    lifted = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)) or module.bias is None:
                continue
            weight = module.weight.flatten(1)
            largest = weight.abs().amax(1)
            dead = (largest <= DEAD_RATIO * largest.max()) & (module.bias != 0)
            for channel in dead.nonzero().flatten().tolist():
                tap = (channel, 0, *[size // 2 for size in module.weight.shape[2:]])
                module.weight[tap] = module.bias[channel].abs() * BIAS_TO_WEIGHT
                lifted += 1
    return lifted
