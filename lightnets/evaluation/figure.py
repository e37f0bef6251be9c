"""The model-zoo figure: top-1 against MACs and against measured latency, each with its Pareto front
(``python -m eval --plot FILE.png``; results/zoo.png is one)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .._io import atomic_open
from .report import batch_sizes

__all__ = ["pareto_front", "plot"]

DPI = 120


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher), by cost.

    >>> pareto_front([(1, 50), (2, 40), (3, 70), (4, 70)])
    [0, 2]
    """
    front, best = [], float("-inf")
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _point_label(row: dict[str, Any]) -> str:
    """``name.tag`` for a weight (once, when the row's model already names its tag); the name otherwise."""
    model, tag = row["model"], row["tag"]
    if not tag or " " in tag or model.endswith(f".{tag}"):
        return model
    return f"{model}.{tag}"


def plot(rows: Sequence[dict[str, Any]], path: str, latency_batch_size: Optional[int] = None, title: str = "") -> Path:
    """The model-zoo figure: top-1 against MMACs and against measured latency, Pareto fronts marked.

    Written atomically (:func:`lightnets._io.atomic_open`: an interrupted run leaves the old file whole), in
    the format its extension names (PNG without one); ``-`` writes it to standard output.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: matplotlib is slow to import
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    if not rows or any(row.get("top1") is None for row in rows):
        raise ValueError("the plot needs top-1 accuracy: run without --no-accuracy, on a dataset with labels")
    b = latency_batch_size or batch_sizes(rows)[0]
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    for axis, (key, label) in zip(
        figure.subplots(1, 2),
        [("macs", "MMACs per image (conv + FC)"), (f"ms_per_img_bs{b}", f"latency, ms per image at batch {b}")],
    ):
        scale = 1e6 if key == "macs" else 1.0
        points = [(row[key] / scale, row["top1"]) for row in rows]
        axis.scatter(*zip(*points), color="tab:blue", zorder=3)
        for (x, y), row in zip(points, rows):
            axis.annotate(_point_label(row), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = [points[i] for i in pareto_front(points)]
        axis.step(*zip(*front), where="post", color="tab:red", linestyle="--", label="Pareto front", zorder=2)
        axis.scatter(*zip(*front), facecolors="none", edgecolors="tab:red", s=120, zorder=4)
        axis.set(xscale="log", xlabel=label, ylabel="top-1 %")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.margins(x=0.2, y=0.1)  # room for the labels
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right")
    if title:
        figure.suptitle(title)
    image_format = Path(path).suffix[1:].lower() or "png"
    with atomic_open(path, "wb") as out:
        figure.savefig(out, format=image_format, dpi=DPI)
    return Path(path)
