"""Pretrained weights: resolve, download, verify, adapt and load them; write and publish Hub-layout folders.

``create_model(name, pretrained=True)`` calls :func:`load_pretrained`, which looks for the weight in
this order: an explicit ``pretrained_path`` (file or Hub-layout folder); the bundled ``weights/``
folder (the cfg's ``file``, or the ``name.tag`` entry of ``weights/index.json``); the Hugging Face
Hub repo of the cfg (``hf_hub_id``, through :func:`huggingface_hub.hf_hub_download`, so HF_ENDPOINT,
HF_HUB_OFFLINE, the standard cache and ``revision`` pinning all apply); a ``url`` to a ``.safetensors``.
The sha256 of the cfg or manifest is verified, and only safetensors files are read from a
download — nothing downloaded is ever unpickled.

A Hub-layout folder is what a Hub model repo holds: ``model.safetensors``, ``config.json`` (timm's
schema, so ``timm.create_model("hf-hub:org/name")`` builds our model) and a ``README.md`` model card.

>>> import tempfile, lightnets
>>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
>>> folder = save_pretrained(model, tempfile.mkdtemp(), metrics={"top1": 10.0})
>>> sorted(p.name for p in folder.iterdir())
['README.md', 'config.json', 'model.safetensors']
>>> again = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder),
...                                num_classes=10, small_input=True)
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from .manifest import INDEX_NAME, WEIGHTS_DIR, bundled_cfgs, read_index
from .models.base import check_positive_int

__all__ = [
    "WEIGHTS_DIR",
    "INDEX_NAME",
    "read_index",
    "folder_cfg",
    "read_config",
    "ChecksumError",
    "WeightsUnavailableError",
    "load_pretrained",
    "load_checkpoint",
    "resolve_weights",
    "adapt_state_dict",
    "adapt_input_conv",
    "hub_repo_cfg",
    "save_pretrained",
    "push_to_hub",
    "build_index",
    "bundled_cfgs",
    "sha256sum",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

PathLike = Union[str, Path]
StateDict = dict[str, torch.Tensor]


class ChecksumError(ValueError):
    """A weight file's sha256 is not the one its cfg or the manifest records."""


class WeightsUnavailableError(OSError):
    """No source of a pretrained weight could deliver it; the message says what was tried."""


# ---------------------------------------------------------------------------------------------
# Resolving and loading
# ---------------------------------------------------------------------------------------------


def sha256sum(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: Optional[str]) -> None:
    if not expected:
        return
    actual = sha256sum(path)
    if actual != expected:
        raise ChecksumError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupt or was "
            f"replaced; delete it (for a Hub download, its snapshot in the huggingface_hub cache) and load again. "
            f"If the Hub repo was updated since the checksum was recorded, pin the revision it belongs to "
            f"(revision= in the pretrained cfg, or 'org/repo@rev')"
        )


def _weights_file(path: Path) -> Path:
    """A weight file, or the ``model.safetensors`` of a Hub-layout folder."""
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsUnavailableError(f"no weight file at {path} (expected a .safetensors file or a folder holding {WEIGHTS_NAME})")
    return path


def _weight_name(cfg: dict[str, Any]) -> str:
    return f"{cfg.get('architecture')}.{cfg['tag']}" if cfg.get("tag") else str(cfg.get("architecture"))


