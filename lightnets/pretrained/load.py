"""Load a weight into a model: a pretrained cfg's (resolved, converted, adapted) or a local checkpoint.

A Hub-layout folder (``model.safetensors``, ``config.json`` in timm's schema, a ``README.md`` card)
describes its model: :func:`folder_cfg` and :func:`hub_repo_cfg` read what ``create_model`` must apply
to build it, so a folder written by :func:`lightnets.publish.save_pretrained` loads without repeating
its arguments.

>>> import lightnets
>>> from lightnets.pretrained.manifest import WEIGHTS_DIR
>>> model = lightnets.create_model("smallcnn_3x2.fmnist")
>>> model = load_pretrained(model)  # what create_model("smallcnn_3x2.fmnist", pretrained=True) does
>>> folder_cfg(WEIGHTS_DIR / "smallcnn_3x2.fmnist")["input_size"]
(1, 28, 28)
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NoReturn, Optional, Union

import torch
from torch import nn

from .adapt import adapt_state_dict
from .converted import converted_from_file, converted_from_url
from .download import (
    WeightsUnavailableError,
    _download_from_hub,
    _hub_errors,
    _split_revision,
    _weight_name,
    _weights_file,
    resolve_weights,
)
from .manifest import CONFIG_NAME
from .native import WeightsFileError, is_native, read_weights

__all__ = ["folder_cfg", "hub_repo_cfg", "load_checkpoint", "load_pretrained", "read_config"]

PathLike = Union[str, Path]
StateDict = dict[str, torch.Tensor]


def read_config(path: PathLike) -> dict[str, Any]:
    """The config.json of a Hub-layout folder, or the one beside a weight file ({} for a bare file without one).

    A weight folder must describe its model: a folder without a config.json, or one that is not a readable
    JSON object, is a :class:`~lightnets.pretrained.native.WeightsFileError` naming it, never a silent
    fallback to the bare architecture.

    >>> from lightnets.pretrained.manifest import WEIGHTS_DIR
    >>> read_config(WEIGHTS_DIR / "smallcnn_3x2.fmnist")["lightnets"]["architecture"]
    'smallcnn_3x2'
    """
    path = Path(path).expanduser()
    config_path = (path if path.is_dir() else path.parent) / CONFIG_NAME
    if not config_path.is_file():
        if path.is_dir():
            raise WeightsFileError(
                f"{path} has no {CONFIG_NAME}: a weight folder must say which model it holds (save_pretrained writes "
                f"it). To load a bare weight file as the model you name, pass the file itself: {path / 'model.safetensors'}"
            )
        return {}
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise WeightsFileError(f"{config_path} is not readable JSON ({error}); restore it, or write the folder again "
                               f"with save_pretrained") from None
    if not isinstance(config, dict):
        raise WeightsFileError(f"{config_path} holds a JSON {type(config).__name__}, not an object describing the model")
    if not config:
        raise WeightsFileError(f"{config_path} is an empty object: it does not say which model the folder holds; "
                               f"write the folder again with save_pretrained")
    return config


def folder_cfg(path: PathLike) -> dict[str, Any]:
    """What a Hub-layout folder's config.json (or the one beside a weight file) says about building its model; {} without one.

    ``create_model(name, pretrained=True, pretrained_path=folder)`` applies it, so a folder written by
    :func:`lightnets.publish.save_pretrained` rebuilds its model (``small_input``, ``alpha`` ...) without
    repeating the arguments.
    """
    config = read_config(path)
    if not config:  # a bare weight file: the registered cfg (a tag's arguments) still describes it
        return {}
    _check_config_fields(config, (Path(path).expanduser() if Path(path).expanduser().is_dir() else Path(path).expanduser().parent) / CONFIG_NAME)
    pretrained_cfg = config.get("pretrained_cfg", {})
    cfg = {k: pretrained_cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation", "label_names", "first_conv",
                                          "classifier") if pretrained_cfg.get(k)}
    if "model_args" in config:
        cfg["model_args"] = {k: v for k, v in config["model_args"].items() if k not in ("num_classes", "in_chans")}
    if "num_classes" in config:
        cfg["num_classes"] = config["num_classes"]
    if "input_size" in cfg:
        cfg["input_size"] = tuple(cfg["input_size"])
    info = config.get("lightnets") if isinstance(config.get("lightnets"), dict) else {}
    if info.get("restructured"):
        cfg["restructured"] = True
    # What the folder says it holds: create_model refuses to load it into another architecture, and the
    # loader checks the classifier against its class count.
    saved = info.get("architecture") or config.get("architecture")
    if saved:
        cfg["saved_architecture"] = str(saved)
    cfg["saved_from"] = str(path)
    return cfg


def _check_config_fields(config: dict[str, Any], config_path: Path) -> None:
    """Refuse a config.json whose fields that build or describe the model have the wrong type or value."""

    def refuse(field: str, value: Any, expected: str) -> NoReturn:
        raise WeightsFileError(f"{config_path}: {field} is {value!r}, expected {expected}; write the folder again "
                               f"with save_pretrained")

    def is_int(value: Any, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    for field in ("model_args", "pretrained_cfg"):
        if field in config and not isinstance(config[field], dict):
            refuse(field, config[field], "an object")
    if "num_classes" in config and not is_int(config["num_classes"], 0):
        refuse("num_classes", config["num_classes"], "an integer >= 0")
    if "architecture" in config and not isinstance(config["architecture"], str):
        refuse("architecture", config["architecture"], "a model name")
    if "lightnets" in config and not isinstance(config["lightnets"], dict):
        refuse("lightnets", config["lightnets"], "an object")
    info = config.get("lightnets", {})
    if "architecture" in info and not isinstance(info["architecture"], str):
        refuse("lightnets.architecture", info["architecture"], "a model name")
    cfg = config.get("pretrained_cfg", {})
    size = cfg.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 3 and all(is_int(v, 1) for v in size)):
        refuse("pretrained_cfg.input_size", size, "[channels, height, width], positive integers")
    channels = size[0] if size else None
    for field in ("mean", "std"):
        value = cfg.get(field)
        if value is not None and not (isinstance(value, list) and value and all(is_number(v) for v in value)
                                      and (channels is None or len(value) == channels)
                                      and (field == "mean" or min(value) > 0)):
            refuse(f"pretrained_cfg.{field}", value, f"a list of {channels or 'per-channel'} finite numbers"
                   + (" > 0" if field == "std" else ""))
    crop = cfg.get("crop_pct")
    if crop is not None and not (is_number(crop) and 0 < crop <= 1):
        refuse("pretrained_cfg.crop_pct", crop, "a number in (0, 1]")
    for field in ("interpolation", "first_conv", "classifier"):
        if cfg.get(field) is not None and not (isinstance(cfg[field], str) and cfg[field]):
            refuse(f"pretrained_cfg.{field}", cfg[field], "a non-empty string")
    labels = cfg.get("label_names")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(v, str) for v in labels)):
        refuse("pretrained_cfg.label_names", labels, "a list of class names")


def hub_repo_cfg(hf_hub_id: str, revision: Optional[str] = None) -> dict[str, Any]:
    """What a Hub repo's config.json says about building its model (as :func:`folder_cfg`); empty without one.

    ``create_model(name, pretrained=True, pretrained_cfg={"hf_hub_id": ...})`` applies it, so a repo written by
    :func:`lightnets.publish.save_pretrained` and :func:`lightnets.publish.push_to_hub` rebuilds its model
    without repeating its arguments. A repo without config.json gives {}; a config that cannot be had (offline
    and not cached, a failing Hub) or is malformed (not JSON, not an object, fields of the wrong type) is an
    error, since a model built without its arguments would load the weights silently wrong.
    """
    repo_id, revision = _split_revision(hf_hub_id, revision)
    try:
        path = _download_from_hub(repo_id, CONFIG_NAME, revision, repo_id)
    except WeightsUnavailableError as error:
        errors = _hub_errors()
        if isinstance(error.__cause__, errors.entry_missing) and not isinstance(error.__cause__, errors.not_cached):
            return {}  # a repo of weights only: the registered cfg and the caller's arguments describe it
        raise  # offline without it, or the Hub failing: building without the repo's arguments would be silently wrong
    # A config.json that is there but malformed is refused (naming the file), as a folder's is: building
    # without the arguments it was meant to give could load the weights into the wrong network silently.
    return folder_cfg(path.parent)


def _source_state_dict(cfg: dict[str, Any], pretrained_path: Optional[PathLike]) -> tuple[StateDict, Path]:
    """The state dict a cfg (or ``pretrained_path``) names, in lightnets' layout, and the file it was read from.

    A file in its publisher's format (``.pth.zip``, ``.h5``, ``.pth.tar`` ...) of a cfg with a
    ``source_format`` is converted once and cached as safetensors (:mod:`lightnets.pretrained.converted`).
    """
    name = _weight_name(cfg)
    source_format = cfg.get("source_format")
    first_conv = f"{cfg.get('first_conv') or 'stem.conv'}.weight"
    if pretrained_path is not None:
        path = Path(pretrained_path).expanduser()
        if source_format and path.is_file() and is_native(path):
            return converted_from_file(path, cfg, name, first_conv)
        path = _weights_file(path)
        state_dict = read_weights(path)
    elif source_format and cfg.get("url") and is_native(cfg["url"]) and not (cfg.get("file") or cfg.get("hf_hub_id")):
        return converted_from_url(cfg, name)
    else:
        path = resolve_weights(cfg)
        state_dict = read_weights(path)
    if source_format and first_conv not in state_dict:  # the file is in its publisher's layout
        from .convert import convert_state_dict

        state_dict = convert_state_dict(state_dict, source_format)
    return state_dict, path


def _load_checked(model: nn.Module, state_dict: StateDict, source: Path, strict: bool, left_to_init: set[str] = frozenset()) -> None:
    """load_state_dict with an error that says which keys and shapes do not fit, and what to do."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict and key not in left_to_init]
    unexpected = [key for key in state_dict if key not in own]
    mismatched = [key for key in own if key in state_dict and state_dict[key].shape != own[key].shape]
    if strict and (missing or unexpected or mismatched):
        problems = []
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(
                f"{key} is {tuple(state_dict[key].shape)} in the file, {tuple(own[key].shape)} in the model" for key in mismatched[:5]))
        if missing:
            problems.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise ValueError(
            f"{source} does not fit {architecture}: " + "; ".join(problems)
            + ". Build the model with the arguments the weights were saved with (see the folder's config.json: "
            "model_args, num_classes, in_chans), or load with strict=False"
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in mismatched}, strict=False)


