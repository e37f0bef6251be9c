"""Deployment path: fold BatchNorm into the convs, then run through the fastest available backend.

Backends (``optimize_for_inference(model, backend=...)``), each returning an ``nn.Module`` that
maps an NCHW float batch to logits and matches the eager model within 1e-4:

* ``"eager"``: the BN-folded model, optionally channels_last.
* ``"torchscript"``: traced, frozen and passed through ``torch.jit.optimize_for_inference``
  (oneDNN weight prepacking, conv + ReLU fusion). TorchScript is deprecated in torch 2.9+ but still works.
* ``"compile"``: ``torch.compile`` (inductor) with freezing; needs a C++ compiler.
* ``"onnxruntime"``: exported to ONNX (dynamic batch; dynamic height and width when the model pools
  globally, see :func:`export_onnx`) and run by ONNX Runtime with every graph optimisation on (which
  includes its NCHWc layout for x86 convs).
* ``"openvino"``: the same ONNX file compiled by OpenVINO's CPU plugin (latency hint, fp32), one
  static-shape compilation per batch size, made on first use.
* ``"onnxruntime-int8"``: the same ONNX graph statically quantised to int8 (QDQ, per-channel
  weights), calibrated on images you pass.
* ``"executorch"``, ``"executorch-int8"``, ``"litert"``, ``"litert-int8"``: the on-device files of
  :func:`lightnets.export` (XNNPACK delegate; int8: per-channel weights, calibrated on images you pass) run in
  their runtime's Python interpreter on this machine, for a side-by-side speed table. The file takes one
  image, as an app feeds it; a batch runs image by image.

``"auto"`` measures the installed candidates (ONNX Runtime, OpenVINO, TorchScript, eager; at batch 1 the LiteRT
and ExecuTorch files too) on this model, input and batch size on this machine and takes the fastest, caching the
choice (:mod:`lightnets.deploy.auto`).
The ONNX-based backends run on the CPU in float32, whatever the model's device and dtype: they take a
batch on any device and return float32 logits on that device.

>>> import torch, lightnets
>>> model = lightnets.create_model("shufflenet_g3", small_input=True, num_classes=10).eval()
>>> fast = lightnets.optimize_for_inference(model, backend="eager")
>>> x = torch.randn(2, 3, 32, 32)
>>> bool((fast(x) - model(x)).abs().max() < 1e-4)
True
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .onnx_export import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_example_input, default_input, export_onnx,
                     pools_globally, quiet_deprecations)
from .fold import conv_bn_pairs, fold_batchnorm
from .runtimes import BackendUnavailableError, OnnxRuntimeModule, OpenVinoModule, ort_session_options, quantize_onnx
from .executorch_file import ExecuTorchModule
from .file_metadata import read_metadata
from .litert_file import LiteRTModule
from .on_device import FORMATS, QUANTIZE_MODES, SUFFIXES, ExportedFile, ExportError, export
from .auto import AUTO_CANDIDATES, AutoChoice, choose_backend
from .qat import QAT_FORMATS, QuantizedModel, quantize

__all__ = [
    "AUTO_CANDIDATES", "AutoChoice", "choose_backend",
    "BACKENDS", "DEFAULT_OPSET", "BackendUnavailableError", "OnnxRuntimeModule", "OpenVinoModule",
    "ExecuTorchModule", "ExportedFile", "ExportError", "FORMATS", "LiteRTModule", "QUANTIZE_MODES", "export",
    "read_metadata", "QAT_FORMATS", "QuantizedModel", "quantize",
    "available_backends", "conv_bn_pairs", "cpp_compiler", "default_input", "export_onnx", "fold_batchnorm",
    "MAX_OPSET", "MIN_OPSET", "optimize_for_inference", "ort_session_options", "pools_globally", "quantize_onnx",
]

PathLike = Union[str, os.PathLike]

BACKENDS = ("auto", "eager", "torchscript", "compile", "onnxruntime", "openvino", "onnxruntime-int8", "executorch",
            "executorch-int8", "litert", "litert-int8")
ON_DEVICE_BACKENDS = ("executorch", "executorch-int8", "litert", "litert-int8")
INT8_BACKENDS = ("onnxruntime-int8", "executorch-int8", "litert-int8")


def cpp_compiler() -> Optional[str]:
    """The C++ compiler torch.compile's CPU backend would call, or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def available_backends() -> list[str]:
    """The concrete backends that can run here (``"auto"`` excluded).

    >>> "eager" in available_backends()
    True
    """
    backends = ["eager", "torchscript"]
    if cpp_compiler() is not None:
        backends.append("compile")
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        backends += ["onnxruntime", "onnxruntime-int8"]
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("openvino"):
        backends.append("openvino")
    if importlib.util.find_spec("executorch"):
        backends += ["executorch", "executorch-int8"]
    if importlib.util.find_spec("litert_torch") and importlib.util.find_spec("ai_edge_litert"):
        backends += ["litert", "litert-int8"]
    return backends


