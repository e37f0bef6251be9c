"""Recorded accuracy: a bundled weight's top-1 / top-5 as ``weights/index.json`` records them, taken in place
of a measurement that would ask exactly the same question.

The index records each weight's accuracy as measured when it was published (eager, float32, on the whole
test split); tests/pretrained/test_bundled_weights.py measures it again and requires the same figures.
``python -m eval`` shows these by default, so the zoo table answers in seconds.

>>> from lightnets.data import load_dataset
>>> from lightnets.evaluation.candidate import build_candidate
>>> data = load_dataset("fashion_mnist")
>>> recorded_accuracy(build_candidate("smallcnn_3x2.fmnist", data), data)["loss"] is None
True
>>> recorded_accuracy(build_candidate("smallcnn_3x2.fmnist", data), load_dataset("fashion_mnist", limit=10)) is None
True
"""
from __future__ import annotations

import functools
from typing import Any, Optional

from torch.utils.data import Dataset

from .candidate import Candidate, loaded_by_name

__all__ = ["recorded_accuracy"]


@functools.lru_cache(maxsize=1)
def _bundled_by_sha256() -> dict[str, dict[str, Any]]:
    """weights/index.json's cfgs keyed by their file's sha256, read once; empty when the manifest is unreadable."""
    from ..pretrained.manifest import ManifestError, bundled_cfgs

    try:
        return {cfg["sha256"]: cfg for cfg in bundled_cfgs().values()}
    except ManifestError:
        return {}


def recorded_accuracy(candidate: Candidate, data: Dataset) -> Optional[dict[str, Any]]:
    """A bundled weight's top-1 / top-5 as ``weights/index.json`` records them (measured eager, float32; re-measured by
    tests/pretrained/test_bundled_weights.py) when they answer exactly this question: the same bytes, a lightnets
    measurement (not a source's reported figure), dataset, split, image count, input size and normalisation.
    None otherwise."""
    sha256 = (getattr(candidate.model, "pretrained_cfg", None) or {}).get("sha256")
    entry = _bundled_by_sha256().get(sha256) if sha256 and loaded_by_name(candidate) else None
    metrics = (entry or {}).get("metrics") or {}
    if entry is None or "reported_by" in metrics or not {"top1", "top5", "images"} <= set(metrics):
        return None
    asked = (getattr(data, "name", None), getattr(data, "split", None), len(data), candidate.input_size,
             tuple(candidate.mean), tuple(candidate.std))
    recorded = (metrics.get("dataset"), metrics.get("split"), metrics["images"], tuple(entry["input_size"]),
                tuple(entry["mean"]), tuple(entry["std"]))
    if asked != recorded:
        return None
    return {"top1": metrics["top1"], "top5": metrics["top5"], "loss": None, "images": metrics["images"]}
