"""``python -m lightnets.eval`` and ``lightnets-eval``: the eval harness of an installed lightnets
(:mod:`lightnets.evaluation.cli`; in a source checkout ``python -m eval`` runs the same command line)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .evaluation.cli import main as run

__all__ = ["PROG", "main"]

PROG = "lightnets-eval"  # also `python -m lightnets.eval`, as lightnets-flops is also `python -m lightnets.flops`


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``lightnets-eval`` and ``python -m lightnets.eval``; returns the exit status."""
    return run(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
