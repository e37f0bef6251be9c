"""The eval harness's rows as a terminal table, Markdown, CSV or JSON, with a footer saying how and on what
they were measured.

The measuring is :func:`lightnets.evaluation.engine.evaluate`; the drawing of a table is
:func:`lightnets.tables.render_rows`, the one renderer of lightnets; the model-zoo figure is
:mod:`lightnets.evaluation.figure`.

>>> rows = [{"model": "a", "tag": "", "input_size": "1x28x28", "params": 1000, "macs": 2_000_000,
...          "top1": 90.0, "top5": 99.0, "loss": 0.3, "images": 10, "ms_bs1": 0.5, "p90_ms_bs1": 0.6,
...          "ms_per_img_bs1": 0.5, "img_per_s_bs1": 2000.0, "gmacs_per_s_bs1": 4.0, "peak_mem_mb": 1.25}]
>>> print(render(rows, "md").splitlines()[2])
| a |  | 1x28x28 | 0.001 | 2.00 | 90.00 | 99.00 | 0.3000 | 0.500 | 0.600 | 2000 | 4.00 | 1.2 |
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional, Sequence

from ..tables import FORMATS, Column, check_format, render_rows

__all__ = ["FORMATS", "batch_sizes", "columns", "render", "footer"]

NAME_KEYS = ("model", "tag", "input_size", "backend")  # left-aligned: names, not numbers


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda value: f"{value:.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def batch_sizes(rows: Sequence[dict[str, Any]]) -> list[int]:
    """The latency batch sizes the rows were measured at, in order."""
    return [int(match.group(1)) for key in rows[0] if (match := re.fullmatch(r"ms_bs(\d+)", key))] if rows else []


def columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """The columns the rows have: model, cost, accuracy, latency per batch size, memory, baseline ratios."""
    spec: list[tuple[str, str, Callable[[Any], str]]] = [
        ("model", "model", str), ("tag", "tag", str), ("input_size", "input", str),
        *([("backend", "backend", str)] if any("backend" in row for row in rows) else []),
        ("params", "params (M)", lambda v: f"{v / 1e6:.3f}"), ("macs", "MMACs", lambda v: f"{v / 1e6:.2f}"),
        ("top1", "top-1 %", _fixed(2)), ("top5", "top-5 %", _fixed(2)),
    ]
    # No loss column when every accuracy is a recorded one: weights/index.json records no loss.
    if not any(row.get("top1") is not None for row in rows) or any(row.get("loss") is not None for row in rows):
        spec.append(("loss", "loss", _fixed(4)))
    sizes = batch_sizes(rows)
    for b in sizes:
        spec += [(f"ms_bs{b}", f"bs{b} ms", _ms), (f"p90_ms_bs{b}", f"bs{b} p90 ms", _ms)]
        if b > 1:  # at batch 1, ms per image is ms per batch
            spec.append((f"ms_per_img_bs{b}", f"bs{b} ms/img", _ms))
        spec += [(f"img_per_s_bs{b}", f"bs{b} img/s", _fixed(0)), (f"gmacs_per_s_bs{b}", f"bs{b} GMAC/s", _fixed(2))]
    if any("file_kib" in row for row in rows):
        spec.append(("file_kib", "file KiB", lambda v: "–" if v is None else f"{v:,.0f}"))
    if rows and "peak_mem_mb" in rows[0]:
        spec.append(("peak_mem_mb", "peak MB", _fixed(1)))
    if rows and "mac_ratio" in rows[0]:
        spec.append(("mac_ratio", "MAC ratio", _fixed(3)))
        for b in sizes:
            spec += [(f"speedup_bs{b}", f"bs{b} speedup", _fixed(2)),
                     (f"speedup_per_mac_reduction_bs{b}", f"bs{b} speedup÷MAC cut", _fixed(3))]
    return [Column(key, header, show, left=key in NAME_KEYS) for key, header, show in spec]


def footer(environment: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """Lines saying how and on what the numbers were measured."""
    lines = [
        f"torch {environment['torch']}, threads: {environment['threads']}, CPU: {environment['cpu']}, "
        f"device: {environment['device']}, memory format: {environment['memory_format']}",
        f"latency: ms per batch, median and p90 over {settings['repeats']} repeats (each a block of back-to-back "
        f"passes lasting >= 20 ms) after {settings['warmup']} warm-up passes, torch.inference_mode(), models "
        "interleaved, the same seeded N(0,1) input for models of the same input size",
    ]
    load = environment.get("load")
    if load:
        busy = " (BUSY: the latency figures above are not to be trusted)" if load["busy"] else ""
        lines.append(f"machine load before the run: {load['load_1min']:.2f} (1-minute average) on {load['cores']} "
                     f"logical cores{busy}")
    memory = (f"; peak MB: weights + input + the forward pass's peak allocation at bs{settings['peak_batch_size']} "
              "(CPU: replayed from torch.profiler memory events)") if settings.get("peak_batch_size") else ""
    lines.append(
        f"MMACs: conv + FC multiply-adds per image at the evaluated input (fvcore); GMAC/s = MACs x img/s{memory}"
    )
    latency = "the eager model"
    if settings.get("latency_backends"):
        latency = "each row's path"
        lines.append("latency of each row: its path (backend column), timed side by side; on-device files run image "
                     "by image in their runtime's Python interpreter: XNNPACK on this CPU, not a phone")
    if settings.get("accuracy_backend") == "auto" and settings.get("images"):
        lines.append("accuracy pass: per model, the float path measured fastest here at its batch size (BatchNorm "
                     "folded, float32; the JSON rows name it); latency: " + latency)
    elif settings.get("accuracy_backend") not in (None, "eager") and settings.get("images"):
        lines.append(
            f"accuracy pass: {settings['accuracy_backend']} (BatchNorm folded, float32); latency: {latency}"
        )
    if settings.get("accuracy_recorded"):
        lines.append(
            f"top-1 / top-5 of {settings['accuracy_recorded']} bundled weight(s): as weights/index.json records "
            "them (measured eager, float32, on the same images when published; the test suite measures them "
            "again and requires the same figures), loss not recorded; --remeasure measures them now"
        )
    if settings.get("accuracy_cached"):
        lines.append(
            f"top-1 of {settings['accuracy_cached']} model(s): an identical earlier measurement, cached (the same "
            "weights by sha256, data, backend and lightnets code); --remeasure measures again"
        )
    if settings.get("dataset"):
        lines.append(f"data: {settings['dataset']} / {settings['split']}, {settings['images']} images"
                     if settings.get("images") else f"data: {settings['dataset']} (no accuracy measured)")
    if settings.get("command"):
        lines.append(f"command: `{settings['command']}`")
    if settings.get("baseline"):
        lines.append(f"baseline {settings['baseline']}: MAC ratio = MACs / its MACs; speedup = its ms / ms; "
                     "speedup÷MAC cut = speedup x MAC ratio (1.0: time fell as much as MACs; below 1: less)")
    return lines


def render(rows: Sequence[dict[str, Any]], fmt: str = "table", environment: Optional[dict[str, Any]] = None,
           settings: Optional[dict[str, Any]] = None) -> str:
    """Rows as a terminal table, Markdown, CSV or JSON (raw numbers: MACs, not MMACs).

    Table and Markdown end with the :func:`footer` when ``environment`` and ``settings`` are given;
    JSON is ``{"environment", "settings", "rows"}``; CSV is the rows alone (every key), so it parses back as is.
    """
    check_format(fmt)
    notes = footer(environment, settings) if environment and settings else []
    document = {"environment": environment or {}, "settings": settings or {}, "rows": list(rows)}
    # CSV: every key of the rows, raw, as JSON has them
    every_key = list(dict.fromkeys(key for row in rows for key in row))
    return render_rows(rows, columns(rows), fmt, notes=notes, document=document, csv_keys=every_key)
