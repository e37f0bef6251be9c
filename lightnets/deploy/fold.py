"""BatchNorm folding: each BatchNorm2d that reads only a Conv2d's output becomes part of that conv's weights.

The pairs come from the data flow of the forward (torch.fx), not from the order modules were registered in.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.base import UncheckedLogits

__all__ = ["conv_bn_pairs", "fold_batchnorm"]


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Names of ``(Conv2d, BatchNorm2d)`` pairs where the BatchNorm reads only that conv's output.

    The data flow comes from tracing the forward with torch.fx, so a pair is found by what the
    forward computes, not by the order the modules were registered in.

    >>> from lightnets.layers import ConvBNAct
    >>> conv_bn_pairs(nn.Sequential(ConvBNAct(3, 8), ConvBNAct(8, 8)))
    [('0.conv', '0.bn'), ('1.conv', '1.bn')]
    """
    traced_root = (
        UncheckedLogits(model) if hasattr(model, "forward_features") and hasattr(model, "forward_head") else model
    )
    prefix = "model." if traced_root is not model else ""
    try:
        graph = torch.fx.symbolic_trace(traced_root).graph
    except Exception as error:  # fx raises several types; all mean the same thing to the caller
        raise ValueError(
            f"cannot fold BatchNorm in {type(model).__name__}: its forward is not traceable by torch.fx ({error})"
        ) from error
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(traced_root.get_submodule(node.target), nn.BatchNorm2d):
            continue
        producer = node.args[0]
        if (
            isinstance(producer, torch.fx.Node)
            and producer.op == "call_module"
            and isinstance(traced_root.get_submodule(producer.target), nn.Conv2d)
            and len(producer.users) == 1
            and calls[producer.target] == calls[node.target] == 1  # a module called twice cannot be folded once
        ):
            pairs.append((producer.target.removeprefix(prefix), node.target.removeprefix(prefix)))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm2d that follows a Conv2d folded into that conv.

    The conv gets ``W·γ/σ`` and ``(b − μ)·γ/σ + β`` (σ = sqrt(var + eps)); the BatchNorm becomes
    ``nn.Identity``. The model keeps its class and API; ``model`` itself is left untouched.

    >>> import lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", small_input=True).eval()
    >>> folded = fold_batchnorm(model)
    >>> sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    0
    """
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(folded):
        folded.set_submodule(
            conv_name, fuse_conv_bn_eval(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        )
        folded.set_submodule(bn_name, nn.Identity())
    return folded
