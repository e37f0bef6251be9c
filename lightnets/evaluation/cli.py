"""Command line of the eval harness: ``python -m eval`` in a source checkout; ``lightnets-eval`` or
``python -m lightnets.eval`` where lightnets is installed.

    python -m eval --model smallcnn_3x2 --model smallcnn_3x2_dw123 --baseline smallcnn_3x2
    python -m eval --model 'mobilenet_v1_0*' --small-input --latency-batch-sizes 1,100 --plot zoo.png
    python -m eval --all-pretrained --format md --output zoo.md
    python -m eval --all-pretrained --accuracy-backend eager --latency-batch-sizes 1,100 --memory   # results/zoo.md
    python -m eval --model mobilenet_v1_100 --dataset synthetic --latency-batch-sizes 1,32

By default a bundled weight's top-1 and top-5 are the ones weights/index.json records (measured on
the whole test split when it was published, and measured again by the test suite), other accuracy is
measured on the fastest installed backend (OpenVINO, then ONNX Runtime: the model's BatchNorm-folded
float32 export) and cached, latency is timed on the eager model at batch 1, and peak memory only with
--memory: all the bundled Fashion-MNIST weights take about 12 s on 2 cores. --remeasure measures
every accuracy now (about 95 s; the results scripts use it).

Input size: a model is evaluated at its own input size (``--img-size`` to choose another), the
dataset's images converted to its channels and resized to it — so a 224-px ImageNet model sees
Fashion-MNIST upsampled to 224 px. ``--small-input`` builds the small-image form instead
(``small_input=True``) at the dataset's size and channels, as the models trained on it are.
Without weights a model is measured at random init, with the dataset's number of classes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from .._io import STDOUT, WriteError, check_writable, write_text
from .backends import ACCURACY_BACKENDS
from .figure import plot
from .report import FORMATS, render

# Nothing above imports torch: --help and usage errors answer at once.
PROG = "python -m eval"  # the repository-root runner; an installed lightnets names itself lightnets-eval


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def batch_size_list(text: str) -> list[int]:
    """``"1,100"`` → ``[1, 100]``: the one spelling of a list of batch sizes in every lightnets command line."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,100, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return list(dict.fromkeys(sizes))


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Accuracy, parameters, MACs, latency and memory of lightnets models, "
                                       "side by side, in one run.",
                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    models = p.add_argument_group("models")
    models.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="model name, name.tag or glob ('mobilenet_v1*'); repeatable")
    models.add_argument(
        "--all-pretrained", action="store_true", help="every model.tag with weights trained on --dataset"
    )
    models.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                        help="load pretrained weights (default: when the model has any)")
    models.add_argument(
        "--checkpoint", metavar="PATH", help="weights to load: .safetensors, .pth, or a Hub-layout folder (one model)"
    )
    models.add_argument("--small-input", action="store_true", help="build the small-image form at the dataset's size")
    models.add_argument("--img-size", type=int, metavar="PX", help="input side to evaluate at (default: the model's)")
    models.add_argument("--baseline", metavar="NAME", help="add ratio columns against this model (added if not listed)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="fashion_mnist",
                      help="fashion_mnist (default, embedded), cifar10, imagefolder:PATH, synthetic")
    data.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's files")
    data.add_argument("--download", action="store_true", help="download missing dataset files (checksums verified)")
    data.add_argument("--split", default="test", help="train, test (imagefolder: train, val, test); default test")
    data.add_argument("--limit", type=int, metavar="N", help="evaluate on the first N images only")
    data.add_argument("--batch-size", type=int, default=100,
                      help="batch size of the accuracy pass (default 100: the fastest for OpenVINO on 2 cores)")
    data.add_argument("--workers", type=int, default=4, help="data loader workers for imagefolder (default 4)")
    timing = p.add_argument_group("measurement")
    timing.add_argument("--no-accuracy", action="store_true", help="MACs, latency and memory only")
    timing.add_argument("--remeasure", action="store_true",
                        help="measure every accuracy now: by default a bundled weight's is the one weights/index.json "
                             "records for the same data, and another identical measurement (same weights sha256, data, "
                             "backend and lightnets code) is read from the cache")
    timing.add_argument("--accuracy-backend", choices=("auto", *ACCURACY_BACKENDS), default="auto",
                        help="what the accuracy pass runs on: auto (default: per model, the float path measured "
                             "fastest here, cached), openvino, onnxruntime (BatchNorm-folded float32 exports) or eager "
                             "(the model itself)")
    timing.add_argument("--latency-backends", type=lambda text: [b for b in text.split(",") if b], default=[],
                        metavar="B,B",
                        help="also time each model through these deployment paths, a row each, side by side: "
                             "onnxruntime, openvino, torchscript, executorch, executorch-int8, litert, litert-int8, "
                             "onnxruntime-int8 (int8 calibrated on the evaluation images)")
    timing.add_argument("--latency-batch-sizes", type=batch_size_list, default=[1], metavar="B,B",
                        help="batch sizes to time, comma-separated (default 1)")
    timing.add_argument("--memory", action="store_true",
                        help="also measure peak memory of a forward pass at the largest latency batch size")
    timing.add_argument("--repeats", type=int, default=10, help="timed repeats per model and batch size (default 10)")
    timing.add_argument("--warmup", type=int, default=5, help="warm-up passes per model and batch size (default 5)")
    timing.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, e.g. OMP_NUM_THREADS)")
    timing.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format for models and inputs"
    )
    timing.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    timing.add_argument("--seed", type=int, default=0, help="seed of the random latency input (default 0)")
    output = p.add_argument_group("output")
    output.add_argument("--format", choices=FORMATS, default="table", help="table (default), md, csv or json")
    output.add_argument("--output", metavar="FILE", help="write the table to FILE (default, or -: stdout)")
    output.add_argument("--plot", metavar="FILE.png", help="draw top-1 vs MACs and vs latency, Pareto front marked")
    output.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def pretrained_for(dataset: str, num_classes: Optional[int] = None) -> list[str]:
    """Every ``name.tag`` with weights trained on ``dataset``; for an image folder or synthetic data, every
    weight (with ``num_classes``, those that predict that many classes: an image folder's accuracy needs it)."""
    from lightnets import get_pretrained_cfg, list_pretrained

    names = list(list_pretrained())
    if dataset.partition(":")[0] in ("imagefolder", "synthetic"):
        return [
            name for name in names if num_classes is None or get_pretrained_cfg(name).get("num_classes") == num_classes
        ]
    return [name for name in names if get_pretrained_cfg(name).get("dataset") == dataset]


