"""The catalogue of model entry points: what ``@register_model`` records, and nothing more.

A family file declares its pretrained cfgs as data in a module-level ``default_cfgs`` dict keyed
``"name"`` or ``"name.tag"`` (timm's convention), each a :class:`~lightnets.weight_cfg.WeightCfg` (or
the plain dict of one), and decorates each entry point with :func:`register_model`. This module is
the bottom of the registry: it knows no weights file, no Hub and no timm. :mod:`lightnets.registry`,
a layer above, completes every entry with the bundled weights' cfgs, bridges it into timm and builds
models from it (it subscribes with :func:`on_register`, so an entry point registered later gets the
same treatment).

>>> split_model_name("mobilenet_v1_050.fmnist")
('mobilenet_v1_050', 'fmnist')
>>> "mobilenet_v1_050" in entries()
True
"""
from __future__ import annotations

import difflib
import inspect
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from torch import nn

from ..weight_cfg import WEIGHT_SOURCE_FIELDS, WeightCfg, as_weight_cfg
from .imagenet_sources import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DEFAULT_CFG",
    "DEFAULT_WEIGHT_CFG",
    "WEIGHT_SOURCE_KEYS",
    "ModelEntry",
    "UnknownModelError",
    "entries",
    "entry",
    "has_weights",
    "on_register",
    "register_model",
    "split_model_name",
    "variant_kwargs",
]

# Keys of a pretrained cfg that describe where weights come from; a cfg with any of them has weights.
WEIGHT_SOURCE_KEYS = WEIGHT_SOURCE_FIELDS

# Defaults for every cfg: the ImageNet layout, as in timm's _cfg().
DEFAULT_WEIGHT_CFG = WeightCfg(
    num_classes=1000,
    input_size=(3, 224, 224),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    crop_pct=0.875,
    interpolation="bilinear",
    first_conv="stem.conv",
    classifier="classifier",
    license="mit",
)
DEFAULT_CFG: dict[str, Any] = DEFAULT_WEIGHT_CFG.to_dict()  # the same, as the plain dict timm's _cfg() gives


class UnknownModelError(KeyError, ValueError):
    """Raised for a model name or tag that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def has_weights(cfg: Union[WeightCfg, Mapping[str, Any]]) -> bool:
    """True if a pretrained cfg (typed, or its plain dict) names a weight source (a Hub repo, a file or a URL)."""
    if isinstance(cfg, WeightCfg):
        return cfg.has_weights
    return any(cfg.get(key) for key in WEIGHT_SOURCE_KEYS)


def split_model_name(model_name: str) -> tuple[str, str]:
    """``"mobilenet_v1_050.fmnist"`` → ``("mobilenet_v1_050", "fmnist")``; no tag → ``""``."""
    name, _, tag = model_name.partition(".")
    return name, tag


@dataclass
class ModelEntry:
    """One registered entry point: its name, the function that builds it, the class it returns and its cfgs."""

    name: str
    fn: Callable[..., nn.Module]
    model_cls: Optional[type]
    cfgs: dict[str, WeightCfg] = field(default_factory=dict)  # tag ("" = untagged) -> cfg

    @property
    def pretrained_tags(self) -> list[str]:
        return [tag for tag, cfg in self.cfgs.items() if tag and cfg.has_weights]

    @property
    def default_tag(self) -> Optional[str]:
        """The weight the bare name means: the first whose network is the one the bare name builds — the
        same classes and input size, and no architecture argument (``model_args``) other than the model's
        own default. So ``pretrained=True`` never changes the network (timm's rule): a Fashion-MNIST
        weight (1×28×28, 10 classes) is never an ImageNet-layout name's default, nor is a source's
        variant (ReLU6, TF padding, another concatenation order)."""
        own = self.cfgs.get("", WeightCfg())
        for tag in self.pretrained_tags:
            cfg = self.cfgs[tag]
            if (cfg.num_classes == own.num_classes and cfg.input_size == own.input_size
                    and self.builds_own_network(cfg.model_args or {})):
                return tag
        return None

    def builds_own_network(self, model_args: dict[str, Any]) -> bool:
        """Whether these architecture arguments leave the bare name's network as it is (each is the
        class's default, or the input size the bare name already has)."""
        if not model_args:
            return True
        if self.model_cls is None:
            return False
        defaults = {name: p.default for name, p in inspect.signature(self.model_cls.__init__).parameters.items()}
        own_size = (self.cfgs.get("", WeightCfg()).input_size or ())[-1:]
        return all(
            (key == "img_size" and (value,) == own_size) or (key in defaults and defaults[key] == value)
            for key, value in model_args.items()
        )

    def accepted_kwargs(self) -> Optional[set[str]]:
        """Keyword arguments the model class takes, or None when they cannot be read."""
        if self.model_cls is None:
            return None
        params = inspect.signature(self.model_cls.__init__).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.name != "self"}


_entries: dict[str, ModelEntry] = {}
_listeners: list[Callable[[ModelEntry], None]] = []


def entries() -> dict[str, ModelEntry]:
    """Every registered entry point by name, in registration order (read-only by convention)."""
    return _entries


def entry(name: str) -> ModelEntry:
    """The entry registered as ``name``; an :class:`UnknownModelError` listing close names otherwise."""
    if name not in _entries:
        close = difflib.get_close_matches(name, list(_entries), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see lightnets.list_models()"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _entries[name]


def on_register(listener: Callable[[ModelEntry], None]) -> None:
    """Call ``listener(entry)`` for every entry registered so far and for every later one."""
    _listeners.append(listener)
    for existing in list(_entries.values()):
        listener(existing)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model entry point under its function name.

    The entry point's module may define ``default_cfgs = {"name": WeightCfg(...), "name.tag": WeightCfg(...)}``
    (or the plain dicts of them); each cfg is completed with :data:`DEFAULT_WEIGHT_CFG`, and a tag inherits
    the model's own cfg (first_conv, classifier ...).
    """
    name = fn.__name__
    if name in _entries:
        raise ValueError(f"model {name!r} is already registered (by {_entries[name].fn.__module__})")
    module_cfgs = {key: as_weight_cfg(cfg, f"{fn.__module__}.default_cfgs[{key!r}]")
                   for key, cfg in getattr(sys.modules[fn.__module__], "default_cfgs", {}).items()}
    cfgs = {"": DEFAULT_WEIGHT_CFG.updated(module_cfgs.get(name, WeightCfg()))}
    for key, cfg in module_cfgs.items():
        base, tag = split_model_name(key)
        if base == name and tag:
            cfgs[tag] = cfgs[""].updated(cfg)
    try:
        model_cls = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotation: skip kwarg checking, never fail registration
        model_cls = None
    registered = ModelEntry(name, fn, model_cls if isinstance(model_cls, type) else None, cfgs)
    _entries[name] = registered
    for listener in _listeners:
        listener(registered)
    return fn


def variant_kwargs(generic_name: str, user_kwargs: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """Merge a named variant's fixed arguments with the user's, refusing to silently override them.

    >>> variant_kwargs("mobilenet_v1", {"num_classes": 10}, alpha=0.5)
    {'num_classes': 10, 'alpha': 0.5}
    """
    for key, value in fixed.items():
        if key in user_kwargs and user_kwargs[key] != value:
            raise ValueError(
                f"this variant fixes {key}={value!r}; to choose {key}={user_kwargs[key]!r} use "
                f"create_model({generic_name!r}, {key}={user_kwargs[key]!r})"
            )
    return {**user_kwargs, **fixed}
