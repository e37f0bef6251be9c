"""ExecuTorch: a model as a ``.pte`` program lowered to the XNNPACK delegate, in float32 or int8, and the
runtime that runs such a file from Python (``executorch.runtime``, the same C++ runtime an app links).

Export: ``torch.export`` → ``to_edge_transform_and_lower`` with XNNPACK's partitioner → ``to_executorch``.
int8 is PyTorch 2 export quantization (PT2E) with XNNPACK's quantizer: symmetric int8 weights, per output
channel (``"int8"``) or per tensor (``"int8-per-tensor"``, the layout under which MobileNets' depthwise layers
are known to lose accuracy), and per-tensor int8 activations whose ranges are observed on calibration images.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from .native_logs import native_output_silenced
from .runtimes import require_package

__all__ = ["QUANTIZE_MODES", "LoweredProgram", "lower_to_executorch", "load_program", "ExecuTorchModule"]

QUANTIZE_MODES = ("int8", "int8-per-tensor")
PathLike = Union[str, os.PathLike]
CALIBRATION_BATCH = 32
# Nodes of a lowered graph that are bookkeeping, not computation: never "left out of the delegate".
_BOOKKEEPING = {"getitem", "executorch_call_delegate", "output", "placeholder"}


class LoweredProgram:
    """An ExecuTorch program in memory: its bytes and what the XNNPACK delegate did not take."""

    def __init__(self, buffer: bytes, undelegated: dict[str, int]) -> None:
        self.buffer = buffer
        self.undelegated = undelegated  # operator -> how many of its nodes run on portable kernels


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch.export and ExecuTorch warn about their own internals (deprecated pytree registrations, ...).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _import_executorch() -> Any:
    require_package("executorch", extra="mobile")
    with _quiet():
        from executorch import exir
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    return exir, XnnpackPartitioner


def _quantized(model: nn.Module, example: torch.Tensor, images: torch.Tensor, per_channel: bool) -> nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Exported with a symbolic batch (an example of 2: torch.export specialises sizes 0 and 1), so the
    # calibration runs in batches; the converted module is exported again at the file's batch of 1.
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    graph = torch.export.export(model, (example.repeat(2, *[1] * (example.dim() - 1)),),
                                dynamic_shapes=({0: batch},)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH):
            prepared(images[start:start + CALIBRATION_BATCH])
    return convert_pt2e(prepared)


def lower_to_executorch(model: nn.Module, example: torch.Tensor, *, quantize: Optional[str] = None,
                        calibration: Optional[torch.Tensor] = None,
                        metadata: Optional[dict[str, Any]] = None) -> LoweredProgram:
    """``model`` (eval mode, on the CPU, in float32) as an XNNPACK-lowered ExecuTorch program taking ``example``'s
    shape; ``quantize`` one of :data:`QUANTIZE_MODES`, calibrated on ``calibration`` (inputs as the model takes
    them); ``metadata`` stored as the JSON constant method ``lightnets_metadata``."""
    from .file_metadata import METADATA_KEY

    exir, partitioner = _import_executorch()
    with _quiet(), torch.no_grad():
        if quantize is not None:
            model = _quantized(model, example, calibration, per_channel=quantize == "int8")
        program = torch.export.export(model, (example,))
        constants = {METADATA_KEY: json.dumps(metadata, sort_keys=True)} if metadata is not None else None
        edge = exir.to_edge_transform_and_lower(program, partitioner=[partitioner()], constant_methods=constants)
        undelegated = _undelegated_ops(edge.exported_program().graph_module)
        return LoweredProgram(edge.to_executorch().buffer, undelegated)


def _undelegated_ops(graph_module: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name.split(".")[0] not in _BOOKKEEPING and "call_delegate" not in name:
            counts[name] += 1
    return dict(counts)


def load_program(path: PathLike) -> Any:
    """The ``.pte`` at ``path`` loaded by ExecuTorch's runtime (``executorch.runtime.Program``)."""
    require_package("executorch", extra="mobile")
    with _quiet():
        from executorch.runtime import Runtime

    with native_output_silenced():
        return Runtime.get().load_program(Path(path))


class ExecuTorchModule(nn.Module):
    """Runs a ``.pte`` file's ``forward`` in ExecuTorch's runtime, like the model it was exported from.

    It takes the file's own input (its static shape; float32 NCHW, or uint8 NHWC for an ``app_input`` export)
    and returns its logits as a float32 tensor. ``num_threads`` sets XNNPACK's thread pool (process-wide).
    """

    def __init__(self, path: PathLike, num_threads: Optional[int] = None) -> None:
        super().__init__()
        self.path = Path(path)
        if num_threads is not None:
            from executorch.extension.pybindings import portable_lib

            with native_output_silenced():
                portable_lib._unsafe_reset_threadpool(num_threads)
        self._program = load_program(self.path)
        self._method = self._program.load_method("forward")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self._method.execute([x.detach().cpu().contiguous()])
        return outputs[0].float()
