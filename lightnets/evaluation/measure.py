"""How each number of the eval harness is measured: accuracy, latency, peak memory.

:mod:`lightnets.evaluation.engine` builds the models and puts the numbers together into rows; this module
holds the measurements themselves, one function each, on a :class:`~lightnets.evaluation.candidate.Candidate`
(a model and how to feed it).

How latency is measured: every model in ``torch.inference_mode()`` and eval mode, on in-memory
random input (the same N(0, 1) tensor for every model of the same input size), at a fixed thread
count. After ``warmup`` forward passes, each repeat times a block of k back-to-back passes (k chosen
so a block lasts at least ~20 ms) and records the time per pass; models take turns repeat by
repeat, in an order rotated each repeat, so drift on a noisy machine is shared by all of them.

The accuracy pass may run through a faster inference backend (:func:`lightnets.deploy.optimize_for_inference`:
BatchNorm folded, float32) than the eager model whose latency is timed;
:data:`~lightnets.evaluation.backends.ACCURACY_BACKENDS` says which.

>>> import lightnets
>>> from lightnets.data import load_dataset
>>> model = lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True).eval()
>>> candidate = Candidate("smallcnn_3x2", "fmnist", model, (1, 28, 28), (0.286,), (0.353,), 1.0)
>>> data = load_dataset("fashion_mnist", limit=500)
>>> eager = measure_accuracy(candidate, data, 250, torch.device("cpu"), torch.contiguous_format)
>>> fast = measure_accuracy(candidate, data, 250, torch.device("cpu"), torch.contiguous_format, backend="onnxruntime")
>>> eager["images"], abs(eager["top1"] - fast["top1"]) <= 0.2
(500, True)
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import normalize_batch
from ..deploy.native_logs import native_output_silenced
from .backends import ACCURACY_BACKENDS, accuracy_backend
from .candidate import Candidate

__all__ = ["ACCURACY_BACKENDS", "Candidate", "accuracy_backend", "measure_accuracy", "measure_latency",
           "measure_peak_memory", "random_input", "percentile"]

MIN_BLOCK_SECONDS = 0.02  # a timed block of forward passes lasts at least this long


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    # Shown only for passes that last more than a second; on stderr so stdout stays parseable.
    return tqdm(
        total=total, desc=desc, disable=not enabled, delay=1.0, leave=False, file=sys.stderr, dynamic_ncols=True
    )


def _batches(dataset: Dataset, batch_size: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    images = getattr(dataset, "images", None)
    if images is not None:  # in memory: slices, no copy
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size], dataset.labels[start:start + batch_size]
        return
    workers = min(workers, os.cpu_count() or 1)  # torch warns, and slows down, with more workers than cores
    try:
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    except Exception as error:  # noqa: BLE001 (re-raised: only the worker's wrapping is removed)
        raise _unwrapped_worker_error(error) from None


def _unwrapped_worker_error(error: Exception) -> Exception:
    """A DataLoader worker's exception without torch's wrapping ("Caught X in DataLoader worker process 0"
    and the worker's traceback): the underlying message, e.g. which image could not be decoded.

    >>> str(_unwrapped_worker_error(ValueError("Caught ValueError in DataLoader worker process 0.\\n"
    ...     "Original Traceback (most recent call last):\\n  ...\\nValueError: cannot decode image x.jpg")))
    'cannot decode image x.jpg'
    """
    text = str(error)
    if "in DataLoader worker" not in text:
        return error
    last = [line for line in text.splitlines() if line.strip()][-1]
    message = last.split(": ", 1)[1] if ": " in last else last
    try:
        return type(error)(message)
    except Exception:  # noqa: BLE001 (an exception class that takes other arguments)
        return RuntimeError(message)


def measure_accuracy(candidate: Candidate, dataset: Dataset, batch_size: int, device: torch.device,
                     memory_format: torch.memory_format, workers: int = 4, progress: bool = True,
                     backend: str = "eager") -> dict[str, Any]:
    """top-1 / top-5 (%) and mean cross-entropy of ``candidate`` over ``dataset``.

    ``backend``: ``"eager"`` runs the model as it is; another of
    :data:`~lightnets.evaluation.backends.ACCURACY_BACKENDS` runs its BatchNorm-folded float32 export (CPU only), which
    gives the same predictions up to float rounding; ``"auto"`` the float path measured fastest for this model at
    ``batch_size`` (:func:`lightnets.deploy.choose_backend`). The result names the path in ``accuracy_backend``.
    """
    in_chans, side, _ = candidate.input_size
    model = candidate.model
    if backend != "eager":
        from ..deploy import choose_backend, optimize_for_inference

        if device.type != "cpu":
            raise ValueError(f"accuracy backend {backend!r} runs on the CPU; use backend 'eager' on {device}")
        runner = None
        if backend == "auto":
            choice = choose_backend(candidate.model, torch.zeros(min(batch_size, len(dataset)), *candidate.input_size))
            backend, runner = choice.backend, choice.runner  # no runner when the choice came from the cache
        model = runner or optimize_for_inference(candidate.model, backend,
                                                 example_input=torch.zeros(1, *candidate.input_size))
    k = min(5, len(dataset.classes))
    correct1 = correct5 = 0
    loss_sum = 0.0
    with torch.inference_mode(), _progress(len(dataset), f"accuracy {candidate.label}", progress) as bar:
        for images, labels in _batches(dataset, batch_size, workers):
            x = normalize_batch(images.to(device), in_chans, side, candidate.mean, candidate.std)
            logits = model(x.contiguous(memory_format=memory_format)).float()
            labels = labels.to(device)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            bar.update(len(labels))
    n = len(dataset)
    return {"top1": 100 * correct1 / n, "top5": 100 * correct5 / n, "loss": loss_sum / n, "images": n,
            "accuracy_backend": backend}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_block(model: nn.Module, x: torch.Tensor, passes: int, device: torch.device) -> float:
    """Seconds per forward pass over ``passes`` back-to-back passes."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(passes):
        model(x)
    _sync(device)
    return (time.perf_counter() - start) / passes


def random_input(batch_size: int, input_size: Sequence[int], seed: int = 0) -> torch.Tensor:
    """The seeded N(0, 1) batch every model of this input size is timed on."""
    return torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(seed))


