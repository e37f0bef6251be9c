"""``python -m lightnets.train``: train, fine-tune or distil a lightnets model (:mod:`lightnets.cli.train`).

Every weight card records its training command as ``python -m lightnets.train ...``, so this name stays.
"""
from __future__ import annotations

from .cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
