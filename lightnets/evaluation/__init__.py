"""Evaluation: accuracy, parameters, MACs, latency and memory of models, side by side, and its command line.

One concept per module:

* :mod:`~lightnets.evaluation.engine` — :func:`evaluate`, one row per model;
* :mod:`~lightnets.evaluation.candidate` — a model ready to be measured and how it is built and fed;
* :mod:`~lightnets.evaluation.measure` — how accuracy, latency and peak memory are measured;
* :mod:`~lightnets.evaluation.backends` — what the accuracy pass runs on (eager, ONNX Runtime, OpenVINO);
* :mod:`~lightnets.evaluation.cache` — the accuracy cache (an identical measurement is read back);
* :mod:`~lightnets.evaluation.recorded` — a bundled weight's accuracy as ``weights/index.json`` records it;
* :mod:`~lightnets.evaluation.report` — the rows as a table, Markdown, CSV or JSON, with the footer;
* :mod:`~lightnets.evaluation.figure` — the model-zoo figure (top-1 against MACs and latency);
* :mod:`~lightnets.evaluation.cli` — ``python -m eval`` / ``lightnets-eval`` / ``python -m lightnets.eval``.

What a model is fed is :mod:`lightnets.inputs`' rule, what it ran on :mod:`lightnets.machine`'s description.
Each name below loads its module on first use, so the command line answers ``--help`` before torch loads.

>>> from lightnets.evaluation import evaluate
>>> row, = evaluate(["smallcnn_3x2.fmnist"], limit=100, latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False)
>>> row["tag"], row["input_size"], row["images"]
('fmnist', '1x28x28', 100)
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package (or of lightnets) that defines it
_LAZY = {
    "evaluate": ".engine",
    "Candidate": ".candidate",
    "ModelSpec": ".candidate",
    "RANDOM_INIT": ".candidate",
    "build_candidate": ".candidate",
    "measure_accuracy": ".measure",
    "measure_latency": ".measure",
    "measure_peak_memory": ".measure",
    "random_input": ".measure",
    "percentile": ".measure",
    "ACCURACY_BACKENDS": ".backends",
    "accuracy_backend": ".backends",
    "accuracy_cache_key": ".cache",
    "recorded_accuracy": ".recorded",
    "FORMATS": ".report",
    "render": ".report",
    "plot": ".figure",
    "pareto_front": ".figure",
    "environment": "..machine",
    "machine_load": "..machine",
    "BUSY_LOAD_PER_CORE": "..machine",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'lightnets.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
