"""Give a built model the layer shapes of a state dict saved from a pruned or converted copy of it.

:func:`lightnets.compress.prune_l1` and :func:`lightnets.compress.to_separable` change a model's layers:
fewer filters, or a standard k×k conv made a depthwise-separable pair (MobileNet v1, Fig. 3). Their
weights no longer fit the model as ``create_model`` builds it; :func:`restructure` rebuilds the layers
the saved weights describe, so that ``save_pretrained`` folders of such models load back. It sits with
the models (not with compress) because weight loading needs it and loading is below compress.

>>> import lightnets
>>> source = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> source.features.conv2.conv = separable_pair(source.features.conv2.conv)
>>> fresh = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> restructure(fresh, source.state_dict())
['features.conv2.conv']
>>> fresh.load_state_dict(source.state_dict())
<All keys matched successfully>
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

__all__ = ["restructure", "separable_pair", "is_depthwise", "model_input_size", "refresh_feature_info",
           "num_features_follow_classifier"]


def is_depthwise(conv: nn.Conv2d) -> bool:
    """A conv whose output channel i reads input channel i only (groups = in = out channels > 1)."""
    return conv.groups == conv.in_channels == conv.out_channels > 1


def separable_pair(conv: nn.Conv2d) -> nn.Sequential:
    """Depthwise k×k + BN + ReLU + pointwise 1×1 with the conv's geometry (MobileNet v1, Fig. 3), Kaiming-initialised.

    The conv's own BN, if any, stays after the pair; a conv bias moves to the pointwise conv.

    >>> pair = separable_pair(nn.Conv2d(32, 64, 3, padding=1))
    >>> list(pair.named_children())[0], pair.conv_pw
    (('conv_dw', Conv2d(32, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=32, bias=False)), Conv2d(32, 64, kernel_size=(1, 1), stride=(1, 1)))
    """
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


def model_input_size(model: nn.Module, input_size: Optional[Sequence[int]] = None) -> tuple[int, ...]:
    """``input_size`` if given, else the (C, H, W) the model declares (``in_chans`` / ``img_size``, or its cfg).

    >>> import lightnets
    >>> model_input_size(lightnets.create_model("smallcnn_3x2", in_chans=1))
    (1, 28, 28)
    """
    if input_size is not None:
        return tuple(input_size)
    if hasattr(model, "in_chans") and hasattr(model, "img_size"):
        return (model.in_chans, model.img_size, model.img_size)
    size = getattr(model, "pretrained_cfg", {}).get("input_size")
    if size is None:
        raise ValueError(f"{type(model).__name__} does not declare its input size: pass input_size=(C, H, W)")
    return tuple(size)


def restructure(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, first_conv: str = "",
                classifier: str = "") -> list[str]:
    """Change ``model``'s layers in place so that it takes ``state_dict``, saved from a converted
    (:func:`lightnets.compress.to_separable`) or pruned (:func:`lightnets.compress.prune_l1`) copy of a
    model built like it; returns the layers changed.

    A conv the state dict holds as a depthwise-separable pair (``<name>.conv_dw`` ... ``<name>.conv_pw``)
    becomes one; a Conv2d, BatchNorm2d or Linear whose saved weight has another shape is rebuilt with that
    shape (a depthwise conv stays depthwise, a grouped conv keeps its groups). The input channels of
    ``first_conv`` and the classes of ``classifier`` stay the model's: loading adapts those two. This is how
    :func:`lightnets.save_pretrained` folders of pruned or converted models load back.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> smaller = lightnets.prune_l1(lightnets.to_separable(model, ["features.conv2"]), {"features.conv1.conv": 0.5})
    >>> fresh = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> restructure(fresh, smaller.state_dict())
    ['features.conv2.conv', 'features.conv1.conv', 'features.conv1.bn', 'features.conv2.conv.conv_dw', 'features.conv2.conv.bn_dw', 'features.conv2.conv.conv_pw']
    >>> fresh.load_state_dict(smaller.state_dict())
    <All keys matched successfully>
    """
    changed = []
    for name, module in list(model.named_modules()):
        if (
            isinstance(module, nn.Conv2d)
            and f"{name}.weight" not in state_dict
            and f"{name}.conv_dw.weight" in state_dict
        ):
            model.set_submodule(name, separable_pair(module).train(module.training))
            changed.append(name)
    with num_features_follow_classifier(model):
        changed += _take_saved_shapes(model, state_dict, first_conv, classifier)
    if changed:
        refresh_feature_info(model, model_input_size(model))
    return changed


def _take_saved_shapes(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], first_conv: str, classifier: str
) -> list[str]:
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
            if is_depthwise(module):
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
def refresh_feature_info(model: nn.Module, input_size: Sequence[int]) -> None:
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
    model.feature_info = [
        {**info, "num_chs": feature_map.shape[1]} for info, feature_map in zip(model.feature_info, maps)
    ]
    if hasattr(model, "num_features"):  # timm's meaning: the channels of the last map, which forward_features returns
        model.num_features = maps[-1].shape[1]


@contextlib.contextmanager
def num_features_follow_classifier(model: nn.Module) -> Iterator[None]:
    """When the block changes the classifier's input width, ``head_hidden_size`` follows it (reset_classifier
    builds on it); ``num_features``, the body's channels, follows the maps in :func:`refresh_feature_info`."""
    old_in = getattr(model.get_classifier(), "in_features", None) if hasattr(model, "get_classifier") else None
    yield
    if old_in is not None and getattr(model, "head_hidden_size", None) == old_in:
        model.head_hidden_size = model.get_classifier().in_features
