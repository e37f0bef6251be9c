"""``python -m lightnets.flops``: the FLOP-counting command line (:mod:`lightnets.cli.flops`).

The counting itself moved to :mod:`lightnets.profiler`; importing ``count_macs`` / ``profile`` from
here still works for one release, with a DeprecationWarning.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

from .cli.flops import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    profile = importlib.import_module(".profiler", __package__)
    if hasattr(profile, name):
        warnings.warn(f"lightnets.flops.{name} is deprecated; import it from lightnets.profiler "
                      "(it will be removed in 0.3)", DeprecationWarning, stacklevel=2)
        return getattr(profile, name)
    raise AttributeError(f"module 'lightnets.flops' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
