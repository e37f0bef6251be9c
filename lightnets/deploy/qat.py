"""Quantization-aware training (QAT): an int8 model for one runtime, trained with its quantization simulated.

Post-training quantization (``lightnets.export(..., quantize="int8")``) rounds a trained network's weights
and activations to int8 and can lose accuracy, most of all with one scale per weight tensor, where a
MobileNet's depthwise filters of very different ranges share it. QAT trains the network a little further
with every int8 rounding of the runtime's quantizer in its forward pass (fake quantization, with
straight-through gradients), so the weights settle where the rounding costs least.

It is PyTorch 2 export quantization: the model is captured with ``torch.export``, ``prepare_qat_pt2e`` inserts
the runtime's quantizer's fake quantization (ExecuTorch: XNNPACK's; LiteRT: litert-torch's PT2E quantizer;
both symmetric int8 weights per channel or per tensor, per-tensor int8 activations, with the convolutions'
BatchNorms folded as the quantizer sees them), lightnets' own training loop (``lightnets.training.fit``)
trains it with the float model as a distillation teacher, and ``convert_pt2e`` turns it into the quantized
graph that :func:`lightnets.export` lowers to the runtime.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Optional, Union

import torch
from torch import nn

from ..inputs import InputConfig, resolve_input_config
from ..training import FitConfig, fit
from .calibration import dataset_pixels
from .delegate_rewrites import average_pools_as_convs
from .executorch_file import QUANTIZE_MODES
from .fold import fold_batchnorm
from .runtimes import require_package

__all__ = ["QAT_FORMATS", "QuantizedModel", "quantize"]

QAT_FORMATS = ("executorch", "litert")
TrainingImages = Union[str, tuple[torch.Tensor, torch.Tensor]]


class _Trainable(nn.Module):
    """The prepared graph as :func:`~lightnets.training.fit` trains a model: ``train()`` / ``eval()`` switch the
    graph's BatchNorm and dropout (an exported graph ignores ``nn.Module.train``), and the input
    configuration is the float model's."""

    def __init__(self, graph: torch.fx.GraphModule, source: nn.Module) -> None:
        super().__init__()
        self.graph = graph
        self.pretrained_cfg = dict(getattr(source, "pretrained_cfg", None) or {})
        self.in_chans = getattr(source, "in_chans", None)
        self.num_classes = getattr(source, "num_classes", None)

    def train(self, mode: bool = True) -> "_Trainable":
        from torchao.quantization.pt2e.export_utils import (_move_exported_model_to_eval,
                                                            _move_exported_model_to_train)

        (_move_exported_model_to_train if mode else _move_exported_model_to_eval)(self.graph)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)


class QuantizedModel(nn.Module):
    """A quantization-aware-trained model for one runtime: :func:`lightnets.export` writes it as that runtime's
    int8 file; called, it runs the quantized graph in PyTorch (the file's arithmetic, simulated).

    ``source`` is the float model it came from (its name, tag, input configuration and labels go into the
    file's metadata), ``format`` and ``mode`` the runtime and quantization it was trained for, ``epochs`` and
    ``images`` how much QAT it had, and ``history`` each epoch's training loss and top-1.
    """

    def __init__(self, graph: nn.Module, source: nn.Module, format: str, mode: str, quantizer: Any,
                 epochs: int, images: int, history: list[dict[str, float]]) -> None:
        super().__init__()
        self.graph = graph
        self.source = source
        self.format, self.mode, self.quantizer = format, mode, quantizer
        self.epochs, self.images, self.history = epochs, images, history
        self.pretrained_cfg = dict(getattr(source, "pretrained_cfg", None) or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)


def _quantizer(file_format: str, per_channel: bool) -> Any:
    if file_format == "executorch":
        require_package("executorch", extra="mobile")
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                             get_symmetric_quantization_config)

        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel,
                                                                               is_qat=True))
    require_package("litert_torch", extra="mobile")
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class FoldedBatchNormQuantizer(PT2EQuantizer):
        # litert-torch 0.10's conv + BatchNorm QAT annotators hand torch.export a function, which torch 2.14's
        # refuses; the model's BatchNorms are folded before training instead (see quantize), so no such pattern
        # is left to annotate.
        STATIC_QAT_ONLY_OPS: list[str] = []

    return FoldedBatchNormQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel,
                                                                                   is_qat=True))


def _folded(model: nn.Module) -> nn.Module:
    try:
        return fold_batchnorm(model)
    except ValueError as error:  # a forward torch.fx cannot trace
        raise ValueError(f"quantization-aware training for LiteRT folds BatchNorm first, and "
                         f"{type(model).__name__} cannot be traced to fold it: {error}") from None


