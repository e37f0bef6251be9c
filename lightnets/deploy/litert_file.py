"""LiteRT (formerly TensorFlow Lite): a model as a ``.tflite`` flatbuffer, in float32 or full-integer int8, and
the interpreter that runs such a file from Python (``ai_edge_litert``, the runtime an Android app links).

Export: Google's PyTorch converter (``litert_torch.convert``). int8 is ai-edge-quantizer's static recipe
(``static_wi8_ai8``): symmetric int8 weights per output channel (``"int8"``) or per tensor
(``"int8-per-tensor"``), asymmetric per-tensor int8 activations calibrated on images. Such a file's input
and output tensors are int8 too: :class:`LiteRTModule` quantizes the input with the input tensor's
(scale, zero point) and dequantizes the logits, as an app does (docs/mobile.md).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from .native_logs import native_output_silenced
from .runtimes import require_package

__all__ = ["lower_to_litert", "LiteRTModule"]

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The converter and the quantizer print progress bars and absl/TF log lines on every call, from Python and
    # from C++: silencing file descriptors 1 and 2 covers both.
    with warnings.catch_warnings(), native_output_silenced():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _recipe(per_channel: bool) -> list[dict[str, Any]]:
    from ai_edge_quantizer import recipe

    rules = copy.deepcopy(recipe.static_wi8_ai8())
    for rule in rules:
        rule["op_config"]["weight_tensor_config"]["granularity"] = "CHANNELWISE" if per_channel else "TENSORWISE"
    return rules


def lower_to_litert(model: nn.Module, example: torch.Tensor, *, quantize: Optional[str] = None,
                    calibration: Optional[torch.Tensor] = None, pt2e_quantizer: Any = None) -> bytes:
    """``model`` (eval mode, on the CPU, float32) as a ``.tflite`` flatbuffer taking ``example``'s shape and dtype;
    ``quantize`` ``"int8"`` or ``"int8-per-tensor"``, calibrated on ``calibration`` (inputs as the model takes
    them). A model already quantized by PT2E (quantization-aware training, :mod:`lightnets.deploy.qat`) is
    converted with the ``pt2e_quantizer`` that quantized it."""
    require_package("litert_torch", extra="mobile")
    with tempfile.TemporaryDirectory(prefix="lightnets-litert-") as folder, _quiet(), torch.no_grad():
        import litert_torch

        float_path = Path(folder) / "float.tflite"
        if pt2e_quantizer is not None:
            from litert_torch.quantize.quant_config import QuantConfig

            litert_torch.convert(model, (example,), quant_config=QuantConfig(pt2e_quantizer=pt2e_quantizer)
                                 ).export(str(float_path))
            return float_path.read_bytes()
        litert_torch.convert(model, (example,)).export(str(float_path))
        if quantize is None:
            return float_path.read_bytes()
        from ai_edge_quantizer import quantizer

        int8 = quantizer.Quantizer(str(float_path))
        int8.load_quantization_recipe(_recipe(per_channel=quantize == "int8"))
        signature, input_name = _signature(float_path)
        samples = [{input_name: image[None].numpy()} for image in calibration]
        result = int8.quantize(int8.calibrate({signature: samples}))
        int8_path = Path(folder) / "int8.tflite"
        result.export_model(str(int8_path), overwrite=True)
        return int8_path.read_bytes()


def _signature(path: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    name = next(iter(signatures))
    return name, signatures[name]["inputs"][0]


class LiteRTModule(nn.Module):
    """Runs a ``.tflite`` file in LiteRT's interpreter (XNNPACK on the CPU), like the model it was exported from.

    It takes the file's input as the PyTorch model would (float32 NCHW, or uint8 NHWC for an ``app_input``
    export); for a full-integer file it quantizes that input with the file's input (scale, zero point) and
    dequantizes the logits. Returns float32 logits.
    """

    def __init__(self, path: PathLike, num_threads: Optional[int] = None) -> None:
        super().__init__()
        require_package("ai_edge_litert", extra="mobile")
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        with native_output_silenced():
            self._interpreter = Interpreter(model_path=str(self.path),
                                            num_threads=num_threads or torch.get_num_threads())
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().contiguous().numpy()
        scale, zero_point = self._input["quantization"]
        if self.input_dtype != array.dtype and scale:
            info = np.iinfo(self.input_dtype)
            array = np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(self.input_dtype)
        self._interpreter.set_tensor(self._input["index"], array)
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if scale:
            logits = (logits.astype(np.float32) - zero_point) * scale
        return torch.from_numpy(np.array(logits, dtype=np.float32))
