"""Where the bundled weights live and what their manifest (``weights/index.json``) says.

A weight folder is in Hub layout: :data:`WEIGHTS_NAME`, :data:`CONFIG_NAME` and :data:`CARD_NAME`.
The registry reads the manifest at import to give every bundled weight its pretrained cfg; writing
it is :func:`lightnets.publish.build_index`'s job (``lightnets-weights index``). An entry reads into a
:class:`~lightnets.weight_cfg.WeightCfg` (:func:`entry_weight_cfg`) and is written from one
(:func:`index_entry`); a key the manifest does not have is an error naming it.

>>> WEIGHTS_DIR.name, INDEX_NAME
('weights', 'index.json')
>>> "smallcnn_3x2.fmnist" in read_index(WEIGHTS_DIR)
True
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..weight_cfg import WeightCfg

__all__ = ["INDEX_NAME", "WEIGHTS_DIR", "WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME", "ManifestError", "bundled_cfgs",
           "bundled_weight_cfgs", "entry_weight_cfg", "index_entry", "read_index"]

INDEX_NAME = "index.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

# lightnets/ (this file is lightnets/pretrained/manifest.py)
PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKOUT_WEIGHTS_DIR = PACKAGE_DIR.parent / "weights"  # weights/ beside the package in a source checkout
INSTALLED_WEIGHTS_DIR = PACKAGE_DIR / "weights"  # pyproject.toml installs weights/ as lightnets/weights


def _weights_dir() -> Path:
    """weights/ beside the package in a source checkout, lightnets/weights in an installed wheel;
    LIGHTNETS_WEIGHTS_DIR points elsewhere."""
    if os.environ.get("LIGHTNETS_WEIGHTS_DIR"):
        return Path(os.environ["LIGHTNETS_WEIGHTS_DIR"])
    return INSTALLED_WEIGHTS_DIR if (INSTALLED_WEIGHTS_DIR / INDEX_NAME).is_file() else CHECKOUT_WEIGHTS_DIR


# Read at call time (``manifest.WEIGHTS_DIR``) by the loaders and by save_pretrained, so tests can point it elsewhere.
WEIGHTS_DIR = _weights_dir()


class ManifestError(ValueError):
    """``index.json`` exists but is not a readable manifest; the message names it and how to rebuild it."""


def read_index(weights_dir: Union[str, os.PathLike]) -> dict[str, dict[str, Any]]:
    """The ``weights`` mapping of ``<weights_dir>/index.json`` (empty if there is none).

    A file that is not a JSON object with a ``weights`` object of objects is an error naming it.
    """
    index = Path(weights_dir) / INDEX_NAME
    if not index.is_file():
        return {}
    try:
        weights = json.loads(index.read_text())["weights"]
        if not isinstance(weights, dict) or not all(isinstance(entry, dict) for entry in weights.values()):
            raise TypeError("'weights' must map each name.tag to an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ManifestError(
            f"{index} is not a readable weights manifest ({type(error).__name__}: {error}); restore it "
            f"(`git checkout -- {index}` in a source checkout) or rebuild it with `lightnets-weights index`"
        ) from None
    return weights


def bundled_weight_cfgs(weights_dir: Optional[Union[str, os.PathLike]] = None) -> dict[str, WeightCfg]:
    """The cfg each bundled weight gives its ``name.tag``, keyed so (what a family's ``default_cfgs`` holds).

    ``weights_dir`` defaults to :data:`WEIGHTS_DIR`. How a weight was trained stays in the manifest and its
    model card: it is not part of the cfg a model carries.

    >>> cfg = bundled_weight_cfgs()["smallcnn_3x2.fmnist"]
    >>> cfg.file, cfg.dataset, cfg.training
    ('smallcnn_3x2.fmnist', 'fashion_mnist', None)
    """
    cfgs = {}
    for name, entry in read_index(WEIGHTS_DIR if weights_dir is None else weights_dir).items():
        try:
            cfg = entry_weight_cfg(entry)
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{INDEX_NAME}: the entry {name!r} is incomplete or malformed ({type(error).__name__}: "
                                f"{error}); rebuild the manifest with `lightnets-weights index`") from None
        cfgs[name] = dataclasses.replace(cfg, training=None)
    return cfgs


def bundled_cfgs(weights_dir: Optional[Union[str, os.PathLike]] = None) -> dict[str, dict[str, Any]]:
    """:func:`bundled_weight_cfgs` as plain dicts.

    >>> cfg = bundled_cfgs()["smallcnn_3x2.fmnist"]
    >>> cfg["file"], cfg["input_size"], cfg["num_classes"]
    ('smallcnn_3x2.fmnist', (1, 28, 28), 10)
    """
    return {name: cfg.to_dict() for name, cfg in bundled_weight_cfgs(weights_dir).items()}


# The keys of a manifest entry; the first ones must be there.
_REQUIRED_KEYS = ("folder", "sha256", "model_args", "num_classes", "input_size", "mean", "std", "params", "macs",
                  "metrics")
_OPTIONAL_KEYS = ("hf_hub_id", "crop_pct", "interpolation", "label_names", "license", "training", "restructured")


def entry_weight_cfg(entry: Mapping[str, Any]) -> WeightCfg:
    """One manifest entry as a weight cfg; a KeyError for a missing field, a ValueError for one it does not have.

    >>> entry_weight_cfg(read_index(WEIGHTS_DIR)["smallcnn_3x2.fmnist"]).metrics.get("top1").split
    'test'
    """
    unknown = sorted(set(entry) - {*_REQUIRED_KEYS, *_OPTIONAL_KEYS})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; an entry has {', '.join((*_REQUIRED_KEYS, *_OPTIONAL_KEYS))}")
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise KeyError(missing[0])
    training = entry.get("training")
    return WeightCfg.from_dict({
        "file": entry["folder"],
        "sha256": entry["sha256"],
        "hf_hub_id": entry.get("hf_hub_id") or None,
        "model_args": dict(entry["model_args"]),
        "num_classes": entry["num_classes"],
        "input_size": entry["input_size"],
        "mean": entry["mean"],
        "std": entry["std"],
        "crop_pct": entry.get("crop_pct"),
        "interpolation": entry.get("interpolation"),
        "label_names": entry.get("label_names"),
        "license": entry.get("license"),
        "dataset": (training or {}).get("dataset"),
        "metrics": entry["metrics"],
        "params": entry["params"],
        "macs": entry["macs"],
        "restructured": True if entry.get("restructured") else None,
        "training": training,
    }, where=f"{INDEX_NAME} entry")


def index_entry(cfg: WeightCfg) -> dict[str, Any]:
    """The manifest entry of a bundled weight's cfg (its ``file`` is the folder's name), as build_index writes it.

    >>> entry = read_index(WEIGHTS_DIR)["smallcnn_3x2.fmnist"]
    >>> index_entry(entry_weight_cfg(entry)) == entry
    True
    """
    entry = {
        "folder": cfg.file,
        "sha256": cfg.sha256,
        "hf_hub_id": cfg.hf_hub_id,  # set by hand once published
        "model_args": dict(cfg.model_args or {}),
        "num_classes": cfg.num_classes,
        "input_size": _json_list(cfg.input_size),
        "mean": _json_list(cfg.mean),
        "std": _json_list(cfg.std),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
        "label_names": _json_list(cfg.label_names),
        "license": cfg.license,
        "params": cfg.params,
        "macs": cfg.macs,
        "metrics": cfg.metrics.to_dict() if cfg.metrics is not None else {},
        "training": dict(cfg.training or {}),
    }
    if cfg.restructured:  # pruned / converted: loading gives the built model these layers
        entry["restructured"] = True
    return entry


def _json_list(values: Optional[tuple[Any, ...]]) -> Optional[list[Any]]:
    return None if values is None else list(values)