def _training_images(data: TrainingImages, config: InputConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images at the model's input size and their labels."""
    if isinstance(data, str):
        images, labels = dataset_pixels(data, config)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"data must be 'DATASET[:N]' or a (uint8 images, labels) pair, got {type(data).__name__}")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 or not len(images):
        raise ValueError("data images must be a non-empty uint8 tensor (N, C, H, W) of pixels 0-255, got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (len(images),):
        raise ValueError(f"data has {len(images)} images but labels of shape {tuple(labels.shape)}")
    return images, labels


def quantize(
    model: nn.Module,
    data: TrainingImages,
    *,
    format: str = "executorch",
    mode: str = "int8",
    qat_epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    fit_config: Optional[FitConfig] = None,
    distill: bool = True,
    seed: int = 0,
) -> QuantizedModel:
    """``model`` trained for ``qat_epochs`` epochs on ``data`` with ``format``'s int8 quantization simulated.

    Args:
        model: the trained float model (not modified).
        data: the QAT training images: ``"DATASET[:N]"`` (N images of its train split, as the model is fed) or
            a pair (uint8 images (N, C, H, W) at the model's input size, int64 labels).
        format: the runtime whose quantizer is simulated, ``"executorch"`` or ``"litert"``; the result exports
            to that format only.
        mode: ``"int8"`` (weights per output channel) or ``"int8-per-tensor"``.
        qat_epochs: passes over ``data``.
        lr: SGD learning rate (momentum 0.9, cosine decay to 0 over the run): QAT starts from trained weights,
            so it is small.
        batch_size: images per step.
        fit_config: the training step's augmentation and loss (default: the small-image pad-crop and flip,
            label smoothing 0.1).
        distill: with the float model as teacher (Hinton et al. 2015, the loss of ``lightnets-train --teacher``).
        seed: order and augmentation.

    >>> import lightnets, torch
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=2)
    >>> images, labels = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8), torch.arange(16) % 2
    >>> qat = quantize(model, (images, labels), qat_epochs=1, batch_size=8)  # doctest: +SKIP
    >>> qat(torch.zeros(1, 1, 28, 28)).shape  # doctest: +SKIP
    torch.Size([1, 2])
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    if format not in QAT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(QAT_FORMATS)} for quantization-aware training, "
                         f"got {format!r}")
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"mode must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    if not isinstance(qat_epochs, int) or qat_epochs < 1:
        raise ValueError(f"qat_epochs must be a whole number ≥ 1, got {qat_epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    config = resolve_input_config(model)
    images, labels = _training_images(data, config)
    if tuple(images.shape[1:]) != tuple(config.input_size):
        raise ValueError(f"data images are {tuple(images.shape[1:])}, the model takes {tuple(config.input_size)}")
    batch_size = min(batch_size, len(images))

    source = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    example = torch.randn((2, *config.input_size), generator=torch.Generator().manual_seed(0))
    # ExecuTorch's quantizer folds each BatchNorm into its conv as it trains (its statistics still move);
    # LiteRT's cannot here (_quantizer), so its student trains the folded convs.
    student = _folded(source) if format == "litert" else copy.deepcopy(source)
    student = average_pools_as_convs(student, example[:1]).train()
    quantizer = _quantizer(format, per_channel=mode == "int8")
    # A symbolic batch (torch.export specialises sizes 0 and 1), so it trains and evaluates in batches; the
    # converted graph is exported again at the file's batch of one.
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    graph = torch.export.export(student, (example,), dynamic_shapes=({0: batch},)).module()
    trainable = _Trainable(prepare_qat_pt2e(graph, quantizer), source)

    steps_per_epoch = max(1, len(images) // batch_size)
    optimizer = torch.optim.SGD(trainable.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / (qat_epochs * steps_per_epoch))))
    fit_config = dataclasses.replace(fit_config or FitConfig(), batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(qat_epochs):
        stats = fit(trainable, images, labels, optimizer, fit_config, steps=steps_per_epoch, generator=generator,
                    scheduler=scheduler, teachers=[source] if distill else (), desc=f"QAT epoch {epoch + 1}",
                    where=f"quantization-aware training of {type(model).__name__}")
        history.append({"epoch": epoch + 1, "loss": stats.loss_sum / max(1, stats.images),
                        "train_top1": 100.0 * stats.correct / max(1, stats.images)})
    trainable.eval()
    # LiteRT's converter reads a weight as float behind its quantize / dequantize pair, not as folded int8
    converted = convert_pt2e(trainable.graph, fold_quantize=format != "litert")
    return QuantizedModel(converted, source, format, mode, quantizer, qat_epochs, len(images), history)
