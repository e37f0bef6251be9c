"""Where the bundled weights live and what their manifest (``weights/index.json``) says.

A weight folder is in Hub layout: :data:`WEIGHTS_NAME`, :data:`CONFIG_NAME` and :data:`CARD_NAME`.
The registry reads the manifest at import to give every bundled weight its pretrained cfg; writing
it is :func:`lightnets.publish.build_index`'s job (``lightnets-weights index``).

>>> WEIGHTS_DIR.name, INDEX_NAME
('weights', 'index.json')
>>> "smallcnn_3x2.fmnist" in read_index(WEIGHTS_DIR)
True
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["INDEX_NAME", "WEIGHTS_DIR", "WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME", "ManifestError", "bundled_cfgs", "read_index"]

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
        raise ManifestError(f"{index} is not a readable weights manifest ({type(error).__name__}: {error}); restore it "
                          f"(`git checkout -- {index}` in a source checkout) or rebuild it with `lightnets-weights index`") from None
    return weights


def bundled_cfgs(weights_dir: Optional[Union[str, os.PathLike]] = None) -> dict[str, dict[str, Any]]:
    """Pretrained cfgs of the bundled weights, keyed ``"name.tag"`` (what a family's ``default_cfgs`` holds).

    ``weights_dir`` defaults to :data:`WEIGHTS_DIR`.

    >>> cfg = bundled_cfgs()["smallcnn_3x2.fmnist"]
    >>> cfg["file"], cfg["input_size"], cfg["num_classes"]
    ('smallcnn_3x2.fmnist', (1, 28, 28), 10)
    """
    cfgs = {}
    for name, entry in read_index(WEIGHTS_DIR if weights_dir is None else weights_dir).items():
        try:
            cfg = _entry_cfg(entry)
        except (KeyError, TypeError, ValueError) as error:
            raise ManifestError(f"{INDEX_NAME}: the entry {name!r} is incomplete or malformed ({type(error).__name__}: "
                                f"{error}); rebuild the manifest with `lightnets-weights index`") from None
        cfgs[name] = {k: v for k, v in cfg.items() if v is not None}
    return cfgs


def _entry_cfg(entry: dict[str, Any]) -> dict[str, Any]:
    """One manifest entry as a pretrained cfg; a KeyError/TypeError for a missing or mistyped field."""
    cfg = {
        "file": entry["folder"],
        "sha256": entry["sha256"],
        "model_args": dict(entry["model_args"]),
        "num_classes": entry["num_classes"],
        "input_size": tuple(entry["input_size"]),
        "mean": tuple(entry["mean"]),
        "std": tuple(entry["std"]),
        "crop_pct": entry.get("crop_pct"),
        "interpolation": entry.get("interpolation"),
        "label_names": entry.get("label_names"),
        "license": entry.get("license"),
        "dataset": (entry.get("training") or {}).get("dataset"),
        "metrics": entry["metrics"],
        "params": entry["params"],
        "macs": entry["macs"],
    }
    if entry.get("hf_hub_id"):
        cfg["hf_hub_id"] = entry["hf_hub_id"]
    if entry.get("restructured"):
        cfg["restructured"] = True
    return cfg
