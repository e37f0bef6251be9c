"""The ``README.md`` model card of a weight folder: Hub metadata, the numbers its config.json records, how to load it."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["model_card", "weight_name"]


def weight_name(architecture: Optional[str], tag: Optional[str]) -> str:
    """``"name.tag"``, or the bare name for an untagged weight.

    >>> weight_name("mobilenet_v1_050", "fmnist"), weight_name("smallcnn_3x2", None)
    ('mobilenet_v1_050.fmnist', 'smallcnn_3x2')
    """
    return f"{architecture}.{tag}" if tag else str(architecture)


def model_card(config: dict[str, Any]) -> str:
    """The README.md of a folder: Hub metadata, the numbers recorded in config.json, and how to load it."""
    info = config["lightnets"]
    name = weight_name(info["architecture"], info["tag"])
    training = info["training"]
    metrics = info["metrics"]
    pretrained_cfg = config["pretrained_cfg"]
    dataset = training.get("dataset") or metrics.get("dataset")
    lines = [
        "---",
        "library_name: timm",
        f"license: {pretrained_cfg.get('license', 'mit')}",
        "tags: [image-classification, timm, lightnets]",
        *([f"datasets: [{dataset}]"] if dataset else []),
        "---",
        f"# {name}",
        "",
        f"A lightnets `{info['architecture']}` ({config['num_classes']} classes, input "
        f"{'×'.join(map(str, pretrained_cfg['input_size']))}), weights stored as {info['dtype']}.",
        "",
        "| model | |",
        "|---|---|",
        f"| params | {info['params']:,} |",
        f"| MACs (conv + FC, one image) | {info['macs']:,} |",
        "",
    ]
    if metrics:
        # A published weight's numbers are its source's (metrics["reported_by"] names where), not lightnets' own.
        heading = "reported by its source, not measured by lightnets" if "reported_by" in metrics else "measured"
        lines += [f"| {heading} | |", "|---|---|", *[f"| {key} | {value} |" for key, value in metrics.items()], ""]
    if training:
        lines += ["| training | |", "|---|---|",
                  *[f"| {key} | `{value}` |" if key == "command" else f"| {key} | {value} |" for key, value in training.items()], ""]
    lines += [
        "```python",
        "import lightnets",
        # Without a tag, create_model(name, pretrained=True) would load the name's bundled default weight, not this one.
        f"model = lightnets.create_model({name!r}, pretrained=True)" if info["tag"] else
        f"model = lightnets.create_model({name!r}, pretrained=True, pretrained_path='path/to/this/folder')",
        "# or, through timm: timm.create_model('hf-hub:<org>/<repo>') after `import lightnets`",
        "```",
        "",
    ]
    if info.get("restructured"):
        lines += ["Pruned or converted after it was built (lightnets.compress): loading gives the model built from "
                  "`model_args` the layer shapes of these weights (lightnets.models.restructure).", ""]
    if info["dtype"] == "float16":
        lines += ["Stored in float16 to halve the file (lightnets-train --fp16-weights measures the metrics on the "
                  "fp16-rounded weights, so they hold for this file).", ""]
    lines += [f"Licence: {pretrained_cfg.get('license', 'mit')}. Written by lightnets {info['version']}.", ""]
    return "\n".join(lines)
