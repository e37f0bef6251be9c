"""Multiply-add counting with fvcore (one multiply-add = one "flop" in fvcore's convention).

Papers count only convolutions and fully connected layers; fvcore also counts BatchNorm and
pooling. ``ops="conv+fc"`` gives the papers' number, ``ops="all"`` fvcore's total.
"""
from __future__ import annotations

import logging
import warnings
from typing import Literal, Sequence

import torch
from torch import nn

# fvcore operator names (its handle table) that are convolutions or fully connected layers.
CONV_FC_OPS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})


def _fvcore_by_operator(model: nn.Module, input_size: Sequence[int]) -> dict[str, int]:
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        inputs = torch.zeros(1, *input_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("fvcore").setLevel(logging.ERROR)
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return dict(analysis.by_operator())
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_size: Sequence[int], ops: Literal["conv+fc", "all"] = "conv+fc") -> int:
    """Multiply-adds of one forward pass on a single image of ``input_size`` = (C, H, W).

    >>> from lightnets import create_model
    >>> round(count_macs(create_model("mobilenet_v1_100"), (3, 224, 224)) / 1e6)
    569
    """
    if ops not in ("conv+fc", "all"):
        raise ValueError(f"ops must be 'conv+fc' or 'all', got {ops!r}")
    by_op = _fvcore_by_operator(model, input_size)
    if ops == "all":
        return int(sum(by_op.values()))
    return int(sum(count for op, count in by_op.items() if op in CONV_FC_OPS))
