"""Build a registered model from its arguments: a weight's arguments as defaults, and every argument
checked before anything is allocated (unknown names, sizes this machine cannot hold).

>>> from lightnets.models import catalog
>>> model = build(catalog.entry("mobilenet_v1_025"), WeightCfg(), {"num_classes": 10})
>>> model.num_classes
10
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.arguments import physical_memory
from ..models.catalog import ModelEntry
from ..weight_cfg import WeightCfg
from .names import has_fixed_input_size

__all__ = ["apply_weight_args", "build"]

# Architecture arguments that only set the input size: a model that pools globally takes weights
# trained at any size, so a user's own size never conflicts with the weight's.
_SIZE_ARGS = ("img_size", "rho")


def apply_weight_args(entry: ModelEntry, cfg: WeightCfg, kwargs: dict[str, Any], strict: bool) -> None:
    """Make the weight's architecture arguments (small_input, img_size, ...) the defaults of ``kwargs``.

    With ``strict`` (the weights are loaded) a user argument that contradicts them is an error, except
    the input size of a model that pools globally.
    """
    resized = not has_fixed_input_size(entry.name) and any(key in kwargs for key in _SIZE_ARGS)
    for key, value in (cfg.model_args or {}).items():
        if key in ("num_classes", "in_chans") or (resized and key in _SIZE_ARGS):
            continue
        if strict and key in kwargs and kwargs[key] != value:
            weight = f"{entry.name}.{cfg.tag}" if cfg.tag else entry.name
            raise ValueError(
                f"weights {weight} were trained with {key}={value!r}; got {key}={kwargs[key]!r} "
                f"(use pretrained=False to build it with other arguments)"
            )
        kwargs.setdefault(key, value)


def build(entry: ModelEntry, cfg: WeightCfg, kwargs: dict[str, Any]) -> nn.Module:
    """``entry``'s model built with ``kwargs``, checked first; an error in arguments that came from a folder's
    config.json (``cfg.saved_from``) names the folder."""
    try:
        _check_kwargs(entry, kwargs)
        _check_memory(entry, kwargs)
        return entry.fn(**kwargs)
    except (ValueError, TypeError) as error:
        if not cfg.saved_from:
            raise
        # The arguments came (in part) from a folder's config.json: say which, so a broken folder is found.
        raise type(error)(f"{error} (building {entry.name} as {cfg.saved_from}'s config.json describes it)") from error


def _check_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    accepted = entry.accepted_kwargs()
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"{entry.name} got unknown argument(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(accepted))}"
        )


# Models whose parameters are within this many bytes are built without the estimate (all of the zoo's are).
_ESTIMATE_ABOVE_BYTES = 1 << 28


def _check_memory(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    """Refuse, before allocating anything, a model whose float32 parameters would not fit in this machine's
    memory (alpha=100, a billion classes): the parameters are counted on PyTorch's meta device."""
    # Beyond these the parameters are counted first: a flattening head (SmallCNN, fixed input) grows with img_size².
    limits = {"alpha": 4, "scale": 4, "num_classes": 100_000, "img_size": 512}
    if not any(isinstance(kwargs.get(key), (int, float)) and kwargs[key] > limit for key, limit in limits.items()):
        return  # the zoo's sizes: nothing to estimate
    given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k in ("alpha", "scale", "num_classes", "img_size"))
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in entry.fn(**kwargs).parameters())
    except Exception as error:  # noqa: BLE001
        if isinstance(error, (ValueError, TypeError)) and _raised_in_lightnets(error):
            raise  # the arguments' own errors, as the real build would raise them
        # torch itself fails to describe the layers (sizes past what a tensor can have, an overflow).
        raise ValueError(f"{entry.name} with {given} is too large to build: its layer sizes overflow "
                         f"({type(error).__name__}); choose a smaller width, input or fewer classes") from None
    needed, available = 4 * params, physical_memory()
    # Half the machine: the parameters alone, before any activation, gradient or copy a user then makes.
    if needed > _ESTIMATE_ABOVE_BYTES and available is not None and needed > available // 2:
        raise ValueError(
            f"{entry.name} with {given} has {params / 1e9:.2f} G parameters: {needed / 2**30:.1f} GiB in float32, more "
            f"than half of this machine's {available / 2**30:.1f} GiB of memory; choose a smaller width, input or "
            "fewer classes"
        )


# lightnets/ (this file is lightnets/registry/build.py)
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _raised_in_lightnets(error: BaseException) -> bool:
    """Whether the innermost frame that raised ``error`` is lightnets' code (an argument check), not torch's."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR)
