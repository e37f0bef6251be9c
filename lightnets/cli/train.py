"""Train, fine-tune or distil a lightnets model; runs unchanged under ``torchrun --nproc_per_node K``.

    python -m lightnets.train --model mobilenet_v1_050 --model-arg small_input=true \\
        --dataset fashion_mnist --epochs 30 --output runs/mobilenet_v1_050.fmnist --tag fmnist
    torchrun --nproc_per_node 4 -m lightnets.train --model shufflenet_g3 ...          # DDP, unchanged
    python -m lightnets.train --finetune-from mobilenet_v1_050.fmnist --dataset cifar10 ...
    python -m lightnets.train --model smallcnn_3x2_dw123 --teacher smallcnn_3x2.fmnist ...

Datasets are held in memory as uint8 tensors; augmentation (random crop with zero padding,
horizontal flip, random erasing, mixup / CutMix) runs batched on the training device
(:func:`lightnets.training.fit`, once per epoch). Under torchrun every process trains on its
DistributedSampler shard (gloo on CPU, nccl on GPU), metrics are summed across processes, and only
rank 0 writes: ``<work-dir>/last.pth`` (resumable with ``--resume``), ``<work-dir>/log.jsonl`` (one
JSON record per epoch) and, with ``--output``, the Hub-layout folder of the final model with its
measured test metrics (:func:`lightnets.save_pretrained`; ``--overwrite`` to replace a weight in
``weights/``). The arguments are parsed before torch is imported, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any, NoReturn, Optional, Sequence

from .train_config import TrainRunConfig
from .train_model import feature_pairs, teacher_sources

if TYPE_CHECKING:  # only for the annotations: torch is imported once the arguments are parsed
    from torch import nn

__all__ = ["build_parser", "check_args", "train", "main"]

PROG = "lightnets-train"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default once: appended unless the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = (
            action.default is None
            or action.default is False
            or action.default == []
            or action.default == argparse.SUPPRESS
        )
        if "default" in text or unset:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _usage_text() -> tuple[str, str]:
    """The help's description and its epilog of examples: the module docstring without its reST markup."""
    first, examples = (part.replace("``", "") for part in __doc__.split("\n\n")[:2])
    return first.replace("\n", " "), "examples:\n" + examples


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lightnets-train`` (no torch import: ``--help`` is instant).

    >>> build_parser().parse_args(["--model", "smallcnn_3x2"]).epochs
    30
    """
    description, epilog = _usage_text()
    p = _Parser(prog=PROG, description=description, epilog=epilog, formatter_class=_HelpFormatter)
    model = p.add_argument_group("model")
    model.add_argument("--model", metavar="NAME", help="registered model name, e.g. mobilenet_v1_050")
    model.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture argument, repeatable: --model-arg small_input=true --model-arg alpha=0.5")
    model.add_argument("--finetune-from", metavar="NAME_OR_PATH",
                       help="start from weights (name.tag, file or Hub folder) with a new head / in_chans")
    model.add_argument("--freeze-backbone", action="store_true",
                       help="train only the classifier (a linear probe); the frozen BatchNorms keep their statistics")
    model.add_argument("--freeze-bn", action="store_true",
                       help="keep every BatchNorm's statistics and affine parameters as loaded (small batches)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="fashion_mnist", metavar="NAME",
                      help="fashion_mnist, cifar10, synthetic (held in memory), imagefolder:PATH (class folders, "
                           "optionally under train/, val/ or validation/, test/) or hfds:PATH (a datasets "
                           "save_to_disk folder); files are streamed, decoded in --workers processes")
    data.add_argument("--val-split", type=float, metavar="FRACTION",
                      help="hold out this stratified, seeded fraction of the training images for validation when "
                           "the data has no validation split; with validation, the epoch of best validation top-1 "
                           "is the one published and the test split is evaluated once, at the end")
    data.add_argument("--img-size", type=int, metavar="PX",
                      help="train and evaluate image files at this side (default: the --finetune-from weights' "
                           "size, else the architecture's)")
    data.add_argument("--workers", type=int, metavar="N",
                      help="processes decoding image files (default: none when training on a CPU of 2 cores or fewer, "
                           "where decoding between steps is faster; else one per core beyond the first, at most 8)")
    data.add_argument("--on-bad-image", choices=("skip", "fail"), default="skip",
                      help="an undecodable image: skip it (counted, named in the log and card; the run stops once "
                           "over 1%% of the images read are bad, after 100 reads) or stop at once")
    data.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's files (default: the cache)")
    data.add_argument("--download", action="store_true", help="download missing dataset files (checksums verified)")
    data.add_argument("--limit", type=int, metavar="N", help="use only the first N training images (tiny runs)")
    data.add_argument("--limit-test", type=int, metavar="N", help="use only the first N test images (default: --limit)")
    optim = p.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, default=128, metavar="N", help="global batch, split across processes")
    optim.add_argument("--opt", choices=("sgd", "adamw"), default="sgd", help="SGD (Nesterov momentum) or AdamW")
    optim.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    optim.add_argument("--momentum", type=float, default=0.9, metavar="M", help="SGD momentum")
    optim.add_argument(
        "--weight-decay", type=float, default=5e-4, metavar="WD", help="on conv and linear weights (not BN, biases)"
    )
    optim.add_argument("--layer-decay", type=float, metavar="FACTOR",
                       help="layer-wise LR decay for fine-tuning, in (0, 1]: each layer learns at FACTOR times the "
                            "LR of the layer after it, the classifier at --lr (see ClassifierNet.group_matcher)")
    optim.add_argument(
        "--label-smoothing", type=float, default=0.1, metavar="EPS", help="cross-entropy label smoothing"
    )
    optim.add_argument("--bn-l1", type=float, default=0.0, metavar="LAMBDA",
                       help="L1 penalty on every BatchNorm scale γ (network slimming, Liu et al. 2017: 1e-4 or 1e-5); "
                            "prune the result with lightnets.prune(model, ratio, 'slimming')")
    schedule = p.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, default=30, metavar="N", help="passes over the training images")
    schedule.add_argument("--sched", choices=("cosine", "onecycle", "constant"), default="cosine",
                          help="per-step LR schedule (onecycle: Smith 2018)")
    schedule.add_argument(
        "--warmup-epochs", type=float, default=1.0, metavar="E", help="linear LR warm-up of the cosine schedule"
    )
    aug = p.add_argument_group("augmentation")
    aug.add_argument("--pad", type=int, default=4, metavar="PX", help="random-crop padding in pixels (0: no crop)")
    aug.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    aug.add_argument("--reprob", type=float, default=0.0, metavar="P",
                     help="random erasing probability per image (timm's name; 0.25 is a common choice)")
    aug.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                     help="mixup with λ ~ Beta(ALPHA, ALPHA) (timm's name; 0.2 is a common choice; 0: off)")
    aug.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                     help="CutMix with λ ~ Beta(ALPHA, ALPHA) (1.0 is the paper's); with --mixup too, each batch gets "
                          "one of the two")
    aug.add_argument("--mix-prob", type=float, default=1.0, metavar="P",
                     help="share of batches that --mixup / --cutmix mix (timm's --mixup-prob)")
    files = p.add_argument_group("augmentation of image files (timm's training transforms, in the workers)")
    files.add_argument("--train-transform", choices=("timm", "small"), default="timm",
                       help="timm: RandomResizedCrop, flip, colour jitter or --aa; small: the evaluation crop, then "
                            "--pad crop and flip, as for Fashion-MNIST in memory")
    files.add_argument("--scale", type=float, nargs=2, default=(0.25, 1.0), metavar=("MIN", "MAX"),
                       help="RandomResizedCrop's area range (gentler than ImageNet's 0.08 for small models)")
    files.add_argument("--ratio", type=float, nargs=2, default=(3 / 4, 4 / 3), metavar=("MIN", "MAX"),
                       help="RandomResizedCrop's aspect-ratio range")
    files.add_argument("--color-jitter", type=float, default=0.4, metavar="F",
                       help="brightness, contrast and saturation jitter (off under --aa, as in timm)")
    files.add_argument("--aa", metavar="POLICY", help="timm auto-augment policy, e.g. rand-m9-mstd0.5 (RandAugment)")
    distil = p.add_argument_group("distillation")
    distil.add_argument("--teacher", metavar="NAME_OR_PATH[,...]",
                        help="distil from this pretrained model (name.tag, or a Hub folder that train --output wrote); "
                             "several, separated by commas, teach as an ensemble: their softmax outputs averaged")
    distil.add_argument("--distill-alpha", type=float, default=0.5, metavar="A", help="weight of the soft-target term")
    distil.add_argument("--distill-T", type=float, default=4.0, metavar="T", help="distillation temperature")
    distil.add_argument("--distill-features", choices=("hint", "attention"),
                        help="also match the --teacher's feature maps (one teacher): FitNets hints through 1×1 "
                             "adapters, or attention transfer; --distill-alpha 0 keeps only this term and the labels")
    distil.add_argument("--feature-weight", type=float, metavar="W",
                        help="weight of the feature term (default: 1 for hint, 50 for attention)")
    distil.add_argument("--feature-pairs", metavar="S:T[,S:T...]",
                        help="student:teacher feature_info indices to pair (default: the deepest map at each "
                             "reduction both have)")
    run = p.add_argument_group("runtime")
    run.add_argument("--device", metavar="DEVICE", help="cpu, cuda (default: cuda if available)")
    run.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                     help="auto: bf16 autocast on CUDA (fp16 + loss scaling on GPUs without bf16), float32 on the CPU; "
                          "bf16: bf16 autocast on the CPU too (faster for dense convs on CPUs with AMX / AVX512-BF16, "
                          "slower for depthwise ones; emulated and far slower elsewhere)")
    run.add_argument("--no-channels-last", action="store_true", help="keep the model and inputs in NCHW memory format")
    run.add_argument("--grad-checkpointing", action="store_true",
                     help="recompute the body's activations in the backward pass instead of keeping them (less memory, "
                          "about a third more compute per step); see ClassifierNet.set_grad_checkpointing")
    run.add_argument("--compile", action="store_true",
                     help="train through torch.compile (inductor; on the CPU it needs a C++ compiler). Checkpoints and "
                          "--output are the same as without it; the first steps are slow while it compiles")
    run.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the model's init, the data order and augmentation"
    )
    run.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on GPU)")
    out = p.add_argument_group("output")
    out.add_argument("--work-dir", metavar="DIR", help="checkpoints and log (default: runs/<model>-<dataset>-s<seed>)")
    out.add_argument("--resume", action="store_true", help="continue from <work-dir>/last.pth if it exists")
    out.add_argument("--output", metavar="DIR", help="write the final model here as a Hub-layout folder")
    out.add_argument("--tag", metavar="TAG", help="pretrained tag recorded in --output (e.g. fmnist)")
    out.add_argument(
        "--fp16-weights", action="store_true", help="store --output weights in float16 (metrics measured on them)"
    )
    out.add_argument("--overwrite", action="store_true",
                     help="let --output replace a weight in the bundled weights/ folder, "
                          "or a folder holding another model")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible settings before any data is read or process group is joined.

    >>> check_args(build_parser().parse_args(["--model", "smallcnn_3x2", "--lr", "0"]))
    Traceback (most recent call last):
    ValueError: --lr must be > 0, got 0.0
    """
    for name, value in vars(args).items():  # NaN passes every comparison below: refuse it (and ±inf) first
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("limit", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.val_split is not None and not 0.0 < args.val_split < 1.0:
        raise ValueError(f"--val-split must be a fraction in (0, 1), got {args.val_split}")
    for name in ("img_size", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < (1 if name == "img_size" else 0):
            raise ValueError(f"--{name.replace('_', '-')} must be >= {1 if name == 'img_size' else 0}, "
                             f"got {getattr(args, name)}")
    if not 0.0 < args.scale[0] <= args.scale[1] <= 1.0:
        raise ValueError(f"--scale must be two fractions 0 < MIN <= MAX <= 1, got {args.scale[0]} {args.scale[1]}")
    if not 0.0 < args.ratio[0] <= args.ratio[1]:
        raise ValueError(f"--ratio must be 0 < MIN <= MAX, got {args.ratio[0]} {args.ratio[1]}")
    if args.color_jitter < 0:
        raise ValueError(f"--color-jitter must be >= 0, got {args.color_jitter}")
    if args.freeze_backbone and not args.finetune_from:
        raise ValueError("--freeze-backbone trains only a new head on pretrained features: give --finetune-from")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    for name in ("weight_decay", "warmup_epochs", "pad", "bn_l1"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.layer_decay is not None and not 0.0 < args.layer_decay <= 1.0:
        raise ValueError(f"--layer-decay must be in (0, 1], got {args.layer_decay}")
    if not 0.0 <= args.reprob <= 1.0:
        raise ValueError(f"--reprob must be in [0, 1], got {args.reprob}")
    for name in ("mixup", "cutmix"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0 (0: off), got {getattr(args, name)}")
    if not 0.0 <= args.mix_prob <= 1.0:
        raise ValueError(f"--mix-prob must be in [0, 1], got {args.mix_prob}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0.0 <= args.distill_alpha <= 1.0:
        raise ValueError(f"--distill-alpha must be in [0, 1], got {args.distill_alpha}")
    if args.distill_T <= 0:
        raise ValueError(f"--distill-T must be > 0, got {args.distill_T}")
    if args.distill_features:
        if not args.teacher or len(teacher_sources(args.teacher)) != 1:
            raise ValueError("--distill-features matches one teacher's feature maps: give --teacher NAME_OR_PATH "
                             f"(one model), got {args.teacher!r}")
    elif args.feature_weight is not None or args.feature_pairs:
        raise ValueError("--feature-weight and --feature-pairs apply to --distill-features hint|attention; give it too")
    if args.feature_weight is not None and not (math.isfinite(args.feature_weight) and args.feature_weight > 0):
        raise ValueError(f"--feature-weight must be a finite number > 0, got {args.feature_weight}")
    if args.feature_pairs:
        feature_pairs(args.feature_pairs)
    if not args.model and not args.finetune_from:
        raise ValueError("give --model NAME (or --finetune-from NAME.tag / PATH)")
    from ..training.runtime import check_device

    check_device(args.device)
    if args.compile:
        from .. import deploy
        from ..training.runtime import uses_cuda

        if not uses_cuda(args.device) and deploy.cpp_compiler() is None:
            raise ValueError("--compile on the CPU needs a C++ compiler for inductor's kernels "
                             "(install g++ or clang++, or set CXX); drop --compile to train eagerly")


def train(argv: Sequence[str], train_set: Any = None, test_set: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """Run a training from command-line arguments; returns the model and the last epoch's record (test metrics
    included).

    ``train_set`` / ``test_set`` replace ``--dataset`` with datasets in lightnets.data's in-memory form
    (``.images`` uint8 N×C×H×W, ``.labels``, ``.classes``). Each epoch prints its record as a JSON line.

    >>> import tempfile
    >>> from lightnets.data import load_dataset
    >>> data = load_dataset("fashion_mnist", limit=64)
    >>> with tempfile.TemporaryDirectory() as work_dir:  # doctest: +ELLIPSIS
    ...     model, record = train(["--model", "smallcnn_3x2", "--model-arg", "small_input=true", "--epochs", "1",
    ...                            "--batch-size", "32", "--no-progress", "--work-dir", work_dir], data, data)
    {"epoch": 1, "lr": ...}
    >>> record["epoch"], model.num_classes
    (1, 10)
    """
    args = build_parser().parse_args(list(argv))
    check_args(args)
    from .train_run import run_training

    return run_training(TrainRunConfig.from_args(args, argv), train_set, test_set)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m lightnets.train`` / ``lightnets-train``; returns the exit status: 2, with one
    line ``lightnets-train: error: ...`` on stderr, for a user's mistake (a bad value, an unknown model,
    a missing file).

    >>> main(["--model", "smallcnn_3x2", "--epochs", "0"])
    2
    """
    try:
        train(sys.argv[1:] if argv is None else argv)
    except (ValueError, TypeError, OSError) as error:  # bad arguments, unknown model or weights, missing files
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
