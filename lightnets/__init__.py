"""lightnets — light convolutional networks exact to their papers, with measured numbers.

>>> import lightnets
>>> model = lightnets.create_model("shufflenet_g3", num_classes=10)
>>> "mobilenet_v1_050" in lightnets.list_models("mobilenet*")
True
"""
from __future__ import annotations

import importlib
from typing import Any

from . import models  # noqa: F401  (registers every architecture)
from .registry import (
    UnknownModelError,
    create_model,
    feature_extractor,
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    model_arguments,
    timm_name,
)

__version__ = "0.1.0"

# Heavier parts load on first use so `import lightnets` stays fast.
_LAZY = {
    "profile": "flops",
    "count_macs": "flops",
    "evaluate": "evaluation",
    "save_pretrained": "hub",
    "load_pretrained": "hub",
    "load_checkpoint": "hub",
    "push_to_hub": "hub",
    "optimize_for_inference": "deploy",
    "export_onnx": "deploy",
    "to_separable": "surgery",
    "prune_l1": "surgery",
    "restructure": "surgery",
    "finetune": "surgery",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lightnets' has no attribute {name!r}")


__all__ = [
    "UnknownModelError",
    "create_model",
    "feature_extractor",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "model_arguments",
    "timm_name",
    *_LAZY,
]
