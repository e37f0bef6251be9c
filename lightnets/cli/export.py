"""``lightnets-export`` / ``python -m lightnets.cli.export``: a model to an ExecuTorch, LiteRT or ONNX file.

    lightnets-export mobilenet_v1_025.fmnist --format executorch --output mobilenet.pte
    lightnets-export shufflenet_g3_050.fmnist --format litert --quantize int8 --calibration fashion_mnist:512 \\
        --output shufflenet.int8.tflite
    lightnets-export runs/mine/weight --format executorch --app-input --output mine.pte
    lightnets-export mobilenet_v1_050.fmnist --format executorch --quantize int8-per-tensor \\
        --qat-epochs 1 --qat-data fashion_mnist:10000 --output mobilenet.qat.pte

The model is a registered ``name.tag`` (its weights), a folder written by ``save_pretrained`` or
``lightnets-train --output`` (or the weight file in one), or a bare name (random weights, for a
latency check). The arguments are parsed before torch is imported, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from torch import nn

PROG = "lightnets-export"
FORMATS = ("executorch", "litert", "onnx")  # lightnets.deploy.FORMATS, without importing torch for --help
QUANTIZE_MODES = ("int8", "int8-per-tensor")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (no torch import: ``--help`` is instant)."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Export a lightnets model to a file for an on-device runtime (ExecuTorch .pte with the XNNPACK "
                    "delegate, LiteRT .tflite) or for ONNX runtimes, in float32 or int8, written atomically with "
                    "the model's name, input and labels as metadata.")
    parser.add_argument("model", metavar="NAME_OR_TAG_OR_FOLDER",
                        help="a registered name.tag, a weight folder (save_pretrained / lightnets-train --output), "
                             "or a bare name (random weights)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="the file's runtime")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="the file to write (.pte, .tflite or .onnx); its folder must exist")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES,
                        help="int8: per-channel weights, per-tensor activations (ONNX: int8 only)")
    parser.add_argument("--calibration", metavar="DATASET[:N]",
                        help="with --quantize: N train images of a dataset (fashion_mnist, cifar10, imagefolder:PATH; "
                             "N defaults to 512)")
    parser.add_argument("--qat-epochs", type=int, metavar="N",
                        help="with --quantize (executorch, litert): quantization-aware training for N epochs on "
                             "--qat-data, the float model distilling into it, instead of calibration")
    parser.add_argument("--qat-data", metavar="DATASET[:N]",
                        help="with --qat-epochs: the N train images to train on (e.g. fashion_mnist:10000)")
    parser.add_argument("--qat-lr", type=float, default=1e-3, help="with --qat-epochs: the SGD learning rate")
    parser.add_argument("--app-input", action="store_true",
                        help="the file takes uint8 NHWC pixels (0-255) and normalises them itself")
    parser.add_argument("--img-size", type=int, metavar="PX", help="input side (default: the model's)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture argument of a bare name, e.g. small_input=true; repeatable")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    return parser


def load_model(spec: str, model_args: Sequence[str] = ()) -> "nn.Module":
    """The model ``spec`` names: a folder or weight file, a registered ``name.tag``, or a bare name (random init)."""
    from ..registry import create_model, split_model_name
    from .train_model import build_teacher, parse_model_args

    kwargs = parse_model_args(model_args)
    if Path(spec).expanduser().exists() or split_model_name(spec)[1]:
        if kwargs:
            raise ValueError(f"--model-arg applies to a bare model name; {spec} has its own architecture")
        return build_teacher(spec)
    return create_model(spec, **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``lightnets-export``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.calibration and not args.quantize:
        parser.error("--calibration is used only with --quantize")
    if args.qat_epochs is not None:
        if not args.quantize or args.format == "onnx":
            parser.error("--qat-epochs needs --quantize int8 or int8-per-tensor and --format executorch or litert")
        if args.qat_epochs < 1:
            parser.error(f"--qat-epochs must be at least 1, got {args.qat_epochs}")
        if not args.qat_data:
            parser.error("--qat-epochs needs --qat-data DATASET[:N], the images to train on (e.g. fashion_mnist:10000)")
        if args.calibration:
            parser.error("--calibration is not used with --qat-epochs: the int8 ranges are learnt in training")
    elif args.qat_data:
        parser.error("--qat-data is used only with --qat-epochs")
    elif args.quantize and not args.calibration:
        parser.error("--quantize needs --calibration DATASET[:N], for example fashion_mnist:512")
    if args.img_size is not None and args.img_size < 1:
        parser.error(f"--img-size must be at least 1, got {args.img_size}")
    from ..data import CorruptDataError
    from ..deploy import BackendUnavailableError, ExportError, export, quantize
    from ..deploy.on_device import check_output_path
    from ..pretrained import WeightsUnavailableError
    from ..registry import UnknownModelError

    try:
        model = load_model(args.model, args.model_arg).eval()
        if args.qat_epochs is not None:
            check_output_path(args.output, args.format, args.overwrite)  # before minutes of training
            model = quantize(model, args.qat_data, format=args.format, mode=args.quantize, qat_epochs=args.qat_epochs,
                             lr=args.qat_lr)
        exported = export(model, args.output, format=args.format, quantize=args.quantize,
                          calibration=args.calibration, app_input=args.app_input, img_size=args.img_size,
                          overwrite=args.overwrite)
    except (UnknownModelError, WeightsUnavailableError, BackendUnavailableError, ExportError, CorruptDataError,
            TypeError, ValueError, OSError) as err:  # the user's mistake or a missing package: one line, no traceback
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    meta = exported.metadata
    precision = exported.quantize or "float32"
    print(f"wrote {exported.path} ({exported.format}, {precision}, {exported.size_bytes / 1024:,.0f} KiB, "
          f"{exported.seconds:.1f} s): input {meta['input']['dtype']} {meta['input']['layout']} "
          f"{'x'.join(map(str, meta['input']['shape']))}")
    if exported.format == "executorch":
        left = ", ".join(f"{op} x{n}" for op, n in sorted(exported.undelegated.items()))
        print(f"XNNPACK runs {'every operator' if not left else 'all but: ' + left}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
