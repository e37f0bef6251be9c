"""Learning-rate schedules and optimizer parameter groups (weight decay, layer-wise LR decay)."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from torch import nn

__all__ = ["SCHEDULES", "lr_lambda", "param_groups"]

SCHEDULES = ("cosine", "onecycle", "constant")


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Per-step LR factor for ``torch.optim.lr_scheduler.LambdaLR``: ``cosine`` (linear warmup over
    ``warmup_steps``, then cosine to zero at ``total_steps``), ``onecycle`` (Smith 2018: up over the first
    30%, cosine down to 1/1000, torch's OneCycleLR shape) or ``constant``.

    >>> cosine = lr_lambda("cosine", total_steps=100, warmup_steps=10)
    >>> cosine(0), cosine(9), cosine(55), round(cosine(100), 12)
    (0.1, 1.0, 0.5, 0.0)
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if schedule == "onecycle":
            peak = max(1, int(0.3 * total_steps))
            if step < peak:
                return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
            return 1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi * (step - peak) / max(1, total_steps - peak))) / 2
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    return factor


def param_groups(model: nn.Module, weight_decay: float, lr: Optional[float] = None,
                 layer_decay: Optional[float] = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups: weight decay on conv and linear weights only (BN parameters and biases
    are not decayed) and, with ``layer_decay``, layer-wise learning rates for fine-tuning (BEiT's
    recipe, through timm): the layers of ``model.group_matcher()`` in the order they run, the k-th of n
    at ``lr * layer_decay ** (n - 1 - k)``, so the classifier learns at ``lr`` and the stem slowest.
    Without ``layer_decay`` only parameters with ``requires_grad`` are grouped (a frozen part stays put).

    >>> from lightnets import create_model
    >>> groups = param_groups(create_model("smallcnn_3x2"), 5e-4, lr=0.1, layer_decay=0.5)
    >>> sorted({group["lr"] for group in groups})  # 3 convs, then the hidden FC and classifier together
    [0.0125, 0.025, 0.05, 0.1]
    """
    if layer_decay is None:
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if lr is None:
        raise ValueError("layer_decay scales the learning rate: give lr too")
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)
    return [{"params": group["params"], "weight_decay": group["weight_decay"], "lr": lr * group["lr_scale"]}
            for group in groups]
