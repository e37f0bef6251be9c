"""Registered names and tags: look them up, list them, and the name each has in timm's registry.

>>> "shufflenet_g3" in list_models("shufflenet*")
True
>>> is_model("mobilenet_v1_050.fmnist"), is_model("mobilenet_v1_050.nope")
(True, False)
"""
from __future__ import annotations

import fnmatch
from typing import Optional

from ..models import catalog
from ..models.catalog import ModelEntry, split_model_name

__all__ = ["has_fixed_input_size", "is_model", "list_models", "list_pretrained", "lightnets_name", "model_arguments",
           "timm_name"]


def entry_of(model_name: str) -> ModelEntry:
    """The entry of ``name`` or ``name.tag``; an UnknownModelError listing close names otherwise (naming
    ``model_name`` as given: a path's dots would otherwise leave a tag's worth of it, or nothing)."""
    name = split_model_name(model_name)[0]
    if any(sep in model_name for sep in "/\\"):
        raise catalog.UnknownModelError(
            f"unknown model {model_name!r}: a model name is a registered name, optionally with a tag "
            "('mobilenet_v1_050', 'mobilenet_v1_050.fmnist'), not a path; to load weights from a file or folder, "
            "pass it as pretrained_path= with pretrained=True"
        )
    if not name:
        raise catalog.UnknownModelError(
            f"unknown model {model_name!r}: no name before the tag; see lightnets.list_models()"
        )
    return catalog.entry(name)


def is_model(model_name: str) -> bool:
    """True if ``model_name`` (optionally ``name.tag``) is registered."""
    name, tag = split_model_name(model_name)
    return name in catalog.entries() and (not tag or tag in catalog.entries()[name].cfgs)


def model_arguments(model_name: str) -> set[str]:
    """The keyword arguments a registered model takes (read from its class signature; empty if unreadable).

    >>> sorted(model_arguments("shufflenet_v1") & {"groups", "scale", "small_input"})
    ['groups', 'scale', 'small_input']
    """
    return entry_of(model_name).accepted_kwargs() or set()


def list_models(pattern: str = "*", pretrained: bool = False, exclude: Optional[str] = None) -> list[str]:
    """Registered model names matching a glob; with ``pretrained=True``, the ``name.tag`` of each weight.

    >>> "shufflenet_g3" in list_models("shufflenet*")
    True
    """
    if pretrained:
        names = [f"{e.name}.{tag}" for e in catalog.entries().values() for tag in e.pretrained_tags]
    else:
        names = list(catalog.entries())
    names = [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(split_model_name(n)[0], pattern)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    return sorted(names)


def list_pretrained(pattern: str = "*") -> list[str]:
    """Shorthand for ``list_models(pattern, pretrained=True)``."""
    return list_models(pattern, pretrained=True)


def has_fixed_input_size(model_name: str) -> bool:
    """True if the model only takes its ``img_size`` (a classifier that flattens the feature map).

    >>> has_fixed_input_size("mobilenet_v1_050"), has_fixed_input_size("smallcnn_3x2")
    (False, True)
    """
    model_cls = entry_of(model_name).model_cls
    return model_cls is None or bool(getattr(model_cls, "fixed_input_size", False))


# Each lightnets name -> its name in timm's registry (the timm bridge fills it as it registers them).
_timm_names: dict[str, str] = {}


def timm_name(name: str) -> str:
    """The name a lightnets model has in timm's registry (prefixed only where timm owns the name)."""
    return _timm_names.get(name, name)


def lightnets_name(timm_model_name: str) -> str:
    """The lightnets name a name in timm's registry stands for (itself, if it is not one of ours)."""
    return next((name for name, bridged in _timm_names.items() if bridged == timm_model_name), timm_model_name)