def model_names(patterns: Sequence[str], all_pretrained: bool, dataset: str = "fashion_mnist",
                num_classes: Optional[int] = None, pretrained: Optional[bool] = None) -> list[str]:
    """Expand globs (on names and name.tag) and --all-pretrained into a list of distinct model names.

    A glob that matches a model and its weights names each weight once: the bare name, which would load
    its default weight again, is left out (unless ``pretrained`` is False: then it is the paper's form).
    """
    from lightnets import get_pretrained_cfg, list_models, list_pretrained

    names: list[str] = pretrained_for(dataset, num_classes) if all_pretrained else []
    if all_pretrained and not names:
        classes = f" that predict {num_classes} classes" if num_classes is not None else ""
        raise ValueError(f"no weights trained on {dataset}{classes} yet (see lightnets.list_pretrained()); "
                         "name models with --model")
    usable: Optional[set[str]] = None  # read once, and only for a glob
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            # The weights a glob names are those for this dataset (the ImageNet ones for an image folder).
            usable = usable if usable is not None else set(pretrained_for(dataset, num_classes))
            tagged = [name for name in list_pretrained(pattern) if name in usable]
            bare = list_models(pattern)
            if pretrained is not False:
                # A bare name would load one of its weights again (the one for this dataset, or its default).
                bare = [n for n in bare if not any(t.partition(".")[0] == n for t in tagged)
                        and f"{n}.{get_pretrained_cfg(n)['tag']}" not in tagged]
            matched = sorted(bare + tagged)
            if not matched:
                raise ValueError(f"no model matches {pattern!r}; see lightnets.list_models()")
        else:
            matched = [pattern]  # create_model reports an unknown name, with close matches
        names += [name for name in matched if name not in names]
    if not names:
        raise ValueError("give --model NAME (repeatable, globs allowed) or --all-pretrained")
    return names


