"""The catalogue of model entry points: what ``@register_model`` records, and nothing more.

A family file declares its pretrained cfgs as data in a module-level ``default_cfgs`` dict keyed
``"name"`` or ``"name.tag"`` (timm's convention) and decorates each entry point with
:func:`register_model`. This module is the bottom of the registry: it knows no weights file, no Hub
and no timm. :mod:`lightnets.registry`, a layer above, completes every entry with the bundled
weights' cfgs, bridges it into timm and builds models from it (it subscribes with
:func:`on_register`, so an entry point registered later gets the same treatment).

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
from typing import Any, Callable, Optional

from torch import nn

__all__ = [
    "DEFAULT_CFG",
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

# Keys of a pretrained cfg that describe where weights come from; a cfg with any of them has weights
# ("download_page": a weight its publisher only gives by hand, loaded with pretrained_path=).
WEIGHT_SOURCE_KEYS = ("hf_hub_id", "file", "url", "download_page")

# Defaults for every cfg: the ImageNet layout, as in timm's _cfg().
DEFAULT_CFG: dict[str, Any] = {
    "num_classes": 1000,
    "input_size": (3, 224, 224),
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "interpolation": "bilinear",
    "first_conv": "stem.conv",
    "classifier": "classifier",
    "license": "mit",
}


class UnknownModelError(KeyError, ValueError):
    """Raised for a model name or tag that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def has_weights(cfg: dict[str, Any]) -> bool:
    """True if a pretrained cfg names a weight source (a Hub repo, a file or a URL)."""
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
    cfgs: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag ("" = untagged) -> cfg

    @property
    def pretrained_tags(self) -> list[str]:
        return [tag for tag, cfg in self.cfgs.items() if tag and has_weights(cfg)]

    @property
    def default_tag(self) -> Optional[str]:
        """The weight the bare name means: the first whose network is the one the bare name builds — the
        same classes and input size, and no architecture argument (``model_args``) other than the model's
        own default. So ``pretrained=True`` never changes the network (timm's rule): a Fashion-MNIST
        weight (1×28×28, 10 classes) is never an ImageNet-layout name's default, nor is a source's
        variant (ReLU6, TF padding, another concatenation order)."""
        own = self.cfgs.get("", {})
        for tag in self.pretrained_tags:
            cfg = self.cfgs[tag]
            if (cfg.get("num_classes") == own.get("num_classes")
                    and tuple(cfg.get("input_size", ())) == tuple(own.get("input_size", ()))
                    and self.builds_own_network(cfg.get("model_args") or {})):
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
        own_size = tuple(self.cfgs.get("", {}).get("input_size", ()))[-1:]
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

    The entry point's module may define ``default_cfgs = {"name": {...}, "name.tag": {...}}``; each cfg
    is completed with :data:`DEFAULT_CFG`, and a tag inherits the model's own cfg (first_conv, classifier ...).
    """
    name = fn.__name__
    if name in _entries:
        raise ValueError(f"model {name!r} is already registered (by {_entries[name].fn.__module__})")
    module_cfgs = getattr(sys.modules[fn.__module__], "default_cfgs", {})
    cfgs = {"": {**DEFAULT_CFG, **module_cfgs.get(name, {})}}
    for key, cfg in module_cfgs.items():
        base, tag = split_model_name(key)
        if base == name and tag:
            cfgs[tag] = {**cfgs[""], **cfg}
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
