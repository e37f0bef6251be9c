"""How much accuracy each layer's pruning costs, and pruning in steps with fine-tuning between them.

* :func:`top1_accuracy`: top-1 (%) of a model on a dataset, fed as the eval harness feeds it (:mod:`lightnets.inputs`).
* :func:`sensitivity_scan` prunes one layer at a time and measures top-1 (Li et al. 2017, "Pruning Filters
  for Efficient ConvNets", Sec. 3.3, Fig. 2b): the layers that lose little can be pruned harder.
* :func:`iterative_prune` alternates pruning (:func:`~lightnets.compress.prune_l1`) and fine-tuning.

>>> import lightnets
>>> from lightnets.data import load_dataset
>>> top1_accuracy(lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True),
...               load_dataset("fashion_mnist", limit=500))
94.0
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from torch import nn

from .. import _io
from ..inputs import read_as_fed, resolve_input_config
from ..training import evaluate, in_memory
from .prune import check_ratio, joined_layers, prune_l1

__all__ = ["top1_accuracy", "sensitivity_scan", "iterative_prune"]


def top1_accuracy(model: nn.Module, dataset: Any, batch_size: int = 500) -> float:
    """Top-1 (%, to 2 decimals) of ``model`` on a dataset (lightnets.data form), fed as the eval harness feeds it.

    Images are fed at the model's input size and channels, normalised with its ``pretrained_cfg`` mean / std,
    an image folder decoded with its weights' ``crop_pct`` and ``interpolation`` (:mod:`lightnets.inputs`,
    the harness's rule for a model passed in), ``batch_size`` at a time (:func:`lightnets.training.evaluate`).
    It runs where the model's parameters are (``model.cuda()`` first to measure on a GPU) and leaves the
    model in eval mode.
    """
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    num_classes, classes = getattr(model, "num_classes", None), list(dataset.classes)
    label = cfg.get("architecture") or type(model).__name__
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(f"{label} predicts {num_classes} classes but the dataset has {len(classes)}")
    if cfg.get("label_names") and list(cfg["label_names"]) != classes:
        warnings.warn(f"{label} was trained on the classes {list(cfg['label_names'])[:3]} ... but the dataset's are "
                      f"{classes[:3]} ...: its accuracy is measured against labels it did not learn", stacklevel=2)
    config = resolve_input_config(model)
    images, labels = in_memory(read_as_fed(dataset, config))
    return evaluate(model, images, labels, batch_size=batch_size, prepare=config.normalize)["top1"]


def sensitivity_scan(
    model: nn.Module,
    dataset: Any,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    layers: Optional[Sequence[str]] = None,
    plot: Optional[str] = None,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Prune each layer alone at each ratio and measure top-1 on ``dataset`` (Li et al., Sec. 3.3, Fig. 2b).

    Returns rows ``{layer, ratio, top1, drop, joined}`` (``drop``: points of top-1 lost; ``joined``: the
    other convs a residual add prunes with ``layer``), prints them as a table when ``verbose`` and draws
    top-1 against ratio, one line per layer, to the PNG ``plot``. ``layers`` defaults to every prunable
    conv, one entry per joined set (:func:`joined_layers`). A layer that cannot lose that fraction alone
    (a grouped conv would keep zero or unequal channels per group, as in narrow ShuffleNets) gets
    ``top1`` and ``drop`` None and the reason under ``error``.

    >>> import lightnets
    >>> from lightnets.data import load_dataset
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> rows = sensitivity_scan(model, load_dataset("fashion_mnist", limit=50), (0.5,), verbose=False)
    >>> [row["layer"] for row in rows]
    ['features.conv1.conv', 'features.conv2.conv', 'features.conv3.conv']
    """
    for value in ratios:
        check_ratio("ratios", value)
    sets = joined_layers(model)
    names = list(layers) if layers is not None else list(sets)
    partners = {name: [other for other in members if other != name] for members in sets.values() for name in members}
    base = top1_accuracy(model, dataset)
    rows = []
    for name in names:
        for value in ratios:
            row = {"layer": name, "ratio": value, "joined": partners.get(name, [])}
            try:
                pruned = prune_l1(model, {name: value})
            except ValueError as error:
                rows.append({**row, "top1": None, "drop": None, "error": str(error)})
                continue
            accuracy = top1_accuracy(pruned, dataset)
            rows.append({**row, "top1": accuracy, "drop": base - accuracy})
    if verbose:
        print(f"{'layer':<32} {'ratio':>6} {'top-1 %':>8} {'drop':>7}   (unpruned: {base:.2f}%)")
        for row in rows:
            joined = f"   + {len(row['joined'])} convs joined by adds" if row["joined"] else ""
            if row["top1"] is None:
                print(f"{row['layer']:<32} {row['ratio']:>6.2f} {'–':>8} {'–':>7}   {row['error']}")
            else:
                print(f"{row['layer']:<32} {row['ratio']:>6.2f} {row['top1']:>8.2f} {row['drop']:>7.2f}{joined}")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        for name in names:
            mine = [row for row in rows if row["layer"] == name and row["top1"] is not None]
            label = f"{name} (+{len(partners[name])} joined)" if partners.get(name) else name
            axes.plot([0] + [r["ratio"] for r in mine], [base] + [r["top1"] for r in mine], marker="o", label=label)
        axes.set(xlabel="fraction of filters removed", ylabel="top-1 (%)", title="L1 pruning, one layer at a time")
        axes.legend(fontsize=7)
        figure.tight_layout()
        with _io.atomic_path(plot) as temporary:  # written whole, then named; the format is the name's, else PNG
            figure.savefig(temporary, dpi=120, format=Path(plot).suffix.lstrip(".") or "png")
        plt.close(figure)
    return rows


def iterative_prune(
    model: nn.Module,
    steps: Sequence[Union[float, Mapping[str, float]]],
    finetune_fn: Callable[[nn.Module], Any],
) -> list[nn.Module]:
    """Prune → fine-tune, step by step; each step's ratio applies to the model the previous step left.

    ``steps``: ratios for :func:`prune_l1` (e.g. ``(0.2, 0.2)`` removes 20% then 20% of what is left).
    ``finetune_fn(model)`` trains the pruned model in place (e.g. ``lambda m: finetune(m, train_set)``).
    Returns the model after each step.
    """
    models = []
    for step in steps:
        model = prune_l1(model, step)
        finetune_fn(model)
        models.append(model)
    return models
