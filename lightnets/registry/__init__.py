"""Model registry: list and create models by name, with pretrained tags (``name.tag``).

Family files decorate their entry points with :func:`lightnets.models.catalog.register_model` and
declare their pretrained cfgs beside the family, as data: a module-level ``default_cfgs`` dict of
:class:`~lightnets.weight_cfg.WeightCfg` keyed ``"name"`` or ``"name.tag"`` (the timm convention).
This layer completes each entry with the bundled weights' cfgs (weights/index.json;
:mod:`~lightnets.registry.weights`), builds models from it (:mod:`~lightnets.registry.create`:
resolve → build → load) and registers every entry point into timm's registry
(:mod:`~lightnets.registry.timm_bridge`). Names are looked up and listed in
:mod:`~lightnets.registry.names`.

>>> create_model("shufflenet_g3", num_classes=10).num_classes
10
>>> get_pretrained_cfg("mobilenet_v1_050.fmnist")["input_size"]
(1, 28, 28)
"""
from __future__ import annotations

from ..models import catalog
from ..models.catalog import (
    DEFAULT_CFG,
    WEIGHT_SOURCE_KEYS,
    ModelEntry,
    UnknownModelError,
    has_weights,
    register_model,
    split_model_name,
    variant_kwargs,
)
from ..models.features import feature_extractor
from .create import create_model
from .names import has_fixed_input_size, is_model, list_models, list_pretrained, model_arguments, timm_name
from .timm_bridge import default_cfgs  # noqa: F401  (timm reads it here: the bridged entry points' module)
from .timm_bridge import register_with_timm
from .weights import complete_with_bundled, get_pretrained_cfg, get_weight_cfg

__all__ = [
    "DEFAULT_CFG",
    "WEIGHT_SOURCE_KEYS",
    "register_model",
    "create_model",
    "feature_extractor",
    "list_models",
    "list_pretrained",
    "model_arguments",
    "is_model",
    "get_pretrained_cfg",
    "get_weight_cfg",
    "has_weights",
    "split_model_name",
    "variant_kwargs",
    "timm_name",
    "has_fixed_input_size",
    "UnknownModelError",
]


def _on_register(entry: ModelEntry) -> None:
    complete_with_bundled(entry)
    register_with_timm(entry.name)


# Every entry point registered so far, and every later one, gets its bundled cfgs and its timm name
# (timm reads default_cfgs from this module, so it is bound above first).
catalog.on_register(_on_register)
