"""Convert state dicts published by other libraries into lightnets' layout.

A pretrained cfg names its converter with ``"source_format"``; :func:`lightnets.pretrained.load_pretrained`
runs it on the downloaded state dict before loading, so the Hub file stays byte-identical to
what its publisher uploaded (and its sha256 stays checkable).

>>> import timm, torch, lightnets
>>> theirs = timm.create_model("mobilenetv1_100").eval()
>>> ours = lightnets.create_model("mobilenet_v1_100", act_layer="relu6").eval()
>>> _ = ours.load_state_dict(convert_timm_mobilenetv1(theirs.state_dict()))
>>> x = torch.randn(1, 3, 224, 224)
>>> torch.allclose(ours(x), theirs(x), atol=1e-5)
True
"""
from __future__ import annotations

import re
from typing import Callable

import torch

__all__ = ["CONVERTERS", "convert_state_dict", "convert_timm_mobilenetv1"]

StateDict = dict[str, torch.Tensor]

# timm's BatchNormAct2d holds the same buffers as nn.BatchNorm2d, so BN keys map one to one.
_TIMM_MOBILENETV1_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)")
_TIMM_MOBILENETV1_LAYERS = {"conv_dw": "conv_dw", "bn1": "bn_dw", "conv_pw": "conv_pw", "bn2": "bn_pw"}
_TIMM_MOBILENETV1_STEM = {"conv_stem": "stem.conv", "bn1": "stem.bn", "classifier": "classifier"}
# timm groups the paper's 13 separable layers (Table 1) into stages of (1, 2, 2, 6, 2) blocks;
# we number them 0..12 in order, so the flat index is found by sorting (stage, block).


def convert_timm_mobilenetv1(state_dict: StateDict) -> StateDict:
    """Map a timm ``mobilenetv1_*`` state dict onto lightnets' ``mobilenet_v1`` (built with ``act_layer="relu6"``).

    timm ``conv_stem``/``bn1`` → ``stem.conv``/``stem.bn``; ``blocks.{stage}.{block}.conv_dw/bn1/conv_pw/bn2``
    → ``blocks.{i}.conv_dw/bn_dw/conv_pw/bn_pw``; ``classifier`` → ``classifier``.
    """
    converted: StateDict = {}
    block_keys: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        match = _TIMM_MOBILENETV1_BLOCK.fullmatch(key)
        if match:
            stage, block, layer, param = match.groups()
            block_keys.setdefault((int(stage), int(block)), {})[f"{_TIMM_MOBILENETV1_LAYERS[layer]}.{param}"] = value
            continue
        module, _, param = key.partition(".")
        if module in _TIMM_MOBILENETV1_STEM:
            converted[f"{_TIMM_MOBILENETV1_STEM[module]}.{param}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"not a timm mobilenetv1 state dict (the variants without a conv head, e.g. mobilenetv1_100): "
            f"unexpected keys {unknown[:5]}"
        )
    for index, stage_block in enumerate(sorted(block_keys)):
        for name, value in block_keys[stage_block].items():
            converted[f"blocks.{index}.{name}"] = value
    return converted


# The names a pretrained cfg's "source_format" may take.
CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "timm_mobilenetv1": convert_timm_mobilenetv1,
}


def convert_state_dict(state_dict: StateDict, source_format: str) -> StateDict:
    """Run the converter registered for ``source_format`` (see :data:`CONVERTERS`).

    >>> convert_state_dict({}, "keras")
    Traceback (most recent call last):
    ...
    ValueError: source_format must be one of ['timm_mobilenetv1'], got 'keras'
    """
    if source_format not in CONVERTERS:
        raise ValueError(f"source_format must be one of {sorted(CONVERTERS)}, got {source_format!r}")
    return CONVERTERS[source_format](state_dict)
