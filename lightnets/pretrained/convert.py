"""Convert state dicts published by other libraries into lightnets' layout.

A pretrained cfg names its converter with ``"source_format"``; :func:`lightnets.pretrained.load_pretrained`
runs it on the source's own file (downloaded, or given as ``pretrained_path``) before loading, so the
published file stays byte-identical to what its publisher uploaded (and its checksum stays checkable).
Each converter maps keys and layouts only; where a source's network differs from the paper's, the
tag builds the source's layout through a constructor option (its ``model_args``, declared beside the family:
:mod:`lightnets.models.mobilenet_v1_weights`, :mod:`lightnets.models.shufflenet_v1_weights`).

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
from typing import Callable, Optional

import torch

__all__ = [
    "CONVERTERS",
    "convert_state_dict",
    "convert_timm_mobilenetv1",
    "convert_pytorchcv_mobilenet",
    "convert_pytorchcv_shufflenet",
    "convert_megvii_shufflenet",
    "convert_keras_mobilenet",
    "ConversionError",
]


class ConversionError(ValueError):
    """A state dict is not in the layout its cfg's ``source_format`` names."""


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
        raise ConversionError(
            f"not a timm mobilenetv1 state dict (the variants without a conv head, e.g. mobilenetv1_100): "
            f"unexpected keys {unknown[:5]}"
        )
    for index, stage_block in enumerate(sorted(block_keys)):
        for name, value in block_keys[stage_block].items():
            converted[f"blocks.{index}.{name}"] = value
    return converted


_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def _with_batch_counts(state_dict: StateDict) -> StateDict:
    """Add the ``num_batches_tracked`` buffer nn.BatchNorm2d has and other frameworks do not save."""
    for key in [k for k in state_dict if k.endswith(".running_var")]:
        state_dict.setdefault(key.replace(".running_var", ".num_batches_tracked"), torch.tensor(0, dtype=torch.long))
    return state_dict


def _renamed(state_dict: StateDict, rename: Callable[[str], Optional[str]], source: str) -> StateDict:
    """``{rename(key): value}``; keys that ``rename`` maps to None make a :class:`ConversionError`."""
    converted: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        new_key = rename(key)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown:
        raise ConversionError(f"not a {source} state dict: unexpected keys {unknown[:5]}")
    return _with_batch_counts(converted)


_PYTORCHCV_STEM = re.compile(r"features\.init_block\.(conv|bn)\.(.+)")
_PYTORCHCV_MOBILENET_UNIT = re.compile(r"features\.stage(\d+)\.unit(\d+)\.(dw_conv|pw_conv)\.(conv|bn)\.(.+)")
_PYTORCHCV_SHUFFLENET_UNIT = re.compile(
    r"features\.stage(\d+)\.unit(\d+)\.(compress_conv1|compress_bn1|dw_conv2|dw_bn2|expand_conv3|expand_bn3)\.(.+)"
)
_PYTORCHCV_SHUFFLENET_LAYERS = {"compress_conv1": "conv1", "compress_bn1": "bn1", "dw_conv2": "conv_dw",
                                "dw_bn2": "bn_dw", "expand_conv3": "conv2", "expand_bn3": "bn2"}


def _pytorchcv_common(key: str) -> Optional[str]:
    match = _PYTORCHCV_STEM.fullmatch(key)
    if match:
        return f"stem.{match[1]}.{match[2]}"
    if key.startswith("output."):
        return "classifier." + key.removeprefix("output.")
    return None


def convert_pytorchcv_mobilenet(state_dict: StateDict) -> StateDict:
    """Map pytorchcv's ``mobilenet_wd4/wd2/w3d4/w1`` onto ``mobilenet_v1_*`` (same layers, same order).

    ``features.init_block`` → ``stem``; ``features.stage{s}.unit{u}.dw_conv/pw_conv.conv/bn`` →
    ``blocks.{i}.conv_dw/bn_dw/conv_pw/bn_pw`` (i counts the units in order); ``output`` → ``classifier``.

    >>> from pytorchcv.model_provider import get_model
    >>> theirs = get_model("mobilenet_wd4", pretrained=False).eval()
    >>> import lightnets
    >>> ours = lightnets.create_model("mobilenet_v1_025").eval()
    >>> _ = ours.load_state_dict(convert_pytorchcv_mobilenet(theirs.state_dict()))
    >>> x = torch.randn(1, 3, 224, 224)
    >>> torch.allclose(ours(x), theirs(x), atol=1e-5)
    True
    """
    units = sorted({(int(m[1]), int(m[2])) for m in map(_PYTORCHCV_MOBILENET_UNIT.fullmatch, state_dict) if m})
    index = {unit: i for i, unit in enumerate(units)}

    def rename(key: str) -> Optional[str]:
        match = _PYTORCHCV_MOBILENET_UNIT.fullmatch(key)
        if match:
            stage, unit, part, layer, param = match.groups()
            name = {"conv": "conv", "bn": "bn"}[layer] + ("_dw" if part == "dw_conv" else "_pw")
            return f"blocks.{index[(int(stage), int(unit))]}.{name}.{param}"
        return _pytorchcv_common(key)

    return _renamed(state_dict, rename, "pytorchcv mobilenet")


