"""L1-norm filter pruning (Li et al. 2017, "Pruning Filters for Efficient ConvNets", arXiv 1608.08710).

:func:`prune_l1` removes the output filters with the smallest L1 norms (Sec. 3.1) and rebuilds every
layer that reads them, so the pruned model holds real, smaller tensors. Which layers read which
channels comes from the forward's data flow (:class:`~lightnets.compress.graph.ChannelGraph`):
filters joined by a residual add are ranked by their summed norms and removed together
(:func:`joined_layers`), grouped convs lose the same number of channels in each group.

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> prune_l1(model, 0.5).features.conv2.conv
Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..models.restructure import is_depthwise, model_input_size, num_features_follow_classifier, refresh_feature_info
from .cost import derived_copy, unknown_layer
from .graph import ChannelGraph

__all__ = ["prunable_layers", "joined_layers", "prune", "prune_l1"]


def prunable_layers(model: nn.Module, input_size: Optional[Sequence[int]] = None) -> list[str]:
    """Convs :func:`prune_l1` can prune (their channels do not reach the model's output), in model order.

    Convs whose outputs a residual add joins are pruned together; :func:`joined_layers` groups them.

    >>> import lightnets
    >>> prunable_layers(lightnets.create_model("mobilenet_v1_025", small_input=True))[:3]
    ['stem.conv', 'blocks.0.conv_pw', 'blocks.1.conv_pw']
    """
    return list(_prunable_components(ChannelGraph(model, model_input_size(model, input_size))))


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
    for name, component in _prunable_components(ChannelGraph(model, model_input_size(model, input_size))).items():
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
    return prune(model, ratio, criterion="l1", input_size=input_size)


def prune(
    model: nn.Module,
    ratio: Union[float, Mapping[str, float]] = 0.5,
    criterion: str = "l1",
    *,
    calibration: Optional[torch.Tensor] = None,
    input_size: Optional[Sequence[int]] = None,
) -> nn.Module:
    """A copy of ``model`` with the lowest-ranked filters of its convs removed, ranked by ``criterion``.

    One entry point, so criteria compare on equal terms: the same channel graph, the same rebuilding of
    every layer that reads a removed channel, the same even groups and joined residual sets as
    :func:`prune_l1` (which is ``prune(model, ratio, "l1")``).

    Args:
        model: the model; not modified.
        ratio: fraction in [0, 1) of filters to remove, or ``{conv name: ratio}`` (the criterion then ranks the
            filters of those convs and the convs joined to them only). For ``"slimming"`` a single
            float is global, as in Liu et al.: the filters whose |γ| falls below the ``ratio`` quantile of every
            prunable conv's |γ| are removed, each conv keeping at least a tenth of its filters.
        criterion: ``"l1"`` (Σ|W|), ``"apoz"`` (zeros after the ReLU over ``calibration``), ``"reconstruction"``
            (He et al. 2017: LASSO on the output of the layer that reads the channels, then that layer refit by
            least squares on ``calibration``) or ``"slimming"`` (|γ| of the following BatchNorm); see
            :mod:`lightnets.compress.criteria`.
        calibration: images (N, C, H, W), normalised as the model expects; needed by ``"apoz"`` and
            ``"reconstruction"`` (a few hundred images; He et al. use 5,000).
        input_size: (C, H, W) to trace with, when the model does not declare its own.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1).eval()
    >>> pruned = prune(model, 0.25, "apoz", calibration=torch.rand(16, 1, 28, 28))
    >>> pruned.features.conv1.conv.out_channels, pruned.features.conv3.conv.out_channels
    (24, 96)
    """
    from .criteria import CRITERIA, criterion_scores

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}")
    graph = ChannelGraph(model, model_input_size(model, input_size))
    components = graph.layers()
    if criterion != "l1":
        prunable = _prunable_components(graph)
        scored = list(prunable)
        if isinstance(ratio, Mapping):  # rank only the filters of the sets a ratio above 0 prunes (a reader's LASSO
            # problem is the same whichever of its inputs are asked for: the scores do not change)
            pruning = {components.get(name) for name, value in ratio.items() if value != 0}
            scored = [name for name in prunable if prunable[name] in pruning]
        graph.filter_scores = criterion_scores(graph, criterion, scored, calibration)
        if criterion == "slimming" and not isinstance(ratio, Mapping):
            check_ratio("ratio", ratio)
            ratio = _global_ratios(graph, prunable, ratio)
    if isinstance(ratio, Mapping):
        for name, value in ratio.items():
            if name not in components:
                modules = dict(model.named_modules())
                if name not in modules:
                    raise unknown_layer(model, name, components, "prunable conv")
                raise ValueError(f"layer {name!r} ({type(modules[name]).__name__}"
                                 f"{', depthwise' if getattr(modules[name], 'groups', 1) > 1 else ''}) produces no "
                                 f"filters of its own to prune; prunable convs: {list(components)}")
            check_ratio(f"ratio[{name!r}]", value)
        requested = dict(ratio)
    else:
        check_ratio("ratio", ratio)
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
            raise ValueError(
                f"convs {members} are joined by an add and must be pruned with one ratio, got {sorted(ratios)}"
            )
        try:
            removed |= graph.select(members, ratios.pop())
        except ValueError as error:
            if isinstance(ratio, Mapping) or "zero channels" in str(error):
                raise ValueError(f"cannot prune {', '.join(members)}: {error}") from error
            caller = "prune_l1" if criterion == "l1" else f"prune({criterion!r})"
            warnings.warn(f"{caller}: skipped {', '.join(members)}: {error}", stacklevel=2)
    graph.check(removed)
    pruned = derived_copy(model)
    rebuilt = {}
    with num_features_follow_classifier(pruned):
        for name, ids_in, ids_out in graph.uses:
            keep_in, keep_out = (
                None if ids is None else torch.tensor([i not in removed for i in ids.tolist()]).nonzero().flatten()
                for ids in (ids_in, ids_out)
            )
            module = pruned.get_submodule(name)
            if len(keep_in) < len(ids_in) or len(keep_out) < len(ids_out):
                pruned.set_submodule(name, _rebuild(module, keep_in, keep_out))
                rebuilt[name] = (keep_in, len(ids_in), keep_out)
    refresh_feature_info(pruned, model_input_size(model, input_size))
    if criterion == "reconstruction":  # He et al.'s second step: the layers that lost inputs reconstruct their outputs
        from .reconstruction import readers_to_refit, refit_readers

        refit_readers(model, pruned, readers_to_refit(pruned, rebuilt), calibration)
    return pruned


# Network slimming's global threshold may take most of a layer; each conv keeps at least this share.
_MIN_KEPT = 0.1


def _global_ratios(graph: ChannelGraph, prunable: dict[str, str], ratio: float) -> dict[str, float]:
    """Per-conv ratios from one global threshold on the scores of the ``prunable`` convs (conv → its joined
    component), as network slimming prunes (Sec. 3.2)."""
    if not prunable or ratio == 0:
        return {}
    scores = [graph.norms(conv) for conv in prunable]
    sizes = [len(s) for s in scores]
    everything = torch.cat(scores)
    # Exactly the ratio's count of smallest scores: a threshold would take every tied score at once, and sparsity
    # training leaves many γ tied at 0 (exactly 0 in a float16 weight file). Ties go in proportion across convs:
    # ordered by relative position within their conv first, then (stable) by score.
    relative = torch.cat([torch.arange(size) / size for size in sizes])
    by_position = torch.sort(relative, stable=True).indices
    order = by_position[torch.sort(everything[by_position], stable=True).indices]
    removed = torch.zeros(len(everything), dtype=torch.bool)
    removed[order[:int(ratio * len(everything) + 1e-9)]] = True
    share = {conv: float(mask.float().mean()) for conv, mask in zip(prunable, removed.split(sizes))}
    by_component: dict[str, list[str]] = {}
    for conv, component in prunable.items():
        by_component.setdefault(component, []).append(conv)
    ratios = {}
    for members in by_component.values():
        below = sum(share[conv] for conv in members) / len(members)
        for conv in members:  # joined convs take one ratio
            ratios[conv] = min(below, 1 - _MIN_KEPT)
    return ratios


def check_ratio(name: str, value: Any) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is a fraction of filters to remove, in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a fraction of filters to remove in [0, 1), got {value!r}")


@torch.no_grad()
def _rebuild(module: nn.Module, keep_in: Optional[torch.Tensor], keep_out: Optional[torch.Tensor]) -> nn.Module:
    """A copy of a Conv2d / BatchNorm2d / Linear keeping input positions ``keep_in`` and output positions
    ``keep_out``."""
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
        if is_depthwise(module):
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