def measure_latency(candidates: Sequence[Candidate], batch_sizes: Sequence[int], repeats: int, warmup: int,
                    device: torch.device, memory_format: torch.memory_format, progress: bool = True,
                    seed: int = 0) -> dict[tuple[int, int], list[float]]:
    """Seconds per batch, one value per repeat, keyed by (candidate index, batch size); models interleaved."""
    inputs = {(c.input_size, b): random_input(b, c.input_size, seed).to(device).contiguous(memory_format=memory_format)
              for c in candidates for b in batch_sizes}
    passes: dict[tuple[int, int], int] = {}
    with torch.inference_mode():
        for i, c in enumerate(candidates):
            for b in batch_sizes:
                x = inputs[c.input_size, b]
                for _ in range(warmup):
                    c.model(x)
                passes[i, b] = max(1, math.ceil(MIN_BLOCK_SECONDS / max(_time_block(c.model, x, 1, device), 1e-9)))
        times: dict[tuple[int, int], list[float]] = {key: [] for key in passes}
        with _progress(repeats * len(passes), "latency", progress) as bar:
            for repeat in range(repeats):
                shift = repeat % len(candidates)
                for i in list(range(shift, len(candidates))) + list(range(shift)):
                    c = candidates[i]
                    for b in batch_sizes:
                        x = inputs[c.input_size, b]
                        if passes[i, b] > 1:
                            c.model(x)  # back in cache after the other models' turns; untimed
                        times[i, b].append(_time_block(c.model, x, passes[i, b], device))
                        bar.update()
    return times


def _forward_peak_bytes(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Most bytes torch's allocator held at once during one forward pass, beyond what was allocated before."""
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(x)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - before
        from torch.profiler import ProfilerActivity, profile

        with native_output_silenced(fds=(2,)), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(x)
    # Allocations are charged to the op that made them, frees (outside any op) to "[memory]" events:
    # replaying both in time order gives the live bytes after each step. An op's negative self usage is a
    # temporary of one of its children freed inside it: it happens at the op's end, after the child allocated.
    def when(e) -> float:
        return e.time_range.end if e.name != "[memory]" and e.self_cpu_memory_usage < 0 else e.time_range.start

    steps = sorted((when(e), e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage)
                   for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in steps:
        live += change
        peak = max(peak, live)
    return peak


def measure_peak_memory(candidate: Candidate, batch_size: int, device: torch.device,
                        memory_format: torch.memory_format, seed: int = 0) -> float:
    """MiB: weights and buffers + the input batch + the forward pass's peak allocation."""
    model = candidate.model
    x = random_input(batch_size, candidate.input_size, seed).to(device).contiguous(memory_format=memory_format)
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return (weights + x.numel() * x.element_size() + _forward_peak_bytes(model, x, device)) / 2**20


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))
