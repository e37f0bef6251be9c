"""Load a weight into a model: a pretrained cfg's (resolved, converted, adapted) or a local checkpoint.

A Hub-layout folder (``model.safetensors``, ``config.json`` in timm's schema, a ``README.md`` card)
describes its model (:mod:`~lightnets.pretrained.folder_config`): :func:`folder_weight_cfg` and
:func:`hub_repo_weight_cfg` read what ``create_model`` must apply to build it, so a folder written by
:func:`lightnets.publish.save_pretrained` loads without repeating its arguments.

>>> import lightnets
>>> from lightnets.pretrained.manifest import WEIGHTS_DIR
>>> model = lightnets.create_model("smallcnn_3x2.fmnist")
>>> model = load_pretrained(model)  # what create_model("smallcnn_3x2.fmnist", pretrained=True) does
>>> folder_cfg(WEIGHTS_DIR / "smallcnn_3x2.fmnist")["input_size"]
(1, 28, 28)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from ..weight_cfg import WeightCfg, as_weight_cfg
from .adapt import adapt_state_dict
from .converted import converted_from_file, converted_from_url
from .download import (
    CONFIG_LIMIT,
    SizeLimit,
    WeightsUnavailableError,
    _download_from_hub,
    _split_revision,
    _weights_file,
    resolve_weights,
)
from .hub import hub_errors
from .folder_config import FolderConfig, read_config
from .manifest import CONFIG_NAME
from .native import WeightsFileError, is_native, read_weights

__all__ = ["folder_cfg", "folder_weight_cfg", "hub_repo_cfg", "hub_repo_weight_cfg", "load_checkpoint",
           "load_pretrained", "read_config"]

PathLike = Union[str, Path]
StateDict = dict[str, torch.Tensor]


def folder_weight_cfg(path: PathLike) -> WeightCfg:
    """What a Hub-layout folder's config.json (or the one beside a weight file) says about building its model; an
    empty cfg for a bare file without one.

    ``create_model(name, pretrained=True, pretrained_path=folder)`` applies it, so a folder written by
    :func:`lightnets.publish.save_pretrained` rebuilds its model (``small_input``, ``alpha`` ...) without
    repeating the arguments. What the folder says it holds (``saved_architecture``) lets create_model refuse to
    load it into another architecture, and the loader check the classifier against its class count.

    >>> from lightnets.pretrained.manifest import WEIGHTS_DIR
    >>> cfg = folder_weight_cfg(WEIGHTS_DIR / "mobilenet_v1_025.fmnist")
    >>> cfg.saved_architecture, cfg.model_args, cfg.num_classes
    ('mobilenet_v1_025', {'small_input': True, 'img_size': 28}, 10)
    """
    if not read_config(path):  # a bare weight file: the registered cfg (a tag's arguments) still describes it
        return WeightCfg()
    folder = FolderConfig.read(path)
    cfg = folder.cfg
    return WeightCfg(
        **{field: getattr(cfg, field) for field in _BUILD_FIELDS if getattr(cfg, field)},
        model_args=cfg.model_args,
        num_classes=cfg.num_classes,
        restructured=True if cfg.restructured else None,
        saved_architecture=cfg.architecture or folder.timm_architecture,
        saved_from=str(path),
    )


# What create_model takes from a folder's pretrained_cfg block, besides the classes and architecture arguments.
_BUILD_FIELDS = ("input_size", "mean", "std", "crop_pct", "interpolation", "label_names", "first_conv", "classifier")


def folder_cfg(path: PathLike) -> dict[str, Any]:
    """:func:`folder_weight_cfg` as a plain dict ({} for a bare weight file without a config.json)."""
    return folder_weight_cfg(path).to_dict()


def hub_repo_weight_cfg(hf_hub_id: str, revision: Optional[str] = None) -> WeightCfg:
    """What a Hub repo's config.json says about building its model (as :func:`folder_weight_cfg`); empty without one.

    ``create_model(name, pretrained=True, pretrained_cfg={"hf_hub_id": ...})`` applies it, so a repo written by
    :func:`lightnets.publish.save_pretrained` and :func:`lightnets.publish.push_to_hub` rebuilds its model
    without repeating its arguments. A repo without config.json gives an empty cfg; a config that cannot be had
    (offline and not cached, a failing Hub) or is malformed (not JSON, not an object, fields of the wrong type) is
    an error, since a model built without its arguments would load the weights silently wrong.
    """
    repo_id, revision = _split_revision(hf_hub_id, revision)
    try:
        path = _download_from_hub(repo_id, CONFIG_NAME, revision, repo_id, limit=CONFIG_LIMIT)
    except WeightsUnavailableError as error:
        errors = hub_errors()
        if isinstance(error.__cause__, errors.entry_missing) and not isinstance(error.__cause__, errors.not_cached):
            return WeightCfg()  # a repo of weights only: the registered cfg and the caller's arguments describe it
        raise  # offline without it, or the Hub failing: building without the repo's arguments would be silently wrong
    # A config.json that is there but malformed is refused (naming the file), as a folder's is: building
    # without the arguments it was meant to give could load the weights into the wrong network silently.
    return folder_weight_cfg(path.parent)


def hub_repo_cfg(hf_hub_id: str, revision: Optional[str] = None) -> dict[str, Any]:
    """:func:`hub_repo_weight_cfg` as a plain dict."""
    return hub_repo_weight_cfg(hf_hub_id, revision).to_dict()


def _source_state_dict(cfg: WeightCfg, pretrained_path: Optional[PathLike],
                       limit: Optional[SizeLimit] = None) -> tuple[StateDict, Path]:
    """The state dict a cfg (or ``pretrained_path``) names, in lightnets' layout, and the file it was read from.

    A file in its publisher's format (``.pth.zip``, ``.h5``, ``.pth.tar`` ...) of a cfg with a
    ``source_format`` is converted once and cached as safetensors (:mod:`lightnets.pretrained.converted`).
    A download larger than ``limit`` is refused before it is made.
    """
    name = cfg.weight_name
    first_conv = f"{cfg.first_conv or 'stem.conv'}.weight"
    if pretrained_path is not None:
        path = Path(pretrained_path).expanduser()
        if cfg.source_format and path.is_file() and is_native(path):
            return converted_from_file(path, cfg, name, first_conv)
        path = _weights_file(path)
        state_dict = read_weights(path)
    elif cfg.source_format and cfg.url and is_native(cfg.url) and not (cfg.file or cfg.hf_hub_id):
        return converted_from_url(cfg, name, limit)
    else:
        path = resolve_weights(cfg, limit=limit)
        state_dict = read_weights(path)
    if cfg.source_format and first_conv not in state_dict:  # the file is in its publisher's layout
        from .convert import convert_state_dict

        state_dict = convert_state_dict(state_dict, cfg.source_format)
    return state_dict, path


def _load_checked(
    model: nn.Module, state_dict: StateDict, source: Path, strict: bool, left_to_init: set[str] = frozenset()
) -> None:
    """load_state_dict with an error that says which keys and shapes do not fit, and what to do."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict and key not in left_to_init]
    unexpected = [key for key in state_dict if key not in own]
    mismatched = [key for key in own if key in state_dict and state_dict[key].shape != own[key].shape]
    if strict and (missing or unexpected or mismatched):
        problems = []
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(
                f"{key} is {tuple(state_dict[key].shape)} in the file, {tuple(own[key].shape)} in the model"
                for key in mismatched[:5]))
        if missing:
            problems.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        # The model's own plain dict, as anything that builds a model may set it (not necessarily lightnets).
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise ValueError(
            f"{source} does not fit {architecture}: " + "; ".join(problems)
            + ". Build the model with the arguments the weights were saved with (see the folder's config.json: "
            "model_args, num_classes, in_chans), or load with strict=False"
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in mismatched}, strict=False)


