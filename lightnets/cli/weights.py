"""``lightnets-weights``: rebuild the bundled weights' manifest, convert a published weight, or upload a folder.

    lightnets-weights index                       # rewrite weights/index.json from the weight folders
    lightnets-weights convert shufflenet_g3.megvii_in1k snetv1_g3_1.0x.pth.tar --output out/shufflenet_g3.megvii_in1k
    lightnets-weights push weights/mobilenet_v1_050.fmnist <org>/mobilenet_v1_050.fmnist

``convert`` writes a published ImageNet weight (the source's own file, or downloaded from its URL when
no file is given) as a Hub-layout folder in lightnets' layout, ready to push.

The arguments are parsed before torch, huggingface_hub and lightnets' internals are imported, so
``--help`` and a usage error answer at once. A mistake (a folder not in Hub layout, a refused upload)
is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

PROG = "lightnets-weights"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser (no torch import: ``--help`` is instant)."""
    parser = _Parser(
        prog=prog,
        description="Rebuild the bundled weights' index.json, convert a published ImageNet weight "
        "into a Hub-layout folder, or upload a Hub-layout weight folder (written by "
        "lightnets.save_pretrained) to the Hugging Face Hub.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{index,convert,push}")
    index = commands.add_parser("index", help="rebuild index.json from the weight folders")
    index.add_argument("--weights-dir", default=None,
                       help="the folder of Hub-layout weight folders (default: the bundled weights/)")
    convert = commands.add_parser(
        "convert", help="write a published weight (pytorchcv, megvii, Keras, timm) as a Hub-layout folder"
    )
    convert.add_argument(
        "tag", help="the weight's tag, e.g. shufflenet_g3.megvii_in1k (see lightnets.list_pretrained('*in1k'))"
    )
    convert.add_argument("file", nargs="?", default=None,
                         help="the source's own file (.pth, .pth.zip, .pth.tar, .h5); "
                              "default: download it from the tag's URL")
    convert.add_argument("--output", required=True, help="the folder to write")
    convert.add_argument("--overwrite", action="store_true", help="replace a folder that holds another model")
    push = commands.add_parser("push", help="upload a Hub-layout folder (needs a token: HF_TOKEN or `hf auth login`)")
    push.add_argument("folder", help="a folder written by save_pretrained")
    push.add_argument("repo_id", help="the Hub model repo, org/name (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    return parser


def convert_weight(tag: str, source_file: Optional[str], output: str, overwrite: bool = False) -> str:
    """Load ``tag``'s published weight (from ``source_file`` or its URL) and write it with save_pretrained."""
    from pathlib import Path

    from ..publish import save_pretrained
    from ..registry import create_model, get_weight_cfg, split_model_name

    name, weight_tag = split_model_name(tag)
    if not weight_tag:
        raise ValueError(f"give a tagged name, e.g. {name}.osmr_in1k (the weight to convert), got {tag!r}")
    if source_file is not None and not Path(source_file).expanduser().is_file():
        raise ValueError(f"no such file: {source_file}")
    cfg = get_weight_cfg(tag)
    model = create_model(tag, pretrained=True, pretrained_path=source_file)
    folder = save_pretrained(model, output, metrics=cfg.metrics, tag=weight_tag, overwrite=overwrite)
    return str(folder)


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Entry point of ``lightnets-weights`` (and ``python -m lightnets.cli.weights``); returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    from ..pretrained.manifest import entry_weight_cfg
    from ..publish import build_index, push_to_hub

    try:
        if args.command == "index":
            for name, entry in build_index(args.weights_dir).items():
                cfg = entry_weight_cfg(entry)
                print(f"{name}: {cfg.sha256[:12]}… {cfg.metrics.to_dict()}")
        elif args.command == "convert":
            print(convert_weight(args.tag, args.file, args.output, overwrite=args.overwrite))
        else:
            print(push_to_hub(args.folder, args.repo_id, private=args.private))
    except (ValueError, OSError) as error:  # a folder not in Hub layout, a refused upload: one line, no traceback
        message = " ".join(str(error).split()) or type(error).__name__  # huggingface_hub's messages span lines
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lightnets.cli.weights"))