def _stage_units(num_units: tuple[int, ...]) -> list[tuple[int, int]]:
    """(stage, unit) of every ShuffleNet unit in order: stages 2, 3, 4 of Table 1."""
    return [(stage + 2, unit) for stage, count in enumerate(num_units) for unit in range(count)]


def convert_pytorchcv_shufflenet(state_dict: StateDict) -> StateDict:
    """Map pytorchcv's ``shufflenet_g{g}_{wd4,wd2,w3d4,w1}`` onto ``shufflenet_g*`` built with ``shortcut_first=False``.

    ``features.init_block`` → ``stem``; ``features.stage{s}.unit{u}.compress_conv1/compress_bn1/dw_conv2/dw_bn2/
    expand_conv3/expand_bn3`` → ``stage{s+1}.{u-1}.conv1/bn1/conv_dw/bn_dw/conv2/bn2``; ``output`` → ``classifier``.
    pytorchcv shuffles as the paper does but concatenates (main branch, shortcut) in a stride-2 unit, which
    no permutation of the weights undoes for the grouped convs that follow: the tag sets ``shortcut_first=False``.
    """
    def rename(key: str) -> Optional[str]:
        match = _PYTORCHCV_SHUFFLENET_UNIT.fullmatch(key)
        if match:
            stage, unit, layer, param = match.groups()
            return f"stage{int(stage) + 1}.{int(unit) - 1}.{_PYTORCHCV_SHUFFLENET_LAYERS[layer]}.{param}"
        return _pytorchcv_common(key)

    return _renamed(state_dict, rename, "pytorchcv shufflenet")


_MEGVII_UNIT = re.compile(r"features\.(\d+)\.branch_main_(1|2)\.(\d+)\.(.+)")
_MEGVII_LAYERS = {("1", "0"): "conv1", ("1", "1"): "bn1", ("1", "3"): "conv_dw", ("1", "4"): "bn_dw",
                  ("2", "0"): "conv2", ("2", "1"): "bn2"}
_MEGVII_STEM = {"first_conv.0": "stem.conv", "first_conv.1": "stem.bn"}
MEGVII_STAGE_UNITS = (4, 8, 4)  # network.py's stage_repeats (Table 1)


def convert_megvii_shufflenet(state_dict: StateDict) -> StateDict:
    """Map megvii's ShuffleNet-Series ``ShuffleNetV1`` onto ``shufflenet_g*`` built with ``shuffle_layout="megvii"``.

    ``first_conv.0/1`` → ``stem.conv/bn``; ``features.{i}.branch_main_1.{0,1,3,4}`` → ``conv1/bn1/conv_dw/bn_dw``
    and ``branch_main_2.{0,1}`` → ``conv2/bn2`` of unit i (stages of 4, 8, 4 units); ``classifier.0`` →
    ``classifier``, whose bias (megvii's FC has none) is zero. Checkpoints hold these under ``state_dict``
    with a ``module.`` prefix (nn.DataParallel); the reader strips both.

    megvii feeds BGR images in 0–255; the stem's input channels are reversed and scaled by 255 here, so
    the converted model takes RGB in 0–1 with mean 0 and std 1, exactly equivalent (the stem has no bias
    and zero padding maps to zero either way).
    """
    units = _stage_units(MEGVII_STAGE_UNITS)

    def rename(key: str) -> Optional[str]:
        match = _MEGVII_UNIT.fullmatch(key)
        if match:
            index, branch, layer, param = match.groups()
            if int(index) >= len(units) or (branch, layer) not in _MEGVII_LAYERS:
                return None
            stage, unit = units[int(index)]
            return f"stage{stage}.{unit}.{_MEGVII_LAYERS[branch, layer]}.{param}"
        module, _, param = key.rpartition(".")
        if module in _MEGVII_STEM:
            return f"{_MEGVII_STEM[module]}.{param}"
        if module == "classifier.0":
            return f"classifier.{param}"
        return None

    converted = _renamed(state_dict, rename, "megvii ShuffleNetV1")
    if "stem.conv.weight" not in converted or "classifier.weight" not in converted:
        raise ConversionError("not a megvii ShuffleNetV1 state dict: no first_conv.0.weight or classifier.0.weight")
    converted["stem.conv.weight"] = converted["stem.conv.weight"].flip(1) * 255.0  # BGR 0-255 -> RGB 0-1
    converted.setdefault("classifier.bias", torch.zeros(converted["classifier.weight"].shape[0]))
    return converted


