"""Architecture families; importing this package registers every model."""
from . import mobilenet_v1, separable, shufflenet_v1, vgg  # noqa: F401  (registration side effect)
from .base import ClassifierNet
from .mobilenet_v1 import MobileNetV1

__all__ = ["ClassifierNet", "MobileNetV1"]