class _ChannelsLast(nn.Module):
    """Converts the input to channels_last before a model whose weights are channels_last."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class _ImageByImage(nn.Module):
    """Runs a file that takes one image on a batch of any size, image by image, as an app runs it; ``path`` is
    the file."""

    def __init__(self, runner: nn.Module) -> None:
        super().__init__()
        self.runner, self.path = runner, runner.path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.runner(x[i:i + 1]) for i in range(len(x))]).to(x.device)


def _on_device_backend(folded: nn.Module, backend: str, folder: Path, example_input: torch.Tensor,
                       calibration_images: Optional[torch.Tensor], num_threads: Optional[int]) -> nn.Module:
    file_format, _, precision = backend.partition("-")
    path = folder / ("model" + SUFFIXES[file_format])
    exported = export(folded, path, format=file_format, quantize=precision or None, calibration=calibration_images,
                      img_size=example_input.shape[-1])
    runner = (ExecuTorchModule if file_format == "executorch" else LiteRTModule)(exported.path,
                                                                                num_threads=num_threads)
    return _ImageByImage(runner)


class _NoGrad(nn.Module):
    """Runs the wrapped (compiled) model without autograd, which inductor's freezing requires."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    available = available_backends()
    if backend == "auto":
        return backend
    if backend not in available:
        need = {"compile": "a C++ compiler (g++ or clang++, or set CXX)", "openvino": "pip install onnx openvino"}.get(
            backend, "pip install 'lightnets[mobile]'" if backend in ON_DEVICE_BACKENDS
            else "pip install onnx onnxruntime")
        raise BackendUnavailableError(f"backend {backend!r} is not available here: it needs {need}")
    return backend


def _onnx_backend(
    folded: nn.Module, backend: str, onnx_path: Path, example_input: torch.Tensor,
    calibration_images: Optional[torch.Tensor], opset: int, num_threads: Optional[int], spin_wait: bool,
) -> nn.Module:
    onnx_path = export_onnx(folded, onnx_path, opset=opset, example_input=example_input, fold_bn=False)
    if backend == "openvino":
        return OpenVinoModule(onnx_path, num_threads=num_threads)
    if backend == "onnxruntime-int8":
        onnx_path = quantize_onnx(onnx_path, onnx_path.with_name(onnx_path.stem + ".int8.onnx"), calibration_images)
    return OnnxRuntimeModule(onnx_path, num_threads=num_threads, spin_wait=spin_wait)


