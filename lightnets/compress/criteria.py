"""What ranks a conv's filters for pruning: one score per output filter, the lowest removed first.

* ``"l1"`` — Σ|weights| of the filter (Li et al. 2017, "Pruning Filters for Efficient ConvNets", Sec. 3.1).
* ``"apoz"`` — 1 − APoZ, the Average Percentage of Zeros of the filter's channel after the ReLU that
  follows it (through its BatchNorm and a residual add or concatenation), over calibration images
  (Hu et al. 2016, "Network Trimming", Eq. 1): a channel that is mostly zero carries little.
* ``"reconstruction"`` — how long the filter's channel survives the LASSO path that reconstructs the output of
  the layer reading it (He et al. 2017, "Channel Pruning for Accelerating Very Deep Neural Networks", Eq. 3);
  :func:`~lightnets.compress.prune` then refits those layers by least squares
  (:mod:`lightnets.compress.reconstruction`).
* ``"slimming"`` — |γ|, the scale of the BatchNorm that follows the filter (Liu et al. 2017, "Learning
  Efficient Convolutional Networks through Network Slimming", Sec. 3.2), meant for a model trained with
  an L1 penalty on γ (``lightnets-train --bn-l1``); pruned with one global threshold.

The scores are read from the traced forward of :class:`~lightnets.compress.graph.ChannelGraph`, so every
family the pruner handles (grouped convs, shuffles, residual joins) is ranked the same way.
"""
from __future__ import annotations

import operator
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from .graph import ChannelGraph
from .reconstruction import reconstruction_scores

__all__ = ["CRITERIA", "apoz_scores", "bn_scale_scores", "check_calibration", "criterion_scores"]

CRITERIA = ("l1", "apoz", "reconstruction", "slimming")

_ADDS = {operator.add, torch.add, operator.iadd}
_RELUS = {F.relu, torch.relu, F.relu6}


def _is_relu(module: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(module.get_submodule(node.target), (nn.ReLU, nn.ReLU6))
    return (node.op == "call_function" and node.target in _RELUS) or (
        node.op == "call_method" and node.target == "relu"
    )


def _is_batch_norm(module: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(module.get_submodule(node.target), nn.BatchNorm2d)


def _follow(
    graph: ChannelGraph, conv: str, wanted: Callable[[fx.GraphModule, fx.Node], bool]
) -> Optional[tuple[fx.Node, int]]:
    """The first node after ``conv``'s output that ``wanted`` accepts, through BatchNorm, residual adds and
    concatenations, and where the conv's channels start in it; None when another op comes first."""
    module = graph.module
    target = graph.prefix + conv
    node = next((n for n in module.graph.nodes if n.op == "call_module" and n.target == target), None)
    offset = 0
    while node is not None:
        users = list(node.users)
        if len(users) != 1:
            return None
        previous, node = node, users[0]
        if wanted(module, node):
            return node, offset
        if node.op == "call_function" and node.target is torch.cat:
            parts = node.args[0]
            offset += sum(part.meta["tensor_meta"].shape[1] for part in parts[:parts.index(previous)])
        elif not (_is_batch_norm(module, node) or (node.op == "call_function" and node.target in _ADDS)):
            return None
    return None


def bn_scale_scores(graph: ChannelGraph, convs: Sequence[str]) -> dict[str, torch.Tensor]:
    """|γ| of the BatchNorm right after each conv (network slimming's channel importance)."""
    scores = {}
    for conv in convs:
        found = _follow(graph, conv, _is_batch_norm)
        if found is None or found[1]:
            raise ValueError(f"network slimming ranks a conv's filters by the BatchNorm after it; {conv!r} has none")
        scores[conv] = graph.module.get_submodule(found[0].target).weight.detach().abs()
    return scores


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, watched: set[fx.Node]) -> None:
        super().__init__(module)
        self.watched, self.outputs = watched, {}

    def run_node(self, node: fx.Node):
        result = super().run_node(node)
        if node in self.watched:
            self.outputs[node] = result
        return result


def check_calibration(calibration: object, criterion: str) -> None:
    """Raise a ValueError unless ``calibration`` is a non-empty float image batch (N, C, H, W)."""
    if not isinstance(calibration, torch.Tensor) or calibration.dim() != 4 or not calibration.is_floating_point() \
            or not len(calibration) or not bool(torch.isfinite(calibration).all()):
        raise ValueError(f"criterion={criterion!r} needs calibration images: a finite float tensor (N, C, H, W) with "
                         f"N >= 1, normalised as the model expects; got {type(calibration).__name__}"
                         + (f" of shape {tuple(calibration.shape)}" if isinstance(calibration, torch.Tensor) else ""))


@torch.no_grad()
def apoz_scores(
    graph: ChannelGraph, convs: Sequence[str], calibration: torch.Tensor, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """1 − APoZ of each conv's channels after the ReLU that follows it, over the ``calibration`` images."""
    check_calibration(calibration, "apoz")
    places = {}
    for conv in convs:
        found = _follow(graph, conv, _is_relu)
        if found is None:
            raise ValueError(f"APoZ counts zeros after a ReLU; {conv!r} is not followed by one (through its BatchNorm, "
                             "an add or a concatenation): rank it with criterion='l1'")
        places[conv] = found
    size = {conv: graph.root.get_submodule(graph.prefix + conv).out_channels for conv in convs}
    zeros = {conv: torch.zeros(size[conv], dtype=torch.float64) for conv in convs}
    counted = 0
    was_training = graph.module.training
    graph.module.eval()
    try:
        param = next(graph.module.parameters())
        for batch in calibration.split(batch_size):
            recorder = _Recorder(graph.module, {node for node, _ in places.values()})
            recorder.run(batch.to(param.device, param.dtype))
            for conv, (node, offset) in places.items():
                channels = recorder.outputs[node][:, offset:offset + size[conv]]
                zeros[conv] += (channels <= 0).double().mean(dim=(2, 3)).sum(0).cpu()
            counted += len(batch)
    finally:
        graph.module.train(was_training)
    return {conv: 1 - zeros[conv] / counted for conv in convs}


def criterion_scores(graph: ChannelGraph, criterion: str, convs: Sequence[str],
                     calibration: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Each conv's filter scores under ``criterion`` (higher is kept); {} for ``"l1"``, the graph's default."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}")
    if criterion in ("apoz", "reconstruction"):
        if calibration is None:
            raise ValueError(f"criterion={criterion!r} needs calibration images: prune(model, ratio, "
                             f"criterion={criterion!r}, calibration=images)")
        check_calibration(calibration, criterion)
        if criterion == "reconstruction":
            return reconstruction_scores(graph, convs, calibration)
        return apoz_scores(graph, convs, calibration)
    if criterion == "slimming":
        return bn_scale_scores(graph, convs)
    return {}
