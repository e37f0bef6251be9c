"""Break behaviours on purpose and time how long the test suite takes to notice (issue #39).

Each mutation replaces one exact piece of source text in a scratch copy of the checkout (a detached
``git worktree`` of HEAD, so the working tree is never touched) and runs the fast lane
(``pytest -x -m "not slow"``); a mutation the fast lane misses runs the whole suite with ``-x``. It
prints a Markdown table: the mutation, which lane caught it, the first failing test and the seconds
until pytest stopped. Run it on an otherwise idle machine, since the times are the point:

    python scripts/check_suite_catches.py              # every mutation
    python scripts/check_suite_catches.py --only 3     # one of them, by number
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    behaviour: str
    path: str
    old: str
    new: str


MUTATIONS = [
    Mutation("a Table 1 channel count (ShuffleNet g3, stage 4)", "lightnets/models/shufflenet_v1.py",
             "3: (240, 480, 960),", "3: (240, 480, 972),"),
    Mutation("the shuffle order (the inverse permutation, Megvii's)", "lightnets/layers.py",
             "        return torch.channel_shuffle(x, groups)\n    return _reshape_shuffle(x, groups)",
             "        return torch.channel_shuffle(x, x.shape[1] // groups)\n    return _reshape_shuffle(x, groups)"),
    Mutation("a padding mode (TF 'SAME' pads top/left instead of bottom/right)", "lightnets/layers.py",
             "[pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]",
             "[pad_w - pad_w // 2, pad_w // 2, pad_h - pad_h // 2, pad_h // 2]"),
    Mutation("a BN eps in a converter (Keras weights built with 1e-5)", "lightnets/models/mobilenet_v1_weights.py",
             '"bn_eps": 1e-3', '"bn_eps": 1e-5'),
    Mutation("an atomic-write step (a replaced file loses its mode)", "lightnets/_io/files.py",
             "os.chmod(temporary, existing.st_mode & 0o7777)", "os.chmod(temporary, new_file_mode())"),
    Mutation("a recorded-accuracy key (the image count no longer compared)", "lightnets/evaluation/recorded.py",
             'getattr(data, "split", None), len(data),', 'getattr(data, "split", None), metrics["images"],'),
    Mutation("a feature_info reduction (MobileNet's maps all doubled)", "lightnets/models/mobilenet_v1.py",
             "reduction * block_stride", "reduction * 2"),
    Mutation("a refused argument (num_classes < 0 accepted)", "lightnets/models/arguments.py",
             "not isinstance(value, int) or value < 0:", "not isinstance(value, int):"),
    Mutation("an FX-unfriendly branch (input checks run on torch.fx proxies)", "lightnets/models/base.py",
             "and not isinstance(x, torch.fx.Proxy)\n", "\n"),
    Mutation("a MAC count (fully connected layers not counted)", "lightnets/profiler.py",
             'CONV_FC_OPS = frozenset({"conv", "linear", ', 'CONV_FC_OPS = frozenset({"conv", '),
]


def run_pytest(tree: Path, *args: str) -> tuple[bool, str, float]:
    """(failed, first failing test, seconds) of ``pytest -x`` in ``tree``."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
                            cwd=tree, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    failure = re.search(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE)
    return result.returncode != 0, failure.group(1) if failure else "", elapsed


def check(mutation: Mutation, tree: Path) -> tuple[str, str, float]:
    target = tree / mutation.path
    text = target.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(
            f"{mutation.path}: {mutation.old!r} occurs {text.count(mutation.old)} times; update the mutation"
        )
    target.write_text(text.replace(mutation.old, mutation.new))
    try:
        failed, test, seconds = run_pytest(tree, "-m", "not slow")
        if failed:
            return "fast lane", test, seconds
        failed, test, full_seconds = run_pytest(tree)
        return ("full suite" if failed else "NOT CAUGHT"), test, seconds + full_seconds
    finally:
        target.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, action="append", help="mutation number(s) to run (1-based)")
    args = parser.parse_args(argv)
    chosen = [(i, m) for i, m in enumerate(MUTATIONS, 1) if not args.only or i in args.only]
    tree = Path(tempfile.mkdtemp(prefix="lightnets-mutations-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), "HEAD"], cwd=ROOT, check=True)
    try:
        print("| # | behaviour broken | caught by | first failing test | seconds |\n|---:|:---|:---|:---|---:|")
        for number, mutation in chosen:
            lane, test, seconds = check(mutation, tree)
            print(f"| {number} | {mutation.behaviour} | {lane} | `{test}` | {seconds:.0f} |", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(tree.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
