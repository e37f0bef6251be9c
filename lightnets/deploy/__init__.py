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

``"auto"`` takes the first available of :data:`AUTO_ORDER`, the order measured in results/speed.md.
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

import contextlib
import copy
import importlib.util
import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .. import _io
from ..models.base import UncheckedLogits
from .runtimes import (
    INPUT_NAME,
    OUTPUT_NAME,
    BackendUnavailableError,
    OnnxRuntimeModule,
    OpenVinoModule,
    ort_session_options,
    quantize_onnx,
    require_package,
)

__all__ = [
    "AUTO_ORDER", "BACKENDS", "DEFAULT_OPSET", "BackendUnavailableError", "OnnxRuntimeModule", "OpenVinoModule",
    "available_backends", "conv_bn_pairs", "cpp_compiler", "default_input", "export_onnx", "fold_batchnorm",
    "optimize_for_inference", "ort_session_options", "pools_globally", "quantize_onnx",
]

PathLike = Union[str, os.PathLike]

BACKENDS = ("auto", "eager", "torchscript", "compile", "onnxruntime", "openvino", "onnxruntime-int8")
# Fastest first, as measured by benchmarks/speed.py on a 2-core AVX2 CPU (results/speed.md). OpenVINO,
# faster at batch 1 there, is opt-in: it compiles once per batch size, on that size's first call.
AUTO_ORDER = ("onnxruntime", "torchscript", "eager")
DEFAULT_OPSET = 17  # run by onnxruntime >= 1.11 and most other runtimes
# The TorchScript-based exporter's range with constant folding (torch.onnx._constants).
MIN_OPSET, MAX_OPSET = 9, 20


# --------------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------------



def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Names of ``(Conv2d, BatchNorm2d)`` pairs where the BatchNorm reads only that conv's output.

    The data flow comes from tracing the forward with torch.fx, so a pair is found by what the
    forward computes, not by the order the modules were registered in.

    >>> from lightnets.layers import ConvBNAct
    >>> conv_bn_pairs(nn.Sequential(ConvBNAct(3, 8), ConvBNAct(8, 8)))
    [('0.conv', '0.bn'), ('1.conv', '1.bn')]
    """
    traced_root = UncheckedLogits(model) if hasattr(model, "forward_features") and hasattr(model, "forward_head") else model
    prefix = "model." if traced_root is not model else ""
    try:
        graph = torch.fx.symbolic_trace(traced_root).graph
    except Exception as error:  # fx raises several types; all mean the same thing to the caller
        raise ValueError(
            f"cannot fold BatchNorm in {type(model).__name__}: its forward is not traceable by torch.fx ({error})"
        ) from error
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(traced_root.get_submodule(node.target), nn.BatchNorm2d):
            continue
        producer = node.args[0]
        if (
            isinstance(producer, torch.fx.Node)
            and producer.op == "call_module"
            and isinstance(traced_root.get_submodule(producer.target), nn.Conv2d)
            and len(producer.users) == 1
            and calls[producer.target] == calls[node.target] == 1  # a module called twice cannot be folded once
        ):
            pairs.append((producer.target.removeprefix(prefix), node.target.removeprefix(prefix)))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm2d that follows a Conv2d folded into that conv.

    The conv gets ``W·γ/σ`` and ``(b − μ)·γ/σ + β`` (σ = sqrt(var + eps)); the BatchNorm becomes
    ``nn.Identity``. The model keeps its class and API; ``model`` itself is left untouched.

    >>> import lightnets
    >>> model = lightnets.create_model("mobilenet_v1_025", small_input=True).eval()
    >>> folded = fold_batchnorm(model)
    >>> sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    0
    """
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(folded):
        folded.set_submodule(conv_name, fuse_conv_bn_eval(folded.get_submodule(conv_name), folded.get_submodule(bn_name)))
        folded.set_submodule(bn_name, nn.Identity())
    return folded