def optimize_for_inference(
    model: nn.Module,
    backend: str = "auto",
    *,
    example_input: Optional[torch.Tensor] = None,
    channels_last: bool = False,
    num_threads: Optional[int] = None,
    calibration_images: Optional[torch.Tensor] = None,
    onnx_path: Optional[PathLike] = None,
    opset: int = DEFAULT_OPSET,
    spin_wait: bool = True,
) -> nn.Module:
    """A fast inference-only version of ``model``: BatchNorm folded, then run through ``backend``.

    Args:
        model: the model; not modified (the result works on a copy).
        backend: one of :data:`BACKENDS` (see the module docstring); ``"auto"`` the one measured fastest
            here for this model at ``example_input``'s shape (:func:`~lightnets.deploy.auto.choose_backend`).
        example_input: a batch used to trace / export / compile (default: the model's input size,
            batch 1, on the model's device and in its dtype). Any batch size works afterwards, and any
            image size the model takes, except with the ONNX-based backends when the model does not
            :func:`pools_globally`: those take only the height and width of ``example_input``.
        channels_last: run the eager, torchscript and compile backends in channels_last memory format.
        num_threads: onnxruntime / openvino threads (default: ``torch.get_num_threads()``).
        calibration_images: normalised images to calibrate int8 ranges on (the int8 backends only).
        onnx_path: where to keep the ONNX file (default: a temporary folder, deleted with the returned module).
        opset: ONNX opset for the onnxruntime and openvino backends.
        spin_wait: onnxruntime backends: idle threads busy-wait for the next call (see :func:`ort_session_options`).

    >>> import lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10).eval()
    >>> fast = optimize_for_inference(model, backend="torchscript")
    >>> x = torch.randn(4, 3, 32, 32)
    >>> bool((fast(x) - model(x)).abs().max() < 1e-4)
    True
    """
    backend = _resolve_backend(backend)
    if backend == "auto":
        if calibration_images is not None:
            raise ValueError(f"calibration_images is only used by the int8 backends ({', '.join(INT8_BACKENDS)}), "
                             f"not 'auto'")
        options = dict(channels_last=channels_last, num_threads=num_threads, opset=opset, spin_wait=spin_wait)
        example = default_input(model) if example_input is None else example_input
        # Measured without ORT's spin-waiting (see choose_backend); the winner is then built as asked.
        fair = {**options, "spin_wait": False}
        choice = choose_backend(model, example, num_threads=num_threads, build=lambda name: optimize_for_inference(
            model, name, example_input=example, **fair))
        rebuild = onnx_path is not None or (spin_wait and choice.backend.startswith("onnxruntime"))
        if choice.runner is not None and not rebuild:
            return choice.runner
        return optimize_for_inference(model, choice.backend, example_input=example, onnx_path=onnx_path, **options)
    if backend in INT8_BACKENDS and calibration_images is None:
        raise ValueError(
            f"backend {backend!r} needs calibration_images: a few hundred normalised training images"
        )
    if backend not in INT8_BACKENDS and calibration_images is not None:
        raise ValueError(f"calibration_images is only used by the int8 backends ({', '.join(INT8_BACKENDS)}), "
                         f"not {backend!r}")
    folded = fold_batchnorm(model)
    example_input = default_input(folded) if example_input is None else example_input
    if backend in ON_DEVICE_BACKENDS:
        folder = Path(tempfile.mkdtemp(prefix="lightnets-file-"))
        try:
            runner = _on_device_backend(folded, backend, folder, example_input, calibration_images, num_threads)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        weakref.finalize(runner, shutil.rmtree, folder, ignore_errors=True)
        return runner
    if backend.startswith("onnxruntime") or backend == "openvino":
        if onnx_path is not None:
            return _onnx_backend(
                folded, backend, Path(onnx_path), example_input, calibration_images, opset, num_threads, spin_wait
            )
        folder = Path(tempfile.mkdtemp(prefix="lightnets-onnx-"))
        try:
            runner = _onnx_backend(folded, backend, folder / "model.onnx", example_input, calibration_images, opset,
                                   num_threads, spin_wait)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        # OpenVINO reads the file again for each new batch size: the folder goes when the module does.
        weakref.finalize(runner, shutil.rmtree, folder, ignore_errors=True)
        return runner
    check_example_input(folded, example_input)  # the ONNX backends' export checks its float32 copy
    if channels_last:
        folded = _ChannelsLast(folded)
    if backend == "eager":
        return folded
    if backend == "torchscript":
        with quiet_deprecations(), torch.no_grad():
            traced = torch.jit.trace(folded, example_input, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    # compile: freezing turns the weights into constants, so inductor prepacks them for oneDNN.
    compiled = _NoGrad(torch.compile(folded, options={"freezing": True}))
    compiled(example_input)  # compile now, not inside the first timed call
    return compiled
