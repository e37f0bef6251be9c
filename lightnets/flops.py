"""``python -m lightnets.flops``: count a model's MACs and parameters (:mod:`lightnets.cli.flops`).

The docs run the counter under this name, so it stays; the counting itself is :mod:`lightnets.profiler`.
"""
from __future__ import annotations

from .cli.flops import main

if __name__ == "__main__":
    raise SystemExit(main())
