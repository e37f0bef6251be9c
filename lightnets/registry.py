"""Model registry: list and create models by name, with pretrained tags (``name.tag``).

Family files decorate their entry points with :func:`lightnets.models.catalog.register_model` and
declare their pretrained cfgs as data in a module-level ``default_cfgs`` dict keyed by ``"name"`` or
``"name.tag"`` (the timm convention). This layer completes each entry with the bundled weights' cfgs
(weights/index.json), builds models from it and loads their weights through :mod:`lightnets.pretrained`.
Every entry point is also registered into timm's registry, so ``timm.create_model("shufflenet_g3")``
works once lightnets is imported. Names that timm already owns (``vgg16``, ...) are registered there
as ``lightnets_<name>``.
"""
from __future__ import annotations

import fnmatch
import functools
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch  # noqa: F401  (the doctests use it)
from torch import nn

from .models import catalog
from .models.base import physical_memory
from .models.features import FEATURE_CLASSES, feature_extractor
from .models.catalog import (
    DEFAULT_CFG,
    WEIGHT_SOURCE_KEYS,
    ModelEntry,
    UnknownModelError,
    has_weights,
    register_model,
    split_model_name,
    variant_kwargs,
)

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
    "has_weights",
    "split_model_name",
    "variant_kwargs",
    "timm_name",
    "has_fixed_input_size",
    "UnknownModelError",
]

# Arguments timm's create_model passes to every entry point; absorbed by the timm bridge.
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_model_args")

# timm reads this dict (by module) when our bridge functions are registered into its registry.
default_cfgs: dict[str, Any] = {}


# Why weights/index.json could not be read, if it could not: importing lightnets still works, and a name
# whose bundled weight is missing says why.
_manifest_error: list[str] = []


@functools.lru_cache(maxsize=None)
def _bundled_cfgs() -> dict[str, dict[str, Any]]:
    """Cfgs of the published ImageNet weights, then of those listed in weights/index.json, read once."""
    from .pretrained.manifest import ManifestError, bundled_cfgs
    from .pretrained.published import published_cfgs

    try:
        bundled = bundled_cfgs()
    except ManifestError as error:  # a broken manifest fails the loads that need it, not `import lightnets`
        _manifest_error.append(str(error))
        warnings.warn(f"lightnets: the bundled weights are unavailable: {error}", RuntimeWarning, stacklevel=2)
        bundled = {}
    return {**published_cfgs(), **bundled}


def _complete_entry(entry: ModelEntry) -> None:
    """Give a newly registered entry the cfgs of its published ImageNet weights and of its bundled weights
    (these have the last word over the family's ``default_cfgs``) and register it into timm. The
    published weights come first, so a name's default tag is an ImageNet one where there is one."""
    for key, cfg in _bundled_cfgs().items():
        base, tag = split_model_name(key)
        if base == entry.name and tag:
            entry.cfgs[tag] = {**entry.cfgs.get(tag, entry.cfgs[""]), **cfg}
    _register_with_timm(entry.name)


def _entry(name: str) -> ModelEntry:
    return catalog.entry(name)


def is_model(model_name: str) -> bool:
    """True if ``model_name`` (optionally ``name.tag``) is registered."""
    name, tag = split_model_name(model_name)
    return name in catalog.entries() and (not tag or tag in catalog.entries()[name].cfgs)


def get_pretrained_cfg(model_name: str) -> dict[str, Any]:
    """The cfg of ``name.tag``; for a bare name, that of its default (first) pretrained tag, if any.

    >>> get_pretrained_cfg("mobilenet_v1_100")["input_size"]
    (3, 224, 224)
    """
    name, tag = split_model_name(model_name)
    entry = _entry(name)
    if not tag:
        tag = entry.default_tag or ""
    if tag not in entry.cfgs:
        tags = ", ".join(f"{name}.{t}" for t in entry.cfgs if t) or "none"
        broken = f" (the bundled weights are unavailable: {_manifest_error[0]})" if _manifest_error else ""
        raise UnknownModelError(f"model {name!r} has no tag {tag!r}; registered tags: {tags}{broken}")
    return {**entry.cfgs[tag], "architecture": name, "tag": tag or None}


def model_arguments(model_name: str) -> set[str]:
    """The keyword arguments a registered model takes (read from its class signature; empty if unreadable).

    >>> sorted(model_arguments("shufflenet_v1") & {"groups", "scale", "small_input"})
    ['groups', 'scale', 'small_input']
    """
    return _entry(split_model_name(model_name)[0]).accepted_kwargs() or set()


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


