"""Model surgery: conv → depthwise-separable conversion, L1-norm filter pruning, fine-tuning with distillation.

Every tool returns a new model and leaves its input untouched; every tool works on any model of the
zoo (and on a plain ``nn.Module`` whose forward torch.fx can trace).

* :func:`to_separable` replaces chosen standard k×k convs by depthwise k×k + BN + ReLU + pointwise 1×1
  (MobileNet v1, Fig. 3), initialised randomly or by a rank-1 factorisation of each input channel's
  kernels, so that the converted model starts close to the original.
* :func:`prune_l1` removes the output filters with the smallest L1 norms (Li et al. 2017, "Pruning
  Filters for Efficient ConvNets", arXiv 1608.08710, Sec. 3.1) and rebuilds every layer that reads them.
  Which layers read which channels comes from the forward's data flow, traced with torch.fx: BatchNorm,
  depthwise convs, grouped convs (pruned evenly per group), channel shuffles, residual adds (joined
  filters are kept or removed together, ranked by their summed norms), concatenations and the classifier.
* :func:`sensitivity_scan` prunes one layer at a time (Li et al., Sec. 3.3, Fig. 2b); :func:`iterative_prune`
  alternates pruning and fine-tuning; :func:`finetune` trains a model in memory, optionally distilling
  from a teacher model (:func:`lightnets.train.distillation_loss`).

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> separable = to_separable(model, ["features.conv2.conv"])
>>> pruned = prune_l1(model, ratio=0.5)
>>> [compare_cost(model, m, (1, 28, 28)).macs_after for m in (separable, pruned)]
[4445056, 1994240]
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import math
import operator
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import fx, nn

from .layers import ChannelShuffle
from .registry import WEIGHT_SOURCE_KEYS

__all__ = [
    "CostChange", "compare_cost", "standard_convs", "to_separable", "prunable_layers", "joined_layers",
    "prune_l1", "restructure", "sensitivity_scan", "iterative_prune", "finetune", "top1_accuracy",
]

Layers = Union[str, Sequence[str]]


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _unknown_layer(model: nn.Module, name: str, candidates: Iterable[str], what: str) -> ValueError:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"{type(model).__name__} has no {what} named {name!r}{hint}")


# What a pretrained cfg says about one weight file; a changed model is no longer that file.
_WEIGHT_IDENTITY = (*WEIGHT_SOURCE_KEYS, "hf_hub_filename", "revision", "sha256", "metrics", "params", "macs", "source_format")


def _derived_copy(model: nn.Module) -> nn.Module:
    """A deep copy to change, whose pretrained_cfg names the weight it came from (``derived_from``) instead of
    claiming that weight's file, checksum, metrics, params and MACs."""
    new = copy.deepcopy(model)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture"):
        source = cfg.get("derived_from") or (f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else None)
        new.pretrained_cfg = {key: value for key, value in cfg.items() if key not in _WEIGHT_IDENTITY}
        new.pretrained_cfg.update(tag=None, derived_from=source)
    return new


def _input_size(model: nn.Module, input_size: Optional[Sequence[int]]) -> tuple[int, ...]:
    if input_size is not None:
        return tuple(input_size)
    if hasattr(model, "in_chans") and hasattr(model, "img_size"):
        return (model.in_chans, model.img_size, model.img_size)
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    if size is None:
        raise ValueError(f"{type(model).__name__} does not declare its input size: pass input_size=(C, H, W)")
    return tuple(size)


