"""The bundled weights' manifest: ``weights/index.json``, rebuilt from the Hub-layout folders beside it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional, Union

from .. import _io
from ..pretrained import manifest
from ..pretrained.download import sha256sum
from ..pretrained.folder_config import FolderConfig
from ..pretrained.manifest import CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, index_entry, read_index

__all__ = ["build_index"]

PathLike = Union[str, Path]


def build_index(weights_dir: Optional[PathLike] = None) -> dict[str, dict[str, Any]]:
    """Rewrite ``index.json`` of ``weights_dir`` (default: the bundled ``weights/``) from its Hub-layout folders.

    Each folder's config.json (written by :func:`save_pretrained` with a ``tag``) and the sha256 of its
    weights become one ``name.tag`` entry; an entry's ``hf_hub_id``, set by hand once published, is kept.
    """
    weights_dir = Path(manifest.WEIGHTS_DIR if weights_dir is None else weights_dir)
    if not weights_dir.is_dir():
        raise ValueError(f"weights folder {weights_dir} does not exist")
    previous = read_index(weights_dir)
    entries = {}
    for config_path in sorted(weights_dir.glob(f"*/{CONFIG_NAME}")):
        config = json.loads(config_path.read_text())
        info = config.get("lightnets") if isinstance(config, dict) else None
        if not isinstance(info, dict) or "model_args" not in config:
            raise ValueError(f"{config_path} was not written by save_pretrained (it has no lightnets block): "
                             "write the folder with lightnets.save_pretrained")
        cfg = FolderConfig.from_json(config, config_path).cfg
        if not cfg.tag:
            raise ValueError(
                f"{config_path.parent} has no tag: save bundled weights with save_pretrained(..., tag=...)"
            )
        cfg = dataclasses.replace(
            cfg,
            file=config_path.parent.name,
            sha256=sha256sum(config_path.parent / WEIGHTS_NAME),
            # Set by hand once published. The old manifest's entry is read as it is: a stale entry must not stop
            # the rebuild that replaces it.
            hf_hub_id=previous.get(cfg.weight_name, {}).get("hf_hub_id"),
        )
        entries[cfg.weight_name] = index_entry(cfg)
    _io.write_text(weights_dir / INDEX_NAME, json.dumps({"weights": entries}, indent=2) + "\n")
    return entries
