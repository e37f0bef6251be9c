"""``python -m lightnets.flops`` / ``lightnets-flops``: multiply-adds and parameters of lightnets models.

    python -m lightnets.flops --model mobilenet_v1_100 --by-type
    python -m lightnets.flops --model mobilenet_v1_100 --depth 3 --ops all
    python -m lightnets.flops --model 'mobilenet_v1_*' --model 'shufflenet_g?' --format md

The arguments are parsed before torch is imported, so ``--help`` and a usage error answer at once.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

PROG = "lightnets-flops"  # also `python -m lightnets.flops`
FORMATS = ("table", "md", "csv", "json")  # lightnets.profile.FORMATS, without importing torch for --help


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (no torch import: ``--help`` is instant)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Multiply-adds (1 MAC = 1 fvcore flop) and parameters of lightnets models. One model: "
                    "its module tree or by-type table. A glob or several --model: one summary row per model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME",
                        help="model name or glob ('mobilenet_v1*'); repeatable")
    parser.add_argument("--img-size", type=_positive, help="input side in pixels (default: the model's)")
    parser.add_argument("--in-chans", type=_positive, help="input channels (default: the model's)")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's)")
    parser.add_argument("--small-input", action="store_true", help="build the small-input (32 px) form")
    parser.add_argument("--by-type", action="store_true", help="table per layer type instead of the module tree")
    parser.add_argument("--depth", type=_positive, default=2, help="module tree depth")
    parser.add_argument("--ops", choices=("conv+fc", "all"), default="conv+fc",
                        help="operators the breakdown counts: conv+fc as the papers, or all as fvcore")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    return parser


def _model_names(patterns: Sequence[str]) -> list[str]:
    from ..registry import list_models

    names: list[str] = []
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            matched = list_models(pattern)
            if not matched:
                raise ValueError(f"no model matches {pattern!r}; see lightnets.list_models()")
        else:
            matched = [pattern]  # create_model reports an unknown name, with close matches
        names += [name for name in matched if name not in names]
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m lightnets.flops`` and ``lightnets-flops``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..profiler import SUMMARY_COLUMNS, profile, render_rows
    from ..registry import UnknownModelError, create_model

    kwargs = {
        key: getattr(args, key) for key in ("img_size", "in_chans", "num_classes") if getattr(args, key) is not None
    }
    if args.small_input:
        kwargs["small_input"] = True
    try:
        names = _model_names(args.model)
        single = len(args.model) == 1 and not any(char in args.model[0] for char in "*?[")
        if not single and args.by_type:
            raise ValueError(f"--by-type describes one model; {len(names)} match {', '.join(args.model)}")
        results = {name: profile(create_model(name, **kwargs), ops=args.ops) for name in names}
    except (UnknownModelError, TypeError, ValueError) as err:  # unknown model, bad argument: one line, no traceback
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    skipped = sorted({op for result in results.values() for op in result.skipped_ops})
    human = args.format in ("table", "md")
    if single:
        name, result = next(iter(results.items()))
        if human:
            print(f"{name} @ {result.summary()}\n")
        print(result.render(by_type=args.by_type, depth=args.depth, fmt=args.format), flush=True)
        if skipped:
            calls = ", ".join(f"{op} x{n}" for op, n in result.skipped_ops.items())
            print(f"not counted (no fvcore formula, 0 MACs): {calls}", file=sys.stderr)
    else:
        rows = [{"model": name, "input_size": list(r.input_size), "params": r.params, "macs": r.total_macs,
                 "macs_all": r.total_macs_all} for name, r in results.items()]
        print(render_rows(rows, SUMMARY_COLUMNS, args.format), flush=True)
        if skipped:
            print(f"not counted (no fvcore formula, 0 MACs): {', '.join(skipped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