def _take_saved_layers(model: nn.Module, state_dict: StateDict, cfg: WeightCfg) -> None:
    """For weights saved from a pruned or converted model (``restructured`` in their cfg), give the built model
    their layers first. The stem's input and the classifier's classes stay the model's: adapting those, or
    refusing a model built for others, is the loader's job."""
    if cfg.restructured:
        from ..models.restructure import restructure

        restructure(
            model, state_dict, first_conv=cfg.first_conv or "stem.conv", classifier=cfg.classifier or "classifier"
        )


def load_pretrained(model: nn.Module, cfg: Union[WeightCfg, dict[str, Any], None] = None,
                    pretrained_path: Optional[PathLike] = None) -> nn.Module:
    """Load the weight a pretrained cfg (typed, or its plain dict) names (resolution order:
    :mod:`lightnets.pretrained.download`).

    ``cfg`` defaults to ``model.pretrained_cfg``. A cfg with ``"source_format"`` (e.g. ``"timm_mobilenetv1"``)
    has its state dict converted first (:mod:`lightnets.pretrained.convert`); a file in its publisher's
    format is converted once and cached (:mod:`lightnets.pretrained.converted`). Classifier and first conv are
    adapted when the model's ``num_classes`` / ``in_chans`` differ from the weight's.
    """
    cfg = as_weight_cfg(cfg if cfg is not None else getattr(model, "pretrained_cfg", None))
    state_dict, path = _source_state_dict(cfg, pretrained_path, weight_size_limit(model, cfg))
    head = state_dict.get(f"{cfg.classifier or 'classifier'}.weight")
    if cfg.saved_from and cfg.num_classes and head is not None and head.shape[0] != cfg.num_classes:
        raise WeightsFileError(f"{cfg.saved_from}: its {CONFIG_NAME} says {cfg.num_classes} classes but the classifier "
                               f"in {path.name} has {head.shape[0]} rows; the folder is inconsistent: write it again")
    stem = state_dict.get(f"{cfg.first_conv or 'stem.conv'}.weight")
    declared = (cfg.input_size or (None,))[0]
    if cfg.saved_from and declared and stem is not None and stem.dim() == 4 and _first_conv_groups(model, cfg) == 1 \
            and stem.shape[1] != declared:
        raise WeightsFileError(f"{cfg.saved_from}: its {CONFIG_NAME} says {declared} input channels but the first conv "
                               f"in {path.name} takes {stem.shape[1]}; the folder is inconsistent: write it again")
    _take_saved_layers(model, state_dict, cfg)
    state_dict, left_to_init = adapt_state_dict(model, state_dict, cfg)
    _load_checked(model, state_dict, path, strict=True, left_to_init=left_to_init)
    return model