def _take_saved_layers(model: nn.Module, state_dict: StateDict, cfg: dict[str, Any]) -> None:
    """For weights saved from a pruned or converted model (``restructured`` in their cfg), give the built model
    their layers first. The stem's input and the classifier's classes stay the model's: adapting those, or
    refusing a model built for others, is the loader's job."""
    if cfg.get("restructured"):
        from ..models.restructure import restructure

        restructure(model, state_dict, first_conv=cfg.get("first_conv") or "stem.conv",
                    classifier=cfg.get("classifier") or "classifier")


def load_pretrained(model: nn.Module, cfg: Optional[dict[str, Any]] = None, pretrained_path: Optional[PathLike] = None) -> nn.Module:
    """Load the weight a pretrained cfg names (resolution order: :mod:`lightnets.pretrained.download`).

    ``cfg`` defaults to ``model.pretrained_cfg``. A cfg with ``"source_format"`` (e.g. ``"timm_mobilenetv1"``)
    has its state dict converted first (:mod:`lightnets.pretrained.convert`); a file in its publisher's
    format is converted once and cached (:mod:`lightnets.pretrained.converted`). Classifier and first conv are
    adapted when the model's ``num_classes`` / ``in_chans`` differ from the weight's.
    """
    cfg = dict(cfg if cfg is not None else getattr(model, "pretrained_cfg", {}))
    state_dict, path = _source_state_dict(cfg, pretrained_path)
    head = state_dict.get(f"{cfg.get('classifier') or 'classifier'}.weight")
    if cfg.get("saved_from") and cfg.get("num_classes") and head is not None and head.shape[0] != cfg["num_classes"]:
        raise WeightsFileError(f"{cfg['saved_from']}: its {CONFIG_NAME} says {cfg['num_classes']} classes but the classifier "
                               f"in {path.name} has {head.shape[0]} rows; the folder is inconsistent: write it again")
    stem = state_dict.get(f"{cfg.get('first_conv') or 'stem.conv'}.weight")
    declared = (cfg.get("input_size") or (None,))[0]
    if cfg.get("saved_from") and declared and stem is not None and stem.dim() == 4 and _first_conv_groups(model, cfg) == 1 \
            and stem.shape[1] != declared:
        raise WeightsFileError(f"{cfg['saved_from']}: its {CONFIG_NAME} says {declared} input channels but the first conv "
                               f"in {path.name} takes {stem.shape[1]}; the folder is inconsistent: write it again")
    _take_saved_layers(model, state_dict, cfg)
    state_dict, left_to_init = adapt_state_dict(model, state_dict, cfg)
    _load_checked(model, state_dict, path, strict=True, left_to_init=left_to_init)
    return model


