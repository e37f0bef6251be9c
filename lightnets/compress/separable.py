"""Conversion of standard k×k convs to depthwise-separable pairs (MobileNet v1, Fig. 3).

:func:`to_separable` replaces chosen standard convs by depthwise k×k + BN + ReLU + pointwise 1×1,
initialised randomly or by a rank-1 factorisation of each input channel's kernels
(:func:`rank1_factors`) with the pointwise conv refit on calibration images, so that the converted
model starts close to the original.

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> standard_convs(to_separable(model, ["features.conv2.conv"]))
['features.conv1.conv', 'features.conv3.conv']
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..models.restructure import model_input_size, separable_pair
from .cost import derived_copy, unknown_layer

__all__ = ["standard_convs", "to_separable", "rank1_factors"]

Layers = Union[str, Sequence[str]]


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
        raise unknown_layer(model, name, standard_convs(model) or modules, "layer")
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
        from ..profiler import profile  # fvcore: loaded on first use

        macs = {row["module"]: row["macs"] for row in profile(model, model_input_size(model, input_size)).by_module}
        costliest = sorted(candidates, key=lambda name: -macs[name])[:int(count)]
        return [name for name in candidates if name in costliest]
    names = [_conv_name(model, name) for name in layers]
    if not names:
        raise ValueError(f"layers must name at least one conv; convertible layers: {candidates}")
    if len(set(names)) != len(names):
        raise ValueError(f"layers names a conv twice: {list(layers)}")
    return names


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
        raise ValueError(
            "init='lowrank' needs calibration=<a batch of model inputs> to place the BN between the factors"
        )
    names = _select_convs(model, layers, input_size)
    converted = derived_copy(model)
    if freeze == "untouched":
        converted.requires_grad_(False)
    order = [name for name in standard_convs(model) if name in names]
    for name in order:  # in forward order: a layer is fit to what the layers converted before it feed it
        conv = converted.get_submodule(name)
        pair = separable_pair(conv)
        if init == "lowrank":
            _lowrank_init(pair, conv, _conv_inputs(converted, [name], calibration)[name])
        pair.train(conv.training)
        converted.set_submodule(name, pair)
    return converted
