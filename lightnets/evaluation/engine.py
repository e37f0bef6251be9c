"""The evaluation engine: accuracy, parameters, MACs, latency and memory of models, side by side.

:func:`evaluate` returns one row (a dict) per model; ``python -m eval`` renders the rows as a table
(:mod:`lightnets.evaluation.report`).
Row keys, raw numbers (``B`` = each latency batch size):

* ``model, tag, input_size, params, macs`` — ``macs``: conv + FC multiply-adds of one image at the
  evaluated input size (:func:`lightnets.profiler.count_macs`, the papers' count);
* ``top1, top5`` (%), ``loss`` (mean cross-entropy), ``images`` — None without accuracy;
  ``accuracy_cached`` — True where they come from an identical earlier measurement (``accuracy_cache``,
  :mod:`lightnets.evaluation.cache`); ``accuracy_recorded`` — True where they are a bundled weight's recorded
  ones (``recorded``, :mod:`lightnets.evaluation.recorded`; no loss);
* ``ms_bsB, p90_ms_bsB`` — milliseconds per batch of B, median and 90th percentile over repeats;
  ``ms_per_img_bsB, img_per_s_bsB, gmacs_per_s_bsB`` — derived from the median;
* ``peak_mem_mb`` (with ``memory=True``) — weights + input + the most memory torch's allocator held
  during one forward at the largest B (CUDA: its allocator's peak; CPU: replayed from ``torch.profiler``
  memory events);
* with a baseline: ``mac_ratio`` (MACs ÷ the baseline's), ``speedup_bsB`` (baseline time ÷ time) and
  ``speedup_per_mac_reduction_bsB`` = speedup × MAC ratio: 1.0 when time falls exactly as MACs do,
  below 1 when it falls less — the gap between MACs and speed as a number;
* with ``latency_backends``: ``backend`` — each model has a row per backend, timed side by side with the
  others (accuracy on the eager row only), and ``file_kib`` for an on-device file's size.

How each number is measured (latency interleaved across models, the accuracy pass's backend) is
:mod:`lightnets.evaluation.measure`'s docstring; how each model is built and fed,
:mod:`lightnets.evaluation.candidate`'s.

>>> rows = evaluate(["smallcnn_3x2"], limit=64, latency_batch_sizes=(1,), repeats=2, warmup=1, progress=False)
>>> rows[0]["model"], rows[0]["input_size"], rows[0]["images"]
('smallcnn_3x2', '1x28x28', 64)
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data import load_dataset
from ..models.arguments import check_positive_int
from .backends import accuracy_backend as resolve_backend
from .cache import accuracy_cache_key, cached_accuracy, store_accuracy
from .candidate import Candidate, ModelSpec, build_candidate
from .measure import measure_accuracy, measure_latency, measure_peak_memory, percentile
from .recorded import recorded_accuracy

__all__ = ["evaluate"]


def evaluate(
    models: Sequence[ModelSpec],
    dataset: Union[str, Dataset] = "fashion_mnist",
    *,
    split: str = "test",
    data_dir: Optional[str] = None,
    download: bool = False,
    limit: Optional[int] = None,
    batch_size: int = 256,
    img_size: Optional[int] = None,
    small_input: bool = False,
    pretrained: Optional[bool] = None,
    checkpoint: Optional[str] = None,
    accuracy: bool = True,
    accuracy_backend: str = "eager",
    memory: bool = True,
    latency_batch_sizes: Sequence[int] = (1, 100),
    repeats: int = 10,
    warmup: int = 5,
    threads: Optional[int] = None,
    channels_last: bool = False,
    device: Union[str, torch.device] = "cpu",
    baseline: Optional[ModelSpec] = None,
    workers: int = 4,
    progress: bool = True,
    seed: int = 0,
    accuracy_cache: bool = True,
    recorded: bool = False,
    latency_backends: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Measure accuracy, parameters, MACs, latency and peak memory of ``models``; one row per model.

    Args:
        models: registered names (``"name"`` or ``"name.tag"``) or built models.
        dataset: ``fashion_mnist`` (embedded test split), ``cifar10``, ``imagefolder:PATH``, ``synthetic``
            (latency and MACs only) or a dataset object; ``split``, ``data_dir``, ``download``, ``limit``
            are passed to :func:`lightnets.data.load_dataset`.
        batch_size: batch size of the accuracy pass.
        img_size: evaluate at this input side (models that take ``img_size`` are built for it).
        small_input: build the small-image form (``small_input=True``) at the dataset's size and channels.
        pretrained: load pretrained weights; None: when the model has any. ``checkpoint``: a weight file
            or Hub-layout folder to load instead (one model only).
        accuracy: False measures MACs, latency and memory only.
        accuracy_cache: reuse the result of an identical earlier accuracy measurement (the same weights by
            sha256, fixed dataset, input, backend, torch and lightnets code:
            :func:`~lightnets.evaluation.cache.accuracy_cache_key`),
            kept under the weights cache (``$LIGHTNETS_CACHE``); rows say ``accuracy_cached``. False
            measures again (the results scripts do).
        recorded: for a bundled weight whose ``weights/index.json`` entry records its accuracy on exactly
            this data and input (:func:`~lightnets.evaluation.recorded.recorded_accuracy`), take those top-1 / top-5
            instead of measuring (``python -m eval``'s default); rows say ``accuracy_recorded`` and have no loss.
        accuracy_backend: what the accuracy pass runs on: ``"eager"`` (the model itself), ``"openvino"`` or
            ``"onnxruntime"`` (its BatchNorm-folded float32 export, several times faster on a CPU), or
            ``"auto"`` (the fastest installed; see :data:`lightnets.evaluation.backends.ACCURACY_BACKENDS`). Latency
            and memory are always the eager model's.
        memory: measure the peak memory of a forward pass at the largest latency batch size.
        latency_batch_sizes, repeats, warmup: how latency is timed (see the module docstring).
        threads: torch's intra-op thread count during the run (default: as it is); restored afterwards.
        channels_last: run models and inputs in channels-last memory format.
        baseline: a model of ``models`` (or another, added first) the ratio columns compare against.
        latency_backends: also time each model through these :func:`lightnets.optimize_for_inference` backends
            (e.g. ``onnxruntime``, ``openvino``, ``executorch``, ``executorch-int8``, ``litert``, ``litert-int8``),
            a row each; int8 files are calibrated on up to 256 of the evaluation images (random ones without data).

    See the module docstring for the row keys.
    """
    batch_sizes = [check_positive_int("latency batch size", b) for b in latency_batch_sizes]
    if not batch_sizes:
        raise ValueError("latency_batch_sizes must name at least one batch size")
    check_positive_int("batch_size", batch_size)
    check_positive_int("repeats", repeats)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if img_size is not None:
        check_positive_int("img_size", img_size)
    models = list(models)
    if not models:
        raise ValueError("give at least one model")
    if baseline is not None and not any(m is baseline or m == baseline for m in models):
        models.insert(0, baseline)
    if checkpoint and len(models) > 1:
        raise ValueError(f"a checkpoint belongs to one model; got {len(models)} models")
    device = _device(device)
    backend = accuracy_backend if accuracy_backend == "eager" else resolve_backend(accuracy_backend)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    try:
        imagefolder = isinstance(dataset, str) and dataset.startswith("imagefolder:")
        if isinstance(dataset, str):
            synthetic = dataset == "synthetic"
            data = None if synthetic else load_dataset(dataset, split, data_dir, download, limit,
                                                       **({"img_size": img_size or 224} if imagefolder else {}))
        else:
            data = dataset
        accuracy = accuracy and data is not None
        candidates = [build_candidate(spec, data, pretrained=pretrained, checkpoint=checkpoint, img_size=img_size,
                                      small_input=small_input, accuracy=accuracy) for spec in models]
        rows = []
        for c in candidates:
            c.model.to(device, memory_format=memory_format)
            params = sum(p.numel() for p in c.model.parameters())
            rows.append({"model": c.label, "tag": c.tag, "input_size": "x".join(map(str, c.input_size)),
                         "params": params, "macs": _count_macs(c), "top1": None, "top5": None, "loss": None,
                         "images": None})
        if accuracy:
            # Decoded image folders are made per eval transform: each model reads them as its weights expect
            # (side, crop_pct, interpolation); models that share a transform share the set.
            eval_sets = {(data.img_size, data.crop_pct, data.interpolation): data} if imagefolder else {}
            for c, row in zip(candidates, rows):
                eval_set = data
                if imagefolder:
                    transform = (c.input_size[-1], c.crop_pct, c.interpolation)
                    if transform not in eval_sets:
                        eval_sets[transform] = load_dataset(dataset, split, limit=limit, img_size=transform[0],
                                                            crop_pct=transform[1], interpolation=transform[2])
                    eval_set = eval_sets[transform]
                started = time.perf_counter()
                measured = recorded_accuracy(c, eval_set) if recorded else None
                row["accuracy_recorded"], row["accuracy_cached"] = measured is not None, False
                if measured is None:
                    key = accuracy_cache_key(c, eval_set, backend, batch_size) if accuracy_cache else None
                    measured = cached_accuracy(key)
                    row["accuracy_cached"] = measured is not None
                    if measured is None:
                        measured = measure_accuracy(
                            c, eval_set, batch_size, device, memory_format, workers, progress, backend
                        )
                        store_accuracy(key, measured)
                row.update(measured)
                if progress:  # each model's accuracy as it is known: the table waits for the latency of all
                    how = ("recorded" if row["accuracy_recorded"] else "cached" if row["accuracy_cached"]
                           else f"{time.perf_counter() - started:.1f} s")
                    tqdm.write(f"{c.label}: top-1 {row['top1']:.2f}%, top-5 {row['top5']:.2f}% on {row['images']:,} "
                               f"images ({how})", file=sys.stderr)
        eager_rows = list(rows)
        if latency_backends:
            candidates, rows = _with_backends(candidates, rows, latency_backends, data, progress)
        times = measure_latency(candidates, batch_sizes, repeats, warmup, device, memory_format, progress, seed)
        for i, (c, row) in enumerate(zip(candidates, rows)):
            for b in batch_sizes:
                median = percentile(times[i, b], 50)
                row.update({f"ms_bs{b}": 1e3 * median, f"p90_ms_bs{b}": 1e3 * percentile(times[i, b], 90),
                            f"ms_per_img_bs{b}": 1e3 * median / b, f"img_per_s_bs{b}": b / median,
                            f"gmacs_per_s_bs{b}": row["macs"] * b / median / 1e9})
            if memory and row.get("backend", "eager") == "eager":
                row["peak_mem_mb"] = measure_peak_memory(c, max(batch_sizes), device, memory_format, seed)
        if baseline is not None:
            _add_ratios(
                rows, eager_rows[next(i for i, m in enumerate(models) if m is baseline or m == baseline)], batch_sizes
            )
        return rows
    finally:
        torch.set_num_threads(previous_threads)


