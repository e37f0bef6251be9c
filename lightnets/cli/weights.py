"""``lightnets-weights``: rebuild the bundled weights' manifest, or upload a weight folder to the Hub.

    lightnets-weights index                       # rewrite weights/index.json from the weight folders
    lightnets-weights push weights/mobilenet_v1_050.fmnist <org>/mobilenet_v1_050.fmnist

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
    parser = _Parser(prog=prog, description="Rebuild the bundled weights' index.json, or upload a Hub-layout "
                                            "weight folder (written by lightnets.save_pretrained) to the Hugging Face Hub.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{index,push}")
    index = commands.add_parser("index", help="rebuild index.json from the weight folders")
    index.add_argument("--weights-dir", default=None,
                       help="the folder of Hub-layout weight folders (default: the bundled weights/)")
    push = commands.add_parser("push", help="upload a Hub-layout folder (needs a token: HF_TOKEN or `hf auth login`)")
    push.add_argument("folder", help="a folder written by save_pretrained")
    push.add_argument("repo_id", help="the Hub model repo, org/name (created if needed)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG) -> int:
    """Entry point of ``lightnets-weights`` (and ``python -m lightnets.cli.weights``); returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    from ..publish import build_index, push_to_hub

    try:
        if args.command == "index":
            for name, entry in build_index(args.weights_dir).items():
                print(f"{name}: {entry['sha256'][:12]}… {entry['metrics']}")
        else:
            print(push_to_hub(args.folder, args.repo_id, private=args.private))
    except (ValueError, OSError) as error:  # a folder not in Hub layout, a refused upload: one line, no traceback
        message = " ".join(str(error).split()) or type(error).__name__  # huggingface_hub's messages span lines
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m lightnets.cli.weights"))