def _check_writable(option: str, path: Optional[str]) -> None:
    """A file the run will write: not a folder, not read-only; its folder is made now (``runs/`` on a fresh clone)."""
    if path is None or path == STDOUT:
        return
    if Path(path).is_dir():
        raise ValueError(
            f"{option} {path} is a folder; give a file name, "
            f"e.g. {Path(path) / ('zoo.png' if option == '--plot' else 'zoo.md')}"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    check_writable(path)


def _latency_backends(names: list[str]) -> list[str]:
    """--latency-backends checked against what optimize_for_inference knows ("auto" excluded: name the paths)."""
    from lightnets.deploy import BACKENDS

    unknown = [name for name in names if name not in BACKENDS[1:]]
    if unknown:
        raise ValueError(f"--latency-backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS[1:])}")
    return names


def _backend(choice: str, device: str) -> str:
    """The accuracy pass's backend: eager on a GPU (the exports run on the CPU), else the choice resolved."""
    from .backends import accuracy_backend

    if not device.startswith("cpu"):
        return "eager" if choice == "auto" else accuracy_backend(choice)
    return accuracy_backend(choice)


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Run the harness; returns the exit status (2 for bad input, with a one-line error on stderr).

    ``prog``: the command as the user typed it, for usage, errors and the footer's command line.

    >>> main(["--model", "smallcnn_3x2", "--dataset", "synthetic", "--repeats", "1", "--warmup", "0",
    ...       "--format", "csv", "--output", "/dev/null", "--no-progress"])
    0
    """
    args = build_parser(prog).parse_args(argv)  # before importing torch: --help and usage errors answer at once
    import torch

    # The package's names, looked up now: what a caller replaced there is what runs.
    from lightnets.evaluation import environment, evaluate, machine_load

    load = machine_load()  # before this run adds its own load
    try:
        for option, path in (("--output", args.output), ("--plot", args.plot)):
            _check_writable(option, path)  # before minutes of measuring, not after
        if args.plot and (args.no_accuracy or args.dataset == "synthetic"):
            raise ValueError("--plot draws top-1 accuracy; it needs a dataset with labels and no --no-accuracy")
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)  # for the whole run, so the footer reports it
        num_classes = None
        if args.all_pretrained and args.dataset.startswith("imagefolder:") and not args.no_accuracy:
            from lightnets.data import load_dataset

            num_classes = len(load_dataset(args.dataset, args.split, limit=1).classes)
        names = model_names(args.model, args.all_pretrained, args.dataset, num_classes, args.pretrained)
        backend = _backend(args.accuracy_backend, args.device)
        rows = evaluate(
            names, args.dataset, split=args.split, data_dir=args.data_dir, download=args.download, limit=args.limit,
            batch_size=args.batch_size, img_size=args.img_size, small_input=args.small_input,
            pretrained=args.pretrained, checkpoint=args.checkpoint, accuracy=not args.no_accuracy, memory=args.memory,
            accuracy_backend=backend, latency_batch_sizes=args.latency_batch_sizes,
            repeats=args.repeats, warmup=args.warmup, channels_last=args.channels_last,
            device=args.device, baseline=args.baseline, workers=args.workers, progress=not args.no_progress,
            seed=args.seed, accuracy_cache=not args.remeasure,
            # A backend named on the command line is a question about that backend: measure on it.
            recorded=not args.remeasure and args.accuracy_backend == "auto",
            latency_backends=_latency_backends(args.latency_backends),
        )
        settings = {
            "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
            "dataset": args.dataset, "split": args.split, "images": rows[0]["images"],
            "repeats": args.repeats, "warmup": args.warmup, "latency_batch_sizes": args.latency_batch_sizes,
            "peak_batch_size": max(args.latency_batch_sizes) if args.memory else None, "baseline": args.baseline,
            "accuracy_backend": (None if args.no_accuracy or all(row.get("accuracy_recorded") for row in rows)
                                 else backend),
            "accuracy_cached": sum(bool(row.get("accuracy_cached")) for row in rows),
            "accuracy_recorded": sum(bool(row.get("accuracy_recorded")) for row in rows),
            "latency_backends": args.latency_backends,
        }
        text = render(rows, args.format, environment(args.device, args.channels_last, load), settings)
        # The table first: a plot that fails does not lose the measurements.
        if args.output and args.output != STDOUT:
            write_text(args.output, text + "\n")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            print(text, flush=True)
        if args.plot:
            plot(rows, args.plot, title=f"{args.dataset} / {args.split}")
        if load and load["busy"]:
            print(
                f"{prog}: warning: the machine was busy (load {load['load_1min']:.2f} on {load['cores']} cores) when "
                "this run began: its latency figures are not to be trusted; measure on an idle machine",
                file=sys.stderr,
            )
    except WriteError as err:  # a file it could not write: one line naming it, no traceback
        print(f"{prog}: error: {err.strerror}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError, OSError) as err:  # bad input: one line, no traceback
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