def _first_conv_groups(model: nn.Module, cfg: dict[str, Any]) -> Optional[int]:
    try:
        return model.get_submodule(cfg.get("first_conv") or "stem.conv").groups
    except AttributeError:  # no such layer, or not a conv: the strict load reports it
        return None


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True) -> nn.Module:
    """Load a local checkpoint (``.safetensors``, a Hub-layout folder, or a ``.pth`` read with ``weights_only=True``).

    Unlike :func:`load_pretrained` nothing is adapted: a checkpoint must fit the model, and when it
    does not the error lists the keys and shapes that differ. A folder that save_pretrained wrote for a
    pruned or converted model first gives the model its layers (:func:`lightnets.models.restructure.restructure`).

    >>> import tempfile, lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    >>> folder = lightnets.save_pretrained(model, tempfile.mkdtemp())
    >>> load_checkpoint(lightnets.create_model("mobilenet_v1_025", small_input=True), folder)
    Traceback (most recent call last):
    ...
    ValueError: .../model.safetensors does not fit mobilenet_v1_025: shape mismatch: classifier.weight is (10, 256) in the file, (1000, 256) in the model; ...
    """
    path = _weights_file(Path(path).expanduser())
    state_dict = read_weights(path)
    _take_saved_layers(model, state_dict, folder_cfg(path))
    _load_checked(model, state_dict, path, strict=strict)
    return model
