"""The manifest of the bundled weights (weights/index.json), read without the Hub machinery.

The registry reads it at import to give every bundled weight its pretrained cfg; writing it and
loading the weights is :mod:`lightnets.hub`'s job (``python -m lightnets.hub index``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

__all__ = ["INDEX_NAME", "WEIGHTS_DIR", "bundled_cfgs", "read_index"]

INDEX_NAME = "index.json"


def _weights_dir() -> Path:
    """weights/ beside the package in a source checkout, lightnets/weights in an installed wheel;
    LIGHTNETS_WEIGHTS_DIR points elsewhere."""
    if os.environ.get("LIGHTNETS_WEIGHTS_DIR"):
        return Path(os.environ["LIGHTNETS_WEIGHTS_DIR"])
    package = Path(__file__).resolve().parent
    checkout, installed = package.parent / "weights", package / "weights"
    return installed if (installed / INDEX_NAME).is_file() else checkout


WEIGHTS_DIR = _weights_dir()


def read_index(weights_dir: Union[str, os.PathLike]) -> dict[str, dict[str, Any]]:
    """The ``weights`` mapping of ``<weights_dir>/index.json`` (empty if there is none)."""
    index = Path(weights_dir) / INDEX_NAME
    return json.loads(index.read_text())["weights"] if index.is_file() else {}


def bundled_cfgs(weights_dir: Union[str, os.PathLike] = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """Pretrained cfgs of the bundled weights, keyed ``"name.tag"`` (what a family's ``default_cfgs`` holds).

    >>> isinstance(bundled_cfgs(), dict)
    True
    """
    cfgs = {}
    for name, entry in read_index(weights_dir).items():
        cfg = {
            "file": entry["folder"],
            "sha256": entry["sha256"],
            "model_args": entry["model_args"],
            "num_classes": entry["num_classes"],
            "input_size": tuple(entry["input_size"]),
            "mean": tuple(entry["mean"]),
            "std": tuple(entry["std"]),
            "crop_pct": entry.get("crop_pct"),
            "interpolation": entry.get("interpolation"),
            "label_names": entry.get("label_names"),
            "license": entry.get("license"),
            "dataset": entry.get("training", {}).get("dataset"),
            "metrics": entry["metrics"],
            "params": entry["params"],
            "macs": entry["macs"],
        }
        if entry.get("hf_hub_id"):
            cfg["hf_hub_id"] = entry["hf_hub_id"]
        if entry.get("restructured"):
            cfg["restructured"] = True
        cfgs[name] = {k: v for k, v in cfg.items() if v is not None}
    return cfgs
