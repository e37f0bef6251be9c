"""What the compression experiments share (``scripts/seed_experiment.py``, ``scripts/criteria_experiment.py``):
the shipped Fashion-MNIST weights, the data loaded once, fine-tunes cached on disk, and the cost of each variant
measured against the model it came from and written as Markdown.

Each experiment has two stages: ``train`` (fine-tunes, cached by :func:`cached`; CPU-heavy) and ``measure``
(params, MACs and latency through :func:`~lightnets.evaluation.engine.evaluate`, on a quiet machine), so
the numbers of a table come from one measuring run of models trained once.

>>> row = {"params": 1000, "macs": 2e6, "ms_per_img_bs1": 0.5, "ms_per_img_bs100": 0.05, "mac_ratio": 0.5,
...        "speedup_bs1": 1.5, "speedup_bs100": 1.8, "speedup_per_mac_reduction_bs1": 0.75,
...        "speedup_per_mac_reduction_bs100": 0.9}
>>> cost_cells(row)
'| 1,000 | 2.00 | 0.500 | 0.0500 | 2.00× | 1.50× | 1.80× | 0.75 | 0.90 |'
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import load_dataset
from ..inputs import resolve_input_config
from ..machine import environment
from ..pretrained.manifest import WEIGHTS_DIR
from ..registry import create_model
from .engine import evaluate

__all__ = ["CALIBRATION_IMAGES", "COST_HEADER", "Data", "cached", "cost_cells", "header", "measure_against", "weights"]

CALIBRATION_IMAGES = 512  # the first training images a conversion or a pruning criterion is calibrated on
LATENCY_BATCH_SIZES = (1, 100)
COST_HEADER = ("| params | MMACs | ms/img bs1 | ms/img bs100 | MAC reduction | speedup bs1 | speedup bs100 "
               "| speedup ÷ MAC reduction bs1 | bs100 |")


def weights(name: str, tag: str = "fmnist") -> Optional[nn.Module]:
    """The shipped Fashion-MNIST model ``name.tag``, or None (with a message) when it is not trained yet."""
    folder = WEIGHTS_DIR / f"{name}.{tag}"
    if not (folder / "model.safetensors").is_file():
        print(f"skip {name}.{tag}: weights/{name}.{tag} is not trained yet (scripts/train_fmnist_zoo.sh)")
        return None
    # From the folder itself, so a weight the trainer just wrote counts before weights/index.json is rebuilt.
    model = create_model(name, pretrained=True, pretrained_path=str(folder)).eval()
    model.pretrained_cfg["metrics"] = json.loads((folder / "config.json").read_text())["lightnets"]["metrics"]
    return model


class Data:
    """Fashion-MNIST train split (fine-tuning, calibration) and test split (accuracy), loaded once."""

    def __init__(self) -> None:
        self._train = self._test = None

    @property
    def train(self) -> Any:
        if self._train is None:
            self._train = load_dataset("fashion_mnist", "train")
        return self._train

    @property
    def test(self) -> Any:
        if self._test is None:
            self._test = load_dataset("fashion_mnist", "test")
        return self._test

    def calibration(self, model: nn.Module, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
        """The first ``count`` training images as ``model``'s input (:func:`lightnets.inputs.resolve_input_config`)."""
        return resolve_input_config(model).normalize(self.train.images[:count])


def cached(key: str, build: Callable[[], nn.Module], train: Optional[Callable[[nn.Module], dict[str, Any]]],
           stage: str, retrain: bool, cache: Path) -> Optional[tuple[nn.Module, dict[str, Any]]]:
    """(model, record) of a fine-tuned variant: built by ``build`` (deterministic structure), trained by
    ``train`` once and cached as KEY.{safetensors,json} under ``cache``. None when the measure stage finds
    no cache."""
    path = cache / key
    model = build()
    if path.with_suffix(".json").is_file() and not retrain:
        model.load_state_dict(load_file(path.with_suffix(".safetensors")))
        return model.eval(), json.loads(path.with_suffix(".json").read_text())
    if stage == "measure":
        print(f"skip {key}: not fine-tuned yet (run --stage train first)")
        return None
    started = time.time()
    record = train(model) if train is not None else {}
    record["train_s"] = round(time.time() - started, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path.with_suffix(".safetensors"))
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{key}: {record}", flush=True)
    return model.eval(), record


def measure_against(
    base: nn.Module, variants: list[dict[str, Any]], *, repeats: int, threads: int
) -> list[dict[str, Any]]:
    """params, MACs and latency at batch 1 and 100 (:func:`~lightnets.evaluation.engine.evaluate`) of ``base``
    and each variant's ``model``, against ``base``; each row carries its variant's other keys (the accuracy
    recorded when it was fine-tuned)."""
    rows = evaluate([base] + [v["model"] for v in variants], "fashion_mnist", accuracy=False,
                    latency_batch_sizes=LATENCY_BATCH_SIZES, repeats=repeats, warmup=5, threads=threads,
                    baseline=base, progress=False)
    recorded = [{}] + [{key: value for key, value in v.items() if key != "model"} for v in variants]
    return [{**row, **record} for row, record in zip(rows, recorded)]  # accuracy as recorded after fine-tuning


def cost_cells(row: dict[str, Any]) -> str:
    """The :data:`COST_HEADER` cells of a :func:`measure_against` row, as Markdown."""
    reduction = 1 / row["mac_ratio"]
    return (
        f"| {row['params']:,} | {row['macs'] / 1e6:.2f} | {row['ms_per_img_bs1']:.3f} | {row['ms_per_img_bs100']:.4f} "
        f"| {reduction:.2f}× | {row['speedup_bs1']:.2f}× | {row['speedup_bs100']:.2f}× "
        f"| {row['speedup_per_mac_reduction_bs1']:.2f} | {row['speedup_per_mac_reduction_bs100']:.2f} |"
    )


def header(title: str, command: str, *, repeats: int, threads: int) -> list[str]:
    """The first lines of an experiment's Markdown: its title, the ``command`` that wrote it, the machine and
    how latency was measured (:func:`lightnets.machine.environment`)."""
    env = environment()
    return [f"# {title}", "", f"Generated by `{command}`.", "",
            f"<sub>CPU: {env['cpu']}; latency threads: {threads}; torch {env['torch']}; eager fp32, NCHW; "
            f"median of {repeats} interleaved repeats (lightnets.evaluation, the engine of `python -m eval`); "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</sub>", ""]
