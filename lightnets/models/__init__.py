"""Architecture families; importing this package registers every model."""
from . import mobilenet_v1, separable, shufflenet_v1, vgg  # noqa: F401  (registration side effect)
from .base import ClassifierNet
from .mobilenet_v1 import MobileNetV1
from .separable import SepCNN, SmallCNN
from .shufflenet_v1 import ShuffleNetV1
from .vgg import VGG

__all__ = ["ClassifierNet", "MobileNetV1", "SepCNN", "ShuffleNetV1", "SmallCNN", "VGG"]
