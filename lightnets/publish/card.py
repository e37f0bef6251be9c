"""The ``README.md`` model card of a weight folder: Hub metadata, the numbers its config.json records, how to load
it."""

from __future__ import annotations

from typing import Optional

from ..pretrained.folder_config import FolderConfig
from ..weight_cfg import Metrics

__all__ = ["model_card", "weight_name"]


def weight_name(architecture: Optional[str], tag: Optional[str]) -> str:
    """``"name.tag"``, or the bare name for an untagged weight.

    >>> weight_name("mobilenet_v1_050", "fmnist"), weight_name("smallcnn_3x2", None)
    ('mobilenet_v1_050.fmnist', 'smallcnn_3x2')
    """
    return f"{architecture}.{tag}" if tag else str(architecture)


def model_card(folder: FolderConfig) -> str:
    """The README.md of a folder: Hub metadata, the numbers recorded in config.json, and how to load it."""
    cfg = folder.cfg
    name = cfg.weight_name
    training = dict(cfg.training or {})
    metrics = cfg.metrics if cfg.metrics is not None else Metrics()
    dataset = training.get("dataset") or next((row.dataset for row in metrics.rows if row.dataset), None)
    license_name = cfg.license or "mit"
    lines = [
        "---",
        "library_name: timm",
        f"license: {license_name}",
        "tags: [image-classification, timm, lightnets]",
        *([f"datasets: [{dataset}]"] if dataset else []),
        "---",
        f"# {name}",
        "",
        f"A lightnets `{cfg.architecture}` ({cfg.num_classes} classes, input "
        f"{'×'.join(map(str, cfg.input_size))}), weights stored as {folder.dtype}.",
        "",
        "| model | |",
        "|---|---|",
        f"| params | {cfg.params:,} |",
        f"| MACs (conv + FC, one image) | {cfg.macs:,} |",
        "",
    ]
    if metrics.rows:
        # A published weight's numbers are its source's (each metric's reported_by names where), not lightnets' own.
        reported = any(row.reported_by is not None for row in metrics.rows)
        heading = "reported by its source, not measured by lightnets" if reported else "measured"
        lines += [f"| {heading} | |", "|---|---|",
                  *[f"| {key} | {value} |" for key, value in metrics.to_dict().items()], ""]
    if training:
        lines += ["| training | |", "|---|---|",
                  *[f"| {key} | `{value}` |" if key == "command" else f"| {key} | {value} |"
                    for key, value in training.items()], ""]
    lines += [
        "```python",
        "import lightnets",
        # Without a tag, create_model(name, pretrained=True) would load the name's bundled default weight, not this one.
        f"model = lightnets.create_model({name!r}, pretrained=True)" if cfg.tag else
        f"model = lightnets.create_model({name!r}, pretrained=True, pretrained_path='path/to/this/folder')",
        "# or, through timm: timm.create_model('hf-hub:<org>/<repo>') after `import lightnets`",
        "```",
        "",
    ]
    if cfg.restructured:
        lines += ["Pruned or converted after it was built (lightnets.compress): loading gives the model built from "
                  "`model_args` the layer shapes of these weights (lightnets.models.restructure).", ""]
    if folder.dtype == "float16":
        lines += ["Stored in float16 to halve the file (lightnets-train --fp16-weights measures the metrics on the "
                  "fp16-rounded weights, so they hold for this file).", ""]
    lines += [f"Licence: {license_name}. Written by lightnets {folder.version}.", ""]
    return "\n".join(lines)
