"""The models a ``lightnets-train`` run names: the student (``--model``, ``--model-arg``, ``--finetune-from``), its
``--teacher`` models, the ``--feature-pairs`` that tie them, and the sha256 of the weights they start from.

Each function takes the option's value (or, for :func:`build_model`, any object with ``model``, ``model_arg``
and ``finetune_from``: the run's :class:`~lightnets.cli.train_config.TrainRunConfig` or parsed arguments), so
the command line checks them before the run builds them.

>>> parse_model_args(["alpha=0.5", "small_input=true"])
{'alpha': 0.5, 'small_input': True}
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence

if TYPE_CHECKING:  # only for the annotations: torch is imported when a model is built
    from torch import nn

__all__ = ["ModelChoice", "parse_model_args", "build_model", "build_teacher", "teacher_sources", "feature_pairs",
           "weight_sha256"]


class ModelChoice(Protocol):
    """What :func:`build_model` reads: ``--model``, ``--model-arg`` and ``--finetune-from``."""

    model: Optional[str]
    model_arg: Sequence[str]
    finetune_from: Optional[str]


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``--model-arg`` values as architecture arguments, each value read as JSON or a yes/no word.

    >>> parse_model_args(["alpha=0.5", "small_input=true", "act_layer=relu6"])
    {'alpha': 0.5, 'small_input': True, 'act_layer': 'relu6'}
    """
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}.get(
                value.lower(), value
            )
    return args


def build_model(
    choice: ModelChoice, num_classes: int, in_chans: int, img_size: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to train (``--model``, or ``--finetune-from`` weights with a new head / in_chans) and the
    architecture arguments that rebuild it.

    >>> from types import SimpleNamespace
    >>> choice = SimpleNamespace(model="smallcnn_3x2", model_arg=[], finetune_from=None)
    >>> model, model_args = build_model(choice, num_classes=10, in_chans=3, img_size=32)
    >>> model.img_size, model_args
    (32, {'img_size': 32})
    """
    from ..pretrained import read_config
    from ..registry import create_model, get_pretrained_cfg, model_arguments, split_model_name

    kwargs = parse_model_args(choice.model_arg)
    source = choice.finetune_from
    if source and Path(source).exists():  # a weight file or Hub-layout folder
        saved = read_config(source)
        name = choice.model or saved.get("lightnets", {}).get("architecture")
        if not name:
            raise ValueError(
                f"--finetune-from {source}: give --model (the file does not say which architecture it holds)"
            )
        kwargs = _finetune_args(name, saved.get("model_args", {}), kwargs, img_size)
        model = create_model(
            name, pretrained=True, pretrained_path=source, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    elif source:  # a registered name.tag
        name = split_model_name(source)[0]
        if choice.model and choice.model != name:
            raise ValueError(
                f"--model {choice.model} is not the architecture of --finetune-from {source} ({name}); drop --model"
            )
        kwargs = _finetune_args(name, get_pretrained_cfg(source).get("model_args", {}), kwargs, img_size)
        model = create_model(source, pretrained=True, num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        name = choice.model
        if "img_size" in model_arguments(name) and "img_size" not in kwargs and "rho" not in kwargs:
            # train at the data's native size (a fixed-size model too): the cfg records it
            kwargs["img_size"] = img_size
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return model, kwargs


def _finetune_args(name: str, saved: dict[str, Any], given: dict[str, Any], data_img_size: int) -> dict[str, Any]:
    """The weight's architecture arguments overridden by the user's. A model that pools globally is
    fine-tuned at the data's own size (the weights fit any size); one with a fixed size keeps its own."""
    from ..registry import has_fixed_input_size, model_arguments

    args = {key: value for key, value in saved.items() if key not in ("num_classes", "in_chans")}
    if "img_size" in model_arguments(name) and not has_fixed_input_size(name):
        args.pop("img_size", None)
        args.pop("rho", None)
        if "img_size" not in given and "rho" not in given:
            args["img_size"] = data_img_size
    return {**args, **given}


def build_teacher(source: str) -> nn.Module:
    """The ``--teacher``: a registered ``name.tag``, or a Hub-layout folder (or the weight file in one) whose
    config.json names its architecture, e.g. the ``--output`` of an earlier run that has not shipped.

    >>> build_teacher("smallcnn_3x2.fmnist").num_classes
    10
    """
    from ..pretrained import read_config
    from ..registry import create_model

    if not Path(source).expanduser().exists():
        return create_model(source, pretrained=True)
    name = read_config(source).get("lightnets", {}).get("architecture")
    if not name:
        raise ValueError(f"--teacher {source}: no config.json beside it names the architecture; give a folder "
                         f"written by save_pretrained / train --output, or a registered name.tag")
    return create_model(name, pretrained=True, pretrained_path=source)


def feature_pairs(text: str) -> list[tuple[int, int]]:
    """The ``--feature-pairs`` as (student index, teacher index) pairs.

    >>> feature_pairs("2:2, 3:4")
    [(2, 2), (3, 4)]
    """
    pairs = []
    for part in text.split(","):
        student, colon, teacher = part.strip().partition(":")
        if not colon or not student.strip().lstrip("-").isdigit() or not teacher.strip().lstrip("-").isdigit():
            raise ValueError(f"--feature-pairs {text!r}: each pair is STUDENT:TEACHER, two feature_info indices, "
                             f"e.g. 2:2,3:4; got {part.strip()!r}")
        pairs.append((int(student), int(teacher)))
    return pairs


def teacher_sources(teacher: str) -> list[str]:
    """The models a ``--teacher`` names: one source, or several separated by commas (an ensemble).

    >>> teacher_sources("smallcnn_3x2.fmnist, runs/a/weight")
    ['smallcnn_3x2.fmnist', 'runs/a/weight']
    """
    sources = [source.strip() for source in teacher.split(",")]
    if not all(sources):
        raise ValueError(f"--teacher {teacher!r}: an empty name between commas; give NAME_OR_PATH[,NAME_OR_PATH...]")
    return sources


def weight_sha256(source: str) -> str:
    """sha256 of the weight file a ``--finetune-from`` / ``--teacher`` source (name.tag, file or Hub folder)
    resolves to.

    Recorded in the card: a name such as ``mobilenet_v1_100.fmnist`` names whichever weight ships under it
    today, which may be the very weight this run replaces."""
    from ..pretrained import resolve_weights, sha256sum
    from ..registry import get_pretrained_cfg

    path = Path(source).expanduser()
    if path.exists():
        return sha256sum(resolve_weights({}, pretrained_path=path))
    return sha256sum(resolve_weights(get_pretrained_cfg(source)))
