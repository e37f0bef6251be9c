"""The evaluation engine: accuracy, parameters, MACs, latency and memory of models, side by side.

:func:`evaluate` returns one row (a dict) per model; ``python -m eval`` renders the rows as a table.
Row keys, raw numbers (``B`` = each latency batch size):

* ``model, tag, input_size, params, macs`` — ``macs``: conv + FC multiply-adds of one image at the
  evaluated input size (:func:`lightnets.profiler.count_macs`, the papers' count);
* ``top1, top5`` (%), ``loss`` (mean cross-entropy), ``images`` — None without accuracy;
  ``accuracy_cached`` — True where they come from an identical earlier measurement (``accuracy_cache``);
  ``accuracy_recorded`` — True where they are a bundled weight's recorded ones (``recorded_accuracy``; no loss);
* ``ms_bsB, p90_ms_bsB`` — milliseconds per batch of B, median and 90th percentile over repeats;
  ``ms_per_img_bsB, img_per_s_bsB, gmacs_per_s_bsB`` — derived from the median;
* ``peak_mem_mb`` (with ``memory=True``) — weights + input + the most memory torch's allocator held
  during one forward at the largest B (CUDA: its allocator's peak; CPU: replayed from ``torch.profiler``
  memory events);
* with a baseline: ``mac_ratio`` (MACs ÷ the baseline's), ``speedup_bsB`` (baseline time ÷ time) and
  ``speedup_per_mac_reduction_bsB`` = speedup × MAC ratio: 1.0 when time falls exactly as MACs do,
  below 1 when it falls less — the gap between MACs and speed as a number.

How each number is measured (latency interleaved across models, the accuracy pass's backend) is
:mod:`lightnets.measure`'s docstring.

>>> rows = evaluate(["smallcnn_3x2"], limit=64, latency_batch_sizes=(1,), repeats=2, warmup=1, progress=False)
>>> rows[0]["model"], rows[0]["input_size"], rows[0]["images"]
('smallcnn_3x2', '1x28x28', 64)
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from .data import load_dataset
from .measure import (
    Candidate,
    measure_accuracy,
    measure_latency,
    measure_peak_memory,
    percentile,
)
from .measure import accuracy_backend as _accuracy_backend
from .models.base import check_positive_int

__all__ = ["evaluate", "environment", "machine_load", "ModelSpec", "Candidate", "build_candidate",
           "measure_accuracy", "measure_latency"]

ModelSpec = Union[str, nn.Module]
RANDOM_INIT = "random init"
# Timings taken on a machine busier than this are flagged (1-minute load average per logical core: half
# the cores busy): on a loaded 2-core machine they came out 100-600x off and looked plausible.
BUSY_LOAD_PER_CORE = 0.5


# ---------------------------------------------------------------------------------------------
# Building the models
# ---------------------------------------------------------------------------------------------


def _native_shape(dataset: Optional[Dataset]) -> tuple[Optional[int], Optional[int]]:
    """(channels, side) of a dataset's images when it has one size (the in-memory ones), else (None, None)."""
    images = getattr(dataset, "images", None)
    if images is None:
        return (3, None) if dataset is not None else (None, None)
    return images.shape[1], (images.shape[2] if images.shape[2] == images.shape[3] else None)


