"""What an exported file says about itself: the model's name and tag, its input (size, layout, dtype,
mean / std, int8 scale), its label names. Stored as one JSON string under :data:`METADATA_KEY`:

* ExecuTorch: a constant method of that name (``program.load_method("lightnets_metadata").execute([])``);
* LiteRT: a model metadata entry of that name (the flatbuffer's ``metadata`` table, as the TFLite Support
  library stores its own);
* ONNX: a ``metadata_props`` entry of that name.

:func:`read_metadata` reads it back from any of the three.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from ..inputs import InputConfig

__all__ = ["METADATA_KEY", "describe_file", "with_tflite_metadata", "read_metadata"]

METADATA_KEY = "lightnets_metadata"
PathLike = Union[str, os.PathLike]


def describe_file(model: nn.Module, config: InputConfig, *, file_format: str, quantize: Optional[str],
                  app_input: bool) -> dict[str, Any]:
    """The metadata of an export of ``model`` fed by ``config``.

    >>> import lightnets
    >>> from lightnets.inputs import resolve_input_config
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> meta = describe_file(model, resolve_input_config(model), file_format="executorch", quantize=None,
    ...                      app_input=False)
    >>> meta["model"], meta["input"]["shape"], meta["input"]["layout"]
    ('smallcnn_3x2', [1, 1, 28, 28], 'NCHW')
    """
    from .. import __version__

    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = config.input_size
    shape = [1, height, width, channels] if app_input else [1, channels, height, width]
    return {
        "model": cfg.get("architecture") or type(model).__name__,
        "tag": cfg.get("tag") or None,
        "format": file_format,
        "quantize": quantize,
        "input": {
            "shape": shape,
            "layout": "NHWC" if app_input else "NCHW",
            "dtype": "uint8" if app_input else "float32",
            "normalised_inside": app_input,
            "mean": list(config.mean),
            "std": list(config.std),
        },
        "output": {"name": "logits", "shape": [1, getattr(model, "num_classes", None)]},
        "label_names": list(cfg.get("label_names") or []) or None,
        "lightnets_version": __version__,
    }


def with_tflite_metadata(flatbuffer: bytes, metadata: dict[str, Any]) -> bytes:
    """``flatbuffer`` (a .tflite model) with ``metadata`` added as the JSON entry :data:`METADATA_KEY`.

    A converter may store large constants after the flatbuffer itself, each buffer naming its (offset, size)
    from the start of the file. That tail is kept byte for byte, after the rewritten flatbuffer, at the same
    alignment, and every offset is moved by how much the flatbuffer grew.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    buffers = list(model.buffers or [])
    external = [buffer for buffer in buffers if (buffer.offset or 0) > 1]
    tail_start = min((buffer.offset for buffer in external), default=len(flatbuffer))
    tail = flatbuffer[tail_start:] if external else b""
    entry_data = schema.BufferT()
    entry_data.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers = [*buffers, entry_data]
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    # The offsets' values do not change the packed size (each is a fixed-width field already present): pack
    # once to learn where the tail now starts, then again with the offsets moved there.
    start = _aligned(len(_packed(model)), like=tail_start)
    for buffer in external:
        buffer.offset += start - tail_start
    packed = _packed(model)
    if external and len(packed) > start:
        raise RuntimeError("the rewritten flatbuffer outgrew the room left for its constants")
    return packed + b"\0" * (start - len(packed)) + tail if external else packed


def _aligned(size: int, like: int, alignment: int = 64) -> int:
    """The first position ≥ ``size`` with the alignment ``like`` had, modulo ``alignment``."""
    return size + (like - size) % alignment


def _packed(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The metadata an exported ``.pte``, ``.tflite`` or ``.onnx`` file carries (see the module docstring).

    Raises ValueError when the file has none (it was not written by lightnets).
    """
    path = Path(path)
    if path.suffix == ".tflite":
        from ai_edge_litert import schema_py_generated as schema

        data = path.read_bytes()
        model = schema.Model.GetRootAs(data, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == METADATA_KEY.encode():
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    elif path.suffix == ".onnx":
        import onnx

        for entry in onnx.load(str(path), load_external_data=False).metadata_props:
            if entry.key == METADATA_KEY:
                return json.loads(entry.value)
    elif path.suffix == ".pte":
        from .executorch_file import load_program

        program = load_program(path)
        if METADATA_KEY in program.method_names:
            return json.loads(program.load_method(METADATA_KEY).execute([])[0])
    else:
        raise ValueError(f"{path}: not a .pte, .tflite or .onnx file")
    raise ValueError(f"{path} carries no {METADATA_KEY}: it was not exported by lightnets")
