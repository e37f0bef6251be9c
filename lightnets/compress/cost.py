"""What a compressed model costs next to its original, and what a compressed copy says about its weights.

Every compression tool returns a :func:`derived_copy`: a deep copy whose ``pretrained_cfg`` no longer
claims the original weight's file, checksum and measured numbers, but names it as ``derived_from``.
:func:`compare_cost` counts params and conv + FC multiply-adds of one image before and after
(:func:`lightnets.profiler.profile`, the papers' count).

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2.fmnist")
>>> derived_copy(model).pretrained_cfg["derived_from"]
'smallcnn_3x2.fmnist'
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from torch import nn

from ..models.catalog import WEIGHT_SOURCE_KEYS
from ..models.restructure import model_input_size

__all__ = ["CostChange", "compare_cost", "derived_copy", "model_input_size"]

# What a pretrained cfg says about one weight file; a changed model is no longer that file.
_WEIGHT_IDENTITY = (*WEIGHT_SOURCE_KEYS, "hf_hub_filename", "revision", "sha256", "metrics", "params", "macs",
                    "source_format")


def derived_copy(model: nn.Module) -> nn.Module:
    """A deep copy to change, whose pretrained_cfg names the weight it came from (``derived_from``) instead of
    claiming that weight's file, checksum, metrics, params and MACs."""
    new = copy.deepcopy(model)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture"):
        source = cfg.get("derived_from") or (f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else None)
        new.pretrained_cfg = {key: value for key, value in cfg.items() if key not in _WEIGHT_IDENTITY}
        new.pretrained_cfg.update(tag=None, derived_from=source)
    return new


def unknown_layer(model: nn.Module, name: str, candidates: Iterable[str], what: str) -> ValueError:
    """The error for a layer name the model does not have, with the closest names it does have."""
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"{type(model).__name__} has no {what} named {name!r}{hint}")


@dataclass(frozen=True)
class CostChange:
    """Parameters and conv+FC multiply-adds of one image, before and after a compression (lightnets.profiler)."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def mac_reduction(self) -> float:
        """MACs before ÷ MACs after (2.0: half the multiply-adds)."""
        return self.macs_before / self.macs_after

    def __str__(self) -> str:
        return (f"params {self.params_before:,} → {self.params_after:,} "
                f"({100 * self.params_after / self.params_before:.1f}%), "
                f"MMACs {self.macs_before / 1e6:.2f} → {self.macs_after / 1e6:.2f} ({self.mac_reduction:.2f}× fewer)")


def compare_cost(before: nn.Module, after: nn.Module, input_size: Optional[Sequence[int]] = None) -> CostChange:
    """Params and conv+FC MACs of ``before`` and ``after`` on one image of ``input_size`` (default: the model's).

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> print(compare_cost(model, lightnets.prune_l1(model, 0.5)))
    params 241,770 → 98,554 (40.8%), MMACs 7.60 → 1.99 (3.81× fewer)
    """
    from ..profiler import profile  # fvcore: loaded on first use

    size = model_input_size(before, input_size)
    cost_before, cost_after = profile(before, size), profile(after, size)
    return CostChange(cost_before.params, cost_after.params, cost_before.total_macs, cost_after.total_macs)
