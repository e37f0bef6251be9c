"""The inference runtimes behind :func:`lightnets.deploy.optimize_for_inference`'s ONNX backends:
ONNX Runtime and OpenVINO modules that take and return tensors, and int8 quantisation of an ONNX file.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import _io

PathLike = Union[str, os.PathLike]
INPUT_NAME, OUTPUT_NAME = "input", "logits"  # the ONNX graph's input and output


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (missing package or compiler); the message says what to install."""


def require_package(package: str, extra: str = "onnx") -> None:
    if importlib.util.find_spec(package) is None:
        raise BackendUnavailableError(
            f"{package} is not installed: pip install 'lightnets[{extra}]' (or pip install {package})"
        )


def ort_session_options(num_threads: Optional[int] = None, spin_wait: bool = True) -> Any:
    """ONNX Runtime options for single-stream inference: all graph optimisations, ``num_threads``
    intra-op threads (default: torch's), sequential execution.

    ``spin_wait=False`` puts idle intra-op threads to sleep instead of busy-waiting for the next
    run: a little slower back to back, but they stop taking the cores from other work (on 2 cores,
    spinning ONNX Runtime threads made the torch model timed next up to 2.6× slower).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


Dims = tuple[Union[int, str], ...]  # an ONNX graph's input shape: a size, or the name of a symbolic one


def onnx_input_shape(path: PathLike) -> Dims:
    """The shape the ONNX file's first input takes, e.g. ``('batch', 1, 28, 28)``."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return tuple(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in dims)


def check_graph_input(x: torch.Tensor, takes: Dims, argument: str, graph: PathLike) -> None:
    """Refuse a batch whose shape the ONNX graph cannot take (rank, channels, a static height and width),
    naming ``argument`` and the shape the graph takes, before ONNX Runtime fails on it."""
    given = tuple(x.shape)
    if len(given) == len(takes) and all(
        not isinstance(want, int) or want == got for want, got in zip(takes[1:], given[1:])
    ):
        return
    hint = ""
    if len(given) == len(takes) == 4 and isinstance(takes[1], int) and given[1] != takes[1]:
        hint = f": the model takes {takes[1]}-channel images, these have {given[1]} channels"
    elif len(given) == len(takes) == 4:
        hint = f": the graph was exported at a fixed {takes[2]}x{takes[3]} size"
    raise ValueError(f"{argument} has shape {given}, but {Path(graph).name} takes ({', '.join(map(str, takes))}){hint}")


class OnnxRuntimeModule(nn.Module):
    """An ONNX file run by ONNX Runtime's CPU provider, behind an ``nn.Module`` that takes and returns tensors.

    The batch is run on the CPU in float32; the logits come back (float32) on the batch's device.

    >>> import tempfile, lightnets
    >>> from lightnets.deploy import export_onnx
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> runner = OnnxRuntimeModule(export_onnx(model, tempfile.mkdtemp() + "/m.onnx"))
    >>> runner(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 10])
    """

    def __init__(self, path: PathLike, num_threads: Optional[int] = None, spin_wait: bool = True) -> None:
        super().__init__()
        require_package("onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), ort_session_options(num_threads, spin_wait), providers=["CPUExecutionProvider"]
        )
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_shape: Dims = tuple("?" if dim is None else dim for dim in graph_input.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_graph_input(x, self.input_shape, "the input", self.path)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0]).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}"


class OpenVinoModule(nn.Module):
    """An ONNX file compiled by OpenVINO for this CPU, behind an ``nn.Module`` that takes and returns tensors.

    Static shapes let OpenVINO pick its fastest kernels, so each batch size gets its own compiled
    model, made the first time that batch size is seen. Inference precision is pinned to fp32:
    on CPUs with bf16 units OpenVINO would otherwise round activations to bf16. The batch is run on
    the CPU in float32; the logits come back (float32) on the batch's device.

    >>> import tempfile, lightnets
    >>> from lightnets.deploy import export_onnx
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> runner = OpenVinoModule(export_onnx(model, tempfile.mkdtemp() + "/m.onnx"))
    >>> runner(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 10])
    """

    def __init__(self, path: PathLike, num_threads: Optional[int] = None) -> None:
        super().__init__()
        require_package("openvino", extra="openvino")
        import openvino

        self.path = Path(path)
        self.core = openvino.Core()
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                       "INFERENCE_NUM_THREADS": num_threads or torch.get_num_threads()}
        self.requests: dict[tuple[int, ...], Any] = {}

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape not in self.requests:
            graph = self.core.read_model(str(self.path))
            graph.reshape({graph.inputs[0]: list(shape)})
            self.requests[shape] = self.core.compile_model(graph, "CPU", self.config).create_infer_request()
        return self.requests[shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        request = self._request(tuple(array.shape))
        request.infer({0: array})
        return torch.from_numpy(request.get_output_tensor(0).data.copy()).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, compiled shapes={sorted(self.requests)}"


class _CalibrationReader:
    """Feeds calibration images to onnxruntime's quantiser in batches (its CalibrationDataReader protocol)."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        self.batches = iter(images.split(batch_size))

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch.to("cpu", torch.float32).contiguous().numpy()}


def quantize_onnx(
    onnx_path: PathLike,
    output_path: PathLike,
    calibration_images: torch.Tensor,
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
    batch_size: int = 32,
) -> Path:
    """Statically quantise an exported fp32 ONNX file to int8 (QDQ), calibrating on ``calibration_images``.

    Weights are signed int8 per output channel, activations unsigned int8 per tensor (MinMax ranges
    over the calibration set): onnxruntime's u8s8 kernels, the fast pair on x86.
    ``reduce_range`` keeps weights to 7 bits: without AVX-512 VNNI, u8s8 runs on ``vpmaddubsw``,
    whose int16 sums saturate (onnxruntime's quantization docs). Measured on smallcnn_3x2.fmnist
    (AVX2 CPU): 8-bit weights lost 1.1 points top-1, 7-bit ones 0.05.
    ``calibration_images`` must be normalised exactly as the model's inputs will be.
    """
    require_package("onnxruntime")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if (
        not isinstance(calibration_images, torch.Tensor)
        or calibration_images.dim() != 4
        or len(calibration_images) == 0
    ):
        shape = (
            tuple(calibration_images.shape)
            if isinstance(calibration_images, torch.Tensor)
            else type(calibration_images).__name__
        )
        raise ValueError(f"calibration_images must be a non-empty (N, C, H, W) tensor, got {shape}")
    check_graph_input(calibration_images, onnx_input_shape(onnx_path), "calibration_images", onnx_path)
    output_path = Path(output_path)
    with tempfile.TemporaryDirectory() as workdir, _io.atomic_path(output_path, parents=True) as quantized:
        prepared = Path(workdir) / "prepared.onnx"
        # Recommended before static quantisation: shape inference and fp32 graph fusions (conv + ReLU, ...).
        # auto_merge: with a symbolic height and width, ShuffleNet's channel-shuffle reshapes give symbolic
        # dims that onnxruntime's shape inference cannot prove equal and it stops ("Incomplete symbolic
        # shape inference"); merging them is its documented remedy and leaves other graphs as they were.
        quant_pre_process(str(onnx_path), str(prepared), auto_merge=True)
        quantize_static(
            str(prepared), str(quantized), _CalibrationReader(calibration_images, batch_size),
            quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    return output_path


# --------------------------------------------------------------------------------------------------
# optimize_for_inference
# --------------------------------------------------------------------------------------------------