def resolve_weights(cfg: dict[str, Any], pretrained_path: Optional[PathLike] = None) -> Path:
    """The local, verified weight file of a pretrained cfg (downloading it if it must).

    >>> resolve_weights({"architecture": "mobilenet_v1_100"})
    Traceback (most recent call last):
    ...
    lightnets.hub.WeightsUnavailableError: mobilenet_v1_100 has no weight source: its pretrained cfg names no file, hf_hub_id or url, and weights/index.json has no entry for it
    """
    if pretrained_path is not None:
        return _weights_file(Path(pretrained_path).expanduser())
    name = _weight_name(cfg)
    indexed = read_index(WEIGHTS_DIR).get(name, {})
    expected_sha = cfg.get("sha256") or indexed.get("sha256")
    bundled = cfg.get("file") or indexed.get("folder")
    if bundled:
        path = Path(bundled) if Path(bundled).is_absolute() else WEIGHTS_DIR / bundled
        if path.exists():
            path = _weights_file(path)
            _verify(path, expected_sha)
            return path
    hf_hub_id = cfg.get("hf_hub_id") or indexed.get("hf_hub_id")
    if hf_hub_id:
        filename = cfg.get("hf_hub_filename") or WEIGHTS_NAME
        if not filename.endswith(".safetensors"):
            raise ValueError(f"{name}: only .safetensors weights are loaded from the Hub, got hf_hub_filename={filename!r}")
        repo_id, revision = _split_revision(hf_hub_id, cfg.get("revision"))
        path = _download_from_hub(repo_id, filename, revision, name)
        _verify(path, expected_sha)
        return path
    if cfg.get("url"):
        path = _download_url(cfg["url"], name)
        _verify(path, expected_sha)
        return path
    if bundled:
        raise WeightsUnavailableError(f"{name}: bundled weights not found at {WEIGHTS_DIR / bundled} and no hf_hub_id or url to fetch them from")
    raise WeightsUnavailableError(
        f"{name} has no weight source: its pretrained cfg names no file, hf_hub_id or url, "
        f"and weights/{INDEX_NAME} has no entry for it"
    )


def _split_revision(hf_hub_id: str, revision: Optional[str]) -> tuple[str, Optional[str]]:
    """``"org/name@v1"`` → ``("org/name", "v1")`` (timm's way of pinning a revision); an explicit revision wins."""
    repo_id, _, pinned = hf_hub_id.partition("@")
    return repo_id, revision or pinned or None


class _HubErrors(NamedTuple):
    revision_missing: type
    entry_missing: type
    repo_missing: type
    not_cached: type
    http_error: type


def _hub_errors() -> _HubErrors:
    """huggingface_hub's errors for a missing revision / file / repo, local miss, HTTP error (0.x and 1.x names).

    Before 1.0 there is one EntryNotFoundError, of which LocalEntryNotFoundError is a subclass; since 1.0
    the remote miss is RemoteEntryNotFoundError. Both are caught as EntryNotFoundError, after the local miss.
    """
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    return _HubErrors(RevisionNotFoundError, EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError)


