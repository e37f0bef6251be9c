"""``lightnets.export``: one call from a model to a verified file for an on-device or server runtime.

Formats (:data:`FORMATS`):

* ``"executorch"``: a ``.pte`` lowered to the XNNPACK delegate (PyTorch's on-device runtime);
* ``"litert"``: a ``.tflite`` for LiteRT (formerly TensorFlow Lite), through Google's ``litert-torch``;
* ``"onnx"``: an ``.onnx`` file (:func:`lightnets.deploy.export_onnx`), for ONNX Runtime, OpenVINO, ...

``quantize="int8"`` quantizes weights per output channel and activations per tensor with the runtime's own
quantizer, calibrated on ``calibration`` (a tensor of images as the model takes them, or ``"DATASET[:N]"``:
N images of a dataset's train split); ``"int8-per-tensor"`` quantizes each weight tensor with one scale.

By default the file takes a static batch of one float32 NCHW image at the model's input size, as the model
does. ``app_input=True`` bakes the app's view in: uint8 NHWC pixels (0–255), normalised inside the file.
Every file carries the model's name, tag, input size and layout, mean / std and label names
(:func:`lightnets.deploy.read_metadata`), and is written atomically: a failed export leaves nothing.

>>> import tempfile, lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> exported = lightnets.export(model, tempfile.mkdtemp() + "/smallcnn.onnx", format="onnx")
>>> exported.metadata["input"]["shape"], exported.path.suffix
([1, 1, 28, 28], '.onnx')
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .. import _io
from ..inputs import InputConfig, resolve_input_config
from .app_input import UInt8NHWCInput
from .calibration import Calibration, calibration_images, to_pixels
from .dead_channels import lift_dead_channels
from .delegate_rewrites import average_pools_as_convs
from .onnx_export import check_example_input, export_onnx
from .executorch_file import QUANTIZE_MODES, lower_to_executorch
from .file_metadata import METADATA_KEY, describe_file, with_tflite_metadata
from .fold import fold_batchnorm
from .runtimes import BackendUnavailableError

__all__ = ["FORMATS", "SUFFIXES", "QUANTIZE_MODES", "ExportError", "ExportedFile", "export"]

PathLike = Union[str, os.PathLike]
FORMATS = ("executorch", "litert", "onnx")
SUFFIXES = {"executorch": ".pte", "litert": ".tflite", "onnx": ".onnx"}
_QUANTIZE_BY_FORMAT = {"executorch": QUANTIZE_MODES, "litert": QUANTIZE_MODES, "onnx": ("int8",)}


class ExportError(RuntimeError):
    """The runtime's converter could not take the model; the message names the model, the format and what failed."""


@dataclass
class ExportedFile:
    """What :func:`export` wrote: the file, its metadata and, for ExecuTorch, the operators XNNPACK left out."""

    path: Path
    format: str
    quantize: Optional[str]
    metadata: dict[str, Any]
    seconds: float
    undelegated: dict[str, int] = field(default_factory=dict)  # operator -> nodes on portable kernels

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def _check_arguments(model: Any, path: PathLike, file_format: Any, quantize: Any, calibration: Any,
                     overwrite: bool) -> Path:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if file_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {file_format!r}")
    allowed = _QUANTIZE_BY_FORMAT[file_format]
    if quantize is not None and quantize not in allowed:
        raise ValueError(f"quantize must be None or one of {', '.join(allowed)} for format {file_format!r}, "
                         f"got {quantize!r}")
    if quantize is not None and calibration is None:
        raise ValueError(f"quantize={quantize!r} needs calibration: a tensor of images as the model takes them, "
                         "or 'DATASET[:N]' (for example 'fashion_mnist:512')")
    if quantize is None and calibration is not None:
        raise ValueError("calibration is only used with quantize='int8' or 'int8-per-tensor'")
    return check_output_path(path, file_format, overwrite)


