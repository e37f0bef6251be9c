"""Channel pruning with reconstruction (He, Zhang and Sun 2017, "Channel Pruning for Accelerating Very Deep
Neural Networks", arXiv 1707.06168): channels chosen by LASSO regression on the output of the layer that
reads them (Eq. 3), that layer's weights then refit by least squares so that it reconstructs its
original output (Eq. 5), layer after layer on the pruned network's own inputs (Sec. 3.2).

A *reader* is the next non-depthwise conv or linear layer: BatchNorm, ReLU and depthwise convs between
act on each channel alone, so the reader's input channel c is a function of the pruned conv's channel c
only. The reader computes Y = Σ_c Z_c, Z_c the part of its output that input channel c contributes.
He et al. keep the channels whose β survive ``min ‖Y − Σ_c β_c Z_c‖² + λ‖β‖₁`` as λ grows until only
the wanted number is left. Here each channel's score is how long its β stays non-zero along one
geometric λ path (from λ_max, where every β is zero, down by a factor 10⁴), so one ranking serves
every ratio and the channel graph's even-group and joined-set rules (:meth:`ChannelGraph.select`).

Both steps need only second moments of the reader's unfolded input X (rows: every position of every
calibration image; He et al. sample 10 per image): ⟨Z_c, Z_d⟩ is the sum of ``(WᵀW ⊙ XᵀX)`` over the
columns of channels c and d, and the refit solves ``(X'ᵀX' + εI) W'ᵀ = X'ᵀ Y`` with X' the pruned network's
input (ε a hundredth of the mean input energy, which keeps the refit weights at the original's scale).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..models.restructure import is_depthwise
from .graph import ChannelGraph

__all__ = ["reconstruction_scores", "refit_readers", "readers_to_refit", "lasso_path_scores"]

# A reader's Gram matrix is (columns per group)² float64: 8192 columns are 512 MiB.
_MAX_COLUMNS = 8192
# The λ path: from λ_max down by _PATH_RANGE in _PATH_STEPS geometric steps, each solved by FISTA.
_PATH_STEPS = 16
_PATH_RANGE = 1e-4
_FISTA_ITERATIONS = 200
_BATCH = 16  # calibration images per forward: an unfolded early VGG input is 16·784 rows × 576 columns
# The refit's ridge, relative to the mean energy of a reader's inputs. Plain least squares on 512 images gave
# mobilenet_v1_050.fmnist's classifier, pruned to 4× fewer MACs, 20× its original norm (inputs that cancel
# out); one epoch of fine-tuning at lr 0.01 on 1,000 images then took it from 90.4% to 57.0%. With 10⁻² the
# pruned model scored 90.8% before and after (scripts/criteria_experiment.py's setting).
_RIDGE = 1e-2
_MIN_ROWS_PER_COLUMN = 2  # a reader is refit only when the calibration gives this many rows per weight column

Reader = Union[nn.Conv2d, nn.Linear]


def _is_reader(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and not is_depthwise(module))


def _groups(module: Reader) -> int:
    return module.groups if isinstance(module, nn.Conv2d) else 1


def _unfold(module: Reader, inputs: torch.Tensor) -> torch.Tensor:
    """The reader's input as (groups, rows, columns per group): every output position's receptive field,
    channel-major within a group (column c·k² + t is tap t of input channel c)."""
    if isinstance(module, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])[None]
    padding = module.padding
    if isinstance(padding, str):
        if padding != "valid":
            raise ValueError(f"criterion='reconstruction' cannot unfold a conv with padding={padding!r}")
        padding = 0
    patches = F.unfold(inputs, module.kernel_size, module.dilation, padding, module.stride)  # (N, C·k², L)
    rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return rows.view(len(rows), module.groups, -1).transpose(0, 1)


def _weight(module: Reader) -> torch.Tensor:
    """The reader's weight as (groups, outputs per group, columns per group)."""
    groups = _groups(module)
    return module.weight.detach().reshape(groups, module.weight.shape[0] // groups, -1)


def _check_size(name: str, module: Reader) -> None:
    columns = _weight(module).shape[2]
    if columns > _MAX_COLUMNS:
        raise ValueError(f"criterion='reconstruction' needs the {columns}×{columns} Gram matrix of the inputs of "
                         f"{name!r} ({columns ** 2 * 8 / 2 ** 30:.1f} GiB); prune the convs it reads with another "
                         "criterion (e.g. prune(model, {conv: ratio}, 'l1'))")


@torch.no_grad()
def _second_moments(run: Callable[[torch.Tensor], object], readers: dict[str, Reader],
                    calibration: torch.Tensor) -> dict[str, torch.Tensor]:
    """XᵀX of each reader's unfolded input over the calibration images, (groups, columns, columns) float64."""
    moments: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            rows = _unfold(module, args[0].detach()).double()
            moments[name] = moments.get(name, 0) + rows.transpose(1, 2) @ rows
        return record

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in readers.items()]
    try:
        for batch in calibration.split(_BATCH):
            run(batch)
    finally:
        for handle in handles:
            handle.remove()
    return moments


