"""A weight folder's ``config.json``: timm's Hub schema with a ``lightnets`` block, read and written as typed data.

:func:`lightnets.publish.save_pretrained` writes it, ``lightnets-weights index`` and the loaders read it::

    {"architecture": <the name in timm's registry>, "num_classes": ..., "num_features": ...,
     "model_args": {<architecture arguments>, "num_classes": ..., "in_chans": ...},
     "pretrained_cfg": {"input_size", "mean", "std", "crop_pct", "interpolation", "num_classes",
                        "first_conv", "classifier", "license", "label_names"},
     "lightnets": {"architecture", "tag", "version", "dtype", "params", "macs", "metrics", "training",
                   "restructured" (only when true)}}

The ``pretrained_cfg`` and ``lightnets`` blocks are read strictly: a key that is not a field is an error
naming it and the file. The top level is timm's to extend (its ``push_to_hf_hub`` adds what a caller
gives), so a key lightnets does not read there is left alone.

>>> from lightnets.pretrained.manifest import WEIGHTS_DIR
>>> folder = FolderConfig.read(WEIGHTS_DIR / "smallcnn_3x2.fmnist")
>>> folder.cfg.weight_name, folder.cfg.metrics.get("top1").split, folder.timm_architecture
('smallcnn_3x2.fmnist', 'test', 'smallcnn_3x2')
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NoReturn, Optional, Union

from ..weight_cfg import Metrics, WeightCfg
from .manifest import CONFIG_NAME
from .native import WeightsFileError

__all__ = ["FolderConfig", "read_config"]

PathLike = Union[str, Path]

# What the lightnets block of config.json holds (what timm's schema has no field for).
_LIGHTNETS_KEYS = ("architecture", "tag", "version", "dtype", "params", "macs", "metrics", "training", "restructured")
# The pretrained_cfg fields save_pretrained writes, in order.
_PRETRAINED_CFG_FIELDS = ("input_size", "mean", "std", "crop_pct", "interpolation", "num_classes", "first_conv",
                          "classifier", "license", "label_names")
# Arguments timm's hf-hub: loader passes to the entry point with model_args; not architecture arguments.
_IO_ARGS = ("num_classes", "in_chans")


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
    config_path = config_path_of(path)
    if not config_path.is_file():
        if path.is_dir():
            raise WeightsFileError(
                f"{path} has no {CONFIG_NAME}: a weight folder must say which model it holds (save_pretrained writes "
                f"it). To load a bare weight file as the model you name, pass the file itself: "
                f"{path / 'model.safetensors'}"
            )
        return {}
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise WeightsFileError(f"{config_path} is not readable JSON ({error}); restore it, or write the folder again "
                               f"with save_pretrained") from None
    if not isinstance(config, dict):
        raise WeightsFileError(
            f"{config_path} holds a JSON {type(config).__name__}, not an object describing the model"
        )
    if not config:
        raise WeightsFileError(f"{config_path} is an empty object: it does not say which model the folder holds; "
                               f"write the folder again with save_pretrained")
    return config


def config_path_of(path: PathLike) -> Path:
    """The config.json of a folder, or the one beside a file."""
    path = Path(path).expanduser()
    return (path if path.is_dir() else path.parent) / CONFIG_NAME


@dataclass(frozen=True)
class FolderConfig:
    """What a config.json says: the weight's cfg, and the facts about the folder that are not part of it."""

    cfg: WeightCfg  # architecture and tag (lightnets' names), model_args without num_classes / in_chans, ...
    timm_architecture: Optional[str] = None  # the top-level "architecture": the entry point's name in timm's registry
    num_features: Optional[int] = None
    model_args: Optional[Mapping[str, Any]] = None  # as timm passes them to the entry point: with num_classes, in_chans
    version: Optional[str] = None  # of lightnets, which wrote it
    dtype: Optional[str] = None  # of the stored tensors

    @classmethod
    def read(cls, path: PathLike) -> "FolderConfig":
        """The config.json of a folder (or the one beside a weight file), checked and read strictly."""
        config = read_config(path)
        if not config:
            raise WeightsFileError(f"{path} has no {CONFIG_NAME} beside it: nothing describes the weight")
        return cls.from_json(config, config_path_of(path))

    @classmethod
    def from_json(cls, config: Mapping[str, Any], config_path: PathLike) -> "FolderConfig":
        """Read a parsed config.json; a field of the wrong type, or a key the two strict blocks do not have, is a
        :class:`~lightnets.pretrained.native.WeightsFileError` naming the file."""
        _check_config_fields(config, Path(config_path))
        info = config.get("lightnets", {})
        try:
            unknown = sorted(set(info) - set(_LIGHTNETS_KEYS))
            if unknown:
                raise ValueError(f"lightnets: unknown key {unknown[0]!r}; the block has {', '.join(_LIGHTNETS_KEYS)}")
            cfg = WeightCfg.from_dict(config.get("pretrained_cfg", {}), where="pretrained_cfg")
            model_args = config.get("model_args")
            training = info.get("training")
            described = {
                "architecture": info.get("architecture"),
                "tag": info.get("tag"),
                "model_args": (None if model_args is None
                               else {k: v for k, v in model_args.items() if k not in _IO_ARGS}),
                "num_classes": config.get("num_classes", cfg.num_classes),
                "params": info.get("params"),
                "macs": info.get("macs"),
                "metrics": Metrics.from_dict(info["metrics"], where="lightnets.metrics") if "metrics" in info else None,
                "training": training,
                "dataset": (training or {}).get("dataset") or cfg.dataset,
                "restructured": True if info.get("restructured") else None,
            }
            cfg = cfg.updated({key: value for key, value in described.items() if value is not None})
        except (TypeError, ValueError) as error:
            raise WeightsFileError(f"{config_path}: {error}; write the folder again with save_pretrained") from None
        return cls(cfg, timm_architecture=config.get("architecture"), num_features=config.get("num_features"),
                   model_args=model_args, version=info.get("version"), dtype=info.get("dtype"))

    def to_json(self) -> dict[str, Any]:
        """The config.json object save_pretrained writes (keys in its order; None-valued pretrained_cfg fields left
        out)."""
        cfg = self.cfg
        pretrained_cfg = {field: getattr(cfg, field) for field in _PRETRAINED_CFG_FIELDS}
        for field in ("input_size", "mean", "std", "label_names"):
            if pretrained_cfg[field] is not None:
                pretrained_cfg[field] = list(pretrained_cfg[field])
        info: dict[str, Any] = {
            "architecture": cfg.architecture,
            "tag": cfg.tag,
            "version": self.version,
            "dtype": self.dtype,
            "params": cfg.params,
            "macs": cfg.macs,
            "metrics": cfg.metrics.to_dict() if cfg.metrics is not None else {},
            "training": dict(cfg.training or {}),
        }
        if cfg.restructured:
            info["restructured"] = True
        return {
            "architecture": self.timm_architecture,  # timm's hf-hub: loader finds our entry point by this name
            "num_classes": cfg.num_classes,
            "num_features": self.num_features,
            # num_classes / in_chans also here: timm passes model_args to the entry point as keyword arguments.
            "model_args": dict(self.model_args or {}),
            "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v is not None},
            "lightnets": info,
        }


def _check_config_fields(config: Mapping[str, Any], config_path: Path) -> None:
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