def _check_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    accepted = entry.accepted_kwargs()
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"{entry.name} got unknown argument(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(accepted))}"
        )


# Architecture arguments that only set the input size: a model that pools globally takes weights
# trained at any size, so a user's own size never conflicts with the weight's.
_SIZE_ARGS = ("img_size", "rho")


def has_fixed_input_size(model_name: str) -> bool:
    """True if the model only takes its ``img_size`` (a classifier that flattens the feature map).

    >>> has_fixed_input_size("mobilenet_v1_050"), has_fixed_input_size("smallcnn_3x2")
    (False, True)
    """
    model_cls = _entry(split_model_name(model_name)[0]).model_cls
    return model_cls is None or bool(getattr(model_cls, "fixed_input_size", False))


def _apply_weight_args(entry: ModelEntry, cfg: dict[str, Any], kwargs: dict[str, Any], strict: bool) -> None:
    """Make the weight's architecture arguments (small_input, img_size, ...) the defaults of ``kwargs``.

    With ``strict`` (the weights are loaded) a user argument that contradicts them is an error, except
    the input size of a model that pools globally.
    """
    resized = not has_fixed_input_size(entry.name) and any(key in kwargs for key in _SIZE_ARGS)
    for key, value in cfg.get("model_args", {}).items():
        if key in ("num_classes", "in_chans") or (resized and key in _SIZE_ARGS):
            continue
        if strict and key in kwargs and kwargs[key] != value:
            weight = f"{entry.name}.{cfg['tag']}" if cfg.get("tag") else entry.name
            raise ValueError(
                f"weights {weight} were trained with {key}={value!r}; got {key}={kwargs[key]!r} "
                f"(use pretrained=False to build it with other arguments)"
            )
        kwargs.setdefault(key, value)


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
            f"than half of this machine's {available / 2**30:.1f} GiB of memory; choose a smaller width, input or fewer classes"
        )


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Normalisation statistics for ``channels`` inputs: as given, one value repeated, or (another channel
    count than the cfg's, e.g. in_chans=1 of an RGB model) the channels' average repeated; timm's
    resolve_data_config takes one value or one per channel."""
    values = tuple(values)
    if len(values) in (1, channels):
        return values * (channels // len(values))
    return (round(sum(values) / len(values), 4),) * channels


def _raised_in_lightnets(error: BaseException) -> bool:
    """Whether the innermost frame that raised ``error`` is lightnets' code (an argument check), not torch's."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(Path(__file__).resolve().parent)


def _check_saved_architecture(entry: ModelEntry, saved: Optional[str], source: Optional[str]) -> None:
    """Refuse weights a folder says belong to another architecture (a name of another model class)."""
    if not saved:
        return
    saved_name = next((n for n, bridged in _timm_names.items() if bridged == saved), saved)
    if saved_name == entry.name:
        return
    other = catalog.entries().get(saved_name)
    if other is not None and other.model_cls is not None and other.model_cls is entry.model_cls:
        return  # the same network under another name (mobilenet_v1 with alpha=0.25 and mobilenet_v1_025)
    raise ValueError(
        f"{source} holds weights of {saved_name}, not {entry.name}: load it with "
        f"create_model({saved_name!r}, pretrained=True, pretrained_path=...)"
    )


def create_model(
    model_name: str,
    pretrained: bool = False,
    num_classes: Optional[int] = None,
    in_chans: Optional[int] = None,
    pretrained_path: Optional[str] = None,
    pretrained_cfg: Optional[dict[str, Any]] = None,
    global_pool: Optional[str] = None,
    features_only: bool = False,
    out_indices: Union[None, int, Sequence[int]] = None,
    feature_cls: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        model_name: a registered name, optionally with a pretrained tag: ``"mobilenet_v1_050.fmnist"``.
        pretrained: load the weights of the tag (or of the model's default tag). Without it, a tagged name
            builds the architecture that tag's weights were trained with (its ``model_args``, classes and
            channels), randomly initialised, and a bare name builds the paper's architecture.
        num_classes, in_chans: override the classifier / stem; with ``pretrained`` the weights are adapted.
        pretrained_path: load weights from this file or Hub-layout folder instead of the cfg's source.
        pretrained_cfg: entries that override the registered cfg (for example another ``hf_hub_id``).
        global_pool: as in timm, ``"avg"`` (default) or ``""``: no pooling, with ``num_classes=0`` the model
            returns its last feature map.
        features_only: as in timm, return a backbone whose forward gives the list of feature maps
            ``out_indices`` picks from the model's ``feature_info`` (one per resolution; all by default),
            without the head; its ``feature_info.channels()`` / ``.reduction()`` describe them. Built with
            timm's ``FeatureGetterNet`` over the model's ``forward_intermediates`` (``feature_cls="getter"``,
            the default) or its ``FeatureGraphNet``, a torch.fx graph (``feature_cls="fx"``).
        **kwargs: architecture arguments of the model class (``alpha=``, ``groups=``, ``small_input=`` ...);
            an argument the model does not take is an error, never silently dropped.

    >>> model = create_model("mobilenet_v1", alpha=0.5, num_classes=10)
    >>> model.num_classes, model.pretrained_cfg["architecture"]
    (10, 'mobilenet_v1')
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a string such as 'shufflenet_g3', got {type(model_name).__name__}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    if pretrained_path is not None and not pretrained:
        raise ValueError(f"pretrained_path={str(pretrained_path)!r} is only read with pretrained=True: pass "
                         f"pretrained=True to load it (or drop pretrained_path)")
    name, tag = split_model_name(model_name)
    entry = _entry(name)
    own_source = bool(pretrained_cfg and has_weights(pretrained_cfg))  # weights from the caller's hf_hub_id / url / file
    if pretrained and not tag and not pretrained_path and not own_source:
        if entry.pretrained_tags and not entry.default_tag:
            base = entry.cfgs[""]
            layout = "×".join(map(str, base["input_size"]))
            raise ValueError(
                f"model {name!r} has no pretrained weight for the network it builds ({layout}, {base['num_classes']} "
                f"classes, the paper's layers); its weights are for variants of it: name one, "
                f"{', '.join(f'{name}.{t}' for t in entry.pretrained_tags)} (a tag builds its weight's network "
                f"with or without pretrained=True)"
            )
        if not entry.pretrained_tags:
            available = ", ".join(list_models(pretrained=True)) or "none yet"
            raise ValueError(f"model {name!r} has no pretrained weights; models with weights: {available}")
    if tag or (pretrained and not pretrained_path and not own_source):
        cfg = get_pretrained_cfg(model_name)
    else:
        # No registered weight describes this model: it is built without weights (as the paper's
        # architecture, whatever the default tag was trained with), or its weights come from elsewhere
        # and describe themselves.
        cfg = {**entry.cfgs[""], "architecture": name, "tag": None}
    # Weights from a path (pretrained_path, or the folder timm's local-dir: passes as the cfg's file) are
    # described by its config.json.
    local_source = pretrained_path
    if local_source is None and own_source and pretrained_cfg.get("file") and Path(pretrained_cfg["file"]).expanduser().exists():
        local_source = pretrained_cfg["file"]
    if pretrained and local_source is not None:
        from .pretrained import folder_cfg

        cfg.update(folder_cfg(local_source))
    elif pretrained and own_source and pretrained_cfg.get("hf_hub_id"):
        from .pretrained import hub_repo_cfg

        cfg.update(hub_repo_cfg(pretrained_cfg["hf_hub_id"], pretrained_cfg.get("revision")))
    _check_saved_architecture(entry, cfg.pop("saved_architecture", None), cfg.get("saved_from"))
    if pretrained_cfg:
        if own_source:
            # Another weight source: the registered file, checksum and metrics describe a different file.
            for key in (*WEIGHT_SOURCE_KEYS, "sha256", "sha1", "metrics"):
                cfg.pop(key, None)
            cfg["tag"] = None
        cfg.update(pretrained_cfg)
    if pretrained or tag:
        _apply_weight_args(entry, cfg, kwargs, strict=pretrained)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    elif pretrained or tag:  # as timm does, a tag's class count and channels are the defaults even without its weights
        kwargs.setdefault("num_classes", cfg["num_classes"])
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    elif pretrained or tag:
        kwargs.setdefault("in_chans", cfg["input_size"][0])
    if not features_only and (out_indices is not None or feature_cls is not None):
        raise TypeError(f"out_indices and feature_cls only apply with features_only=True (got out_indices={out_indices!r}, "
                        f"feature_cls={feature_cls!r})")
    if feature_cls not in (None, *FEATURE_CLASSES):
        raise ValueError(f"feature_cls must be one of {', '.join(map(repr, FEATURE_CLASSES))} (timm's feature "
                         f"extractors these models take), got {feature_cls!r}")
    try:
        _check_kwargs(entry, kwargs)
        _check_memory(entry, kwargs)
        model = entry.fn(**kwargs)
    except (ValueError, TypeError) as error:
        if not cfg.get("saved_from"):
            raise
        # The arguments came (in part) from a folder's config.json: say which, so a broken folder is found.
        raise type(error)(f"{error} (building {name} as {cfg['saved_from']}'s config.json describes it)") from error
    model.pretrained_cfg = {
        **cfg,
        **{key: _per_channel(cfg[key], model.in_chans) for key in ("mean", "std") if cfg.get(key)},
        "input_size": (model.in_chans, model.img_size, model.img_size),
        "num_classes": model.num_classes,
        "pool_size": model.feature_map_size(),  # timm's: the map forward_features returns at input_size
    }
    if pretrained:
        from .pretrained import load_pretrained

        load_pretrained(model, cfg, pretrained_path=pretrained_path)
    if global_pool is not None:
        model.set_global_pool(global_pool)
    return feature_extractor(model, out_indices, feature_cls or "getter") if features_only else model


# ---------------------------------------------------------------------------------------------
# timm bridge
# ---------------------------------------------------------------------------------------------


def timm_name(name: str) -> str:
    """The name a lightnets model has in timm's registry (prefixed only where timm owns the name)."""
    return _timm_names.get(name, name)


_timm_names: dict[str, str] = {}


def _timm_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """The subset of our cfg that timm's PretrainedCfg dataclass accepts."""
    keys = ("hf_hub_id", "file", "url", "num_classes", "input_size", "mean", "std", "crop_pct",
            "interpolation", "first_conv", "classifier", "license")
    out = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    if out.get("file"):
        out["file"] = str(out["file"])
    return out


def _register_with_timm(name: str) -> None:
    try:
        from timm.models import DefaultCfg, PretrainedCfg
        from timm.models import is_model as timm_is_model
        from timm.models import register_model as timm_register_model
    except ImportError:  # timm is a dependency, but the registry itself must not need it
        return
    registered = _timm_names.get(name)
    bridged_name = registered or (name if not timm_is_model(name) else f"lightnets_{name}")
    _timm_names[name] = bridged_name

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
        elif timm_cfg is not None:  # a PretrainedCfg or dict, e.g. read from a Hub config.json
            cfg_dict = timm_cfg if isinstance(timm_cfg, dict) else timm_cfg.to_dict()
            tag = cfg_dict.get("tag") or ""
            # timm passes the registered tag's own cfg back: only a source that differs from it overrides it
            # (so a tag's checksum, converter and cache still apply through timm.create_model).
            registered = catalog.entries()[name].cfgs.get(tag, {})
            cfg_override = {k: v for k, v in cfg_dict.items()
                            if k in WEIGHT_SOURCE_KEYS and v and str(v) != str(registered.get(k))}
        else:
            tag, cfg_override = "", {}
        cfg_override.update(overlay)
        return create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained,
                            pretrained_cfg=cfg_override or None, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = bridged_name
    entry_point.__module__ = __name__
    entry_point.__doc__ = f"lightnets model {name!r} (see lightnets.create_model)."
    entry = catalog.entries()[name]
    default = entry.default_tag

    # timm's DefaultCfg: its first tag is the default, the cfg timm.create_model(name) builds from. That is
    # the weight whose network the bare name builds, or the untagged cfg where no weight does (timm's
    # generate_default_cfgs would promote the first tag with weights: a Fashion-MNIST or source variant).
    default = entry.default_tag or ""
    tags = sorted(entry.cfgs, key=lambda tag: tag != default)
    default_cfgs[bridged_name] = DefaultCfg(
        tags=deque(tags),
        cfgs={tag: PretrainedCfg(**_timm_cfg(entry.cfgs[tag])) for tag in tags},
        is_pretrained=has_weights(entry.cfgs[default]),
    )
    timm_register_model(entry_point)


# Every entry point registered so far, and every later one, gets its bundled cfgs and its timm name.
catalog.on_register(_complete_entry)
