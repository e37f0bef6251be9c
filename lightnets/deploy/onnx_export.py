"""ONNX export: a model (eval mode, BatchNorm folded) as an ONNX file with input ``input`` and output ``logits``,
written atomically (:mod:`lightnets._io`), with a dynamic batch and, for models that pool globally, dynamic
height and width.
"""
from __future__ import annotations

import contextlib
import copy
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from .. import _io
from .fold import fold_batchnorm
from .runtimes import INPUT_NAME, OUTPUT_NAME, require_package

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "MAX_OPSET", "check_example_input", "default_input", "pools_globally",
           "export_onnx", "quiet_deprecations"]

PathLike = Union[str, os.PathLike]

DEFAULT_OPSET = 17  # run by onnxruntime >= 1.11 and most other runtimes
# The TorchScript-based exporter's range with constant folding (torch.onnx._constants).
MIN_OPSET, MAX_OPSET = 9, 20


def default_input(model: nn.Module, batch_size: int = 1) -> torch.Tensor:
    """A seeded N(0, 1) batch of the model's default input: ``in_chans`` × ``img_size``² (lightnets models),
    else ``pretrained_cfg['input_size']`` (timm models), on the device and in the float dtype of the model's
    parameters."""
    if hasattr(model, "in_chans") and hasattr(model, "img_size"):
        input_size = (model.in_chans, model.img_size, model.img_size)
    else:
        input_size = getattr(model, "pretrained_cfg", {}).get("input_size")
        if input_size is None:
            raise ValueError(f"{type(model).__name__} does not declare its input size; pass example_input")
    batch = torch.randn((batch_size, *input_size), generator=torch.Generator().manual_seed(0))
    param = next(model.parameters(), None)
    if param is None:
        return batch
    return batch.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)


def check_example_input(model: nn.Module, example_input: Any) -> None:
    """Refuse an ``example_input`` the model cannot take (channels, size, dtype), naming it: while it is traced,
    exported or compiled, a lightnets model's own input checks are skipped and torch would fail deep inside."""
    check = getattr(model, "check_input", None)
    if check is None:
        return
    try:
        check(example_input)
    except (TypeError, ValueError) as error:
        given = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input).__name__
        raise type(error)(f"example_input {given} does not fit the model: {error}") from None


def pools_globally(model: nn.Module) -> bool:
    """Whether ``model`` pools its feature map to 1×1 before the classifier, so it takes any image size.

    Judged from its modules: an adaptive pool to 1×1 and none to a larger grid (VGG's 7×7 head needs the
    traced size), and no ``fixed_input_size`` (smallcnn flattens its map into an FC layer).

    >>> import lightnets
    >>> (pools_globally(lightnets.create_model("mobilenet_v1_025")),
    ...  pools_globally(lightnets.create_model("smallcnn_3x2")))
    (True, False)
    """
    if getattr(model, "fixed_input_size", False):
        return False
    grids = {tuple(m.output_size) if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
             for m in model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))}
    return grids == {(1, 1)}


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    # TorchScript and its exporter warn on every call that they are deprecated; we know, and say so in the docs.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def export_onnx(
    model: nn.Module,
    path: PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_size: Optional[bool] = None,
    example_input: Optional[torch.Tensor] = None,
    fold_bn: bool = True,
) -> Path:
    """Export ``model`` (eval mode, BatchNorm folded) to an ONNX file with input ``input`` and output ``logits``.

    Uses the TorchScript-based exporter: the torch.export-based one needs onnxscript, which lightnets
    does not depend on. Channel shuffle reshapes with ``-1``, so a dynamic batch survives export.
    The graph is float32, exported from a CPU float32 copy of the model, whatever its device and dtype.

    Args:
        model: the model; not modified.
        path: the ``.onnx`` file to write (parent folders are created), replaced atomically (:mod:`lightnets._io`).
        opset: ONNX opset version, from :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        dynamic_batch: leave the batch dimension symbolic, so one file serves every batch size.
        dynamic_size: leave height and width symbolic (default: when :func:`pools_globally`); a file
            with static ones takes only the traced height and width.
        example_input: a batch to trace with (default: the model's input size, batch 1).
        fold_bn: fold BatchNorm first (onnxruntime would fold it too; other runtimes may not).

    >>> import tempfile, lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> export_onnx(model, tempfile.mkdtemp() + "/smallcnn.onnx").suffix
    '.onnx'
    """
    require_package("onnx")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (the exporter's range), got {opset!r}"
        )
    model = (fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()).to(device="cpu", dtype=torch.float32)
    if example_input is None:
        example_input = default_input(model)
    else:
        if isinstance(example_input, torch.Tensor):
            example_input = example_input.to(device="cpu", dtype=torch.float32)
        check_example_input(model, example_input)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else {}
    if pools_globally(model) if dynamic_size is None else dynamic_size:
        dynamic_axes.setdefault(INPUT_NAME, {}).update({2: "height", 3: "width"})
    # Exported whole into a temporary sibling, then named (lightnets._io): a failed or killed export never
    # leaves a half-written file under the name, and a FIFO or symlink target is written as a plain write would.
    with _io.atomic_path(path, parents=True) as temporary, quiet_deprecations(), torch.no_grad():
        torch.onnx.export(
            model, (example_input.contiguous(),), str(temporary), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes or None,
        )
    return Path(path)
