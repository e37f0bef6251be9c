"""The rebuild check: the architecture arguments a weight folder records must build a model that computes the same.

:func:`rebuilt_model` tries the arguments given, else those read back from the model (and its cfg), first as
built, then as pruned or converted after it was built (:mod:`lightnets.models.restructure`).
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..registry import create_model
from ..weight_cfg import as_weight_cfg

__all__ = ["rebuilt_model"]


def _activation_name(layer: type) -> Optional[str]:
    from ..layers import _ACTIVATIONS

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
        from ..models.restructure import restructure

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


def rebuilt_model(model: nn.Module, architecture: str, input_size: Sequence[int],
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
