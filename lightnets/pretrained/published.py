"""Every published ImageNet weight of our architectures, gathered from the families that declare them.

Each family declares its sources' weights beside its model (:mod:`lightnets.models.mobilenet_v1_weights`,
:mod:`lightnets.models.shufflenet_v1_weights`); who the sources are, and how their files are had, is
:mod:`lightnets.models.imagenet_sources`. The docs' weight table and the tests read them from here.

>>> cfgs = published_cfgs()
>>> len(cfgs)
41
>>> cfg = cfgs["shufflenet_g3.osmr_in1k"]
>>> cfg["source"], cfg["license"], cfg["model_args"], cfg["metrics"]["top1"]
('pytorchcv', 'mit', {'shortcut_first': False}, 65.61)
"""
from __future__ import annotations

from typing import Any

from ..models import mobilenet_v1_weights, shufflenet_v1_weights
from ..models.imagenet_sources import SOURCES
from ..weight_cfg import WeightCfg

__all__ = ["SOURCES", "published_cfgs", "published_weight_cfgs"]


def published_weight_cfgs() -> dict[str, WeightCfg]:
    """The cfg of every published ImageNet weight as its family declares it, keyed ``"name.tag"``; per name, the
    default (first) tag first."""
    return {**mobilenet_v1_weights.IMAGENET_WEIGHTS, **shufflenet_v1_weights.IMAGENET_WEIGHTS}


def published_cfgs() -> dict[str, dict[str, Any]]:
    """:func:`published_weight_cfgs` as plain dicts."""
    return {name: cfg.to_dict() for name, cfg in published_weight_cfgs().items()}
