"""The weights each registered name has: its family's declarations, completed with the bundled ones.

A family declares its weights beside its model (``default_cfgs``, read by
:func:`lightnets.models.catalog.register_model`); the weights bundled in ``weights/`` are listed in
``weights/index.json`` and have the last word over the family's cfg of the same tag. A name's default
tag is the first weight that builds the bare name's own network.

>>> get_weight_cfg("mobilenet_v1_050.fmnist").metrics.get("top1").provenance
'measured'
>>> get_pretrained_cfg("mobilenet_v1_100")["tag"]
'osmr_in1k'
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any

from ..models.catalog import ModelEntry, UnknownModelError, split_model_name
from ..weight_cfg import WeightCfg
from .names import entry_of

__all__ = ["complete_with_bundled", "get_pretrained_cfg", "get_weight_cfg"]

# Why weights/index.json could not be read, if it could not: importing lightnets still works, and a name
# whose bundled weight is missing says why.
_manifest_error: list[str] = []


@functools.lru_cache(maxsize=None)
def _bundled_cfgs() -> dict[str, WeightCfg]:
    """Cfgs of the weights listed in weights/index.json, read once."""
    from ..pretrained.manifest import ManifestError, bundled_weight_cfgs

    try:
        return bundled_weight_cfgs()
    except ManifestError as error:  # a broken manifest fails the loads that need it, not `import lightnets`
        _manifest_error.append(str(error))
        warnings.warn(f"lightnets: the bundled weights are unavailable: {error}", RuntimeWarning, stacklevel=2)
        return {}


def complete_with_bundled(entry: ModelEntry) -> None:
    """Give a newly registered entry the cfgs of its bundled weights (they have the last word over a cfg of the
    same tag in the family's ``default_cfgs``); they come after the family's own, so a name's default tag is an
    ImageNet one where there is one."""
    for key, cfg in _bundled_cfgs().items():
        base, tag = split_model_name(key)
        if base == entry.name and tag:
            entry.cfgs[tag] = entry.cfgs.get(tag, entry.cfgs[""]).updated(cfg)


def get_weight_cfg(model_name: str) -> WeightCfg:
    """The typed cfg of ``name.tag``; for a bare name, that of its default (first) pretrained tag, if any.

    >>> get_weight_cfg("shufflenet_g3.osmr_in1k").model_args
    {'shortcut_first': False}
    """
    name, tag = split_model_name(model_name)
    entry = entry_of(name)
    if not tag:
        tag = entry.default_tag or ""
    if tag not in entry.cfgs:
        tags = ", ".join(f"{name}.{t}" for t in entry.cfgs if t) or "none"
        broken = f" (the bundled weights are unavailable: {_manifest_error[0]})" if _manifest_error else ""
        raise UnknownModelError(f"model {name!r} has no tag {tag!r}; registered tags: {tags}{broken}")
    return dataclasses.replace(entry.cfgs[tag], architecture=name, tag=tag or None)


def get_pretrained_cfg(model_name: str) -> dict[str, Any]:
    """The cfg of ``name.tag`` as the plain dict timm reads; for a bare name, that of its default (first)
    pretrained tag, if any.

    >>> get_pretrained_cfg("mobilenet_v1_100")["input_size"]
    (3, 224, 224)
    """
    return get_weight_cfg(model_name).to_dict()
