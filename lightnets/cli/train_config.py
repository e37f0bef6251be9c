"""The settings of one ``lightnets-train`` run, as one typed object built once from the command line.

:mod:`lightnets.cli.train` parses and checks the arguments, then hands a :class:`TrainRunConfig` to the run
(:mod:`lightnets.cli.train_run`), which never sees argparse. Each field is the option of the same name
(``--finetune-from`` is ``finetune_from``) with the value argparse gave it; the defaults live in the parser only.

>>> from lightnets.cli.train import build_parser
>>> argv = ["--model", "smallcnn_3x2", "--epochs", "2"]
>>> config = TrainRunConfig.from_args(build_parser().parse_args(argv), argv)
>>> config.epochs, config.lr, config.command
(2, 0.05, ('--model', 'smallcnn_3x2', '--epochs', '2'))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    import argparse

__all__ = ["RUN_SETTINGS", "TrainRunConfig"]

# Settings that define a run: resuming with another value would silently train something else.
RUN_SETTINGS = ("model", "model_arg", "dataset", "limit", "val_split", "img_size", "epochs", "batch_size", "opt",
                "lr", "momentum", "weight_decay", "layer_decay", "sched", "warmup_epochs", "label_smoothing", "pad",
                "no_flip", "reprob", "seed", "finetune_from", "teacher", "distill_alpha", "distill_T", "mixup",
                "cutmix", "mix_prob", "bn_l1", "distill_features", "feature_weight", "feature_pairs",
                "train_transform", "scale", "ratio", "color_jitter", "aa", "freeze_backbone", "freeze_bn")


@dataclass(frozen=True)
class TrainRunConfig:
    """Every option of ``lightnets-train`` (see ``lightnets-train --help`` for each one's meaning and default)."""

    # model
    model: Optional[str]
    model_arg: list[str]
    finetune_from: Optional[str]
    freeze_backbone: bool
    freeze_bn: bool
    # data
    dataset: str
    data_dir: Optional[str]
    download: bool
    limit: Optional[int]
    limit_test: Optional[int]
    val_split: Optional[float]
    img_size: Optional[int]
    workers: Optional[int]
    on_bad_image: str
    # optimisation
    batch_size: int
    opt: str
    lr: float
    momentum: float
    weight_decay: float
    layer_decay: Optional[float]
    label_smoothing: float
    bn_l1: float
    # schedule
    epochs: int
    sched: str
    warmup_epochs: float
    # augmentation
    pad: int
    no_flip: bool
    reprob: float
    mixup: float
    cutmix: float
    mix_prob: float
    train_transform: str
    scale: list[float]  # lists, as args.json holds them, so a resumed run compares equal
    ratio: list[float]
    color_jitter: float
    aa: Optional[str]
    # distillation
    teacher: Optional[str]
    distill_alpha: float
    distill_T: float  # noqa: N815  (the option is --distill-T)
    distill_features: Optional[str]
    feature_weight: Optional[float]
    feature_pairs: Optional[str]
    # runtime
    device: Optional[str]
    amp: str
    no_channels_last: bool
    grad_checkpointing: bool
    compile: bool
    seed: int
    deterministic: bool
    # output
    work_dir: Optional[str]
    resume: bool
    output: Optional[str]
    tag: Optional[str]
    fp16_weights: bool
    overwrite: bool
    no_progress: bool
    # the arguments as given, recorded in the weight card's training command
    command: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace, argv: Sequence[str]) -> TrainRunConfig:
        """The config of parsed arguments; an option the config does not know is a TypeError naming it."""
        values = {**vars(args), "scale": [float(v) for v in args.scale], "ratio": [float(v) for v in args.ratio]}
        return cls(**values, command=tuple(argv))

    def arguments(self) -> dict[str, Any]:
        """The options and their values (without ``command``): what ``<work-dir>/args.json`` records."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "command"}

    def run_settings(self) -> dict[str, Any]:
        """The values of :data:`RUN_SETTINGS`, which a checkpoint carries so that ``--resume`` can compare them."""
        return {key: getattr(self, key) for key in RUN_SETTINGS}

    @property
    def run_dir(self) -> Path:
        """``--work-dir``, by default ``runs/<model>-<dataset>-s<seed>``."""
        default = f"runs/{(self.model or self.finetune_from).replace('/', '_')}-{self.dataset}-s{self.seed}"
        return Path(self.work_dir or default)
