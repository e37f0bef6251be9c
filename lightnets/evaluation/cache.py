"""The accuracy cache: an accuracy measurement that would be repeated exactly is read back instead.

A measurement is a function of the weights' bytes, the data, how the model is fed, the backend and its
batch size, torch and lightnets' own code; :func:`accuracy_cache_key` hashes exactly those, and a result
is kept as ``<key>.json`` under ``$LIGHTNETS_CACHE/accuracy``. Inputs without such an identity (random
init, a module or checkpoint passed in, an image folder, weights without a recorded sha256) have no key
and are always measured.

>>> from lightnets.data import load_dataset
>>> from lightnets.evaluation.candidate import build_candidate
>>> data = load_dataset("fashion_mnist", limit=100)
>>> len(accuracy_cache_key(build_candidate("smallcnn_3x2.fmnist", data), data, "eager", 100))
64
>>> accuracy_cache_key(build_candidate("smallcnn_3x2", data, pretrained=False), data, "eager", 100) is None
True
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from .._io import write_text
from .candidate import Candidate, loaded_by_name

__all__ = ["accuracy_cache_key", "cached_accuracy", "store_accuracy"]

# Datasets whose content is fixed (checksummed files or the embedded split): an image folder can change.
FIXED_DATASETS = ("fashion_mnist", "cifar10")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lightnets/
RESULT_KEYS = {"top1", "top5", "loss", "images"}


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """sha256 of lightnets' own source: any change to the code that builds, exports or scores a model
    makes earlier measurements stale."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def accuracy_cache_key(candidate: Candidate, data: Dataset, backend: str, batch_size: int) -> Optional[str]:
    """What an accuracy measurement is a function of, hashed: the weights' verified sha256, the data (a
    fixed dataset, split and image count), the model's input and normalisation, the backend and its
    batch size, torch and lightnets' code. None when the inputs have no such identity (random init, a
    given module or checkpoint, an image folder, weights without a recorded sha256)."""
    cfg = getattr(candidate.model, "pretrained_cfg", None) or {}
    if not cfg.get("sha256") or not loaded_by_name(candidate) or getattr(data, "name", None) not in FIXED_DATASETS:
        return None
    fields = {"weights": cfg["sha256"], "dataset": data.name, "split": getattr(data, "split", None),
              "images": len(data), "input_size": candidate.input_size, "mean": candidate.mean, "std": candidate.std,
              "backend": backend, "batch_size": batch_size, "torch": torch.__version__, "code": _code_fingerprint()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _folder() -> Path:
    from ..pretrained.converted import cache_dir

    return cache_dir() / "accuracy"


def cached_accuracy(key: Optional[str]) -> Optional[dict[str, Any]]:
    """The result stored under ``key``; None when there is no key, or no readable result (measure again)."""
    if key is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads((_folder() / f"{key}.json").read_text())
        if isinstance(cached, dict) and RESULT_KEYS <= set(cached):
            return cached
    return None


def store_accuracy(key: Optional[str], result: dict[str, Any]) -> None:
    """Keep ``result`` under ``key`` (atomically: a reader sees the old file or the whole new one)."""
    if key is None:
        return
    folder = _folder()
    with contextlib.suppress(OSError):  # a read-only cache only costs the next run a measurement (WriteError is one)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / f"{key}.json", json.dumps(result))
