"""Which channels of which layers must be pruned together: a union-find over channel ids from one torch.fx trace.

:class:`ChannelGraph` follows the forward's data flow: BatchNorm, depthwise convs, grouped convs (pruned
evenly per group), channel shuffles (ShuffleNet, Fig. 1), residual adds (joined filters are kept or
removed together), concatenations, flattens and the classifier. It ranks filters by their L1 norms
(Li et al. 2017, "Pruning Filters for Efficient ConvNets", arXiv 1608.08710, Sec. 3.1) and picks the ids
to remove; :func:`lightnets.compress.prune_l1` rebuilds the layers.

>>> import lightnets
>>> graph = ChannelGraph(lightnets.create_model("smallcnn_3x2", in_chans=1), (1, 28, 28))
>>> graph.layers()
{'features.conv1.conv': 'features.conv1.conv', 'features.conv2.conv': 'features.conv2.conv', 'features.conv3.conv': 'features.conv3.conv'}
"""
from __future__ import annotations

import math
import operator
import warnings
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..layers import ChannelShuffle
from ..models.base import UncheckedLogits
from ..models.restructure import is_depthwise

__all__ = ["ChannelGraph"]

_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh,
                 nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool2d)
_PASS_FUNCTIONS = {F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.hardswish, F.silu, F.gelu, F.dropout, F.max_pool2d,
                   F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.relu, torch.sigmoid, torch.tanh}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "to"}
_JOIN_FUNCTIONS = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, torch.add, torch.mul}
_JOIN_METHODS = {"add", "add_", "mul", "mul_", "sub"}
_FLATTEN = {torch.flatten, "flatten", "view", "reshape"}



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
        root = UncheckedLogits(model) if wrapped else model
        was_training = model.training
        self.prefix = "model." if wrapped else ""
        try:
            graph = _Tracer().trace(root)
            module = fx.GraphModule(root, graph)
            param = next(model.parameters())
            with torch.no_grad():
                ShapeProp(module.eval()).propagate(torch.zeros(2, *input_size, dtype=param.dtype, device=param.device))
        except Exception as error:  # fx raises several types; all mean the same thing to the caller
            raise ValueError(
                f"cannot prune {type(model).__name__}: its forward is not traceable by torch.fx ({error})"
            ) from error
        finally:
            model.train(was_training)
        self.root = root
        self.module = module  # the traced forward (what the ranking criteria run calibration images through)
        # Scores that rank each conv's filters instead of their L1 norms (lightnets.compress.criteria): higher is kept.
        self.filter_scores: dict[str, torch.Tensor] = {}
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
        if is_depthwise(conv):  # channel i reads channel i only
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
        """Every conv whose filters can be ranked → its component: the first conv of the set its channels share slots
        with."""
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
        """Each filter's score: ``filter_scores[name]`` where a criterion set one, else its L1 norm (Li et al.,
        Sec. 3.1: s_j = Σ|F_j|)."""
        if name in self.filter_scores:
            return self.filter_scores[name].detach().float().cpu()
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
                      bounds=Bounds(np.zeros(2 * n + m),
                                    np.concatenate([sizes, np.full(m, sizes.sum()), np.full(n, np.inf)])),
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


def _shape(node: Any) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _cat_dim(node: fx.Node) -> int:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return dim if dim >= 0 else dim + len(_shape(node))
