"""What the accuracy pass runs on: the eager model, or its BatchNorm-folded float32 export on a faster runtime.

Kept free of torch at import, so the command line lists the choices in ``--help`` before torch loads.

>>> ACCURACY_BACKENDS
('openvino', 'onnxruntime', 'eager')
>>> accuracy_backend("eager")
'eager'
"""
from __future__ import annotations

__all__ = ["ACCURACY_BACKENDS", "accuracy_backend"]

# Backends the accuracy pass may use, fastest first on this zoo's CPU runs (results/speed.md: OpenVINO,
# then ONNX Runtime, 3-8x faster than eager for ShuffleNet and MobileNet); "auto" takes the first one installed.
ACCURACY_BACKENDS = ("openvino", "onnxruntime", "eager")


def accuracy_backend(backend: str = "auto") -> str:
    """The backend the accuracy pass runs on: ``backend`` itself, or for ``"auto"`` the fastest one installed."""
    from ..deploy import available_backends

    if backend not in ("auto", *ACCURACY_BACKENDS):
        raise ValueError(f"accuracy backend must be one of auto, {', '.join(ACCURACY_BACKENDS)}; got {backend!r}")
    available = available_backends()
    if backend == "auto":
        return next(name for name in ACCURACY_BACKENDS if name in available)
    if backend not in available:
        raise ValueError(
            f"accuracy backend {backend!r} is not installed here "
            f"(pip install 'lightnets[{backend.replace('onnxruntime', 'onnx')}]'); "
            f"installed: {', '.join(b for b in ACCURACY_BACKENDS if b in available)}"
        )
    return backend
