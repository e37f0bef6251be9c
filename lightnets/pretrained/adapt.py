"""Fit a pretrained state dict to a model built with other input channels or classes, as timm does.

>>> import lightnets
>>> grey = lightnets.create_model("mobilenet_v1_025", in_chans=1, num_classes=10, small_input=True)
>>> rgb = lightnets.create_model("mobilenet_v1_025", in_chans=3, num_classes=4, small_input=True)
>>> state_dict, left = adapt_state_dict(rgb, grey.state_dict(), {})
>>> sorted(left), tuple(state_dict["stem.conv.weight"].shape[:2])
(['classifier.bias', 'classifier.weight'], (8, 3))
"""
from __future__ import annotations

from typing import Any, Mapping, Union

import torch
from torch import nn

from ..models.arguments import check_positive_int
from ..weight_cfg import WeightCfg, as_weight_cfg

__all__ = ["adapt_input_conv", "adapt_state_dict"]

StateDict = dict[str, torch.Tensor]


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


def adapt_state_dict(model: nn.Module, state_dict: StateDict,
                     cfg: Union[WeightCfg, Mapping[str, Any]]) -> tuple[StateDict, set[str]]:
    """Fit a pretrained state dict to a model built with other ``in_chans`` / ``num_classes``.

    The first conv is adapted as timm does (its filters summed for 1 channel, repeated and scaled
    for more); a classifier of another size is dropped, leaving the model's freshly initialised head.
    Returns the adapted state dict and the keys intentionally left to the model's own init.
    """
    cfg = as_weight_cfg(cfg)
    state_dict = dict(state_dict)
    first_conv_name = cfg.first_conv or "stem.conv"
    first_conv = f"{first_conv_name}.weight"
    weight = state_dict.get(first_conv)
    own_weight = model.state_dict().get(first_conv)
    if weight is not None and own_weight is not None and weight.shape != own_weight.shape:
        if getattr(model.get_submodule(first_conv_name), "groups", 1) > 1:
            # A depthwise first conv has one filter per input channel: summing or repeating them has no meaning.
            raise ValueError(
                f"{first_conv_name} is a depthwise conv, so weights saved for {weight.shape[0]} input channel(s) "
                f"cannot be adapted to in_chans={model.in_chans}; build the model with the weights' in_chans"
            )
        state_dict[first_conv] = adapt_input_conv(weight, model.in_chans)
    classifier = cfg.classifier or "classifier"
    head_keys = {f"{classifier}.weight", f"{classifier}.bias"}
    head = state_dict.get(f"{classifier}.weight")
    left_to_init: set[str] = set()
    if head is not None and head.shape[0] != model.num_classes:
        left_to_init = head_keys & set(model.state_dict())
        for key in head_keys:
            state_dict.pop(key, None)
    return state_dict, left_to_init
