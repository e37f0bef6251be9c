"""lightnets — light convolutional networks exact to their papers, with measured numbers.

>>> import lightnets
>>> model = lightnets.create_model("shufflenet_g3", num_classes=10)
>>> "mobilenet_v1_050" in lightnets.list_models("mobilenet*")
True

Importing the package is instant: each public name loads its module on first use. The models
register into timm's registry as soon as lightnets' registry loads, or when timm is imported,
whichever comes first, so ``import lightnets`` then ``timm.create_model("shufflenet_g3")`` works.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

__version__ = "0.1.0"

# Every public name loads on first use, so `import lightnets` (and a command line's --help) does not
# wait for torch: name -> the module that defines it.
_LAZY = {
    "UnknownModelError": "registry",
    "create_model": "registry",
    "feature_extractor": "registry",
    "get_pretrained_cfg": "registry",
    "is_model": "registry",
    "list_models": "registry",
    "list_pretrained": "registry",
    "model_arguments": "registry",
    "timm_name": "registry",
    "profile": "profiler",
    "count_macs": "profiler",
    "evaluate": "evaluation",
    "save_pretrained": "publish",
    "load_pretrained": "pretrained",
    "load_checkpoint": "pretrained",
    "push_to_hub": "publish",
    "optimize_for_inference": "deploy",
    "export_onnx": "deploy",
    "export": "deploy",
    "quantize": "deploy",
    "to_separable": "compress",
    "prune_l1": "compress",
    "prune": "compress",
    "restructure": "models.restructure",
    "finetune": "compress",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'lightnets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Loads lightnets' registry (which registers every model into timm) right after timm is imported, so
    a timm user's ``import lightnets`` costs nothing until timm is there to register into."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            importlib.import_module(".registry", __name__)

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:
    importlib.import_module(".registry", __name__)
elif not any(isinstance(finder, _RegisterWhenTimmLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())


__all__ = sorted(_LAZY)
