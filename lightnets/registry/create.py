"""``create_model``: resolve the weight's cfg, build the network it describes, load the weights.

1. **resolve** (:func:`resolve_cfg`): the cfg of the tag (or of the bare name's default weight), then
   what a weight folder or Hub repo says about itself, then the caller's ``pretrained_cfg``;
2. **build** (:mod:`lightnets.registry.build`): the weight's architecture arguments, classes and
   channels as the defaults of the caller's, every argument checked before anything is allocated;
3. **load** (:func:`lightnets.pretrained.load_pretrained`): with ``pretrained=True``, the weights,
   found, verified, converted and adapted to the built model.

>>> model = create_model("mobilenet_v1_050.fmnist")  # the network the tag's weights were trained with
>>> model.in_chans, model.num_classes, model.pretrained_cfg["tag"]
(1, 10, 'fmnist')
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch  # noqa: F401  (the doctests use it)
from torch import nn

from ..models import catalog
from ..models.catalog import ModelEntry, split_model_name
from ..models.features import FEATURE_CLASSES, feature_extractor
from ..weight_cfg import WeightCfg, as_weight_cfg
from .build import apply_weight_args, build
from .names import entry_of, lightnets_name, list_models
from .weights import get_weight_cfg

__all__ = ["create_model", "resolve_cfg"]


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
        pretrained_cfg: entries that override the registered cfg (for example another ``hf_hub_id``); a key that
            is not a cfg field (:class:`lightnets.weight_cfg.WeightCfg`) is an error.
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
    _check_call(model_name, pretrained, pretrained_path)
    entry, tag = entry_of(model_name), split_model_name(model_name)[1]
    cfg = resolve_cfg(entry, tag, pretrained, pretrained_path, pretrained_cfg)
    kwargs = _model_kwargs(
        entry, cfg, kwargs, num_classes, in_chans, from_weight=pretrained or bool(tag), strict=pretrained
    )
    _check_feature_args(features_only, out_indices, feature_cls)
    model = build(entry, cfg, kwargs)
    model.pretrained_cfg = _describe(model, cfg).to_dict()
    if pretrained:
        from ..pretrained import load_pretrained

        load_pretrained(model, cfg, pretrained_path=pretrained_path)
    if global_pool is not None:
        model.set_global_pool(global_pool)
    return feature_extractor(model, out_indices, feature_cls or "getter") if features_only else model


def _check_call(model_name: Any, pretrained: Any, pretrained_path: Optional[str]) -> None:
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a string such as 'shufflenet_g3', got {type(model_name).__name__}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    if pretrained_path is not None and not pretrained:
        raise ValueError(f"pretrained_path={str(pretrained_path)!r} is only read with pretrained=True: pass "
                         f"pretrained=True to load it (or drop pretrained_path)")


# ---------------------------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------------------------


def resolve_cfg(entry: ModelEntry, tag: str, pretrained: bool, pretrained_path: Optional[str] = None,
                pretrained_cfg: Optional[dict[str, Any]] = None) -> WeightCfg:
    """The cfg ``create_model`` builds and loads from: the registered one, what a weight folder or Hub repo
    says about itself (with ``pretrained``), then the caller's ``pretrained_cfg``.

    >>> from lightnets.models import catalog
    >>> resolve_cfg(catalog.entry("mobilenet_v1_100"), "", pretrained=True).tag
    'osmr_in1k'
    """
    overrides = as_weight_cfg(pretrained_cfg, "pretrained_cfg")
    own_source = overrides.has_weights  # weights from the caller's hf_hub_id / url / file
    if pretrained and not tag and not pretrained_path and not own_source:
        _check_has_default_weight(entry)
    if tag or (pretrained and not pretrained_path and not own_source):
        cfg = get_weight_cfg(f"{entry.name}.{tag}" if tag else entry.name)
    else:
        # No registered weight describes this model: it is built without weights (as the paper's
        # architecture, whatever the default tag was trained with), or its weights come from elsewhere
        # and describe themselves.
        cfg = dataclasses.replace(entry.cfgs[""], architecture=entry.name, tag=None)
    if pretrained:
        cfg = cfg.updated(_source_description(overrides, pretrained_path, own_source))
    _check_saved_architecture(entry, cfg.saved_architecture, cfg.saved_from)
    cfg = dataclasses.replace(cfg, saved_architecture=None)
    if pretrained_cfg:
        if own_source:
            # Another weight source: the registered file, checksum and metrics describe a different file.
            cfg = dataclasses.replace(cfg, hf_hub_id=None, file=None, url=None, download_page=None, sha256=None,
                                      sha1=None, metrics=None, tag=None)
        cfg = cfg.updated(pretrained_cfg)
    return cfg


def _check_has_default_weight(entry: ModelEntry) -> None:
    """Refuse ``pretrained=True`` on a bare name whose network no weight was trained for."""
    name = entry.name
    if entry.pretrained_tags and not entry.default_tag:
        base = entry.cfgs[""]
        layout = "×".join(map(str, base.input_size))
        raise ValueError(
            f"model {name!r} has no pretrained weight for the network it builds ({layout}, {base.num_classes} "
            f"classes, the paper's layers); its weights are for variants of it: name one, "
            f"{', '.join(f'{name}.{t}' for t in entry.pretrained_tags)} (a tag builds its weight's network "
            f"with or without pretrained=True)"
        )
    if not entry.pretrained_tags:
        available = ", ".join(list_models(pretrained=True)) or "none yet"
        raise ValueError(f"model {name!r} has no pretrained weights; models with weights: {available}")


def _source_description(overrides: WeightCfg, pretrained_path: Optional[str], own_source: bool) -> WeightCfg:
    """What the weights say about themselves: the config.json of a path (pretrained_path, or the folder timm's
    local-dir: passes as the cfg's file) or of the caller's Hub repo; empty for any other source."""
    local_source = pretrained_path
    if local_source is None and own_source and overrides.file and Path(overrides.file).expanduser().exists():
        local_source = overrides.file
    if local_source is not None:
        from ..pretrained.load import folder_weight_cfg

        return folder_weight_cfg(local_source)
    if own_source and overrides.hf_hub_id:
        from ..pretrained.load import hub_repo_weight_cfg

        return hub_repo_weight_cfg(overrides.hf_hub_id, overrides.revision)
    return WeightCfg()


def _check_saved_architecture(entry: ModelEntry, saved: Optional[str], source: Optional[str]) -> None:
    """Refuse weights a folder says belong to another architecture (a name of another model class)."""
    if not saved:
        return
    saved_name = lightnets_name(saved)
    if saved_name == entry.name:
        return
    other = catalog.entries().get(saved_name)
    if other is not None and other.model_cls is not None and other.model_cls is entry.model_cls:
        return  # the same network under another name (mobilenet_v1 with alpha=0.25 and mobilenet_v1_025)
    raise ValueError(
        f"{source} holds weights of {saved_name}, not {entry.name}: load it with "
        f"create_model({saved_name!r}, pretrained=True, pretrained_path=...)"
    )


# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------


def _model_kwargs(entry: ModelEntry, cfg: WeightCfg, kwargs: dict[str, Any], num_classes: Optional[int],
                  in_chans: Optional[int], from_weight: bool, strict: bool) -> dict[str, Any]:
    """The caller's arguments, with (for a tag or ``pretrained``) the weight's architecture arguments, classes and
    channels as their defaults, as timm does; with ``strict`` (weights loaded) a contradicting argument is an error."""
    if from_weight:
        apply_weight_args(entry, cfg, kwargs, strict=strict)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    elif from_weight:
        kwargs.setdefault("num_classes", cfg.num_classes)
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    elif from_weight:
        kwargs.setdefault("in_chans", cfg.input_size[0])
    return kwargs


def _check_feature_args(
    features_only: bool, out_indices: Union[None, int, Sequence[int]], feature_cls: Optional[str]
) -> None:
    if not features_only and (out_indices is not None or feature_cls is not None):
        raise TypeError(
            f"out_indices and feature_cls only apply with features_only=True (got out_indices={out_indices!r}, "
            f"feature_cls={feature_cls!r})"
        )
    if feature_cls not in (None, *FEATURE_CLASSES):
        raise ValueError(f"feature_cls must be one of {', '.join(map(repr, FEATURE_CLASSES))} (timm's feature "
                         f"extractors these models take), got {feature_cls!r}")


def _describe(model: nn.Module, cfg: WeightCfg) -> WeightCfg:
    """The cfg of the model as built: its own channels, input size, classes and feature-map size."""
    return cfg.updated(WeightCfg(
        **{key: _per_channel(getattr(cfg, key), model.in_chans) for key in ("mean", "std") if getattr(cfg, key)},
        input_size=(model.in_chans, model.img_size, model.img_size),
        num_classes=model.num_classes,
        pool_size=model.feature_map_size(),  # timm's: the map forward_features returns at input_size
    ))


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    """Normalisation statistics for ``channels`` inputs: as given, one value repeated, or (another channel
    count than the cfg's, e.g. in_chans=1 of an RGB model) the channels' average repeated; timm's
    resolve_data_config takes one value or one per channel."""
    values = tuple(values)
    if len(values) in (1, channels):
        return values * (channels // len(values))
    return (round(sum(values) / len(values), 4),) * channels