def _device(device: Union[str, torch.device]) -> torch.device:
    try:
        device = torch.device(device)
    except RuntimeError as error:  # torch lists every device type it knows; the user needs two
        raise ValueError(f"unknown device {device!r}; use cpu or cuda[:N]") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _count_macs(candidate: Candidate) -> int:
    from ..profiler import count_macs

    return count_macs(candidate.model, candidate.input_size)


def _add_ratios(rows: list[dict[str, Any]], base: dict[str, Any], batch_sizes: Sequence[int]) -> None:
    for row in rows:
        row["mac_ratio"] = row["macs"] / base["macs"]
        for b in batch_sizes:
            speedup = base[f"ms_bs{b}"] / row[f"ms_bs{b}"]
            row[f"speedup_bs{b}"] = speedup
            row[f"speedup_per_mac_reduction_bs{b}"] = speedup * row["mac_ratio"]


def _with_backends(candidates: list[Candidate], rows: list[dict[str, Any]], backends: Sequence[str],
                   data: Optional[Dataset], progress: bool) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Each candidate followed by its runs through ``backends``, and their rows (accuracy left to the eager row)."""
    from dataclasses import replace

    from ..data import normalize_batch
    from ..deploy import INT8_BACKENDS, optimize_for_inference

    all_candidates, all_rows = [], []
    for c, row in zip(candidates, rows):
        all_candidates.append(c)
        all_rows.append({**row, "backend": "eager"})
        for backend in backends:
            if backend == "eager":
                continue
            calibration = None
            if backend in INT8_BACKENDS:
                images = getattr(data, "images", None)
                calibration = (normalize_batch(images[:256], c.input_size[0], c.input_size[-1], c.mean, c.std)
                               if images is not None else torch.randn(32, *c.input_size))
            started = time.perf_counter()
            runner = optimize_for_inference(c.model, backend, example_input=torch.zeros(1, *c.input_size),
                                            calibration_images=calibration, spin_wait=False)
            if progress:
                tqdm.write(f"{c.label}: {backend} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            path = getattr(runner, "path", None)  # an on-device file's
            all_candidates.append(replace(c, model=runner))
            all_rows.append({**row, "top1": None, "top5": None, "loss": None, "images": None, "backend": backend,
                             **({"file_kib": path.stat().st_size / 1024} if path is not None else {})})
    return all_candidates, all_rows

