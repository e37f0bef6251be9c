"""Deprecated: loading weights is :mod:`lightnets.pretrained`, writing and publishing them :mod:`lightnets.publish`.

The old names still work (each is looked up in its new module on first use), and
``python -m lightnets.hub index|push`` still runs the command line, now :mod:`lightnets.cli.weights`
(``lightnets-weights``). This module will be removed in 0.3.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Optional, Sequence

warnings.warn(
    "lightnets.hub is deprecated; import from lightnets.pretrained (loading) or lightnets.publish (saving); "
    "it will be removed in 0.3",
    DeprecationWarning,
    stacklevel=2,
)

# Old name -> the module that has it now.
_MOVED = {
    "WEIGHTS_DIR": "lightnets.pretrained.manifest",
    "INDEX_NAME": "lightnets.pretrained.manifest",
    "read_index": "lightnets.pretrained.manifest",
    "bundled_cfgs": "lightnets.pretrained.manifest",
    "WEIGHTS_NAME": "lightnets.pretrained.manifest",
    "CONFIG_NAME": "lightnets.pretrained.manifest",
    "CARD_NAME": "lightnets.pretrained.manifest",
    "folder_cfg": "lightnets.pretrained.load",
    "read_config": "lightnets.pretrained.load",
    "hub_repo_cfg": "lightnets.pretrained.load",
    "load_pretrained": "lightnets.pretrained.load",
    "load_checkpoint": "lightnets.pretrained.load",
    "ChecksumError": "lightnets.pretrained.download",
    "WeightsUnavailableError": "lightnets.pretrained.download",
    "resolve_weights": "lightnets.pretrained.download",
    "sha256sum": "lightnets.pretrained.download",
    "_weights_file": "lightnets.pretrained.download",
    "adapt_state_dict": "lightnets.pretrained.adapt",
    "adapt_input_conv": "lightnets.pretrained.adapt",
    "save_pretrained": "lightnets.publish",
    "push_to_hub": "lightnets.publish",
    "build_index": "lightnets.publish",
}

__all__ = [name for name in _MOVED if not name.startswith("_")] + ["main"]


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'lightnets.hub' has no attribute {name!r}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lightnets.hub index|push ...``: the ``lightnets-weights`` command line under its old name."""
    from .cli.weights import main as weights_main

    return weights_main(argv, prog="python -m lightnets.hub")


if __name__ == "__main__":
    raise SystemExit(main())