@dataclass(frozen=True)
class CostChange:
    """Parameters and conv+FC multiply-adds of one image, before and after a surgery (lightnets.profile)."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def mac_reduction(self) -> float:
        """MACs before ÷ MACs after (2.0: half the multiply-adds)."""
        return self.macs_before / self.macs_after

    def __str__(self) -> str:
        return (f"params {self.params_before:,} → {self.params_after:,} "
                f"({100 * self.params_after / self.params_before:.1f}%), "
                f"MMACs {self.macs_before / 1e6:.2f} → {self.macs_after / 1e6:.2f} ({self.mac_reduction:.2f}× fewer)")


def compare_cost(before: nn.Module, after: nn.Module, input_size: Optional[Sequence[int]] = None) -> CostChange:
    """Params and conv+FC MACs of ``before`` and ``after`` on one image of ``input_size`` (default: the model's)."""
    from .flops import profile

    size = _input_size(before, input_size)
    cost_before, cost_after = profile(before, size), profile(after, size)
    return CostChange(cost_before.params, cost_after.params, cost_before.total_macs, cost_after.total_macs)


# --------------------------------------------------------------------------------------------------
# Conversion to depthwise-separable convs
# --------------------------------------------------------------------------------------------------


def _is_standard_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == 1 and max(module.kernel_size) > 1


def standard_convs(model: nn.Module) -> list[str]:
    """Names of the standard k×k convs (k > 1, one group) that :func:`to_separable` can convert, in model order.

    >>> import lightnets
    >>> standard_convs(lightnets.create_model("smallcnn_3x2"))
    ['features.conv1.conv', 'features.conv2.conv', 'features.conv3.conv']
    """
    return [name for name, module in model.named_modules() if _is_standard_conv(module)]


def _conv_name(model: nn.Module, name: str) -> str:
    """The standard conv ``name`` points at: the conv itself, or a block holding exactly one."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise _unknown_layer(model, name, standard_convs(model) or modules, "layer")
    module = modules[name]
    inner = [f"{name}.{child}" for child, m in module.named_modules() if child and _is_standard_conv(m)]
    if _is_standard_conv(module):
        return name
    if not isinstance(module, nn.Conv2d) and len(inner) == 1:
        return inner[0]
    kind = ("a depthwise conv" if isinstance(module, nn.Conv2d) and module.groups == module.in_channels
            else f"a grouped conv ({module.groups} groups)" if isinstance(module, nn.Conv2d) and module.groups > 1
            else "a 1x1 conv" if isinstance(module, nn.Conv2d) else f"a {type(module).__name__}")
    raise ValueError(f"layer {name!r} is {kind}, not a standard k×k conv; convertible layers: {standard_convs(model)}")


def _select_convs(model: nn.Module, layers: Layers, input_size: Optional[Sequence[int]]) -> list[str]:
    """Conv names from a list of names or a rule ``"deepest:N"`` / ``"costliest:N"`` (by conv MACs)."""
    candidates = standard_convs(model)
    if isinstance(layers, str):
        rule, _, count = layers.partition(":")
        if rule not in ("deepest", "costliest") or not count.isdigit() or not 1 <= int(count) <= len(candidates):
            raise ValueError(f"layers rule must be 'deepest:N' or 'costliest:N' with N from 1 to {len(candidates)} "
                             f"(the standard convs of {type(model).__name__}), got {layers!r}")
        if rule == "deepest":
            return candidates[-int(count):]
        from .flops import profile

        macs = {row["module"]: row["macs"] for row in profile(model, _input_size(model, input_size)).by_module}
        costliest = sorted(candidates, key=lambda name: -macs[name])[:int(count)]
        return [name for name in candidates if name in costliest]
    names = [_conv_name(model, name) for name in layers]
    if not names:
        raise ValueError(f"layers must name at least one conv; convertible layers: {candidates}")
    if len(set(names)) != len(names):
        raise ValueError(f"layers names a conv twice: {list(layers)}")
    return names


def _separable_pair(conv: nn.Conv2d) -> nn.Sequential:
    """Depthwise k×k + BN + ReLU + pointwise 1×1 with the conv's geometry; the conv's own BN stays after it."""
    in_chs = conv.in_channels
    pair = nn.Sequential(OrderedDict(
        conv_dw=nn.Conv2d(in_chs, in_chs, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                          groups=in_chs, bias=False, padding_mode=conv.padding_mode),
        bn_dw=nn.BatchNorm2d(in_chs),
        act_dw=nn.ReLU(inplace=True),
        conv_pw=nn.Conv2d(in_chs, conv.out_channels, 1, bias=conv.bias is not None),
    ))
    for layer in (pair.conv_dw, pair.conv_pw):
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        pair.conv_pw.bias.data.copy_(conv.bias.data)
    return pair.to(conv.weight.device, conv.weight.dtype)


def rank1_factors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise (M, 1, k, k) and pointwise (N, M, 1, 1) kernels whose composition best fits ``weight`` (N, M, k, k).

    A depthwise-separable pair computes Σ_i P[:, i]·(D_i ∗ x_i): the kernel W[:, i] (N × k²) of each input
    channel i is replaced by the rank-1 matrix P[:, i]·D_iᵀ. Its best rank-1 fit in Frobenius norm is
    σ₁u₁v₁ᵀ (Eckart–Young), split evenly: D_i = √σ₁·v₁, P[:, i] = √σ₁·u₁.

    >>> w = torch.einsum("ni,ik->nik", torch.randn(8, 4), torch.randn(4, 9)).reshape(8, 4, 3, 3)  # rank 1
    >>> dw, pw = rank1_factors(w)
    >>> bool(torch.allclose(torch.einsum("ni,ik->nik", pw[:, :, 0, 0], dw.flatten(1)).reshape(w.shape), w, atol=1e-5))
    True
    """
    out_chs, in_chs, kh, kw = weight.shape
    u, s, vh = torch.linalg.svd(weight.detach().transpose(0, 1).reshape(in_chs, out_chs, kh * kw), full_matrices=False)
    scale = s[:, 0].sqrt()
    depthwise = (vh[:, 0, :] * scale[:, None]).reshape(in_chs, 1, kh, kw)
    pointwise = (u[:, :, 0] * scale[:, None]).t().reshape(out_chs, in_chs, 1, 1)
    return depthwise, pointwise


@torch.no_grad()
def _lowrank_init(pair: nn.Sequential, conv: nn.Conv2d, conv_input: torch.Tensor, max_pixels: int = 65536) -> None:
    """Rank-1 depthwise factors, BN + ReLU set to an identity plus a shift, pointwise refit by least squares.

    1. The depthwise kernels are the rank-1 factors of :func:`rank1_factors`.
    2. The BN takes the depthwise output's own statistics z̄, s² (running and affine alike, so it is the
       identity in train and eval mode at the start) plus a shift β = s − min z per channel that keeps
       every calibration value positive, so the ReLU passes it unchanged.
    3. The pointwise weights and bias are refit by least squares to the original conv's outputs on the
       calibration images (the reconstruction step of He et al. 2017, "Channel Pruning for Accelerating
       Very Deep Neural Networks", Sec. 3.1): trained kernels are far from rank 1 (the rank-1 fit alone
       leaves ~85% of ‖W‖ on the 3+2 CNN), and the refit lets the 1×1 mix recover what it can from data.
    """
    depthwise, pointwise = rank1_factors(conv.weight)
    pair.conv_dw.weight.copy_(depthwise)
    z = pair.conv_dw(conv_input).transpose(0, 1).flatten(1)
    mean, var = z.mean(1), z.var(1, unbiased=False)
    bn = pair.bn_dw
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_((var + bn.eps).sqrt())
    bn.bias.copy_(mean + var.sqrt() - z.min(1).values)
    hidden = pair.act_dw(bn.eval()(pair.conv_dw(conv_input))).transpose(0, 1).flatten(1).t()
    target = conv(conv_input).transpose(0, 1).flatten(1).t()
    pixels = torch.randperm(len(target), generator=torch.Generator().manual_seed(0))[:max_pixels]
    design = torch.cat([hidden[pixels], hidden.new_ones(len(pixels), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, target[pixels].double()).solution.to(conv.weight.dtype)
    pair.conv_pw.weight.copy_(solution[:-1].t().reshape_as(pointwise))
    pair.conv_pw.bias = nn.Parameter(solution[-1])


def _conv_inputs(model: nn.Module, names: Sequence[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each named module receives when ``model`` (eval mode) runs on ``images``."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda module, args, output, name=name: captured.__setitem__(name, args[0].detach())) for name in names]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return captured


def to_separable(
    model: nn.Module,
    layers: Layers,
    *,
    init: str = "random",
    freeze: str = "none",
    calibration: Optional[torch.Tensor] = None,
    input_size: Optional[Sequence[int]] = None,
) -> nn.Module:
    """A copy of ``model`` whose chosen standard k×k convs are depthwise k×k + BN + ReLU + pointwise 1×1.

    A layer from M to N channels on an output map of H×W costs k²·M·N·H·W mult-adds before and
    k²·M·H·W + M·N·H·W after (MobileNet v1, Eq. 2 vs. Eq. 5). A BatchNorm that followed the conv stays
    after the pointwise conv; every other weight is copied bit for bit.

    Args:
        model: the model; not modified.
        layers: conv names (a block holding exactly one standard conv, like ``"features.conv2"``, also
            works), or ``"deepest:N"`` / ``"costliest:N"`` (the N standard convs with the most MACs).
        init: ``"random"`` (Kaiming, as a new model) or ``"lowrank"``: each input channel's kernels
            W[:, i] replaced by their best rank-1 fit (:func:`rank1_factors`), so the logits start close
            to the original's. ``"lowrank"`` needs ``calibration``.
        freeze: ``"none"`` or ``"untouched"``: every parameter outside the new layers gets
            ``requires_grad=False`` (train only the new layers).
        calibration: a batch of model inputs (normalised images) that places the BN between the
            factors (see :func:`_lowrank_init`).
        input_size: (C, H, W) for ``"costliest:N"`` when the model does not declare its own.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> new = to_separable(model, "deepest:1", freeze="untouched")
    >>> type(new.features.conv3.conv).__name__, sum(p.numel() for p in new.parameters() if p.requires_grad)
    ('Sequential', 8896)
    """
    if init not in ("random", "lowrank"):
        raise ValueError(f"init must be 'random' or 'lowrank', got {init!r}")
    if freeze not in ("none", "untouched"):
        raise ValueError(f"freeze must be 'none' or 'untouched', got {freeze!r}")
    if init == "lowrank" and calibration is None:
        raise ValueError("init='lowrank' needs calibration=<a batch of model inputs> to place the BN between the factors")
    names = _select_convs(model, layers, input_size)
    converted = _derived_copy(model)
    if freeze == "untouched":
        converted.requires_grad_(False)
    order = [name for name in standard_convs(model) if name in names]
    for name in order:  # in forward order: a layer is fit to what the layers converted before it feed it
        conv = converted.get_submodule(name)
        pair = _separable_pair(conv)
        if init == "lowrank":
            _lowrank_init(pair, conv, _conv_inputs(converted, [name], calibration)[name])
        pair.train(conv.training)
        converted.set_submodule(name, pair)
    return converted


# --------------------------------------------------------------------------------------------------
# L1-norm filter pruning: which layers read which channels, from the traced data flow
# --------------------------------------------------------------------------------------------------

_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh,
                 nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool2d)
_PASS_FUNCTIONS = {F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.hardswish, F.silu, F.gelu, F.dropout, F.max_pool2d,
                   F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.relu, torch.sigmoid, torch.tanh}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "to"}
_JOIN_FUNCTIONS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, torch.add, torch.mul}
_JOIN_METHODS = {"add", "add_", "mul", "mul_", "sub"}
_FLATTEN = {torch.flatten, "flatten", "view", "reshape"}


class _Logits(nn.Module):
    """``forward_head(forward_features(x))``: a lightnets model without its Python input checks, for torch.fx."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return isinstance(module, ChannelShuffle) or super().is_leaf_module(module, qualname)


class ChannelGraph:
    """Which channels of which layers must be pruned together, from one torch.fx trace of ``model``.

    Every output channel of every conv (and of the input, and of ops it does not know) gets a global
    id; each traced tensor carries the ids of its channels (an (N, C·H·W) flatten repeats each id H·W
    times). Ids that an add joins, or that a channel shuffle must keep in step, fall into one *slot*
    (union-find): a slot is kept or removed as a whole. Grouped convs add *even* constraints: each of
    their groups must keep the same number of channels. Ids that reach an op it does not know, the
    model's output or the input are *blocked*: their layers are not pruned.
    """

    def __init__(self, model: nn.Module, input_size: Sequence[int]) -> None:
        from torch.fx.passes.shape_prop import ShapeProp

        wrapped = hasattr(model, "forward_features") and hasattr(model, "forward_head")
        root = _Logits(model) if wrapped else model
        was_training = model.training
        self.prefix = "model." if wrapped else ""
        try:
            graph = _Tracer().trace(root)
            module = fx.GraphModule(root, graph)
            param = next(model.parameters())
            with torch.no_grad():
                ShapeProp(module.eval()).propagate(torch.zeros(2, *input_size, dtype=param.dtype, device=param.device))
        except Exception as error:  # fx raises several types; all mean the same thing to the caller
            raise ValueError(f"cannot prune {type(model).__name__}: its forward is not traceable by torch.fx ({error})") from error
        finally:
            model.train(was_training)
        self.root = root
        self.parent: list[int] = []  # union-find over channel ids
        self.owner: list[int] = []  # channel id -> producer index
        self.producers: list[tuple[Optional[str], int]] = []  # (conv name or None, first channel id)
        self.blocked: set[int] = set()
        self.even: list[tuple[str, torch.Tensor, int]] = []  # (layer, channel ids, groups)
        self.uses: list[tuple[str, Optional[torch.Tensor], Optional[torch.Tensor]]] = []  # (module, in ids, out ids)
        calls: dict[str, int] = {}
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        self.ids: dict[fx.Node, torch.Tensor] = {}
        for node in graph.nodes:
            self._visit(node, calls)

    # -- union-find ------------------------------------------------------------------------------

    def _new(self, name: Optional[str], size: int) -> torch.Tensor:
        start = len(self.parent)
        self.producers.append((name, start))
        self.parent.extend(range(start, start + size))
        self.owner.extend([len(self.producers) - 1] * size)
        ids = torch.arange(start, start + size)
        if name is None:
            self.blocked.update(ids.tolist())
        return ids

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        for i, j in zip(a.tolist(), b.tolist()):
            ri, rj = self.find(i), self.find(j)
            if ri != rj:
                self.parent[rj] = ri

    # -- the trace -------------------------------------------------------------------------------

    def _block(self, node: fx.Node) -> Optional[torch.Tensor]:
        for arg in node.all_input_nodes:
            if arg in self.ids:
                self.blocked.update(self.ids[arg].tolist())
        shape = _shape(node)
        return self._new(None, shape[1]) if shape and len(shape) >= 2 else None

    def _visit(self, node: fx.Node, calls: dict[str, int]) -> None:
        shape = _shape(node)
        args = [self.ids.get(a) if isinstance(a, fx.Node) else None for a in node.args]
        first = args[0] if args else None
        tensors = [self.ids[a] for a in node.all_input_nodes if a in self.ids]
        out: Optional[torch.Tensor]
        if node.op == "placeholder":
            out = self._new(None, shape[1]) if shape and len(shape) >= 2 else None
        elif node.op == "output":
            out = self._block(node)
        elif node.op == "call_module":
            module = self.root.get_submodule(node.target)
            name = node.target.removeprefix(self.prefix)
            if first is None or calls[node.target] > 1:
                out = self._block(node)
            elif isinstance(module, nn.Conv2d):
                out = self._conv(module, name, first)
            elif isinstance(module, nn.BatchNorm2d):
                out = first
                self.uses.append((name, first, first))
            elif isinstance(module, nn.Linear) and len(shape) == 2:
                out = self._new(None, module.out_features)
                self.uses.append((name, first, out))
            elif isinstance(module, ChannelShuffle):
                out = self._shuffle(first, module.groups)
            elif isinstance(module, _PASS_MODULES):
                out = first
            elif isinstance(module, nn.Flatten):
                out = self._flatten(node, first)
            else:
                out = self._block(node)
        elif node.op in ("call_function", "call_method"):
            target = node.target
            if not shape:  # x.shape, x.size(1), ...: reading a size constrains no channel
                out = None
            elif not tensors:  # a tensor made inside forward
                out = self._block(node)
            elif target in _PASS_FUNCTIONS or target in _PASS_METHODS:
                out = first if first is not None else self._block(node)
            elif target in _FLATTEN:
                out = self._flatten(node, first)
            elif target in _JOIN_FUNCTIONS or target in _JOIN_METHODS:
                out = self._join(node, args)
            elif target is torch.cat and _cat_dim(node) == 1 and all(isinstance(a, fx.Node) for a in node.args[0]):
                parts = [self.ids.get(a) for a in node.args[0]]
                out = torch.cat(parts) if all(p is not None for p in parts) else self._block(node)
            elif target is torch.channel_shuffle and first is not None:
                out = self._shuffle(first, node.args[1])
            else:
                out = self._block(node)
        else:  # get_attr: a constant tensor
            out = None
        if out is not None:
            self.ids[node] = out

    def _conv(self, conv: nn.Conv2d, name: str, ids: torch.Tensor) -> torch.Tensor:
        if _is_depthwise(conv):  # channel i reads channel i only
            self.uses.append((name, ids, ids))
            return ids
        if conv.groups == conv.in_channels > 1:  # depthwise with a channel multiplier: not pruned
            self.blocked.update(ids.tolist())
            out = self._new(None, conv.out_channels)
        else:
            out = self._new(name, conv.out_channels)
            if conv.groups > 1:
                self.even += [(name, ids, conv.groups), (name, out, conv.groups)]
        self.uses.append((name, ids, out))
        return out

    def _shuffle(self, ids: torch.Tensor, groups: int) -> torch.Tensor:
        # ShuffleNet Fig. 1: view (g, C/g), transpose. The pruned shuffle stays a shuffle only if
        # every group keeps the same positions b: tie channel (a, b) to (a', b) for all groups a, a'.
        grid = ids.view(groups, -1)
        for row in grid[1:]:
            self._union(grid[0], row)
        return grid.t().reshape(-1)

    def _flatten(self, node: fx.Node, ids: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        source = _shape(node.all_input_nodes[0])
        shape = _shape(node)
        if ids is not None and shape == source:
            return ids
        if ids is None or not source or not shape or len(shape) != 2 or shape[1] != math.prod(source[1:]):
            return self._block(node)
        return ids.repeat_interleave(shape[1] // len(ids))  # (C, H, W) → C·H·W, channel-major

    def _join(self, node: fx.Node, args: list[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
        tensors = [a for a in args if a is not None]
        shapes = [_shape(a) for a in node.args if isinstance(a, fx.Node) and a in self.ids]
        others = [a for a in node.args if isinstance(a, fx.Node) and a not in self.ids]
        if others or any(s != shapes[0] for s in shapes):  # broadcasting or untracked tensors
            return self._block(node)
        for other in tensors[1:]:
            self._union(tensors[0], other)
        return tensors[0]

    # -- decisions -------------------------------------------------------------------------------

    def layers(self) -> dict[str, str]:
        """Every conv whose filters can be ranked → its component: the first conv of the set its channels share slots with."""
        names = [name for name, _ in self.producers if name is not None]
        component = {name: name for name in names}

        def top(name: str) -> str:
            while component[name] != name:
                name = component[name]
            return name

        first_in_slot: dict[int, str] = {}
        for name in names:
            for i in self.channels(name):
                other = top(first_in_slot.setdefault(self.find(i), name))
                if other != top(name):
                    component[top(name)] = other
        return {name: top(name) for name in names}

    def _size(self, name: str) -> int:
        return self.root.get_submodule(self.prefix + name).out_channels

    def channels(self, name: str) -> range:
        start = next(start for pname, start in self.producers if pname == name)
        return range(start, start + self._size(name))

    def norms(self, name: str) -> torch.Tensor:
        """L1 norm of each filter (Li et al., Sec. 3.1: s_j = Σ|F_j|)."""
        return self.root.get_submodule(self.prefix + name).weight.detach().abs().flatten(1).sum(1).cpu()

    def select(self, names: Sequence[str], ratio: float) -> set[int]:
        """Channel ids to remove from the component made of ``names`` at ``ratio``; a ValueError says why it cannot."""
        slots: dict[int, list[int]] = {}
        score: dict[int, float] = {}
        for name in names:
            for i, norm in zip(self.channels(name), self.norms(name).tolist()):
                root = self.find(i)
                slots.setdefault(root, []).append(i)
                score[root] = score.get(root, 0.0) + norm
        blocked = {self.find(i) for i in self.blocked}
        if any(root in blocked for root in slots):
            raise ValueError("its channels reach the model's input or output or an op the pruner does not know")
        mine = {i for members in slots.values() for i in members}
        constraints = [(layer, {i: position * groups // len(ids) for position, i in enumerate(ids.tolist())}, groups)
                       for layer, ids, groups in self.even if mine.intersection(ids.tolist())]
        cells: dict[tuple, list[int]] = {}
        for root, members in slots.items():
            # Slots of the same convs are pruned at the ratio together, so that each conv keeps its share.
            label: Optional[list] = [tuple(sorted({self.owner[m] for m in members}))]
            for layer, chunk, groups in constraints:
                counts = [sum(1 for m in members if chunk.get(m) == g) for g in range(groups)]
                if sum(counts) == 0 or len(set(counts)) == 1:
                    label.append(None)  # absent, or balanced across the groups
                elif sum(1 for c in counts if c) == 1:
                    label.append((layer, counts.index(max(counts))))
                else:  # straddles groups unevenly (e.g. a shuffle grid whose rows are not a multiple of g): kept
                    label = None
                    break
            if label is not None:
                cells.setdefault(tuple(label), []).append(root)
        if not cells:
            raise ValueError("no filter can be removed without leaving the groups of a grouped conv uneven")
        # Each cell loses round(ratio · its size). When that leaves a grouped conv uneven (a shuffle grid whose
        # columns straddle groups leaves, e.g., runs of 3, 2 and 3 whole columns, which round to 2, 1, 2),
        # the cells that differ only in which group they fall in lose the same number instead: round(ratio · mean).
        removed: set[int] = set()
        for key in cells:
            removed |= self._remove_lowest([key], cells, slots, score, ratio)
        try:
            self.check(removed)
            return removed
        except ValueError as uneven:
            families: dict[tuple, list[tuple]] = {}
            for key in cells:
                family = tuple(part[0] if isinstance(part, tuple) else part for part in key[1:])
                families.setdefault((key[0],) + family, []).append(key)
            try:
                removed = set()
                for keys in families.values():
                    removed |= self._remove_lowest(keys, cells, slots, score, ratio)
                self.check(removed)
                return removed
            except ValueError:
                pass
            # Cells of different sizes under several overlapping group layouts (ShuffleNet g=4/8's trunk:
            # conv2s write 62-channel groups, the next conv1s read 68-channel ones): solve for the counts.
            counts = self._even_counts(cells, [(layer, groups) for layer, _, groups in constraints], ratio)
            if counts is None:
                raise uneven from None
            removed = set().union(*(_lowest(cells[key], count, score, slots) for key, count in counts.items()))
            self.check(removed)
            return removed

    def _even_counts(self, cells: dict[tuple, list[int]], layouts: list[tuple[str, int]],
                     ratio: float) -> Optional[dict[tuple, int]]:
        """How many slots each cell loses so that every grouped conv of ``layouts`` ((name, groups), one per
        position of the cell keys) loses the same number per group, each cell as close to ``ratio`` of its
        size as that allows and every conv keeping a channel: a small integer program (scipy's HiGHS MILP).
        None when scipy is missing or no such counts exist."""
        try:
            from scipy.optimize import Bounds, LinearConstraint, milp
        except ImportError:
            warnings.warn("prune_l1: the groups here are only kept even by an integer program; install scipy for it",
                          stacklevel=3)
            return None
        import numpy as np

        keys = list(cells)
        sizes = np.array([len(cells[key]) for key in keys], dtype=float)
        n, m = len(keys), len(layouts)
        # Variables: x (slots each cell loses), t (slots each layout loses per group), d >= |x - ratio * size|.
        rows: list[np.ndarray] = []
        bounds: list[tuple[float, float]] = []

        def constrain(coefficients: dict[int, float], low: float, high: float) -> None:
            row = np.zeros(2 * n + m)
            for index, value in coefficients.items():
                row[index] = value
            rows.append(row)
            bounds.append((low, high))

        for position, (_, groups) in enumerate(layouts, start=1):
            # Every group loses t; a group without prunable cells loses nothing, and so then do the others.
            for group in range(groups):
                members = [i for i, key in enumerate(keys) if key[position] is not None and key[position][1] == group]
                constrain({**{i: 1 for i in members}, n + position - 1: -1}, 0, 0)
        for i in range(n):
            constrain({i: 1, n + m + i: -1}, -np.inf, ratio * sizes[i])
            constrain({i: -1, n + m + i: -1}, -np.inf, -ratio * sizes[i])
        for producer in {p for key in keys for p in key[0]}:  # every conv keeps at least one of its channels
            size = self._size(self.producers[producer][0])
            mine = [i for i, key in enumerate(keys) if producer in key[0]]
            if sizes[mine].sum() == size:
                constrain({i: 1 for i in mine}, -np.inf, size - 1)
        low, high = zip(*bounds)
        result = milp(np.concatenate([np.zeros(n + m), np.ones(n)]),
                      integrality=np.concatenate([np.ones(n + m), np.zeros(n)]),
                      bounds=Bounds(np.zeros(2 * n + m), np.concatenate([sizes, np.full(m, sizes.sum()), np.full(n, np.inf)])),
                      constraints=LinearConstraint(np.array(rows), low, high))
        if result.x is None:
            return None
        return {key: int(round(result.x[i])) for i, key in enumerate(keys)}

    def _remove_lowest(self, keys: list[tuple], cells: dict[tuple, list[int]], slots: dict[int, list[int]],
                       score: dict[int, float], ratio: float) -> set[int]:
        """The channel ids of the ``round(ratio · mean size)`` slots of smallest norm in each cell of ``keys``."""
        sizes = [len(cells[key]) for key in keys]
        count = round(ratio * sum(sizes) / len(sizes))
        removed = set().union(*(_lowest(cells[key], count, score, slots) for key in keys))
        owners = [self.producers[p][0] for p in keys[0][0]]
        if count > min(sizes) or any(all(i in removed for i in self.channels(name)) for name in owners):
            per_group = f"{min(sizes)}" if len(set(sizes)) == 1 else f"{min(sizes)} to {max(sizes)}"
            raise ValueError(f"ratio {ratio} would leave zero channels ({per_group} prunable per group, {count} "
                             f"removed); use a ratio below {(min(sizes) - 0.5) * len(sizes) / sum(sizes):.3f}")
        return removed

    def check(self, removed: set[int]) -> None:
        """Raise a ValueError if removing ``removed`` leaves the groups of a grouped conv uneven."""
        for layer, ids, groups in self.even:
            kept = [sum(1 for i in chunk.tolist() if i not in removed) for chunk in ids.view(groups, -1)]
            if len(set(kept)) != 1:
                raise ValueError(f"the groups of {layer!r} would keep unequal channel counts {kept}")
            if not kept[0]:
                raise ValueError(f"ratio would leave zero channels in every group of {layer!r}")


def _lowest(roots: list[int], count: int, score: dict[int, float], slots: dict[int, list[int]]) -> set[int]:
    """The channel ids of the ``count`` slots (union-find roots) of smallest summed L1 norm among ``roots``."""
    return {i for root in sorted(roots, key=lambda r: score[r])[:count] for i in slots[root]}


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups == conv.in_channels == conv.out_channels > 1


def _shape(node: Any) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _cat_dim(node: fx.Node) -> int:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return dim if dim >= 0 else dim + len(_shape(node))


@torch.no_grad()
def _rebuild(module: nn.Module, keep_in: Optional[torch.Tensor], keep_out: Optional[torch.Tensor]) -> nn.Module:
    """A copy of a Conv2d / BatchNorm2d / Linear keeping input positions ``keep_in`` and output positions ``keep_out``."""
    if isinstance(module, nn.BatchNorm2d):
        new = copy.deepcopy(module)
        new.num_features = len(keep_out)
        for key in ("weight", "bias", "running_mean", "running_var"):
            tensor = getattr(module, key)
            if tensor is not None:
                setattr(new, key, nn.Parameter(tensor[keep_out].clone(), tensor.requires_grad)
                        if isinstance(tensor, nn.Parameter) else tensor[keep_out].clone())
        return new
    if isinstance(module, nn.Linear):
        weight = module.weight[keep_out][:, keep_in]
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
        bias = module.bias[keep_out] if module.bias is not None else None
    else:
        groups = module.groups
        if _is_depthwise(module):
            weight, groups = module.weight[keep_out], len(keep_out)
        else:
            in_per, out_per = module.in_channels // groups, module.out_channels // groups
            parts = []
            for g in range(groups):
                outs = keep_out[(keep_out >= g * out_per) & (keep_out < (g + 1) * out_per)]
                ins = keep_in[(keep_in >= g * in_per) & (keep_in < (g + 1) * in_per)] - g * in_per
                parts.append(module.weight[outs][:, ins])
            weight = torch.cat(parts)
        in_chs = weight.shape[1] * groups
        new = nn.Conv2d(in_chs, weight.shape[0], module.kernel_size, module.stride, module.padding, module.dilation,
                        groups, bias=module.bias is not None, padding_mode=module.padding_mode)
        bias = module.bias[keep_out] if module.bias is not None else None
    new = new.to(module.weight.device, module.weight.dtype)
    new.weight = nn.Parameter(weight.clone(), module.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias.clone(), module.bias.requires_grad)
    return new.train(module.training)


def restructure(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, first_conv: str = "",
                classifier: str = "") -> list[str]:
    """Change ``model``'s layers in place so that it takes ``state_dict``, saved from a converted
    (:func:`to_separable`) or pruned (:func:`prune_l1`) copy of a model built like it; returns the layers changed.

    A conv the state dict holds as a depthwise-separable pair (``<name>.conv_dw`` ... ``<name>.conv_pw``)
    becomes one; a Conv2d, BatchNorm2d or Linear whose saved weight has another shape is rebuilt with that
    shape (a depthwise conv stays depthwise, a grouped conv keeps its groups). The input channels of
    ``first_conv`` and the classes of ``classifier`` stay the model's: loading adapts those two. This is how
    :func:`lightnets.save_pretrained` folders of pruned or converted models load back.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> smaller = prune_l1(to_separable(model, ["features.conv2"]), {"features.conv1.conv": 0.5})
    >>> fresh = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> restructure(fresh, smaller.state_dict())
    ['features.conv2.conv', 'features.conv1.conv', 'features.conv1.bn', 'features.conv2.conv.conv_dw', 'features.conv2.conv.bn_dw', 'features.conv2.conv.conv_pw']
    >>> fresh.load_state_dict(smaller.state_dict())
    <All keys matched successfully>
    """
    changed = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and f"{name}.weight" not in state_dict and f"{name}.conv_dw.weight" in state_dict:
            model.set_submodule(name, _separable_pair(module).train(module.training))
            changed.append(name)
    with _num_features_follow_classifier(model):
        changed += _take_saved_shapes(model, state_dict, first_conv, classifier)
    if changed:
        _refresh_feature_info(model, _input_size(model, None))
    return changed


def _take_saved_shapes(model: nn.Module, state_dict: Mapping[str, torch.Tensor], first_conv: str, classifier: str) -> list[str]:
    """Rebuild every Conv2d / BatchNorm2d / Linear whose saved weight has another shape (see :func:`restructure`)."""
    changed = []
    for name, module in list(model.named_modules()):
        saved = state_dict.get(f"{name}.weight", state_dict.get(f"{name}.running_mean"))
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) or saved is None:
            continue
        own = module.weight if module.weight is not None else module.running_mean
        if saved.shape == own.shape:
            continue
        if isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(saved.shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
        elif isinstance(module, nn.Linear):
            out_features = module.out_features if name == classifier else saved.shape[0]
            new = nn.Linear(saved.shape[1], out_features, bias=module.bias is not None)
        else:
            if _is_depthwise(module):
                in_chs = out_chs = groups = saved.shape[0]
            else:
                groups, out_chs = module.groups, saved.shape[0]
                in_chs = module.in_channels if name == first_conv else saved.shape[1] * groups
            new = nn.Conv2d(in_chs, out_chs, module.kernel_size, module.stride, module.padding, module.dilation,
                            groups, bias=module.bias is not None, padding_mode=module.padding_mode)
        model.set_submodule(name, new.to(own.device, own.dtype).train(module.training))
        changed.append(name)
    return changed


@torch.no_grad()
def _refresh_feature_info(model: nn.Module, input_size: Sequence[int]) -> None:
    """Pruning changes channel counts: re-read the ``feature_info`` widths from the maps themselves."""
    if not hasattr(model, "forward_intermediates") or not getattr(model, "feature_info", None):
        return
    weight = next(model.parameters())
    was_training = model.training
    try:
        maps = model.eval().forward_intermediates(torch.zeros(1, *input_size, device=weight.device, dtype=weight.dtype),
                                                  intermediates_only=True)
    finally:
        model.train(was_training)
    model.feature_info = [{**info, "num_chs": feature_map.shape[1]} for info, feature_map in zip(model.feature_info, maps)]


@contextlib.contextmanager
def _num_features_follow_classifier(model: nn.Module) -> Iterator[None]:
    """When the block changes the classifier's input width, a ``num_features`` that was that width follows it
    (reset_classifier builds on it)."""
    old_in = getattr(model.get_classifier(), "in_features", None) if hasattr(model, "get_classifier") else None
    yield
    if old_in is not None and getattr(model, "num_features", None) == old_in:
        model.num_features = model.get_classifier().in_features


def prunable_layers(model: nn.Module, input_size: Optional[Sequence[int]] = None) -> list[str]:
    """Convs :func:`prune_l1` can prune (their channels do not reach the model's output), in model order.

    Convs whose outputs a residual add joins are pruned together; :func:`joined_layers` groups them.

    >>> import lightnets
    >>> prunable_layers(lightnets.create_model("mobilenet_v1_025", small_input=True))[:3]
    ['stem.conv', 'blocks.0.conv_pw', 'blocks.1.conv_pw']
    """
    return list(_prunable_components(ChannelGraph(model, _input_size(model, input_size))))


def _prunable_components(graph: ChannelGraph) -> dict[str, str]:
    """Each conv of ``graph`` that :func:`prune_l1` can prune → its component (the first conv it is joined to)."""
    components = graph.layers()
    selectable: dict[str, bool] = {}
    for component in set(components.values()):
        try:
            graph.select([n for n, c in components.items() if c == component], 0.0)
            selectable[component] = True
        except ValueError:
            selectable[component] = False
    return {name: component for name, component in components.items() if selectable[component]}


def joined_layers(model: nn.Module, input_size: Optional[Sequence[int]] = None) -> dict[str, list[str]]:
    """The prunable convs grouped by the residual adds that join their outputs: first conv → every conv in its set.

    Pruning any conv of a set removes the same channels from all of them (ShuffleNet's stem and every
    stride-1 unit's conv2 form one set: the trunk).

    >>> import lightnets
    >>> sets = joined_layers(lightnets.create_model("shufflenet_g3_050", small_input=True))
    >>> len(sets["stem.conv"]), sets["stage2.0.conv1"]
    (17, ['stage2.0.conv1'])
    """
    sets: dict[str, list[str]] = {}
    for name, component in _prunable_components(ChannelGraph(model, _input_size(model, input_size))).items():
        sets.setdefault(component, []).append(name)
    return {members[0]: members for members in sets.values()}


def prune_l1(
    model: nn.Module,
    ratio: Union[float, Mapping[str, float]] = 0.5,
    *,
    input_size: Optional[Sequence[int]] = None,
) -> nn.Module:
    """A copy of ``model`` with the filters of smallest L1 norm removed from its convs (Li et al. 2017).

    Each conv's filters are ranked by Σ|weights| and the lowest ``round(ratio·C)`` are removed; every
    layer that reads them is rebuilt smaller (BatchNorm, depthwise convs, the next conv's input, the
    classifier), so the model holds real, smaller tensors. Grouped convs lose the same number of
    channels in each group (where rounding each group's share alone would leave them uneven, every group
    loses the mean share; where several group layouts overlap, as in ShuffleNet g=4/8's trunk, a small
    integer program picks the counts, with scipy installed); filters joined by a residual add are ranked
    by their summed norms and removed together; a channel shuffle keeps the same positions in every group.

    Args:
        model: the model; not modified.
        ratio: fraction in [0, 1) of filters to remove from every prunable conv, or ``{conv name: ratio}``
            (unnamed convs are left as they are). Convs joined by an add take the same ratio.
        input_size: (C, H, W) to trace with, when the model does not declare its own.

    With a single float, convs that cannot be pruned (their channels reach the output, or a group
    would be left uneven) are skipped with a warning; named ones are an error.

    >>> import lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10)
    >>> pruned = prune_l1(model, {"blocks.12.conv_pw": 0.5})
    >>> pruned.blocks[12].conv_pw.out_channels, pruned.classifier.in_features
    (128, 128)
    """
    graph = ChannelGraph(model, _input_size(model, input_size))
    components = graph.layers()
    if isinstance(ratio, Mapping):
        for name, value in ratio.items():
            if name not in components:
                modules = dict(model.named_modules())
                if name not in modules:
                    raise _unknown_layer(model, name, components, "prunable conv")
                raise ValueError(f"layer {name!r} ({type(modules[name]).__name__}"
                                 f"{', depthwise' if getattr(modules[name], 'groups', 1) > 1 else ''}) produces no "
                                 f"filters of its own to prune; prunable convs: {list(components)}")
            _check_ratio(f"ratio[{name!r}]", value)
        requested = dict(ratio)
    else:
        _check_ratio("ratio", ratio)
        requested = {name: ratio for name in components}
    by_component: dict[str, list[str]] = {}
    for name, component in components.items():
        by_component.setdefault(component, []).append(name)
    removed: set[int] = set()
    for members in by_component.values():
        ratios = {requested[name] for name in members if name in requested}
        if not ratios or ratios == {0}:
            continue
        if len(ratios) > 1:
            raise ValueError(f"convs {members} are joined by an add and must be pruned with one ratio, got {sorted(ratios)}")
        try:
            removed |= graph.select(members, ratios.pop())
        except ValueError as error:
            if isinstance(ratio, Mapping) or "zero channels" in str(error):
                raise ValueError(f"cannot prune {', '.join(members)}: {error}") from error
            warnings.warn(f"prune_l1: skipped {', '.join(members)}: {error}", stacklevel=2)
    graph.check(removed)
    pruned = _derived_copy(model)
    with _num_features_follow_classifier(pruned):
        for name, ids_in, ids_out in graph.uses:
            keep_in, keep_out = (None if ids is None else torch.tensor([i not in removed for i in ids.tolist()]).nonzero().flatten()
                                 for ids in (ids_in, ids_out))
            module = pruned.get_submodule(name)
            if len(keep_in) < len(ids_in) or len(keep_out) < len(ids_out):
                pruned.set_submodule(name, _rebuild(module, keep_in, keep_out))
    _refresh_feature_info(pruned, _input_size(model, input_size))
    return pruned


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a fraction of filters to remove in [0, 1), got {value!r}")


# --------------------------------------------------------------------------------------------------
# Accuracy, sensitivity, fine-tuning
# --------------------------------------------------------------------------------------------------


def top1_accuracy(model: nn.Module, dataset: Any, batch_size: int = 500) -> float:
    """Top-1 (%) of ``model`` on an in-memory dataset (lightnets.data form), normalised with the model's cfg.

    It runs where the model's parameters are (``model.cuda()`` first to measure on a GPU).
    """
    from .evaluation import build_candidate, measure_accuracy

    candidate = build_candidate(model, dataset)
    device = next(model.parameters()).device
    return measure_accuracy(candidate, dataset, batch_size, device, torch.contiguous_format,
                            workers=0, progress=False)["top1"]


def sensitivity_scan(
    model: nn.Module,
    dataset: Any,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    *,
    layers: Optional[Sequence[str]] = None,
    plot: Optional[str] = None,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Prune each layer alone at each ratio and measure top-1 on ``dataset`` (Li et al., Sec. 3.3, Fig. 2b).

    Returns rows ``{layer, ratio, top1, drop, joined}`` (``drop``: points of top-1 lost; ``joined``: the
    other convs a residual add prunes with ``layer``), prints them as a table when ``verbose`` and draws
    top-1 against ratio, one line per layer, to the PNG ``plot``. ``layers`` defaults to every prunable
    conv, one entry per joined set (:func:`joined_layers`). A layer that cannot lose that fraction alone
    (a grouped conv would keep zero or unequal channels per group, as in narrow ShuffleNets) gets
    ``top1`` and ``drop`` None and the reason under ``error``.

    >>> import lightnets
    >>> from lightnets.data import load_dataset
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> rows = sensitivity_scan(model, load_dataset("fashion_mnist", limit=50), (0.5,), verbose=False)
    >>> [row["layer"] for row in rows]
    ['features.conv1.conv', 'features.conv2.conv', 'features.conv3.conv']
    """
    for value in ratios:
        _check_ratio("ratios", value)
    sets = joined_layers(model)
    names = list(layers) if layers is not None else list(sets)
    partners = {name: [other for other in members if other != name] for members in sets.values() for name in members}
    base = top1_accuracy(model, dataset)
    rows = []
    for name in names:
        for value in ratios:
            row = {"layer": name, "ratio": value, "joined": partners.get(name, [])}
            try:
                pruned = prune_l1(model, {name: value})
            except ValueError as error:
                rows.append({**row, "top1": None, "drop": None, "error": str(error)})
                continue
            accuracy = top1_accuracy(pruned, dataset)
            rows.append({**row, "top1": accuracy, "drop": base - accuracy})
    if verbose:
        print(f"{'layer':<32} {'ratio':>6} {'top-1 %':>8} {'drop':>7}   (unpruned: {base:.2f}%)")
        for row in rows:
            joined = f"   + {len(row['joined'])} convs joined by adds" if row["joined"] else ""
            if row["top1"] is None:
                print(f"{row['layer']:<32} {row['ratio']:>6.2f} {'–':>8} {'–':>7}   {row['error']}")
            else:
                print(f"{row['layer']:<32} {row['ratio']:>6.2f} {row['top1']:>8.2f} {row['drop']:>7.2f}{joined}")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        for name in names:
            mine = [row for row in rows if row["layer"] == name and row["top1"] is not None]
            label = f"{name} (+{len(partners[name])} joined)" if partners.get(name) else name
            axes.plot([0] + [r["ratio"] for r in mine], [base] + [r["top1"] for r in mine], marker="o", label=label)
        axes.set(xlabel="fraction of filters removed", ylabel="top-1 (%)", title="L1 pruning, one layer at a time")
        axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot, dpi=120)
        plt.close(figure)
    return rows


def iterative_prune(
    model: nn.Module,
    steps: Sequence[Union[float, Mapping[str, float]]],
    finetune_fn: Callable[[nn.Module], Any],
) -> list[nn.Module]:
    """Prune → fine-tune, step by step; each step's ratio applies to the model the previous step left.

    ``steps``: ratios for :func:`prune_l1` (e.g. ``(0.2, 0.2)`` removes 20% then 20% of what is left).
    ``finetune_fn(model)`` trains the pruned model in place (e.g. ``lambda m: finetune(m, train_set)``).
    Returns the model after each step.
    """
    models = []
    for step in steps:
        model = prune_l1(model, step)
        finetune_fn(model)
        models.append(model)
    return models


def finetune(
    model: nn.Module,
    train_set: Any,
    *,
    epochs: float = 1.0,
    lr: float = 0.01,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    teacher: Optional[nn.Module] = None,
    distill_alpha: float = 0.5,
    temperature: float = 4.0,
    pad: int = 2,
    flip: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``model`` in place on an in-memory dataset: SGD (Nesterov, momentum 0.9), cosine LR, crop + flip.

    Only parameters with ``requires_grad`` train; BatchNorms whose parameters are all frozen stay in eval
    mode, so a frozen model part is truly untouched. With ``teacher`` (any model taking the same images),
    the loss is :func:`lightnets.train.distillation_loss` on its logits. Inputs are normalised with each
    model's ``pretrained_cfg`` mean / std. ``epochs`` may be a fraction (a short run). Training runs on the
    device of the model's parameters (``model.cuda()`` first to fine-tune on a GPU; the teacher must be there
    too); the images stay on the CPU until each batch is drawn.
    Returns ``{"steps", "loss"}`` (mean training loss of the last 10% of steps).
    """
    from .data import normalize_batch
    from .train import augment, distillation_loss, lr_lambda, param_groups

    images, labels = torch.as_tensor(train_set.images), torch.as_tensor(train_set.labels, dtype=torch.long)
    steps = max(1, int(epochs * len(labels) / batch_size))
    device = next(model.parameters()).device

    def prepare(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        cfg = net.pretrained_cfg
        return normalize_batch(batch, net.in_chans, net.img_size, cfg["mean"], cfg["std"])

    optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda("cosine", steps, 0))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
            module.eval()
    if teacher is not None:
        teacher.eval()
    losses = []
    epochs_needed = math.ceil(steps * batch_size / len(labels))
    order = torch.cat([torch.randperm(len(labels), generator=generator) for _ in range(epochs_needed)])
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        batch = augment(images[index], pad, flip, generator).to(device, non_blocking=True)
        target = labels[index].to(device, non_blocking=True)
        logits = model(prepare(model, batch))
        if teacher is not None:
            with torch.no_grad():
                soft = teacher(prepare(teacher, batch))
            loss = distillation_loss(logits, soft, target, distill_alpha, temperature, label_smoothing)
        else:
            loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"steps": steps, "loss": sum(tail) / len(tail)}