def _download_from_hub(repo_id: str, filename: str, revision: Optional[str], name: str) -> Path:
    from huggingface_hub import constants, hf_hub_download

    errors = _hub_errors()
    where = f"{constants.ENDPOINT}/{repo_id}" + (f" at revision {revision}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except errors.not_cached as error:  # before entry_missing: in huggingface_hub 0.x it is a subclass of it
        if constants.HF_HUB_OFFLINE:
            raise WeightsUnavailableError(
                f"{name}: HF_HUB_OFFLINE is set and {filename} of {repo_id} is not in the cache "
                f"({constants.HF_HUB_CACHE}); download it once online, or pass pretrained_path="
            ) from error
        cause = error.__cause__ or error
        raise WeightsUnavailableError(
            f"{name}: could not download {filename} from {where}, and it is not cached: {cause}"
        ) from error
    except errors.revision_missing as error:
        raise WeightsUnavailableError(f"{name}: revision {revision!r} not found in Hub repo {where}") from error
    except errors.entry_missing as error:
        raise WeightsUnavailableError(f"{name}: Hub repo {where} has no file {filename!r}") from error
    except errors.repo_missing as error:  # also a private or gated repo without a token
        raise WeightsUnavailableError(
            f"{name}: Hub repo {where} not found (or private: log in with `hf auth login`)"
        ) from error
    except errors.http_error as error:
        raise WeightsUnavailableError(f"{name}: the Hub at {where} answered with an error: {error}") from error


def hub_repo_cfg(hf_hub_id: str, revision: Optional[str] = None) -> dict[str, Any]:
    """What a Hub repo's config.json says about building its model (as :func:`folder_cfg`); empty without one.

    ``create_model(name, pretrained=True, pretrained_cfg={"hf_hub_id": ...})`` applies it, so a repo written
    by :func:`save_pretrained` and :func:`push_to_hub` rebuilds its model without repeating its arguments.
    A repo without config.json gives {}; a config that cannot be had (offline and not cached, a failing
    Hub) is an error, since a model built without its arguments would load the weights silently wrong.
    """
    repo_id, revision = _split_revision(hf_hub_id, revision)
    try:
        path = _download_from_hub(repo_id, CONFIG_NAME, revision, repo_id)
    except WeightsUnavailableError as error:
        errors = _hub_errors()
        if isinstance(error.__cause__, errors.entry_missing) and not isinstance(error.__cause__, errors.not_cached):
            return {}  # a repo of weights only: the registered cfg and the caller's arguments describe it
        raise  # offline without it, or the Hub failing: building without the repo's arguments would be silently wrong
    try:
        return folder_cfg(path.parent)
    except (ValueError, KeyError, TypeError):  # not a lightnets/timm config.json: nothing to apply
        return {}


def _download_url(url: str, name: str) -> Path:
    if not url.split("?")[0].endswith(".safetensors"):
        raise ValueError(f"{name}: only .safetensors URLs are loaded (a .pth would be unpickled), got url={url!r}")
    # Keyed by the whole URL: every Hub-style URL ends in model.safetensors, so the name alone would collide.
    url_key = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = Path(torch.hub.get_dir()) / "checkpoints" / f"{url_key}-{url.split('?')[0].rsplit('/', 1)[-1]}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except OSError as error:
            raise WeightsUnavailableError(f"{name}: could not download {url}: {error}") from error
    return target


def _read_state_dict(path: Path) -> StateDict:
    """Tensors of a .safetensors file, or of a .pth/.pt/.bin read with ``weights_only=True`` (never unpickled code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "model_state"):  # training checkpoints wrap the weights
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
        # DDP and torch.compile prefix every key; a checkpoint of the bare model must not.
        return {key.removeprefix("module.").removeprefix("_orig_mod."): value for key, value in checkpoint.items()}
    raise ValueError(f"checkpoint must be a .safetensors, .pth, .pt or .bin file, got {path}")


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first conv's filters (O×I×kH×kW) for ``in_chans`` input channels, as timm adapts them.

    One channel sums the filters over their inputs (a grey image gives the response the colour
    filters gave to that grey); more channels repeat them cyclically and scale by I / in_chans, so an
    input that is the same on every channel keeps its response.

    >>> w = torch.ones(4, 3, 3, 3)
    >>> adapt_input_conv(w, 1).shape, adapt_input_conv(w, 1)[0, 0, 0, 0].item()
    (torch.Size([4, 1, 3, 3]), 3.0)
    >>> adapt_input_conv(w[:, :1], 3)[0, :, 0, 0].tolist()
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    """
    check_positive_int("in_chans", in_chans)
    base_chans = weight.shape[1]
    if in_chans == base_chans:
        return weight
    dtype = weight.dtype
    weight = weight.float()
    if in_chans == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        repeats = -(-in_chans // base_chans)
        adapted = weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (base_chans / in_chans)
    return adapted.to(dtype)


def adapt_state_dict(model: nn.Module, state_dict: StateDict, cfg: dict[str, Any]) -> tuple[StateDict, set[str]]:
    """Fit a pretrained state dict to a model built with other ``in_chans`` / ``num_classes``.

    The first conv is adapted as timm does (its filters summed for 1 channel, repeated and scaled
    for more); a classifier of another size is dropped, leaving the model's freshly initialised head.
    Returns the adapted state dict and the keys intentionally left to the model's own init.
    """
    state_dict = dict(state_dict)
    first_conv_name = cfg.get("first_conv") or "stem.conv"
    first_conv = f"{first_conv_name}.weight"
    weight = state_dict.get(first_conv)
    own_weight = model.state_dict().get(first_conv)
    if weight is not None and own_weight is not None and weight.shape != own_weight.shape:
        if getattr(model.get_submodule(first_conv_name), "groups", 1) > 1:
            # A depthwise first conv has one filter per input channel: summing or repeating them has no meaning.
            raise ValueError(
                f"{first_conv_name} is a depthwise conv, so weights saved for {weight.shape[0]} input channel(s) cannot "
                f"be adapted to in_chans={model.in_chans}; build the model with the weights' in_chans"
            )
        state_dict[first_conv] = adapt_input_conv(weight, model.in_chans)
    classifier = cfg.get("classifier") or "classifier"
    head_keys = {f"{classifier}.weight", f"{classifier}.bias"}
    head = state_dict.get(f"{classifier}.weight")
    left_to_init: set[str] = set()
    if head is not None and head.shape[0] != model.num_classes:
        left_to_init = head_keys & set(model.state_dict())
        for key in head_keys:
            state_dict.pop(key, None)
    return state_dict, left_to_init


def _load_checked(model: nn.Module, state_dict: StateDict, source: Path, strict: bool, left_to_init: set[str] = frozenset()) -> None:
    """load_state_dict with an error that says which keys and shapes do not fit, and what to do."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict and key not in left_to_init]
    unexpected = [key for key in state_dict if key not in own]
    mismatched = [key for key in own if key in state_dict and state_dict[key].shape != own[key].shape]
    if strict and (missing or unexpected or mismatched):
        problems = []
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(
                f"{key} is {tuple(state_dict[key].shape)} in the file, {tuple(own[key].shape)} in the model" for key in mismatched[:5]))
        if missing:
            problems.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise ValueError(
            f"{source} does not fit {architecture}: " + "; ".join(problems)
            + ". Build the model with the arguments the weights were saved with (see the folder's config.json: "
            "model_args, num_classes, in_chans), or load with strict=False"
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in mismatched}, strict=False)


def _take_saved_layers(model: nn.Module, state_dict: StateDict, cfg: dict[str, Any]) -> None:
    """For weights saved from a pruned or converted model (``restructured`` in their cfg), give the built model
    their layers first. The stem's input and the classifier's classes stay the model's: adapting those, or
    refusing a model built for others, is the loader's job."""
    if cfg.get("restructured"):
        from .surgery import restructure

        restructure(model, state_dict, first_conv=cfg.get("first_conv") or "stem.conv",
                    classifier=cfg.get("classifier") or "classifier")


def load_pretrained(model: nn.Module, cfg: Optional[dict[str, Any]] = None, pretrained_path: Optional[PathLike] = None) -> nn.Module:
    """Load the weight a pretrained cfg names (see the module docstring for the resolution order).

    ``cfg`` defaults to ``model.pretrained_cfg``. A cfg with ``"source_format"`` (e.g. ``"timm_mobilenetv1"``)
    has its state dict converted first (:mod:`lightnets.convert`). Classifier and first conv are adapted
    when the model's ``num_classes`` / ``in_chans`` differ from the weight's.
    """
    cfg = dict(cfg if cfg is not None else getattr(model, "pretrained_cfg", {}))
    path = resolve_weights(cfg, pretrained_path)
    state_dict = _read_state_dict(path)
    first_conv = f"{cfg.get('first_conv') or 'stem.conv'}.weight"
    if cfg.get("source_format") and first_conv not in state_dict:  # the file is in its publisher's layout
        from .convert import convert_state_dict

        state_dict = convert_state_dict(state_dict, cfg["source_format"])
    _take_saved_layers(model, state_dict, cfg)
    state_dict, left_to_init = adapt_state_dict(model, state_dict, cfg)
    _load_checked(model, state_dict, path, strict=True, left_to_init=left_to_init)
    return model


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True) -> nn.Module:
    """Load a local checkpoint (``.safetensors``, a Hub-layout folder, or a ``.pth`` read with ``weights_only=True``).

    Unlike :func:`load_pretrained` nothing is adapted: a checkpoint must fit the model, and when it
    does not the error lists the keys and shapes that differ. A folder that :func:`save_pretrained` wrote
    for a pruned or converted model first gives the model its layers (:func:`lightnets.surgery.restructure`).

    >>> import tempfile, lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    >>> folder = save_pretrained(model, tempfile.mkdtemp())
    >>> load_checkpoint(lightnets.create_model("mobilenet_v1_025", small_input=True), folder)
    Traceback (most recent call last):
    ...
    ValueError: .../model.safetensors does not fit mobilenet_v1_025: shape mismatch: classifier.weight is (10, 256) in the file, (1000, 256) in the model; ...
    """
    path = _weights_file(Path(path).expanduser())
    state_dict = _read_state_dict(path)
    _take_saved_layers(model, state_dict, folder_cfg(path.parent))
    _load_checked(model, state_dict, path, strict=strict)
    return model


# ---------------------------------------------------------------------------------------------
# Writing Hub-layout folders
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
    layers the weights have (:func:`lightnets.surgery.restructure`), for a model pruned or converted after it was built.
    """
    from .registry import create_model

    try:
        rebuilt = create_model(architecture, **model_args).eval()
    except ValueError as error:  # e.g. an input size that only another form takes
        raise ValueError(f"create_model({architecture!r}, **{model_args}) does not rebuild this model ({error}); "
                         "pass the arguments that built it as save_pretrained(..., model_args={...})") from error
    if restructured:
        from .surgery import restructure

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


def save_pretrained(
    model: nn.Module,
    directory: PathLike,
    metrics: Optional[dict[str, Any]] = None,
    *,
    tag: Optional[str] = None,
    model_args: Optional[dict[str, Any]] = None,
    label_names: Optional[Sequence[str]] = None,
    training: Optional[dict[str, Any]] = None,
    fp16: bool = False,
) -> Path:
    """Write ``model`` as a Hub-layout folder: ``model.safetensors``, ``config.json`` and a ``README.md`` card.

    Args:
        model: a model built by :func:`lightnets.create_model` (its ``pretrained_cfg`` names the architecture
            and gives input size, mean and std), possibly pruned or converted since by :mod:`lightnets.surgery`:
            the folder then says so, and loading it gives the built model the weights' layers.
        directory: the folder to write (created if needed).
        metrics: measured numbers to record, e.g. ``{"top1": 91.3, "dataset": "fashion_mnist", "split": "test"}``.
        tag: the pretrained tag the weight is published under (``"fmnist"`` → ``name.fmnist``).
        model_args: architecture arguments that rebuild the model; by default recorded by ``create_model``
            or read back from the model. They are checked by rebuilding the model.
        label_names: class names, in label order.
        training: how the weight was made, for the card: ``{"dataset", "command", "epochs", "seed", ...}``.
        fp16: store floating tensors in float16 (half the size; say in the card that accuracy was re-measured).
    """
    from safetensors.torch import save_file

    from . import __version__
    from .flops import count_macs
    from .registry import timm_name

    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    architecture = cfg.get("architecture")
    if not architecture:
        raise ValueError("save_pretrained needs a model built by lightnets.create_model (its pretrained_cfg names the architecture)")
    input_size = tuple(cfg.get("input_size") or (model.in_chans, model.img_size, model.img_size))
    if model_args is not None:
        candidates = [dict(model_args)]
    else:
        # The model's own constructor arguments first: the cfg's model_args may be those of a registered
        # weight that this model (built with pretrained=False and other arguments) does not match.
        candidates = [_constructor_args(model)] + ([dict(cfg["model_args"])] if cfg.get("model_args") else [])
    for args in candidates:
        args.update(num_classes=model.num_classes, in_chans=model.in_chans)
    # As built, or else (arguments read back, not given) as pruned / converted after it was built: the folder
    # then records that its loader must give the built model the weights' layers (lightnets.surgery.restructure).
    attempts = [(args, restructured) for restructured in ((False,) if model_args is not None else (False, True))
                for args in candidates]
    reference = copy.deepcopy(model).cpu().float().eval()
    for i, (args, restructured) in enumerate(attempts):
        try:
            rebuilt = _rebuild(reference, architecture, args, input_size, restructured)
            break
        except ValueError:
            if i == len(attempts) - 1:
                raise
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(rebuilt, input_size)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous().clone()
        for key, value in model.state_dict().items()
    }
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={
        "format": "pt",
        "architecture": architecture,
        "tag": tag or "",
        "lightnets_version": __version__,
        "dtype": str(dtype).removeprefix("torch."),
    })

    pretrained_cfg = {
        "input_size": list(input_size),
        "mean": list(cfg.get("mean", ())),
        "std": list(cfg.get("std", ())),
        "crop_pct": cfg.get("crop_pct"),
        "interpolation": cfg.get("interpolation"),
        "num_classes": model.num_classes,
        "first_conv": cfg.get("first_conv"),
        "classifier": cfg.get("classifier"),
        "license": cfg.get("license"),
        "label_names": list(label_names) if label_names else None,
    }
    config = {
        "architecture": timm_name(architecture),  # timm's hf-hub: loader finds our entry point by this name
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        # num_classes / in_chans also here: timm passes model_args to the entry point as keyword arguments.
        "model_args": args,
        "pretrained_cfg": {k: v for k, v in pretrained_cfg.items() if v is not None},
        "lightnets": {
            "architecture": architecture,
            "tag": tag,
            "version": __version__,
            "dtype": str(dtype).removeprefix("torch."),
            "params": params,
            "macs": macs,
            "metrics": metrics or {},
            "training": training or {},
        },
    }
    if restructured:
        config["lightnets"]["restructured"] = True
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (directory / CARD_NAME).write_text(_model_card(config))
    return directory


def _model_card(config: dict[str, Any]) -> str:
    info = config["lightnets"]
    name = info["architecture"] + (f".{info['tag']}" if info["tag"] else "")
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
        lines += ["| measured | |", "|---|---|", *[f"| {key} | {value} |" for key, value in metrics.items()], ""]
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
        lines += ["Pruned or converted after it was built (lightnets.surgery): loading gives the model built from "
                  "`model_args` the layer shapes of these weights (lightnets.surgery.restructure).", ""]
    if info["dtype"] == "float16":
        lines += ["Stored in float16 to halve the file (lightnets-train --fp16-weights measures the metrics on the "
                  "fp16-rounded weights, so they hold for this file).", ""]
    lines += [f"Licence: {pretrained_cfg.get('license', 'mit')}. Written by lightnets {info['version']}.", ""]
    return "\n".join(lines)


def push_to_hub(directory: PathLike, repo_id: str, token: Optional[str] = None, private: bool = False,
                commit_message: str = "Upload lightnets weights") -> str:
    """Upload a Hub-layout folder to the model repo ``repo_id`` (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi

    directory = Path(directory)
    for required in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
        if not (directory / required).is_file():
            raise ValueError(f"{directory} is not a Hub-layout folder: {required} is missing (write it with save_pretrained)")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    return str(commit.commit_url)


# ---------------------------------------------------------------------------------------------
# The bundled weights and their manifest
# ---------------------------------------------------------------------------------------------


def build_index(weights_dir: PathLike = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """Rewrite ``weights/index.json`` from the Hub-layout folders in ``weights_dir`` (their config.json and sha256)."""
    weights_dir = Path(weights_dir)
    previous = read_index(weights_dir)
    entries = {}
    for config_path in sorted(weights_dir.glob(f"*/{CONFIG_NAME}")):
        config = json.loads(config_path.read_text())
        info = config["lightnets"]
        if not info.get("tag"):
            raise ValueError(f"{config_path.parent} has no tag: save bundled weights with save_pretrained(..., tag=...)")
        name = f"{info['architecture']}.{info['tag']}"
        model_args = {k: v for k, v in config["model_args"].items() if k not in ("num_classes", "in_chans")}
        entries[name] = {
            "folder": config_path.parent.name,
            "sha256": sha256sum(config_path.parent / WEIGHTS_NAME),
            "hf_hub_id": previous.get(name, {}).get("hf_hub_id"),  # set by hand once published
            "model_args": model_args,
            **{k: config["pretrained_cfg"].get(k) for k in ("num_classes", "input_size", "mean", "std", "crop_pct", "interpolation",
                                                             "label_names", "license")},
            "params": info["params"],
            "macs": info["macs"],
            "metrics": info["metrics"],
            "training": info["training"],
        }
        if info.get("restructured"):  # pruned / converted: loading gives the built model these layers
            entries[name]["restructured"] = True
    (weights_dir / INDEX_NAME).write_text(json.dumps({"weights": entries}, indent=2) + "\n")
    return entries


def read_config(path: PathLike) -> dict[str, Any]:
    """The config.json of a Hub-layout folder, or the one beside a weight file; {} when there is none."""
    path = Path(path).expanduser()
    config_path = (path if path.is_dir() else path.parent) / CONFIG_NAME
    return json.loads(config_path.read_text()) if config_path.is_file() else {}


def folder_cfg(path: PathLike) -> dict[str, Any]:
    """What a Hub-layout folder's config.json (or the one beside a weight file) says about building its model; {} without one.

    ``create_model(name, pretrained=True, pretrained_path=folder)`` applies it, so a folder written by
    :func:`save_pretrained` rebuilds its model (``small_input``, ``alpha`` ...) without repeating the arguments.
    """
    config = read_config(path)
    if not config:  # a bare weight file: the registered cfg (a tag's arguments) still describes it
        return {}
    pretrained_cfg = config.get("pretrained_cfg", {})
    cfg = {k: pretrained_cfg[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation", "label_names", "first_conv",
                                          "classifier") if pretrained_cfg.get(k)}
    if "model_args" in config:
        cfg["model_args"] = {k: v for k, v in config["model_args"].items() if k not in ("num_classes", "in_chans")}
    if "num_classes" in config:
        cfg["num_classes"] = config["num_classes"]
    if "input_size" in cfg:
        cfg["input_size"] = tuple(cfg["input_size"])
    if config.get("lightnets", {}).get("restructured"):
        cfg["restructured"] = True
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lightnets.hub index`` rebuilds weights/index.json; ``push FOLDER REPO_ID`` uploads a folder."""
    parser = argparse.ArgumentParser(prog="python -m lightnets.hub", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="rebuild index.json from the weight folders")
    index.add_argument("--weights-dir", default=str(WEIGHTS_DIR))
    push = commands.add_parser("push", help="upload a Hub-layout folder (needs a token: HF_TOKEN or `hf auth login`)")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "index":
            for name, entry in build_index(args.weights_dir).items():
                print(f"{name}: {entry['sha256'][:12]}… {entry['metrics']}")
        else:
            print(push_to_hub(args.folder, args.repo_id, private=args.private))
    except (ValueError, OSError) as error:  # a folder that is not in Hub layout, a refused upload: one line, no traceback
        print(f"python -m lightnets.hub: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
