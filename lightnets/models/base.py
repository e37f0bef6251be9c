"""The one model API every lightnets family shares (the same names timm uses).

A family subclasses :class:`ClassifierNet`, builds its body, implements ``forward_features``,
calls :meth:`ClassifierNet.init_head` and lists its body's layers with
:meth:`ClassifierNet.init_feature_info`. Everything else — ``forward``, ``forward_head``,
``get_classifier``, ``reset_classifier``, ``forward_intermediates``, gradient checkpointing, input
checks — is written here once. A family's ``forward_features`` starts with
``if self.checkpointing_body(): return self.forward_body_checkpointed(x)``.
"""

import re
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .arguments import (check_bool, check_drop_rate, check_num_classes, check_positive_int,
                        physical_memory)


def classifier_layer(num_features: int, num_classes: int) -> nn.Module:
    """The classifier: a linear layer, or the identity for ``num_classes=0`` (a feature extractor)."""
    return nn.Linear(num_features, num_classes) if check_num_classes(num_classes) else nn.Identity()


def stage_feature_info(body: Sequence[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """timm's ``feature_info`` from the body's layers as (name, output channels, reduction): one entry per
    resolution, the last layer at that resolution (its richest map before the next downsampling).

    >>> stage_feature_info([("stem", 32, 2), ("blocks.0", 64, 2), ("blocks.1", 128, 4)])
    [{'num_chs': 64, 'reduction': 2, 'module': 'blocks.0'}, {'num_chs': 128, 'reduction': 4, 'module': 'blocks.1'}]
    """
    return [
        {"num_chs": chs, "reduction": reduction, "module": name}
        for position, (name, chs, reduction) in enumerate(body)
        if position + 1 == len(body) or body[position + 1][2] != reduction
    ]


def _layer_pattern(name: str) -> str:
    """A regex that matches the parameter names under the module ``name`` ("blocks.1" but not "blocks.10")."""
    return rf"^{re.escape(name)}\."


class ClassifierNet(nn.Module):
    """Base class: body (``forward_features``) → global pool → dropout → classifier.

    Attributes every model has (timm's meanings): ``num_classes``, ``in_chans``, ``num_features``
    (channels of the map ``forward_features`` returns), ``head_hidden_size`` (width of
    ``forward_head(x, pre_logits=True)``, what the classifier reads: ``num_features`` unless the head
    has hidden layers), ``drop_rate``, ``img_size`` (default input side),
    ``min_input_size`` (smallest input side the body can take), ``feature_info`` (timm's list of
    ``{"num_chs", "reduction", "module"}``, one per resolution of the body, the maps
    :meth:`forward_intermediates` returns) and, once built through :func:`lightnets.create_model`,
    ``pretrained_cfg`` / ``default_cfg``.
    """

    num_classes: int
    in_chans: int
    num_features: int
    head_hidden_size: int
    drop_rate: float
    img_size: int
    min_input_size: int
    small_input_min_size: Optional[int] = None  # the small-image form's min_input_size, for the hint below
    fixed_input_size: bool = False
    pool_type: str = "avg"  # timm's global_pool: "avg", or "" (none) for a model that returns its feature map
    feature_info: list[dict[str, Any]]
    body_layers: tuple[str, ...]  # the body's layers in order: running them one after another is forward_features
    head_pruned: bool = False  # prune_intermediate_layers removed the head: the model returns its last feature map
    grad_checkpointing: bool = False  # see set_grad_checkpointing
    # How the body's downsampling layers round an odd side: "ceil" (padded stride-2 3×3 convs and pools:
    # 225 px → 113) or "floor" (unpadded 2×2 max pools: 225 px → 112). See feature_map_size.
    odd_side_rounding: str = "ceil"
    # Python-side descriptions TorchScript has no type for (a variable-length tuple, dicts of Any); the
    # scripted forward never reads them.
    __jit_ignored_attributes__ = ["body_layers", "feature_info", "pretrained_cfg"]
    __jit_unused_properties__ = ["default_cfg"]

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg: dict[str, Any] = {}
        # On the instance, where TorchScript looks for the attributes a scripted forward reads.
        self.pool_type = type(self).pool_type
        self.head_pruned = False

    @property
    def default_cfg(self) -> dict[str, Any]:
        """Alias of ``pretrained_cfg`` (timm's older name)."""
        return self.pretrained_cfg

    def init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        """The usual head: global average pool → dropout → classifier on the body's ``num_features`` channels."""
        self.num_features = self.head_hidden_size = num_features
        self.num_classes = check_num_classes(num_classes)
        self.drop_rate = check_drop_rate(drop_rate)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(self.drop_rate)
        self.classifier = classifier_layer(num_features, num_classes)

    def init_feature_info(self, body: Sequence[tuple[str, int, int]]) -> None:
        """Declare the body as (layer name, output channels, reduction) rows in the order they run."""
        self.body_layers = tuple(name for name, _, _ in body)
        self.feature_info = stage_feature_info(body)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def feature_map_size(self, img_size: Optional[int] = None) -> tuple[int, int]:
        """Height and width of the map ``forward_features`` returns for a square ``img_size`` input (the
        model's default side if None): timm's ``pool_size``, without running the model.

        >>> from lightnets import create_model
        >>> model = create_model("mobilenet_v1_025")
        >>> model.feature_map_size(), model.feature_map_size(225), model.pretrained_cfg["pool_size"]
        ((7, 7), (8, 8), (7, 7))
        """
        side = self.img_size if img_size is None else check_positive_int("img_size", img_size)
        reduction = self.feature_info[-1]["reduction"]
        # Halving step by step rounds the same way as dividing once: ceil(ceil(s/2)/2) = ceil(s/4).
        out = -(-side // reduction) if self.odd_side_rounding == "ceil" else side // reduction
        return out, out

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Train with less activation memory (timm's API, which timm's ``train.py --grad-checkpointing`` calls):
        the body runs as one segment per feature map in ``feature_info`` and keeps only the segments'
        inputs; each segment's activations are recomputed in the backward pass, about one more forward
        pass of compute. As in timm, BatchNorm's running statistics also take the recomputed batch.

        >>> from lightnets import create_model
        >>> model = create_model("mobilenet_v1_025")
        >>> model.set_grad_checkpointing()
        >>> model(torch.zeros(2, 3, 224, 224)).sum().backward()
        """
        self.grad_checkpointing = check_bool("enable", enable)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in the order the layers run (timm's API, which timm's layer-wise LR decay and
        its distillation task read): the body's first layer is the stem, then one group per body layer
        or, with ``coarse``, one per feature map of ``feature_info`` (a stage). Parameters outside the
        body (the classifier, an MLP head) match no pattern, which timm places after every group.

        >>> from timm.models import group_parameters
        >>> from lightnets import create_model
        >>> model = create_model("mobilenet_v1_025")
        >>> groups = group_parameters(model, model.group_matcher(coarse=True))
        >>> len(groups), [names[0] for names in groups.values()][:3]  # stem, 5 stages, classifier
        (7, ['stem.conv.weight', 'blocks.0.conv_dw.weight', 'blocks.1.conv_dw.weight'])
        """
        stem, *rest = self.body_layers
        stage_ends = set(self._feature_positions())
        blocks, stage = [], 0
        for position, name in enumerate(rest, start=1):
            blocks.append((_layer_pattern(name), (stage if coarse else position - 1,)))
            stage += position in stage_ends
        return {"stem": _layer_pattern(stem), "blocks": blocks}

    @torch.jit.unused
    def checkpointing_body(self) -> bool:
        """Whether this forward pass checkpoints the body: enabled, training, and building a graph."""
        return self.grad_checkpointing and self.training and torch.is_grad_enabled()

    @torch.jit.unused
    def forward_body_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features`` as checkpointed segments, each ending at a ``feature_info`` layer."""
        start = 0
        for end in self._feature_positions():
            segment = [self.get_submodule(name) for name in self.body_layers[start:end + 1]]
            x = checkpoint(_run_in_order, segment, x, use_reentrant=False)
            start = end + 1
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_eager_head_input(x)
        if self.pool_type != "":
            x = self.global_pool(x).flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.classifier(x)

    @torch.jit.unused
    def _check_eager_input(self, x: torch.Tensor) -> None:
        """:meth:`check_input`, skipped where Python checks cannot run (tracing, compiling; a scripted
        forward does not call it)."""
        if _eager(x):
            self.check_input(x)

    @torch.jit.unused
    def _check_eager_head_input(self, x: torch.Tensor) -> None:
        """:meth:`check_head_input`, skipped as :meth:`_check_eager_input` is."""
        if _eager(x):
            self.check_head_input(x)

    def _feature_positions(self) -> list[int]:
        """Positions in ``body_layers`` of every ``feature_info`` map: where each stage ends."""
        return self._body_positions(range(len(self.feature_info)))

    def _body_positions(self, feature_indices: Sequence[int]) -> list[int]:
        """Positions in ``body_layers`` of the layers that give these ``feature_info`` maps."""
        return [self.body_layers.index(self.feature_info[index]["module"]) for index in feature_indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_eager_input(x)
        x = self.forward_features(x)
        return x if self.head_pruned else self.forward_head(x)

    def feature_indices(self, indices: Union[None, int, Sequence[int]]) -> list[int]:
        """Indices into ``feature_info`` as timm reads them: None → all, an int n → the last n, a
        sequence → those (negative ones count from the end)."""
        count = len(self.feature_info)
        if indices is None:
            return list(range(count))
        if isinstance(indices, int) and not isinstance(indices, bool):
            if not 1 <= indices <= count:
                raise ValueError(f"{type(self).__name__} has {count} feature maps; an int takes the last n, "
                                 f"n from 1 to {count}, got {indices}")
            return list(range(count - indices, count))
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
            raise ValueError(f"indices must be None, an int or a non-empty sequence of ints, got {indices!r}")
        taken = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
                raise ValueError(f"{type(self).__name__} has {count} feature maps (indices 0 to {count - 1}, or "
                                 f"-{count} to -1 from the end), got index {index!r}; reductions: "
                                 f"{[info['reduction'] for info in self.feature_info]}")
            taken.append(index % count)
        if sorted(set(taken)) != taken:
            raise ValueError(f"indices must name distinct feature maps in increasing order, got {list(indices)}")
        return taken

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Union[None, int, Sequence[int]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[list[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
        """The body's feature maps listed in ``feature_info`` (timm's API, as its convnets implement it).

        Args:
            x: images (N, C, H, W).
            indices: which maps (see :meth:`feature_indices`); all by default.
            norm: accepted for timm's API; these models have no final norm layer to apply.
            stop_early: stop the body after the last map taken (the returned final map is that one).
            output_fmt: ``"NCHW"``, the only layout of these convnets.
            intermediates_only: return only the list of maps.

        Returns:
            ``(final feature map, [maps])``, or ``[maps]`` with ``intermediates_only``.

        >>> from lightnets import create_model
        >>> model = create_model("mobilenet_v1_025")
        >>> maps = model.forward_intermediates(torch.zeros(1, 3, 224, 224), indices=(-2, -1), intermediates_only=True)
        >>> [tuple(m.shape) for m in maps], model.feature_info[-1]
        ([(1, 128, 14, 14), (1, 256, 7, 7)], {'num_chs': 256, 'reduction': 32, 'module': 'blocks.12'})
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' (these models are convnets), got {output_fmt!r}")
        self._check_eager_input(x)
        positions = self._body_positions(self.feature_indices(indices))
        last = positions[-1] if stop_early or intermediates_only else len(self.body_layers) - 1
        wanted = set(positions)
        intermediates = []
        for position, name in enumerate(self.body_layers[:last + 1]):
            x = self.get_submodule(name)(x)
            if position in wanted:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: Union[None, int, Sequence[int]] = None, prune_norm: bool = False, prune_head: bool = True,
    ) -> list[int]:
        """Replace the body's layers after the last map ``indices`` takes by identities and, with
        ``prune_head``, the head too (timm's API; timm's ``features_only`` wrapper calls it so that a
        feature extractor holds no unused parameters). Returns the indices as absolute ones.

        >>> from lightnets import create_model
        >>> model = create_model("shufflenet_g3_050", small_input=True)
        >>> model.prune_intermediate_layers((0, 1))
        [0, 1]
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 120, 16, 16])
        """
        taken = self.feature_indices(indices)
        last = self._body_positions(taken)[-1]
        for name in self.body_layers[last + 1:]:
            self.set_submodule(name, nn.Identity())
        if prune_head:
            for head_layer in ("global_pool", "head_drop", "pool", "pre_logits", "classifier"):
                if isinstance(getattr(self, head_layer, None), nn.Module):
                    setattr(self, head_layer, nn.Identity())
            self.num_classes, self.head_pruned = 0, True
        return taken

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError a user can act on instead of a shape error from deep inside torch."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} expects a torch.Tensor batch of images (N, C, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{name} expects a floating-point image tensor (normalised, e.g. float32), got dtype "
                f"{x.dtype}; convert it with x.float() and normalise with the model's pretrained_cfg mean/std"
            )
        self._check_dtype(x, "the input")
        if x.dim() != 4:
            raise ValueError(f"{name} expects a batch of images (N, C, H, W), got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{name} was built for in_chans={self.in_chans} but the input has {x.shape[1]} channels; "
                f"create the model with in_chans={x.shape[1]}"
            )
        height, width = x.shape[-2:]
        if self.fixed_input_size and (height, width) != (self.img_size, self.img_size):
            raise ValueError(
                f"{name} has a fixed input size of {self.img_size}x{self.img_size} (its classifier flattens the "
                f"feature map), got {height}x{width}; create it with img_size={height}"
            )
        self._check_activation_memory(x)
        if min(height, width) < self.min_input_size:
            small = self.small_input_min_size
            hint = not getattr(self, "small_input", True) and small is not None and min(height, width) >= small
            raise ValueError(
                f"{name} takes images of at least {self.min_input_size}x{self.min_input_size}, got {height}x{width}"
                + (f"; build it with small_input=True for images down to {small}x{small}" if hint else "")
            )

    @torch.jit.unused
    def _check_activation_memory(self, x: torch.Tensor) -> None:
        self.check_batch_memory(tuple(x.shape), x.element_size(), x.device.type)

    @torch.jit.unused
    def check_batch_memory(self, shape: Sequence[int], element_size: int = 4, device_type: str = "cpu") -> None:
        """Refuse a (N, C, H, W) batch whose feature maps alone would not fit in half of this machine's memory
        (a 10⁵-pixel image, a huge batch): the largest layer's input and output, from ``feature_info``. It
        needs only the shape, so a caller that makes the batch itself (the profiler) asks before allocating it.

        >>> from lightnets import create_model
        >>> create_model("mobilenet_v1_025").check_batch_memory((1, 3, 224, 224))  # a few MiB: nothing to say
        """
        batch, _, height, width = shape
        largest = max(info["num_chs"] * -(-height // info["reduction"]) * -(-width // info["reduction"])
                      for info in self.feature_info)
        needed, available = 2 * batch * largest * element_size, physical_memory()
        if available is not None and device_type == "cpu" and needed > available // 2:
            raise ValueError(
                f"{type(self).__name__}: a forward pass of a {tuple(shape)} batch needs about {needed / 2**30:.1f} GiB "
                f"for its largest feature maps, more than half of this machine's {available / 2**30:.1f} GiB; "
                "pass a smaller batch or smaller images"
            )

    @torch.jit.unused
    def _check_dtype(self, x: torch.Tensor, what: str) -> None:
        """Refuse a floating-point dtype the first layer cannot take: the weights' own, or under autocast on
        the input's device any but float64 when the weights are float32 or in autocast's dtype (autocast
        casts both; float64 it leaves alone, and BatchNorm takes only float32 or autocast's dtype)."""
        weight = next(self.parameters(), None)
        if weight is None or x.dtype == weight.dtype:
            return
        autocast = _autocast_dtype(x.device.type)
        if (
            autocast is not None
            and torch.float64 not in (x.dtype, weight.dtype)
            and weight.dtype in (torch.float32, autocast)
        ):
            return
        convert = {torch.float32: "x.float()", torch.float16: "x.half()", torch.bfloat16: "x.bfloat16()"}.get(
            weight.dtype, f"x.to({weight.dtype})")
        autocast_hint = weight.dtype == torch.float32 and x.dtype in (torch.float16, torch.bfloat16)
        raise TypeError(
            f"{type(self).__name__}'s weights are {weight.dtype} but {what} is {x.dtype}; convert it with {convert}, "
            f"or the model with model.to({x.dtype})" + (", or run it under torch.autocast" if autocast_hint else "")
        )

    @torch.jit.unused
    def check_head_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the shape :meth:`forward_head` takes (the map ``forward_features``
        returns: ``num_features`` channels, and for a head that flattens it, its height and width)."""
        if self.pool_type == "" or self.head_pruned:
            return  # no head: the map is returned as it is
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}.forward_head expects a torch.Tensor feature map, got {type(x).__name__}")
        fixed = self.fixed_input_size
        side = self.feature_map_size() if fixed else ("H", "W")
        if x.dim() != 4 or x.shape[1] != self.num_features or (fixed and tuple(x.shape[-2:]) != side):
            raise ValueError(
                f"{name}.forward_head takes the map forward_features returns, (N, {self.num_features}, {side[0]}, "
                f"{side[1]}) (num_features={self.num_features}), got a tensor of shape {tuple(x.shape)}"
            )
        if x.is_floating_point():
            self._check_dtype(x, "the forward_head input")

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` (0 → identity).

        ``global_pool`` (as in timm): ``"avg"``, or ``""`` for no pooling, which needs ``num_classes=0``:
        the model then returns its last feature map (a head that flattens the map, with hidden layers,
        is skipped too).

        >>> from lightnets import create_model
        >>> model = create_model("mobilenet_v1_025")
        >>> model.reset_classifier(0, "")
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 256, 7, 7])
        """
        classifier = classifier_layer(self.head_hidden_size, num_classes)
        if global_pool is not None or not self.pool_type:
            self._check_global_pool(self.pool_type if global_pool is None else global_pool, num_classes)
        self.classifier, self.num_classes = classifier, num_classes
        if global_pool is not None:
            self.pool_type = global_pool

    def set_global_pool(self, global_pool: str) -> None:
        """Choose the head's pooling without touching the classifier (see :meth:`reset_classifier`)."""
        self._check_global_pool(global_pool, self.num_classes)
        self.pool_type = global_pool

    def _check_global_pool(self, global_pool: Any, num_classes: int) -> None:
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
        if global_pool == "" and num_classes:
            raise ValueError(f"global_pool='' (no pooling) needs num_classes=0, got {num_classes}: "
                             "the classifier takes pooled features")


class UncheckedLogits(nn.Module):
    """``forward_head(forward_features(x))``: a lightnets model without its Python input checks, so that
    torch.fx and the ONNX exporter can trace it (the checks read shapes as Python values)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x))


def _eager(x: Any) -> bool:
    """Whether Python checks of ``x`` can run: not while tracing or compiling, nor under torch.fx symbolic
    tracing (shapes are not known yet)."""
    return not torch.jit.is_tracing() and not torch.compiler.is_compiling() and not isinstance(x, torch.fx.Proxy)


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast casts to on ``device_type``, or None where it is off."""
    if not hasattr(torch, "get_autocast_dtype"):  # torch < 2.4: CPU and CUDA only, one function each
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if device_type == "cuda" and torch.is_autocast_enabled() else None
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _run_in_order(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small-normal linear layers (the torchvision recipe)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