# --------------------------------------------------------------------------------------------------
# ONNX export and ONNX Runtime
# --------------------------------------------------------------------------------------------------


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


def pools_globally(model: nn.Module) -> bool:
    """Whether ``model`` pools its feature map to 1×1 before the classifier, so it takes any image size.

    Judged from its modules: an adaptive pool to 1×1 and none to a larger grid (VGG's 7×7 head needs the
    traced size), and no ``fixed_input_size`` (smallcnn flattens its map into an FC layer).

    >>> import lightnets
    >>> pools_globally(lightnets.create_model("mobilenet_v1_025")), pools_globally(lightnets.create_model("smallcnn_3x2"))
    (True, False)
    """
    if getattr(model, "fixed_input_size", False):
        return False
    grids = {tuple(m.output_size) if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
             for m in model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))}
    return grids == {(1, 1)}


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
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
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (the exporter's range), got {opset!r}")
    model = (fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()).to(device="cpu", dtype=torch.float32)
    example_input = default_input(model) if example_input is None else example_input.to(device="cpu", dtype=torch.float32)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else {}
    if pools_globally(model) if dynamic_size is None else dynamic_size:
        dynamic_axes.setdefault(INPUT_NAME, {}).update({2: "height", 3: "width"})
    # Exported whole into a temporary sibling, then named (lightnets._io): a failed or killed export never
    # leaves a half-written file under the name, and a FIFO or symlink target is written as a plain write would.
    with _io.atomic_path(path, parents=True) as temporary, _quiet_deprecations(), torch.no_grad():
        torch.onnx.export(
            model, (example_input.contiguous(),), str(temporary), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes or None,
        )
    return Path(path)



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
    return backends


class _ChannelsLast(nn.Module):
    """Converts the input to channels_last before a model whose weights are channels_last."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


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
        return next(name for name in AUTO_ORDER if name in available)
    if backend not in available:
        need = {"compile": "a C++ compiler (g++ or clang++, or set CXX)", "openvino": "pip install onnx openvino"}.get(
            backend, "pip install onnx onnxruntime")
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
        backend: one of :data:`BACKENDS` (see the module docstring); ``"auto"`` picks the first
            available of :data:`AUTO_ORDER`.
        example_input: a batch used to trace / export / compile (default: the model's input size,
            batch 1, on the model's device and in its dtype). Any batch size works afterwards, and any
            image size the model takes, except with the ONNX-based backends when the model does not
            :func:`pools_globally`: those take only the height and width of ``example_input``.
        channels_last: run the eager, torchscript and compile backends in channels_last memory format.
        num_threads: onnxruntime / openvino threads (default: ``torch.get_num_threads()``).
        calibration_images: normalised images to calibrate int8 ranges on (``"onnxruntime-int8"`` only).
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
    if backend == "onnxruntime-int8" and calibration_images is None:
        raise ValueError("backend 'onnxruntime-int8' needs calibration_images: a few hundred normalised training images")
    if backend != "onnxruntime-int8" and calibration_images is not None:
        raise ValueError(f"calibration_images is only used by backend 'onnxruntime-int8', not {backend!r}")
    folded = fold_batchnorm(model)
    example_input = default_input(folded) if example_input is None else example_input
    if backend.startswith("onnxruntime") or backend == "openvino":
        if onnx_path is not None:
            return _onnx_backend(folded, backend, Path(onnx_path), example_input, calibration_images, opset, num_threads, spin_wait)
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
    if channels_last:
        folded = _ChannelsLast(folded)
    if backend == "eager":
        return folded
    if backend == "torchscript":
        with _quiet_deprecations(), torch.no_grad():
            traced = torch.jit.trace(folded, example_input, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    # compile: freezing turns the weights into constants, so inductor prepacks them for oneDNN.
    compiled = _NoGrad(torch.compile(folded, options={"freezing": True}))
    compiled(example_input)  # compile now, not inside the first timed call
    return compiled