def check_output_path(path: PathLike, file_format: str, overwrite: bool) -> Path:
    """``path`` as a file :func:`export` may write for ``file_format``: its suffix, an existing folder, and no
    file there unless ``overwrite`` (checked before work that takes minutes, such as quantization-aware training).
    """
    path = Path(path)
    if path.suffix != SUFFIXES[file_format]:
        raise ValueError(f"path {path} must end in {SUFFIXES[file_format]} for format {file_format!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path {path}: the folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"path {path} exists; pass overwrite=True (--overwrite) to replace it")
    return path


def _prepared(model: nn.Module, config: InputConfig, file_format: str, app_input: bool,
              lift_dead: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """A CPU float32 copy, BatchNorm folded, rewritten for the delegate, optionally behind the app's input;
    ``lift_dead``: dead channels made safe for LiteRT's int8 biases (:mod:`lightnets.deploy.dead_channels`)."""
    try:
        folded = fold_batchnorm(model)  # an eval-mode copy
    except ValueError:  # a forward torch.fx cannot trace: the converters fold BatchNorm themselves, or say why not
        folded = copy.deepcopy(model).eval()
    folded = folded.to(device="cpu", dtype=torch.float32)  # in place, on the copy (as export_onnx does)
    example = torch.randn((1, *config.input_size), generator=torch.Generator().manual_seed(0))
    check_example_input(folded, example)
    if file_format != "onnx":
        folded = average_pools_as_convs(folded, example)
    if lift_dead and file_format == "litert":
        lift_dead_channels(folded)
    if app_input:
        folded = UInt8NHWCInput(folded, config.mean, config.std).eval()
        example = to_pixels(example.clamp(-2, 2), config)
    return folded.eval(), example


def export(
    model: nn.Module,
    path: PathLike,
    *,
    format: str = "executorch",
    quantize: Optional[str] = None,
    calibration: Optional[Calibration] = None,
    app_input: bool = False,
    img_size: Optional[int] = None,
    overwrite: bool = False,
) -> ExportedFile:
    """Export ``model`` to ``path`` for a runtime (see the module docstring).

    Args:
        model: the model (any device and dtype; not modified).
        path: the file to write, ending in ``.pte``, ``.tflite`` or ``.onnx`` as ``format`` says; its folder
            must exist.
        format: one of :data:`FORMATS`.
        quantize: None (float32), ``"int8"`` or ``"int8-per-tensor"`` (ExecuTorch, LiteRT; ONNX: ``"int8"``).
        calibration: with ``quantize``: float images (N, C, H, W) normalised as the model takes them, or
            ``"DATASET[:N]"`` (default N 512, train split).
        app_input: the file takes uint8 NHWC pixels and normalises them itself.
        img_size: the side of the file's input (default: the model's).
        overwrite: replace an existing file.
    """
    from .qat import QuantizedModel

    if isinstance(model, QuantizedModel):
        return _export_quantization_aware(model, path, format, quantize, calibration, app_input, img_size, overwrite)
    path = _check_arguments(model, path, format, quantize, calibration, overwrite)
    started = time.perf_counter()
    config = resolve_input_config(model, img_size=img_size)
    images = calibration_images(model, calibration, config) if quantize is not None else None
    prepared, example = _prepared(model, config, format, app_input, lift_dead=quantize is not None)
    if images is not None and app_input:
        images = to_pixels(images, config)
    metadata = describe_file(model, config, file_format=format, quantize=quantize, app_input=app_input)
    data, undelegated = _convert(prepared, example, format, metadata, quantize=quantize, images=images,
                                 described=f"{type(model).__name__} to {format}{' ' + quantize if quantize else ''}")
    _write(path, data)
    return ExportedFile(path, format, quantize, metadata, time.perf_counter() - started, undelegated)


def _convert(prepared: nn.Module, example: torch.Tensor, file_format: str, metadata: dict[str, Any], *,
             quantize: Optional[str] = None, images: Optional[torch.Tensor] = None, pt2e_quantizer: Any = None,
             described: str) -> tuple[bytes, dict[str, int]]:
    """The file's bytes from the format's converter, with the operators XNNPACK left out (ExecuTorch); a
    converter's own failure becomes an :class:`ExportError` that says what could not be exported (``described``).
    ``pt2e_quantizer``: the model is quantized already, by that quantizer (quantization-aware training)."""
    try:
        if file_format == "executorch":
            lowered = lower_to_executorch(prepared, example, quantize=quantize, calibration=images, metadata=metadata)
            return lowered.buffer, lowered.undelegated
        if file_format == "litert":
            from .litert_file import lower_to_litert

            flatbuffer = lower_to_litert(prepared, example, quantize=quantize, calibration=images,
                                         pt2e_quantizer=pt2e_quantizer)
            return with_tflite_metadata(flatbuffer, metadata), {}
        return _onnx_bytes(prepared, example, quantize, images, metadata), {}
    except BackendUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - a converter's own exception, restated at our boundary
        raise ExportError(f"could not export {described}: {_first_lines(error)}") from error


def _export_quantization_aware(model: Any, path: PathLike, file_format: str, quantize: Optional[str],
                               calibration: Optional[Calibration], app_input: bool, img_size: Optional[int],
                               overwrite: bool) -> ExportedFile:
    """A :class:`~lightnets.deploy.qat.QuantizedModel` as its runtime's int8 file: its graph is quantized
    already, so there is nothing to calibrate or fold."""
    if file_format != model.format:
        raise ValueError(f"format {file_format!r}: this model was quantization-aware trained for {model.format!r} "
                         f"(its quantizer's arithmetic); train it again with format={file_format!r}")
    if quantize not in (None, model.mode):
        raise ValueError(f"quantize={quantize!r}: this model was quantization-aware trained as {model.mode!r}")
    if calibration is not None:
        raise ValueError("calibration is not used for a quantization-aware trained model: its ranges were learnt")
    config = resolve_input_config(model.source)
    if img_size not in (None, config.img_size):
        raise ValueError(f"img_size={img_size}: this model was quantization-aware trained at {config.img_size} px")
    path = _check_arguments(model.source, path, file_format, None, None, overwrite)
    started = time.perf_counter()
    prepared: nn.Module = model.graph
    example = torch.randn((1, *config.input_size), generator=torch.Generator().manual_seed(0))
    if app_input:
        prepared = UInt8NHWCInput(prepared, config.mean, config.std)
        prepared.training = False  # not .eval(): the quantized graph refuses it, being in its eval form already
        example = to_pixels(example.clamp(-2, 2), config)
    metadata = describe_file(model.source, config, file_format=file_format, quantize=model.mode, app_input=app_input)
    metadata["quantization_aware_training"] = {"epochs": model.epochs, "images": model.images}
    data, undelegated = _convert(
        prepared, example, file_format, metadata, pt2e_quantizer=model.quantizer,
        described=f"the quantization-aware trained {type(model.source).__name__} to {file_format}")
    _write(path, data)
    return ExportedFile(path, file_format, model.mode, metadata, time.perf_counter() - started, undelegated)


def _write(path: Path, data: bytes) -> None:
    _io.write_bytes(path, data)


def _first_lines(error: Exception) -> str:
    """The converter's message, cut to what names the failure: its first line and, from torch.export, the
    line of the model's code (the layer) it failed at."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # torch.export quotes the user's frames as a traceback does: 'File "...", line N, in forward', then the code.
    frames = [(lines[index], lines[index + 1]) for index in range(len(lines) - 1)
              if lines[index].startswith('File "') and "site-packages" not in lines[index]]
    if not frames:
        return lines[0]
    where, code = frames[-1]
    return f"{lines[0]} (at {where.removeprefix('File ')}: {code})"


def _onnx_bytes(model: nn.Module, example: torch.Tensor, quantize: Optional[str],
                images: Optional[torch.Tensor], metadata: dict[str, Any]) -> bytes:
    import json
    import tempfile

    import onnx

    from .runtimes import quantize_onnx

    with tempfile.TemporaryDirectory(prefix="lightnets-onnx-") as folder:
        float_path = export_onnx(model, Path(folder) / "float.onnx", dynamic_batch=False, dynamic_size=False,
                                 example_input=example, fold_bn=False)
        if quantize is not None:
            float_path = quantize_onnx(float_path, Path(folder) / "int8.onnx", images)
        graph = onnx.load(str(float_path))
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
        return graph.SerializeToString()
