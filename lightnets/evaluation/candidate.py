"""A model ready to be measured (:class:`Candidate`), and how the harness builds one from a name.

A candidate's ``tag`` says where its weights come from: a weight's tag (``fmnist``, ``osmr_in1k``, ...),
:data:`RANDOM_INIT`, :data:`GIVEN` (a module passed in) or ``ckpt:<file>``. How it is fed (side, channels,
mean / std, eval transform) is :func:`lightnets.inputs.resolve_input_config`'s rule, the one training and
the sensitivity analysis follow too.

>>> from lightnets.data import load_dataset
>>> candidate = build_candidate("smallcnn_3x2.fmnist", load_dataset("fashion_mnist", limit=10))
>>> candidate.tag, candidate.input_size, candidate.mean
('fmnist', (1, 28, 28), (0.286,))
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from ..inputs import resolve_input_config

__all__ = ["Candidate", "ModelSpec", "RANDOM_INIT", "GIVEN", "build_candidate", "loaded_by_name"]

ModelSpec = Union[str, nn.Module]
RANDOM_INIT = "random init"
GIVEN = "given"
CHECKPOINT_PREFIX = "ckpt:"


@dataclass
class Candidate:
    """A model ready to be measured, with what it needs to be fed."""

    label: str
    tag: str
    model: nn.Module
    input_size: tuple[int, int, int]  # (C, H, W) the model is evaluated at
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float  # the eval transform of its weights (timm's): resize to side / crop_pct, center-crop the side
    interpolation: str = "bilinear"


def loaded_by_name(candidate: Candidate) -> bool:
    """Whether the candidate holds a registered weight, created by name (not random init, a module or a checkpoint)."""
    return candidate.tag not in (RANDOM_INIT, GIVEN) and not candidate.tag.startswith(CHECKPOINT_PREFIX)


def native_shape(dataset: Optional[Dataset]) -> tuple[Optional[int], Optional[int]]:
    """(channels, side) of a dataset's images when it has one size (the in-memory ones), else (None, None)."""
    images = getattr(dataset, "images", None)
    if images is None:
        return (3, None) if dataset is not None else (None, None)
    return images.shape[1], (images.shape[2] if images.shape[2] == images.shape[3] else None)


def _create(spec: str, dataset: Optional[Dataset], pretrained: Optional[bool], checkpoint: Optional[str],
            img_size: Optional[int], small_input: bool) -> tuple[nn.Module, str, bool]:
    """(model, tag, whether it normalises with the dataset's statistics) for a registered name."""
    from ..registry import create_model, list_pretrained, model_arguments, split_model_name

    name, weight_tag = split_model_name(spec)
    accepted = model_arguments(name)
    data_chans, data_side = native_shape(dataset)
    kwargs: dict[str, Any] = {}
    if small_input and "small_input" in accepted:
        kwargs["small_input"] = True
    if small_input or checkpoint:  # built for the dataset: its size and channels
        if data_side and "img_size" in accepted:
            kwargs["img_size"] = data_side
        if data_chans:
            kwargs["in_chans"] = data_chans
    if img_size is not None and "img_size" in accepted:
        kwargs["img_size"] = img_size
    classes = len(dataset.classes) if dataset is not None else None

    if checkpoint:
        from ..pretrained import load_checkpoint, read_config

        config = read_config(checkpoint)  # a Hub-layout folder says how to rebuild its model
        kwargs.update(config.get("model_args", {}))
        kwargs.setdefault("num_classes", config.get("num_classes") or classes)
        model = load_checkpoint(create_model(name, **kwargs), checkpoint)
        saved_cfg = config.get("pretrained_cfg", {})
        model.pretrained_cfg.update({key: tuple(saved_cfg[key]) for key in ("mean", "std") if saved_cfg.get(key)})
        model.pretrained_cfg.update(
            {key: saved_cfg[key] for key in ("crop_pct", "interpolation") if saved_cfg.get(key)}
        )
        return model, f"{CHECKPOINT_PREFIX}{Path(checkpoint).name}", not saved_cfg.get("mean")
    if pretrained is None:  # auto: the weights when there are any, those trained on this dataset first
        from ..registry import get_pretrained_cfg

        tags = [tag for tag in list_pretrained(name) if split_model_name(tag)[0] == name]
        data_name = getattr(dataset, "name", None)
        own = [tag for tag in tags if data_name and get_pretrained_cfg(tag).get("dataset") == data_name]
        # A bare name without a weight for this data loads its default weight, if it has one.
        pretrained = bool(weight_tag) or bool(own) or (bool(tags) and get_pretrained_cfg(name)["tag"] is not None)
        if not weight_tag and own:
            spec = own[0]
    if pretrained:
        model = create_model(spec, pretrained=True, **kwargs)
        return model, model.pretrained_cfg.get("tag") or "", False
    if classes:
        kwargs.setdefault("num_classes", classes)
    # A tagged name without its weights is the architecture they were trained with (create_model's rule).
    return create_model(spec, **kwargs), RANDOM_INIT, True


