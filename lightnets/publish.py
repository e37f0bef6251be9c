"""Write weights as Hub-layout folders, index the bundled ones and upload them to the Hugging Face Hub.

A Hub-layout folder is what a Hub model repo holds: ``model.safetensors``, ``config.json`` (timm's
schema, so ``timm.create_model("hf-hub:org/name")`` builds our model) and a ``README.md`` model card.
:func:`save_pretrained` writes one (checking that its recorded arguments rebuild the model),
:func:`build_index` rewrites ``weights/index.json`` from the bundled folders and :func:`push_to_hub`
uploads a folder. Loading them back is :mod:`lightnets.pretrained`'s job. The command line is
``lightnets-weights`` (:mod:`lightnets.cli.weights`).

>>> import tempfile, lightnets
>>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
>>> folder = save_pretrained(model, tempfile.mkdtemp(), metrics={"top1": 10.0})
>>> sorted(p.name for p in folder.iterdir())
['README.md', 'config.json', 'model.safetensors']
>>> again = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder),
...                                num_classes=10, small_input=True)
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from .pretrained import manifest
from .pretrained.converted import safetensors_bytes
from .pretrained.download import sha256sum
from .pretrained.folder_config import FolderConfig
from .pretrained.manifest import CARD_NAME, CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, index_entry, read_index
from .registry import create_model, timm_name
from .weight_cfg import Metrics, WeightCfg, as_weight_cfg

__all__ = ["save_pretrained", "push_to_hub", "build_index"]

PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------
# The rebuild check: the arguments a folder records must build a model that computes the same
# ---------------------------------------------------------------------------------------------


def _activation_name(layer: type) -> Optional[str]:
    from .layers import _ACTIVATIONS

    return next((name for name, cls in _ACTIVATIONS.items() if cls is layer), None)


def _constructor_args(model: nn.Module) -> dict[str, Any]:
    """Arguments of the model class that the model keeps as same-named attributes (alpha, groups, small_input, ...)."""
    args = {}
    for name, param in inspect.signature(type(model).__init__).parameters.items():
        if name in ("self", "num_classes", "in_chans") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(model, name, None)
        if isinstance(value, type) and issubclass(value, nn.Module):
            value = _activation_name(value)
        if value is not None and isinstance(value, (bool, int, float, str, list, tuple)):
            args[name] = value
    return args


def _rebuild(reference: nn.Module, architecture: str, model_args: dict[str, Any], input_size: Sequence[int],
             restructured: bool = False) -> nn.Module:
    """Build ``architecture`` from ``model_args``, load ``reference``'s weights into it and check it computes the same.

    ``reference`` is a float32 CPU copy of the model in eval mode. ``restructured``: first give the built model the
    layers the weights have (:func:`lightnets.models.restructure.restructure`), for a model pruned or converted after
    it was built.
    """
    try:
        rebuilt = create_model(architecture, **model_args).eval()
    except ValueError as error:  # e.g. an input size that only another form takes
        raise ValueError(f"create_model({architecture!r}, **{model_args}) does not rebuild this model ({error}); "
                         "pass the arguments that built it as save_pretrained(..., model_args={...})") from error
    if restructured:
        from .models.restructure import restructure

        restructure(rebuilt, reference.state_dict())
    ours = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    same = ours == theirs
    if same:
        rebuilt.load_state_dict(reference.state_dict())
        x = torch.randn(1, *input_size)
        try:
            with torch.no_grad():
                same = torch.allclose(rebuilt(x), reference(x), atol=1e-4, rtol=1e-4)
        except ValueError:  # the rebuilt model refuses the input size the model was saved for
            same = False
    if not same:
        raise ValueError(
            f"create_model({architecture!r}, **{model_args}) does not rebuild this model (its weights or outputs "
            f"differ); pass the arguments that built it as save_pretrained(..., model_args={{...}})"
        )
    return rebuilt


def _rebuilt_model(model: nn.Module, architecture: str, input_size: Sequence[int],
                   model_args: Optional[dict[str, Any]]) -> tuple[nn.Module, dict[str, Any], bool]:
    """The model rebuilt from the arguments to record, those arguments, and whether it was restructured."""
    cfg = as_weight_cfg(getattr(model, "pretrained_cfg", None) or None, "the model's pretrained_cfg")
    if model_args is not None:
        candidates = [dict(model_args)]
    else:
        # The model's own constructor arguments first: the cfg's model_args may be those of a registered
        # weight that this model (built with pretrained=False and other arguments) does not match.
        candidates = [_constructor_args(model)] + ([dict(cfg.model_args)] if cfg.model_args else [])
    for args in candidates:
        args.update(num_classes=model.num_classes, in_chans=model.in_chans)
    # As built, or else (arguments read back, not given) as pruned / converted after it was built: the folder
    # then records that its loader must give the built model the weights' layers (lightnets.models.restructure).
    attempts = [(args, restructured) for restructured in ((False,) if model_args is not None else (False, True))
                for args in candidates]
    reference = copy.deepcopy(model).cpu().float().eval()
    for i, (args, restructured) in enumerate(attempts):
        try:
            return _rebuild(reference, architecture, args, input_size, restructured), args, restructured
        except ValueError:
            if i == len(attempts) - 1:
                raise
    raise AssertionError("unreachable: the last attempt raises")


# ---------------------------------------------------------------------------------------------
# Writing a folder
# ---------------------------------------------------------------------------------------------


def weight_name(architecture: Optional[str], tag: Optional[str]) -> str:
    """``"name.tag"``, or the bare name for an untagged weight.

    >>> weight_name("mobilenet_v1_050", "fmnist"), weight_name("smallcnn_3x2", None)
    ('mobilenet_v1_050.fmnist', 'smallcnn_3x2')
    """
    return f"{architecture}.{tag}" if tag else str(architecture)


_RENAME_EXCHANGE = 2  # linux/fs.h: renameat2 swaps the two paths in one step


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE) == 0


@contextlib.contextmanager
def _staged_folder(directory: Path):
    """Yield an empty temporary sibling of ``directory``; when the block completes, it becomes ``directory``.

    Files of an existing ``directory`` that the block did not write are carried over (hard links, or
    copies). The old folder is replaced in one atomic step (a rename, or a swap where the folder exists),
    so a crash or a kill at any point leaves either the old complete folder or the new complete one;
    the temporary sibling (``.name.*.tmp``) is removed, or left hidden if the process is killed.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        yield staging
        for path in (os.scandir(directory) if directory.is_dir() else ()):
            target = staging / path.name
            if target.exists() or path.name.startswith("."):
                continue
            if path.is_dir(follow_symlinks=False):
                shutil.copytree(path.path, target, symlinks=True)
            else:
                try:
                    os.link(path.path, target)
                except OSError:
                    shutil.copy2(path.path, target)
        for file in staging.iterdir():  # on disk before the rename makes them the folder's
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        if not directory.exists():
            os.rename(staging, directory)
        elif not _exchange(staging, directory):  # no atomic swap: two renames, the old folder kept till the end
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
            os.rename(directory, old / "folder")
            os.rename(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the old folder


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
    """Refuse to replace a shipped weight, or a folder that holds another model, unless ``overwrite``."""
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

    from . import __version__
    from .profiler import count_macs

    cfg = as_weight_cfg(getattr(model, "pretrained_cfg", None) or None, "the model's pretrained_cfg")
    architecture = cfg.architecture
    if not architecture:
        raise ValueError("save_pretrained needs a model built by lightnets.create_model (its pretrained_cfg names the architecture)")
    directory = Path(directory)
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
    rebuilt, args, restructured = _rebuilt_model(model, architecture, input_size, model_args)
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
    card = _model_card(folder)
    with _staged_folder(directory) as staging:
        (staging / WEIGHTS_NAME).write_bytes(safetensors_bytes(tensors, metadata))
        (staging / CONFIG_NAME).write_text(config_text)
        (staging / CARD_NAME).write_text(card)
    return directory


def _model_card(folder: FolderConfig) -> str:
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
        lines += [f"| {heading} | |", "|---|---|", *[f"| {key} | {value} |" for key, value in metrics.to_dict().items()], ""]
    if training:
        lines += ["| training | |", "|---|---|",
                  *[f"| {key} | `{value}` |" if key == "command" else f"| {key} | {value} |" for key, value in training.items()], ""]
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


# ---------------------------------------------------------------------------------------------
# The bundled weights' manifest, and the Hub
# ---------------------------------------------------------------------------------------------


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
            raise ValueError(f"{config_path.parent} has no tag: save bundled weights with save_pretrained(..., tag=...)")
        cfg = dataclasses.replace(
            cfg,
            file=config_path.parent.name,
            sha256=sha256sum(config_path.parent / WEIGHTS_NAME),
            # Set by hand once published. The old manifest's entry is read as it is: a stale entry must not stop
            # the rebuild that replaces it.
            hf_hub_id=previous.get(cfg.weight_name, {}).get("hf_hub_id"),
        )
        entries[cfg.weight_name] = index_entry(cfg)
    (weights_dir / INDEX_NAME).write_text(json.dumps({"weights": entries}, indent=2) + "\n")
    return entries


def push_to_hub(directory: PathLike, repo_id: str, token: Optional[str] = None, private: bool = False,
                commit_message: str = "Upload lightnets weights") -> str:
    """Upload a Hub-layout folder to the model repo ``repo_id`` (created if needed); returns the commit URL.

    >>> push_to_hub("no/such/folder", "org/name")
    Traceback (most recent call last):
    ...
    ValueError: no/such/folder is not a Hub-layout folder: model.safetensors is missing (write it with save_pretrained)
    """
    directory = Path(directory)
    for required in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
        if not (directory / required).is_file():
            raise ValueError(f"{directory} is not a Hub-layout folder: {required} is missing (write it with save_pretrained)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    return str(commit.commit_url)
