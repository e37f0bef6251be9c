"""The timm bridge: every lightnets entry point is also registered into timm's registry.

``timm.create_model("shufflenet_g3")`` then works once lightnets is imported. Names that timm already
owns (``vgg16``, ...) are registered there as ``lightnets_<name>``. Each bridged entry point calls
:func:`lightnets.create_model`, so timm's ``pretrained_cfg``, ``pretrained_cfg_overlay`` and
``features_only`` arguments reach the same resolve → build → load path.

>>> import timm
>>> timm.create_model("shufflenet_g3", num_classes=10).num_classes
10
"""
from __future__ import annotations

from collections import deque
from typing import Any

from torch import nn

from ..models import catalog
from ..models.catalog import WEIGHT_SOURCE_KEYS
from ..weight_cfg import WeightCfg
from . import names
from .create import create_model

__all__ = ["default_cfgs", "register_with_timm"]

# timm reads this dict (by module) when our bridge functions are registered into its registry; the package
# lightnets.registry re-exports it, and the bridged entry points say they are its (their __module__).
default_cfgs: dict[str, Any] = {}

# The fields of our cfg that timm's PretrainedCfg takes (timm refuses a field it does not have).
_TIMM_FIELDS = ("hf_hub_id", "file", "url", "num_classes", "input_size", "mean", "std", "crop_pct", "interpolation",
                "first_conv", "classifier", "license")


def _timm_cfg(cfg: WeightCfg) -> dict[str, Any]:
    """The subset of our cfg that timm's PretrainedCfg dataclass accepts."""
    out = {field: getattr(cfg, field) for field in _TIMM_FIELDS if getattr(cfg, field) is not None}
    if out.get("file"):
        out["file"] = str(out["file"])
    return out


def register_with_timm(name: str) -> None:
    """Register the lightnets entry point ``name`` into timm's registry, with its cfgs as timm's DefaultCfg."""
    try:
        from timm.models import DefaultCfg, PretrainedCfg
        from timm.models import is_model as timm_is_model
        from timm.models import register_model as timm_register_model
    except ImportError:  # timm is a dependency, but the registry itself must not need it
        return
    registered = names._timm_names.get(name)
    bridged_name = registered or (name if not timm_is_model(name) else f"lightnets_{name}")
    names._timm_names[name] = bridged_name

    def entry_point(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        timm_cfg = kwargs.pop("pretrained_cfg", None)
        overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
        kwargs.pop("cache_dir", None)
        kwargs.pop("pretrained_model_args", None)
        feature_cfg = kwargs.pop("feature_cfg", None) or {}  # timm's build_model_with_cfg argument
        for key in ("feature_cls", "out_indices"):
            if key in feature_cfg:
                kwargs.setdefault(key, feature_cfg[key])
                kwargs.setdefault("features_only", True)
        if isinstance(timm_cfg, str):  # a tag
            tag, cfg_override = timm_cfg, {}
        elif timm_cfg is not None:  # timm's PretrainedCfg or its dict, e.g. read from a Hub config.json
            cfg_dict = timm_cfg if isinstance(timm_cfg, dict) else timm_cfg.to_dict()
            tag = cfg_dict.get("tag") or ""
            # timm passes the registered tag's own cfg back: only a source that differs from it overrides it
            # (so a tag's checksum, converter and cache still apply through timm.create_model).
            own = catalog.entries()[name].cfgs.get(tag, WeightCfg())
            cfg_override = {key: value for key, value in cfg_dict.items()
                            if key in WEIGHT_SOURCE_KEYS and value and str(value) != str(getattr(own, key))}
        else:
            tag, cfg_override = "", {}
        cfg_override.update(overlay)
        return create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained,
                            pretrained_cfg=cfg_override or None, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = bridged_name
    entry_point.__module__ = "lightnets.registry"
    entry_point.__doc__ = f"lightnets model {name!r} (see lightnets.create_model)."
    entry = catalog.entries()[name]

    # timm's DefaultCfg: its first tag is the default, the cfg timm.create_model(name) builds from. That is
    # the weight whose network the bare name builds, or the untagged cfg where no weight does (timm's
    # generate_default_cfgs would promote the first tag with weights: a Fashion-MNIST or source variant).
    default = entry.default_tag or ""
    tags = sorted(entry.cfgs, key=lambda tag: tag != default)
    default_cfgs[bridged_name] = DefaultCfg(
        tags=deque(tags),
        cfgs={tag: PretrainedCfg(**_timm_cfg(entry.cfgs[tag])) for tag in tags},
        is_pretrained=entry.cfgs[default].has_weights,
    )
    timm_register_model(entry_point)
