"""What the accuracy pass runs on: the eager model, or its BatchNorm-folded float32 export on a faster runtime —
``"auto"``: for each model, the path measured fastest at the accuracy batch size on this machine, as
``lightnets.optimize_for_inference(backend="auto")`` picks it (:mod:`lightnets.deploy.auto`).

Kept free of torch at import, so the command line lists the choices in ``--help`` before torch loads.

>>> ACCURACY_BACKENDS
('openvino', 'onnxruntime', 'eager')
>>> accuracy_backend("eager")
'eager'
"""
from __future__ import annotations

__all__ = ["ACCURACY_BACKENDS", "accuracy_backend"]

# Backends the accuracy pass may be given by name; "auto" measures the installed float paths per model.
ACCURACY_BACKENDS = ("openvino", "onnxruntime", "eager")


def accuracy_backend(backend: str = "auto") -> str:
    """The backend the accuracy pass runs on: ``backend`` itself once it is known to be installed; ``"auto"`` stays
    ``"auto"`` (chosen per model when it is measured)."""
    from ..deploy import available_backends

    if backend not in ("auto", *ACCURACY_BACKENDS):
        raise ValueError(f"accuracy backend must be one of auto, {', '.join(ACCURACY_BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return backend
    available = available_backends()
    if backend not in available:
        raise ValueError(
            f"accuracy backend {backend!r} is not installed here "
            f"(pip install 'lightnets[{backend.replace('onnxruntime', 'onnx')}]'); "
            f"installed: {', '.join(b for b in ACCURACY_BACKENDS if b in available)}"
        )
    return backend