def _create(spec: str, dataset: Optional[Dataset], pretrained: Optional[bool], checkpoint: Optional[str],
            img_size: Optional[int], small_input: bool) -> tuple[nn.Module, str, bool]:
    """(model, tag, whether it normalises with the dataset's statistics) for a registered name."""
    from .registry import create_model, list_pretrained, model_arguments, split_model_name

    name, weight_tag = split_model_name(spec)
    accepted = model_arguments(name)
    data_chans, data_side = _native_shape(dataset)
    kwargs: dict[str, Any] = {}
    if small_input and "small_input" in accepted:
        kwargs["small_input"] = True
    if small_input or checkpoint:  # built for the dataset: its size and channels
        if data_side and "img_size" in accepted:
            kwargs["img_size"] = data_side
        if data_chans:
            kwargs["in_chans"] = data_chans
    if img_size is not None and "img_size" in accepted:
        kwargs["img_size"] = img_size
    classes = len(dataset.classes) if dataset is not None else None

    if checkpoint:
        from .pretrained import load_checkpoint, read_config

        config = read_config(checkpoint)  # a Hub-layout folder says how to rebuild its model
        kwargs.update(config.get("model_args", {}))
        kwargs.setdefault("num_classes", config.get("num_classes") or classes)
        model = load_checkpoint(create_model(name, **kwargs), checkpoint)
        saved_cfg = config.get("pretrained_cfg", {})
        model.pretrained_cfg.update({key: tuple(saved_cfg[key]) for key in ("mean", "std") if saved_cfg.get(key)})
        model.pretrained_cfg.update({key: saved_cfg[key] for key in ("crop_pct", "interpolation") if saved_cfg.get(key)})
        return model, f"ckpt:{Path(checkpoint).name}", not saved_cfg.get("mean")
    if pretrained is None:  # auto: the weights when there are any, those trained on this dataset first
        from .registry import get_pretrained_cfg

        tags = [tag for tag in list_pretrained(name) if split_model_name(tag)[0] == name]
        data_name = getattr(dataset, "name", None)
        own = [tag for tag in tags if data_name and get_pretrained_cfg(tag).get("dataset") == data_name]
        # A bare name without a weight for this data loads its default weight, if it has one.
        pretrained = bool(weight_tag) or bool(own) or (bool(tags) and get_pretrained_cfg(name)["tag"] is not None)
        if not weight_tag and own:
            spec = own[0]
    if pretrained:
        model = create_model(spec, pretrained=True, **kwargs)
        return model, model.pretrained_cfg.get("tag") or "", False
    if classes:
        kwargs.setdefault("num_classes", classes)
    # A tagged name without its weights is the architecture they were trained with (create_model's rule).
    return create_model(spec, **kwargs), RANDOM_INIT, True


def build_candidate(spec: ModelSpec, dataset: Optional[Dataset], *, pretrained: Optional[bool] = None,
                    checkpoint: Optional[str] = None, img_size: Optional[int] = None,
                    small_input: bool = False, accuracy: bool = True) -> Candidate:
    """Create one model for evaluation on ``dataset`` (None: synthetic input) and say how to feed it.

    Random init: the model as registered, with the dataset's number of classes. ``small_input``: the
    small-image form at the dataset's size and channels. Pretrained: the weight's own cfg. A checkpoint:
    the arguments in its config.json, else (a bare weight file) the dataset's classes, channels and side.
    Models that were not given normalise with the dataset's mean / std when they were (or will be) trained
    on it, else with their cfg's. With ``accuracy``, a model that predicts another number of classes than
    the dataset has is an error.
    """
    if isinstance(spec, nn.Module):
        model, tag, use_data_stats = spec, "given", False
        label = getattr(spec, "pretrained_cfg", {}).get("architecture") or type(spec).__name__
    else:
        model, tag, use_data_stats = _create(spec, dataset, pretrained, checkpoint, img_size, small_input)
        label = spec
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    in_chans = getattr(model, "in_chans", None) or cfg.get("input_size", (3,))[0]
    side = img_size or (cfg.get("input_size") or (None, getattr(model, "img_size", 224)))[-1]
    if use_data_stats and getattr(dataset, "mean", None) is not None:
        mean, std = dataset.mean, dataset.std
    else:
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
    candidate = Candidate(label, tag, model.eval(), (in_chans, side, side), tuple(mean), tuple(std),
                          cfg.get("crop_pct") or 0.875, cfg.get("interpolation") or "bilinear")
    classes = len(dataset.classes) if dataset is not None and accuracy else None
    _check_feedable(candidate, _native_shape(dataset)[0], classes)
    if classes is not None and cfg.get("label_names") and tag != RANDOM_INIT \
            and list(cfg["label_names"]) != list(dataset.classes):
        warnings.warn(f"{label} ({tag}) was trained on the classes {_few(cfg['label_names'])} but the dataset's are "
                      f"{_few(dataset.classes)}: its accuracy is measured against labels it did not learn", stacklevel=2)
    return candidate


