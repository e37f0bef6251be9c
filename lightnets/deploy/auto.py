"""``backend="auto"``: the inference path that is actually fastest for this model, at this input and batch size, on
this machine — measured, not taken from a table made on another CPU.

Each candidate of :data:`AUTO_CANDIDATES` that is installed is built (BatchNorm folded, exported) and timed
side by side on the same input, in interleaved rounds so a drift in the machine's speed hits all of them; the
fastest wins. The choice is kept under ``$LIGHTNETS_CACHE/backends/<key>.json``, the key hashing what the
ranking depends on: the sha256 of the state dict, the input shape (batch size included), the CPU model, the
thread count and the versions of torch, ONNX Runtime, OpenVINO and lightnets. A measurement taken while the
machine is busy is used but not kept, so a later idle run measures
again (:func:`lightnets.machine.others_busy`: other processes' CPU use, sampled just before measuring, so
a long run's own earlier work does not count). ``LIGHTNETS_AUTO_BACKEND=NAME`` pins the choice without
measuring (a reproducible setup, a test suite). Measured on the 2-core EPYC of issue #41 at batch 1, 224 px:
ShuffleNet g = 3 ran 2.3× faster on
OpenVINO than on ONNX Runtime and MobileNet v1 1.0 1.3× faster on ONNX Runtime than on OpenVINO, so no fixed
order is right for both.

>>> import torch, lightnets
>>> model = lightnets.create_model("smallcnn_3x2", num_classes=4).eval()
>>> choice = choose_backend(model, torch.zeros(1, 3, 28, 28), candidates=("eager", "torchscript"), cache=False)
>>> choice.backend in ("eager", "torchscript"), sorted(choice.milliseconds)
(True, ['eager', 'torchscript'])
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .._io import write_text
from ..machine import cpu_name, library_versions, others_busy

__all__ = ["AUTO_CANDIDATES", "BATCH_1_CANDIDATES", "AutoChoice", "auto_cache_key", "choose_backend"]

# torch.compile is left out (minutes of compilation for a model; opt in by name), and so are the int8 paths,
# which change the numbers and need calibration images. The on-device files take one image: they compete at
# batch 1 only, where LiteRT's XNNPACK ran MobileNet v1 0.25 at 64 px 2-3x faster than ONNX Runtime here.
AUTO_CANDIDATES = ("onnxruntime", "openvino", "torchscript", "eager")
BATCH_1_CANDIDATES = ("litert", "executorch")
ROUNDS = 5
MIN_ROUND_SECONDS = 0.1  # per candidate and round: enough calls that a millisecond model is not timer noise


@dataclass
class AutoChoice:
    """The backend picked, each candidate's measured milliseconds per call, whether the choice came from the
    cache, and whether the machine was busy while it was measured (then it was not cached)."""

    backend: str
    milliseconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    busy: bool = False
    runner: Optional[nn.Module] = field(default=None, repr=False)  # the winner, built, when it was measured now


def _state_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def auto_cache_key(model: nn.Module, example_input: torch.Tensor, num_threads: Optional[int] = None,
                   candidates: Sequence[str] = AUTO_CANDIDATES) -> str:
    """sha256 of what the ranking of backends depends on (see the module's description)."""
    from .. import __version__

    fields = {"state": _state_sha256(model), "input": list(example_input.shape), "dtype": str(example_input.dtype),
              "cpu": cpu_name(), "threads": num_threads or torch.get_num_threads(), "candidates": list(candidates),
              "versions": {**library_versions(["torch", "onnxruntime", "openvino"]), "lightnets": __version__}}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _cache_file(key: str) -> Path:
    from ..pretrained.converted import cache_dir

    return cache_dir() / "backends" / f"{key}.json"


def _read_cached(key: str, candidates: Sequence[str]) -> Optional[AutoChoice]:
    with contextlib.suppress(OSError, ValueError, TypeError):
        saved = json.loads(_cache_file(key).read_text())
        if saved.get("backend") in candidates:
            return AutoChoice(saved["backend"], dict(saved.get("milliseconds", {})), cached=True)
    return None


def _milliseconds_per_call(runner: Callable[[torch.Tensor], Any], example_input: torch.Tensor) -> float:
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < MIN_ROUND_SECONDS:
        runner(example_input)
        calls += 1
    return 1000 * (time.perf_counter() - started) / calls


def choose_backend(model: nn.Module, example_input: torch.Tensor, *, num_threads: Optional[int] = None,
                   candidates: Optional[Sequence[str]] = None, cache: bool = True,
                   build: Optional[Callable[[str], nn.Module]] = None, spin_wait: bool = False) -> AutoChoice:
    """The fastest of ``candidates`` (default: the installed ones of :data:`AUTO_CANDIDATES`, and at batch 1 of
    :data:`BATCH_1_CANDIDATES` too) for ``model`` on ``example_input`` (its batch size is part of the question),
    from the cache or measured now.

    ``build(backend)`` makes a candidate's runner (default: :func:`lightnets.optimize_for_inference` with this
    input, ``num_threads`` and ``spin_wait``); a candidate that fails to build here is left out. ONNX Runtime is
    measured without spin-waiting by default: its idle threads spinning for work take the cores from the
    candidate timed next (up to 2.6× slower here), which would rank the others unfairly. ``cache=False`` neither
    reads nor writes the cache.
    """
    from . import available_backends, optimize_for_inference

    installed = available_backends()
    pinned = os.environ.get("LIGHTNETS_AUTO_BACKEND") if candidates is None else None  # explicit ones: measure
    if pinned:
        if pinned not in installed:
            raise ValueError(f"LIGHTNETS_AUTO_BACKEND={pinned} is not an installed backend; installed: "
                             f"{', '.join(installed)}")
        return AutoChoice(pinned)
    default = AUTO_CANDIDATES + (BATCH_1_CANDIDATES if len(example_input) == 1 else ())
    candidates = [name for name in (candidates or default) if name in installed]
    if not candidates:
        raise ValueError(f"none of the candidates is installed here (installed: {', '.join(installed)})")
    key = auto_cache_key(model, example_input, num_threads, candidates)
    if cache:
        cached = _read_cached(key, candidates)
        if cached is not None:
            return cached
    busy = others_busy()  # before this measurement's own work; earlier work of this process does not count
    build = build or (lambda name: optimize_for_inference(model, name, example_input=example_input,
                                                          num_threads=num_threads, spin_wait=spin_wait))
    runners: dict[str, nn.Module] = {}
    failures: dict[str, str] = {}
    for name in candidates:
        try:
            runner = build(name)
            with torch.inference_mode():
                runner(example_input)  # warm-up: OpenVINO compiles and ORT plans on the first call
            runners[name] = runner
        except Exception as error:  # noqa: BLE001 - a backend that cannot take this model is not a candidate
            failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if not runners:
        raise ValueError("no candidate backend could run this model: "
                         + "; ".join(f"{name}: {why}" for name, why in failures.items()))
    timings: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for _ in range(ROUNDS):
            for name, runner in runners.items():
                timings[name].append(_milliseconds_per_call(runner, example_input))
    milliseconds = {name: round(statistics.median(values), 4) for name, values in timings.items()}
    best = min(milliseconds, key=milliseconds.get)
    if cache and not busy:
        with contextlib.suppress(OSError):  # a read-only cache costs the next call a measurement, nothing more
            write_text(_cache_file(key), json.dumps({"backend": best, "milliseconds": milliseconds}), parents=True)
    return AutoChoice(best, milliseconds, cached=False, busy=busy, runner=runners[best])