def _soft_threshold(values: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return values.sign() * (values.abs() - threshold).clamp_min(0)


def _lasso(gram: torch.Tensor, target: torch.Tensor, penalty: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """argmin_β ½βᵀGβ − targetᵀβ + penalty·‖β‖₁ for a batch of problems (B, K, K) whose Gram matrices have
    largest eigenvalue at most 1, by FISTA (Beck and Teboulle 2009) with step 1, warm-started at ``start``."""
    beta, momentum, t = start.clone(), start.clone(), 1.0
    for iteration in range(_FISTA_ITERATIONS):
        updated = _soft_threshold(momentum - (gram @ momentum[..., None])[..., 0] + target, penalty[:, None])
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = updated + (t - 1) / t_next * (updated - beta)
        converged = iteration % 10 == 9 and float((updated - beta).abs().max()) <= 1e-9 * (
            1 + float(updated.abs().max())
        )
        beta, t = updated, t_next
        if converged:
            break
    return beta


def lasso_path_scores(gram: torch.Tensor) -> torch.Tensor:
    """How long each candidate survives the LASSO path of He et al.'s Eq. 3, in [0, 1] (higher is kept).

    ``gram[..., c, d]`` = ⟨Z_c, Z_d⟩ for candidate contributions Z whose sum is the target, so the target's
    correlations are the row sums; a batch (B, K, K) of problems is solved together. Along
    λ = λ_max·10^(−4k/16), k = 1 … 16, a candidate's score is 1 − (first k where its β ≠ 0)/16, plus a
    tie-break of 10⁻³·|β| at the path's end (relative to the problem's largest).

    >>> z = torch.tensor([[1.0, 0.0], [0.0, 0.1]])  # two orthogonal contributions, one ten times the other
    >>> lasso_path_scores(z @ z.T).argmax().item()
    0
    """
    batched = gram.double().reshape(-1, *gram.shape[-2:])
    # Scaled so that the largest eigenvalue is 1: FISTA's step is then 1, and λ is relative to the problem.
    scale = torch.linalg.eigvalsh(batched)[:, -1].clamp_min(1e-300)
    batched = batched / scale[:, None, None]
    target = batched.sum(2)
    largest = target.abs().amax(1)
    beta = torch.zeros_like(target)
    entered = torch.full_like(target, _PATH_STEPS)
    for step in range(_PATH_STEPS):
        beta = _lasso(batched, target, largest * _PATH_RANGE ** ((step + 1) / _PATH_STEPS), beta)
        entered = torch.where((beta != 0) & (entered == _PATH_STEPS), float(step), entered)
    magnitude = beta.abs() / beta.abs().amax(1, keepdim=True).clamp_min(1e-300)
    scores = (_PATH_STEPS - entered) / _PATH_STEPS + 1e-3 * magnitude
    return torch.where(largest[:, None] > 0, scores, 0.0).reshape(gram.shape[:-1])


def reconstruction_scores(
    graph: ChannelGraph, convs: Sequence[str], calibration: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each conv's filter scores for He et al.'s channel selection: for every layer that reads the filter's
    channel, how long the channel survives the LASSO path of that layer's output (summed over readers)."""
    wanted = {graph.find(i) for conv in convs for i in graph.channels(conv)}
    readers: dict[str, Reader] = {}
    reader_ids: dict[str, torch.Tensor] = {}
    for name, ids_in, _ in graph.uses:
        module = graph.root.get_submodule(graph.prefix + name)
        if ids_in is None or not _is_reader(module) or not wanted.intersection(graph.find(i) for i in ids_in.tolist()):
            continue
        _check_size(name, module)
        readers[name], reader_ids[name] = module, ids_in
    was_training = graph.module.training
    graph.module.eval()
    try:
        param = next(graph.module.parameters())
        moments = _second_moments(graph.module, {graph.prefix + n: m for n, m in readers.items()},
                                  calibration.to(param.device, param.dtype))
    finally:
        graph.module.train(was_training)
    by_root: dict[int, float] = {}
    for name, module in readers.items():
        weight = _weight(module).double().cpu()
        taps = weight.shape[2] * _groups(module) // len(reader_ids[name])  # k² (1 for a linear layer)
        roots = torch.tensor([graph.find(i) for i in reader_ids[name].tolist()]).repeat_interleave(taps)
        moment = moments[graph.prefix + name].cpu()
        # ⟨Z_c, Z_d⟩ before summing each channel's taps, then summed by candidate (a channel's slot)
        contributions = (weight.transpose(1, 2) @ weight) * moment
        columns = roots.view(len(moment), -1)
        groups = [columns[group].unique(return_inverse=True) for group in range(len(moment))]
        size = max(len(candidates) for candidates, _ in groups)
        grams = torch.zeros(len(moment), size, size, dtype=torch.float64)  # groups padded with zero candidates
        for group, (candidates, index) in enumerate(groups):
            rows = torch.zeros(size, moment.shape[1], dtype=torch.float64).index_add_(0, index, contributions[group])
            grams[group].index_add_(1, index, rows)
        for (candidates, _), scores in zip(groups, lasso_path_scores(grams)):
            for root, score in zip(candidates.tolist(), scores.tolist()):
                by_root[root] = by_root.get(root, 0.0) + score
    scores = {}
    for conv in convs:
        roots = [graph.find(i) for i in graph.channels(conv)]
        if any(root not in by_root for root in roots):
            raise ValueError(f"criterion='reconstruction' ranks a conv's filters by the layer that reads them; no conv "
                             f"or linear layer reads the output of {conv!r}: rank it with criterion='l1'")
        scores[conv] = torch.tensor([by_root[root] for root in roots])
    return scores


@torch.no_grad()
def refit_readers(original: nn.Module, pruned: nn.Module, readers: Sequence[tuple[str, torch.Tensor]],
                  calibration: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Refit each pruned reader's weights by ridge-regularised least squares (He et al., Eq. 5), in the order
    given (the forward's):
    its output on the pruned network's inputs is fitted to the original reader's output on the original's,
    restricted to the outputs it kept (``readers``: (name, kept output positions)). Biases stay. A reader
    is left as pruned when the calibration gives fewer than two rows (images × output positions) per
    weight column of a group: the fit would interpolate those images rather than reconstruct the layer.

    Returns each reader's relative squared error ‖Y − Ŷ‖² / ‖Y‖² over the calibration images before and
    after its refit (before: the pruned weights as they were, the kept columns of the original's).
    """
    original_mode, pruned_mode = original.training, pruned.training
    original.eval()
    pruned.eval()
    errors = {}
    try:
        param = next(pruned.parameters())
        calibration = calibration.to(param.device, param.dtype)
        for name, keep_out in readers:
            source, target = original.get_submodule(name), pruned.get_submodule(name)
            groups = _groups(source)
            weight = _weight(source).double()
            kept = keep_out.view(groups, -1) - torch.arange(groups, device=keep_out.device)[:, None] * weight.shape[1]
            captured: dict[str, torch.Tensor] = {}
            handles = [
                module.register_forward_pre_hook(lambda _, args, key=key: captured.__setitem__(key, args[0].detach()))
                for key, module in (("original", source), ("pruned", target))
            ]
            normal = cross = None
            before = total = 0.0
            count = 0
            old = _weight(target).double()
            try:
                for batch in calibration.split(_BATCH):
                    original(batch)
                    pruned(batch)
                    rows = _unfold(target, captured["pruned"]).double()
                    wanted = torch.stack([(x @ w.T)[:, k] for x, w, k in
                                          zip(_unfold(source, captured["original"]).double(), weight, kept.cpu())])
                    normal = rows.transpose(1, 2) @ rows + (0 if normal is None else normal)
                    cross = rows.transpose(1, 2) @ wanted + (0 if cross is None else cross)
                    before += float(((rows @ old.transpose(1, 2) - wanted) ** 2).sum())
                    total += float((wanted ** 2).sum())
                    count += rows.shape[1]
            finally:
                for handle in handles:
                    handle.remove()
            ridge = _RIDGE * normal.diagonal(dim1=1, dim2=2).mean(1)
            errors[name] = (before / max(total, 1e-300),) * 2
            # Fewer rows than twice the unknowns per output would interpolate the calibration images rather
            # than fit the layer (a classifier after a flatten, with few images); all-zero inputs fit nothing.
            if count < _MIN_ROWS_PER_COLUMN * normal.shape[1] or not bool((ridge > 0).all()):
                continue
            eye = torch.eye(normal.shape[1], dtype=normal.dtype, device=normal.device)
            solution = torch.linalg.solve(normal + ridge[:, None, None] * eye, cross)  # (groups, columns, outputs)
            # ‖Y − XW‖² = ‖Y‖² − 2⟨XᵀY, W⟩ + ⟨XᵀX W, W⟩, from the moments already summed
            after = total - 2 * float((cross * solution).sum()) + float(((normal @ solution) * solution).sum())
            target.weight.copy_(solution.transpose(1, 2).reshape(target.weight.shape).to(target.weight.dtype))
            errors[name] = (before / max(total, 1e-300), max(after, 0.0) / max(total, 1e-300))
    finally:
        original.train(original_mode)
        pruned.train(pruned_mode)
    return errors


def readers_to_refit(pruned: nn.Module, rebuilt: dict[str, tuple[Optional[torch.Tensor], int, torch.Tensor]]
                     ) -> list[tuple[str, torch.Tensor]]:
    """The rebuilt layers He et al. refit: readers (non-depthwise convs, linear layers) that lost input channels,
    as (name, kept output positions); ``rebuilt`` maps each name, in forward order, to (kept inputs, input
    count before, kept outputs)."""
    return [(name, keep_out) for name, (keep_in, before, keep_out) in rebuilt.items()
            if keep_in is not None and len(keep_in) < before and _is_reader(pruned.get_submodule(name))]