def _few(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(map(str, names[:shown])) + (f" ... ({len(names)})" if len(names) > shown else "")


def _check_feedable(candidate: Candidate, data_chans: Optional[int], classes: Optional[int]) -> None:
    in_chans, side, _ = candidate.input_size
    if data_chans is not None and data_chans != in_chans and not (data_chans == 1 or (data_chans == 3 and in_chans == 1)):
        raise ValueError(f"{candidate.label} takes {in_chans}-channel input; the dataset's {data_chans}-channel images "
                         "cannot be converted to it")
    check_input = getattr(candidate.model, "check_input", None)
    if check_input is not None:
        try:
            check_input(torch.zeros(1, in_chans, side, side))
        except ValueError as err:
            raise ValueError(f"{candidate.label} cannot be evaluated at {in_chans}x{side}x{side}: {err}") from err
    num_classes = getattr(candidate.model, "num_classes", None)
    if classes is not None and num_classes is not None and num_classes != classes:
        raise ValueError(f"{candidate.label} ({candidate.tag}) predicts {num_classes} classes but the dataset has {classes}; "
                         "evaluate a checkpoint trained on this dataset, or measure it with --no-accuracy")


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The accuracy cache
# ---------------------------------------------------------------------------------------------

# Datasets whose content is fixed (checksummed files or the embedded split): an image folder can change.
_FIXED_DATASETS = ("fashion_mnist", "cifar10")


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """sha256 of lightnets' own source: any change to the code that builds, exports or scores a model
    makes earlier measurements stale."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def accuracy_cache_key(candidate: Candidate, data: Dataset, backend: str, batch_size: int) -> Optional[str]:
    """What an accuracy measurement is a function of, hashed: the weights' verified sha256, the data (a
    fixed dataset, split and image count), the model's input and normalisation, the backend and its
    batch size, torch and lightnets' code. None when the inputs have no such identity (random init, a
    given module or checkpoint, an image folder, weights without a recorded sha256)."""
    cfg = getattr(candidate.model, "pretrained_cfg", None) or {}
    if not cfg.get("sha256") or not _loaded_by_name(candidate) or getattr(data, "name", None) not in _FIXED_DATASETS:
        return None
    fields = {"weights": cfg["sha256"], "dataset": data.name, "split": getattr(data, "split", None), "images": len(data),
              "input_size": candidate.input_size, "mean": candidate.mean, "std": candidate.std, "backend": backend,
              "batch_size": batch_size, "torch": torch.__version__, "code": _code_fingerprint()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _loaded_by_name(candidate: Candidate) -> bool:
    """Whether the candidate holds a registered weight, created by name (not random init, a module or a checkpoint)."""
    return candidate.tag not in (RANDOM_INIT, "given") and not candidate.tag.startswith("ckpt:")


@functools.lru_cache(maxsize=1)
def _bundled_by_sha256() -> dict[str, dict[str, Any]]:
    """weights/index.json's cfgs keyed by their file's sha256, read once; empty when the manifest is unreadable."""
    from .pretrained.manifest import ManifestError, bundled_cfgs

    try:
        return {cfg["sha256"]: cfg for cfg in bundled_cfgs().values()}
    except ManifestError:
        return {}


def recorded_accuracy(candidate: Candidate, data: Dataset) -> Optional[dict[str, Any]]:
    """A bundled weight's top-1 / top-5 as ``weights/index.json`` records them (measured eager, float32; re-measured by
    tests/pretrained/test_bundled_weights.py) when they answer exactly this question: the same bytes, a lightnets measurement (not a
    source's reported figure), dataset, split, image count, input size and normalisation. None otherwise."""
    sha256 = (getattr(candidate.model, "pretrained_cfg", None) or {}).get("sha256")
    entry = _bundled_by_sha256().get(sha256) if sha256 and _loaded_by_name(candidate) else None
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


def _cached_accuracy(key: Optional[str]) -> Optional[dict[str, Any]]:
    if key is None:
        return None
    from .pretrained.converted import cache_dir

    with contextlib.suppress(OSError, ValueError):
        cached = json.loads((cache_dir() / "accuracy" / f"{key}.json").read_text())
        if isinstance(cached, dict) and {"top1", "top5", "loss", "images"} <= set(cached):
            return cached
    return None  # absent or unreadable: measure again


def _store_accuracy(key: Optional[str], result: dict[str, Any]) -> None:
    if key is None:
        return
    from .pretrained.converted import cache_dir

    folder = cache_dir() / "accuracy"
    with contextlib.suppress(OSError):  # a read-only cache only costs the next run a measurement
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".partial", delete=False) as file:
            json.dump(result, file)
        os.replace(file.name, folder / f"{key}.json")


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_load() -> Optional[dict[str, Any]]:
    """The 1-minute load average, the logical cores and whether that is too busy for timings (None where
    the OS has no load average).

    >>> sorted(machine_load())
    ['busy', 'cores', 'load_1min']
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None
    cores = os.cpu_count() or 1
    return {"load_1min": round(load, 2), "cores": cores, "busy": load / cores > BUSY_LOAD_PER_CORE}


def environment(device: Union[str, torch.device] = "cpu", channels_last: bool = False,
                load: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What the numbers were measured on: torch version, threads, CPU / GPU, memory format, and the
    machine's load (``load``: as :func:`machine_load` read it before the run; default: now)."""
    from . import __version__

    device = torch.device(device)
    return {
        "load": load if load is not None else machine_load(),
        "torch": torch.__version__,
        "lightnets": __version__,
        "threads": torch.get_num_threads(),
        "cpu": f"{_cpu_name()} ({os.cpu_count()} logical cores)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "memory_format": "channels_last" if channels_last else "contiguous (NCHW)",
        "python": platform.python_version(),
    }


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
            sha256, fixed dataset, input, backend, torch and lightnets code: :func:`accuracy_cache_key`),
            kept under the weights cache (``$LIGHTNETS_CACHE``); rows say ``accuracy_cached``. False
            measures again (the results scripts do).
        recorded: for a bundled weight whose ``weights/index.json`` entry records its accuracy on exactly
            this data and input (:func:`recorded_accuracy`), take those top-1 / top-5 instead of measuring
            (``python -m eval``'s default); rows say ``accuracy_recorded`` and have no loss.
        accuracy_backend: what the accuracy pass runs on: ``"eager"`` (the model itself), ``"openvino"`` or
            ``"onnxruntime"`` (its BatchNorm-folded float32 export, several times faster on a CPU), or
            ``"auto"`` (the fastest installed; see :data:`lightnets.measure.ACCURACY_BACKENDS`). Latency
            and memory are always the eager model's.
        memory: measure the peak memory of a forward pass at the largest latency batch size.
        latency_batch_sizes, repeats, warmup: how latency is timed (see the module docstring).
        threads: torch's intra-op thread count during the run (default: as it is); restored afterwards.
        channels_last: run models and inputs in channels-last memory format.
        baseline: a model of ``models`` (or another, added first) the ratio columns compare against.

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
    backend = accuracy_backend if accuracy_backend == "eager" else _accuracy_backend(accuracy_backend)
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
                         "params": params, "macs": _count_macs(c), "top1": None, "top5": None, "loss": None, "images": None})
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
                    measured = _cached_accuracy(key)
                    row["accuracy_cached"] = measured is not None
                    if measured is None:
                        measured = measure_accuracy(c, eval_set, batch_size, device, memory_format, workers, progress, backend)
                        _store_accuracy(key, measured)
                row.update(measured)
                if progress:  # each model's accuracy as it is known: the table waits for the latency of all
                    how = ("recorded" if row["accuracy_recorded"] else "cached" if row["accuracy_cached"]
                           else f"{time.perf_counter() - started:.1f} s")
                    tqdm.write(f"{c.label}: top-1 {row['top1']:.2f}%, top-5 {row['top5']:.2f}% on {row['images']:,} "
                               f"images ({how})", file=sys.stderr)
        times = measure_latency(candidates, batch_sizes, repeats, warmup, device, memory_format, progress, seed)
        for i, (c, row) in enumerate(zip(candidates, rows)):
            for b in batch_sizes:
                median = percentile(times[i, b], 50)
                row.update({f"ms_bs{b}": 1e3 * median, f"p90_ms_bs{b}": 1e3 * percentile(times[i, b], 90),
                            f"ms_per_img_bs{b}": 1e3 * median / b, f"img_per_s_bs{b}": b / median,
                            f"gmacs_per_s_bs{b}": row["macs"] * b / median / 1e9})
            if memory:
                row["peak_mem_mb"] = measure_peak_memory(c, max(batch_sizes), device, memory_format, seed)
        if baseline is not None:
            _add_ratios(rows, rows[next(i for i, m in enumerate(models) if m is baseline or m == baseline)], batch_sizes)
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
    from .profiler import count_macs

    return count_macs(candidate.model, candidate.input_size)


def _add_ratios(rows: list[dict[str, Any]], base: dict[str, Any], batch_sizes: Sequence[int]) -> None:
    for row in rows:
        row["mac_ratio"] = row["macs"] / base["macs"]
        for b in batch_sizes:
            speedup = base[f"ms_bs{b}"] / row[f"ms_bs{b}"]
            row[f"speedup_bs{b}"] = speedup
            row[f"speedup_per_mac_reduction_bs{b}"] = speedup * row["mac_ratio"]