def weight_size_limit(model: nn.Module, cfg: WeightCfg) -> Optional[SizeLimit]:
    """The largest file a weight for ``model``'s architecture can be (:meth:`SizeLimit.for_weights`): its parameters
    and buffers counted with the weight's own classes and input channels where those are more than the model's
    (ImageNet weights loaded into a 10-class model keep their 1000-class head until they are adapted). None for a
    pruned or converted weight (``restructured``): its layers are the file's, not the architecture's.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", num_classes=10)
    >>> weight_size_limit(model, WeightCfg(num_classes=1000)).what
    'a weight of smallcnn_3x2'
    """
    if cfg.restructured:
        return None
    numbers = sum(tensor.numel() for tensor in model.state_dict().values())
    head = _layer(model, cfg.classifier or "classifier")
    if head is not None and head.weight.dim() >= 2 and cfg.num_classes and cfg.num_classes > head.weight.shape[0]:
        per_class = head.weight[0].numel() + (1 if getattr(head, "bias", None) is not None else 0)
        numbers += per_class * (cfg.num_classes - head.weight.shape[0])
    stem = _layer(model, cfg.first_conv or "stem.conv")
    declared = (cfg.input_size or (None,))[0]
    if stem is not None and stem.weight.dim() == 4 and declared and declared > stem.weight.shape[1]:
        numbers += stem.weight[:, :1].numel() * (declared - stem.weight.shape[1])
    architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or cfg.architecture or type(model).__name__
    return SizeLimit.for_weights(architecture, numbers)


def _layer(model: nn.Module, name: str) -> Optional[nn.Module]:
    """The layer called ``name`` if it has a weight tensor, else None."""
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        return None
    return layer if isinstance(getattr(layer, "weight", None), torch.Tensor) else None


def _first_conv_groups(model: nn.Module, cfg: WeightCfg) -> Optional[int]:
    try:
        return model.get_submodule(cfg.first_conv or "stem.conv").groups
    except AttributeError:  # no such layer, or not a conv: the strict load reports it
        return None


def load_checkpoint(model: nn.Module, path: PathLike, strict: bool = True) -> nn.Module:
    """Load a local checkpoint (``.safetensors``, a Hub-layout folder, or a ``.pth`` read with ``weights_only=True``).

    Unlike :func:`load_pretrained` nothing is adapted: a checkpoint must fit the model, and when it
    does not the error lists the keys and shapes that differ. A folder that save_pretrained wrote for a
    pruned or converted model first gives the model its layers (:func:`lightnets.models.restructure.restructure`).

    >>> import tempfile, lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
    >>> folder = lightnets.save_pretrained(model, tempfile.mkdtemp())
    >>> load_checkpoint(lightnets.create_model("mobilenet_v1_025", small_input=True), folder)
    Traceback (most recent call last):
    ...
    ValueError: .../model.safetensors does not fit mobilenet_v1_025: shape mismatch: classifier.weight is (10, 256) in the file, (1000, 256) in the model; ...
    """
    path = _weights_file(Path(path).expanduser())
    state_dict = read_weights(path)
    _take_saved_layers(model, state_dict, folder_weight_cfg(path))
    _load_checked(model, state_dict, path, strict=strict)
    return model
