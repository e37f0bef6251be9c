"""``save_pretrained``: a model written as a Hub-layout folder, checked whole before the first byte is written
and staged so that the folder is replaced whole (:func:`lightnets._io.staged_folder`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .. import _io
from ..pretrained import manifest
from ..pretrained.converted import safetensors_bytes
from ..pretrained.folder_config import FolderConfig
from ..pretrained.manifest import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from ..registry import timm_name
from ..weight_cfg import Metrics, WeightCfg, as_weight_cfg
from .card import model_card, weight_name
from .rebuild import rebuilt_model

__all__ = ["save_pretrained", "check_output_folder"]

PathLike = Union[str, Path]


def _checked_json(value: Any, what: str) -> Any:
    """``value`` if it is JSON with finite numbers only; a ValueError naming ``what`` and the bad entry otherwise."""
    def check(item: Any, path: str) -> None:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return
        if isinstance(item, (int, float)):
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{what}{path} is {item}: only finite numbers can be saved")
            return
        if isinstance(item, dict):
            for key, sub_item in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"{what}{path} has a key {key!r}: keys must be strings")
                check(sub_item, f"{path}[{key!r}]")
            return
        if isinstance(item, (list, tuple)):
            for index, sub_item in enumerate(item):
                check(sub_item, f"{path}[{index}]")
            return
        raise ValueError(f"{what}{path} is a {type(item).__name__} ({item!r}): save numbers, strings, lists or dicts")

    check(value, "")
    return value


def check_output_folder(directory: Path, name: str, overwrite: bool) -> None:
    """Refuse a path that is not a writable folder (an existing file is never replaced by a folder, even with
    ``overwrite``), and a shipped weight or a folder that holds another model unless ``overwrite``."""
    if os.path.lexists(directory.expanduser()):
        _io.check_writable(directory.expanduser(), what="folder")
    if overwrite:
        return
    weights_dir = manifest.WEIGHTS_DIR
    target = directory.expanduser().resolve()
    if target == weights_dir.resolve() or weights_dir.resolve() in target.parents:
        raise ValueError(
            f"{directory} is inside the bundled weights folder {weights_dir}: writing there replaces a weight that "
            f"lightnets ships (its recorded sha256 would then refuse to load it). Write elsewhere (e.g. "
            f"runs/{name}/weight), or pass overwrite=True (lightnets-train --overwrite) to replace it on purpose "
            f"and then rebuild the manifest with `lightnets-weights index`"
        )
    config_path = target / CONFIG_NAME
    if not config_path.is_file():
        return
    try:
        config = json.loads(config_path.read_text())
        info = config.get("lightnets") or {}
        existing = weight_name(info.get("architecture") or config.get("architecture"), info.get("tag"))
    except (ValueError, AttributeError):  # unreadable, or not a JSON object: not ours to replace silently
        existing = "a config.json that save_pretrained did not write"
    if existing != name:
        raise ValueError(
            f"{directory} already holds another model ({existing}), not {name}: write elsewhere, or pass "
            f"overwrite=True (lightnets-train --overwrite) to replace it"
        )


def save_pretrained(
    model: nn.Module,
    directory: PathLike,
    metrics: Union[Metrics, dict[str, Any], None] = None,
    *,
    tag: Optional[str] = None,
    model_args: Optional[dict[str, Any]] = None,
    label_names: Optional[Sequence[str]] = None,
    training: Optional[dict[str, Any]] = None,
    fp16: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a Hub-layout folder: ``model.safetensors``, ``config.json`` and a ``README.md`` card.

    Args:
        model: a model built by :func:`lightnets.create_model` (its ``pretrained_cfg`` names the architecture
            and gives input size, mean and std), possibly pruned or converted since by :mod:`lightnets.compress`:
            the folder then says so, and loading it gives the built model the weights' layers.
        directory: the folder to write (created if needed).
        metrics: measured numbers to record, e.g. ``{"top1": 91.3, "dataset": "fashion_mnist", "split": "test"}``
            (the flat form of :class:`lightnets.weight_cfg.Metrics`, or one): each key is a number, or one of
            ``dataset``, ``split``, ``images``, ``reported_by`` that says what the numbers were measured on.
        tag: the pretrained tag the weight is published under (``"fmnist"`` → ``name.fmnist``).
        model_args: architecture arguments that rebuild the model; by default recorded by ``create_model``
            or read back from the model. They are checked by rebuilding the model.
        label_names: class names, in label order.
        training: how the weight was made, for the card: ``{"dataset", "command", "epochs", "seed", ...}``.
        fp16: store floating tensors in float16 (half the size; say in the card that accuracy was re-measured).
        overwrite: write into the bundled weights folder (``weights/``, which ships with lightnets), or into a
            folder whose config.json describes another model (architecture or tag). Refused without it.

    >>> import lightnets
    >>> from lightnets.pretrained.manifest import WEIGHTS_DIR
    >>> save_pretrained(lightnets.create_model("smallcnn_3x2"), WEIGHTS_DIR / "smallcnn_3x2.fmnist")
    Traceback (most recent call last):
    ...
    ValueError: .../smallcnn_3x2.fmnist is inside the bundled weights folder ...: writing there replaces a weight that lightnets ships ...
    """

    from .. import __version__
    from ..profiler import count_macs

    cfg = as_weight_cfg(getattr(model, "pretrained_cfg", None) or None, "the model's pretrained_cfg")
    architecture = cfg.architecture
    if not architecture:
        raise ValueError(
            "save_pretrained needs a model built by lightnets.create_model (its pretrained_cfg names the architecture)"
        )
    directory = Path(directory).expanduser()
    check_output_folder(directory, weight_name(architecture, tag), overwrite)
    # Everything is checked before the first byte is written.
    if not isinstance(metrics, Metrics):
        metrics = Metrics.from_dict(_checked_json(dict(metrics or {}), "metrics"))
    training = _checked_json(dict(training or {}), "training")
    if label_names is not None:
        label_names = [str(label) for label in label_names]
        if len(label_names) != model.num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for a model with {model.num_classes} classes: "
                             f"give one name per class, in label order")
    input_size = tuple(cfg.input_size or (model.in_chans, model.img_size, model.img_size))
    rebuilt, args, restructured = rebuilt_model(model, architecture, input_size, model_args)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(rebuilt, input_size)

    dtype = torch.float16 if fp16 else torch.float32
    tensors = {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous().clone()
        for key, value in model.state_dict().items()
    }
    metadata = {  # sorted: saving the same weights twice gives the same bytes
        "architecture": architecture,
        "dtype": str(dtype).removeprefix("torch."),
        "format": "pt",
        "lightnets_version": __version__,
        "tag": tag or "",
    }

    saved = WeightCfg(
        architecture=architecture,
        tag=tag,
        model_args={key: value for key, value in args.items() if key not in ("num_classes", "in_chans")},
        num_classes=model.num_classes,
        input_size=input_size,
        mean=cfg.mean or (),
        std=cfg.std or (),
        crop_pct=cfg.crop_pct,
        interpolation=cfg.interpolation,
        first_conv=cfg.first_conv,
        classifier=cfg.classifier,
        license=cfg.license,
        label_names=label_names or None,
        params=params,
        macs=macs,
        metrics=metrics,
        training=training,
        restructured=True if restructured else None,
    )
    folder = FolderConfig(saved, timm_architecture=timm_name(architecture), num_features=model.num_features,
                          model_args=args, version=__version__, dtype=str(dtype).removeprefix("torch."))
    config_text = json.dumps(folder.to_json(), indent=2, allow_nan=False) + "\n"
    card = model_card(folder)
    with _io.staged_folder(directory) as staging:
        (staging / WEIGHTS_NAME).write_bytes(safetensors_bytes(tensors, metadata))
        (staging / CONFIG_NAME).write_text(config_text)
        (staging / CARD_NAME).write_text(card)
    return directory
