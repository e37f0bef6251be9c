"""Deprecated: the model surgery tools moved to :mod:`lightnets.compress` (and :func:`restructure` to
:mod:`lightnets.models.restructure`). This module re-exports them and will be removed in 0.3."""
from __future__ import annotations

import warnings

warnings.warn("lightnets.surgery is deprecated; import from lightnets.compress "
              "(restructure: lightnets.models.restructure); it will be removed in 0.3", DeprecationWarning, stacklevel=2)

from .compress import (  # noqa: E402  (after the warning, so that it fires even if an import fails)
    ChannelGraph,
    CostChange,
    compare_cost,
    finetune,
    iterative_prune,
    joined_layers,
    prunable_layers,
    prune_l1,
    rank1_factors,
    sensitivity_scan,
    standard_convs,
    to_separable,
    top1_accuracy,
)
from .models.restructure import restructure  # noqa: E402

__all__ = [
    "CostChange", "compare_cost", "standard_convs", "to_separable", "prunable_layers", "joined_layers",
    "prune_l1", "restructure", "sensitivity_scan", "iterative_prune", "finetune", "top1_accuracy",
    "ChannelGraph", "rank1_factors",
]