def build_candidate(spec: ModelSpec, dataset: Optional[Dataset], *, pretrained: Optional[bool] = None,
                    checkpoint: Optional[str] = None, img_size: Optional[int] = None,
                    small_input: bool = False, accuracy: bool = True) -> Candidate:
    """Create one model for evaluation on ``dataset`` (None: synthetic input) and say how to feed it.

    Random init: the model as registered, with the dataset's number of classes. ``small_input``: the
    small-image form at the dataset's size and channels. Pretrained: the weight's own cfg. A checkpoint:
    the arguments in its config.json, else (a bare weight file) the dataset's classes, channels and side.
    Models that were not given normalise with the dataset's mean / std when they were (or will be) trained
    on it, else with their cfg's (:func:`lightnets.inputs.resolve_input_config`). With ``accuracy``, a model
    that predicts another number of classes than the dataset has is an error.
    """
    if isinstance(spec, nn.Module):
        model, tag, use_data_stats = spec, GIVEN, False
        label = getattr(spec, "pretrained_cfg", {}).get("architecture") or type(spec).__name__
    else:
        model, tag, use_data_stats = _create(spec, dataset, pretrained, checkpoint, img_size, small_input)
        label = spec
    fed = resolve_input_config(model, img_size=img_size, trained_on=dataset if use_data_stats else None)
    candidate = Candidate(label, tag, model.eval(), fed.input_size, fed.mean, fed.std, fed.crop_pct, fed.interpolation)
    classes = len(dataset.classes) if dataset is not None and accuracy else None
    _check_feedable(candidate, native_shape(dataset)[0], classes)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if classes is not None and cfg.get("label_names") and tag != RANDOM_INIT \
            and list(cfg["label_names"]) != list(dataset.classes):
        warnings.warn(
            f"{label} ({tag}) was trained on the classes {_few(cfg['label_names'])} but the dataset's are "
            f"{_few(dataset.classes)}: its accuracy is measured against labels it did not learn",
            stacklevel=2,
        )
    return candidate


def _few(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(map(str, names[:shown])) + (f" ... ({len(names)})" if len(names) > shown else "")


def _check_feedable(candidate: Candidate, data_chans: Optional[int], classes: Optional[int]) -> None:
    in_chans, side, _ = candidate.input_size
    if (
        data_chans is not None
        and data_chans != in_chans
        and not (data_chans == 1 or (data_chans == 3 and in_chans == 1))
    ):
        raise ValueError(f"{candidate.label} takes {in_chans}-channel input; the dataset's {data_chans}-channel images "
                         "cannot be converted to it")
    check_input = getattr(candidate.model, "check_input", None)
    if check_input is not None:
        try:
            check_input(torch.zeros(1, in_chans, side, side))
        except ValueError as err:
            raise ValueError(f"{candidate.label} cannot be evaluated at {in_chans}x{side}x{side}: {err}") from err
    num_classes = getattr(candidate.model, "num_classes", None)
    if classes is not None and num_classes is not None and num_classes != classes:
        raise ValueError(
            f"{candidate.label} ({candidate.tag}) predicts {num_classes} classes but the dataset has {classes}; "
            "evaluate a checkpoint trained on this dataset, or measure it with --no-accuracy"
        )