_KERAS_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_KERAS_LAYER = re.compile(r"(conv1|conv_dw_(\d+)|conv_pw_(\d+)|conv_preds)(_bn)?")


def convert_keras_mobilenet(state_dict: StateDict) -> StateDict:
    """Map Keras Applications' ``MobileNet`` weights (keys ``layer/weight``, Keras layouts) onto ``mobilenet_v1_*``
    built with ``padding="tf"``, ``bn_eps=1e-3`` and ReLU6.

    ``conv1`` → ``stem.conv``; ``conv_dw_{k}``/``conv_pw_{k}`` → ``blocks.{k-1}.conv_dw``/``conv_pw``, each
    ``_bn`` → the BatchNorm beside it (gamma, beta, moving mean/variance); the ``conv_preds`` 1×1 conv on the
    pooled 1×1 map → ``classifier``, the same affine map. Kernels go from Keras's (kh, kw, in, out) and
    depthwise (kh, kw, in, 1) to PyTorch's (out, in, kh, kw) and (in, 1, kh, kw).
    """
    def target(layer: str) -> Optional[str]:
        match = _KERAS_LAYER.fullmatch(layer)
        if not match:
            return None
        base, dw_index, pw_index, bn = match.groups()
        if base == "conv1":
            return "stem.bn" if bn else "stem.conv"
        if base == "conv_preds":
            return None if bn else "classifier"
        block = int(dw_index or pw_index) - 1
        kind = "dw" if dw_index else "pw"
        return f"blocks.{block}.{'bn' if bn else 'conv'}_{kind}"

    converted: StateDict = {}
    unknown = []
    for key, value in state_dict.items():
        layer, _, weight = key.rpartition("/")
        module = target(layer)
        if module is None:
            unknown.append(key)
        elif module.rsplit(".", 1)[-1].startswith("bn"):
            if weight not in _KERAS_BN:
                unknown.append(key)
                continue
            converted[f"{module}.{_KERAS_BN[weight]}"] = value
        elif weight == "depthwise_kernel" or (weight == "kernel" and module.endswith("conv_dw")):
            converted[f"{module}.weight"] = value.permute(2, 3, 0, 1).contiguous()
        elif weight == "kernel" and module == "classifier":
            converted["classifier.weight"] = value[0, 0].t().contiguous()
        elif weight == "kernel":
            converted[f"{module}.weight"] = value.permute(3, 2, 0, 1).contiguous()
        elif weight == "bias" and module == "classifier":
            converted["classifier.bias"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"not Keras Applications MobileNet weights: unexpected weights {unknown[:5]}")
    return _with_batch_counts(converted)


# The names a pretrained cfg's "source_format" may take.
CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "timm_mobilenetv1": convert_timm_mobilenetv1,
    "pytorchcv_mobilenet": convert_pytorchcv_mobilenet,
    "pytorchcv_shufflenet": convert_pytorchcv_shufflenet,
    "megvii_shufflenet": convert_megvii_shufflenet,
    "keras_mobilenet": convert_keras_mobilenet,
}


def convert_state_dict(state_dict: StateDict, source_format: str) -> StateDict:
    """Run the converter registered for ``source_format`` (see :data:`CONVERTERS`).

    >>> convert_state_dict({}, "keras")
    Traceback (most recent call last):
    ...
    ValueError: source_format must be one of ['keras_mobilenet', 'megvii_shufflenet', 'pytorchcv_mobilenet', 'pytorchcv_shufflenet', 'timm_mobilenetv1'], got 'keras'
    """
    if source_format not in CONVERTERS:
        raise ValueError(f"source_format must be one of {sorted(CONVERTERS)}, got {source_format!r}")
    return CONVERTERS[source_format](state_dict)
