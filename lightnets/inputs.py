"""A model's input configuration, resolved in one place: what evaluation, training and the sensitivity
analysis feed a model (its channels and side, the mean / std it normalises with, its weights' eval
transform: ``crop_pct`` and ``interpolation``).

The rules, in order of precedence:

* channels: the model's ``in_chans``, else its ``pretrained_cfg["input_size"][0]``, else 3;
* side: the ``img_size`` asked for, else ``pretrained_cfg["input_size"][-1]``, else the model's
  ``img_size``, else 224;
* mean / std: those of the dataset the model was (or will be) trained on, when given and known (``trained_on``);
  else its ``pretrained_cfg``'s; else ImageNet's (timm's ``IMAGENET_DEFAULT_MEAN`` / ``STD``);
* ``crop_pct`` and ``interpolation``: its ``pretrained_cfg``'s, else timm's defaults (0.875, bilinear);
  they apply where images are decoded from files (an image folder: :func:`read_as_fed`), while in-memory
  images are resized to the side by :func:`lightnets.data.normalize_batch`.

>>> import lightnets
>>> config = resolve_input_config(lightnets.create_model("smallcnn_3x2.fmnist"))
>>> config.input_size, config.mean, config.crop_pct
((1, 28, 28), (0.286,), 1.0)
>>> config.normalize(torch.zeros(2, 1, 32, 32, dtype=torch.uint8)).shape
torch.Size([2, 1, 28, 28])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .data import ImageFolderDataset, normalize_batch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_CROP_PCT", "DEFAULT_INTERPOLATION", "InputConfig",
           "resolve_input_config", "read_as_fed"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION = 0.875, "bilinear"  # timm's create_transform defaults
DEFAULT_SIDE = 224


@dataclass(frozen=True)
class InputConfig:
    """What a model is fed: (C, H, W), the mean / std it normalises with and its weights' eval transform."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float  # the eval transform (timm's): resize to side / crop_pct, center-crop the side
    interpolation: str

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    @property
    def img_size(self) -> int:
        return self.input_size[-1]

    @property
    def transform(self) -> tuple[int, float, str]:
        """(side, crop_pct, interpolation): how an image file is decoded for this model."""
        return self.img_size, self.crop_pct, self.interpolation

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) as this model's float32 input (:func:`lightnets.data.normalize_batch`)."""
        return normalize_batch(images, self.in_chans, self.img_size, self.mean, self.std)


def resolve_input_config(model: nn.Module, *, img_size: Optional[int] = None,
                         trained_on: Optional[Any] = None) -> InputConfig:
    """The :class:`InputConfig` of ``model`` by the rules of the module docstring.

    ``img_size``: the side to evaluate at instead of the model's own. ``trained_on``: the dataset the model
    was, or will be, trained on (random init, a checkpoint without its own statistics): its ``mean`` /
    ``std``, when it has them, win over the model's cfg.

    >>> import lightnets
    >>> from lightnets.data import load_dataset
    >>> model = lightnets.create_model("smallcnn_3x2")  # random init: no statistics of its own
    >>> resolve_input_config(model, img_size=32, trained_on=load_dataset("fashion_mnist", limit=1)).mean
    (0.286,)
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("input_size")
    in_chans = getattr(model, "in_chans", None) or (declared or (3,))[0]
    side = img_size or (declared or (None, getattr(model, "img_size", DEFAULT_SIDE)))[-1]
    if trained_on is not None and getattr(trained_on, "mean", None) is not None:
        mean, std = trained_on.mean, trained_on.std
    else:
        mean, std = cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD
    return InputConfig((in_chans, side, side), tuple(mean), tuple(std), cfg.get("crop_pct") or DEFAULT_CROP_PCT,
                       cfg.get("interpolation") or DEFAULT_INTERPOLATION)


def read_as_fed(dataset: Any, config: InputConfig) -> Any:
    """``dataset`` as a model fed by ``config`` reads it: an image folder decoded with the model's eval
    transform (side, ``crop_pct``, ``interpolation``) where the folder's own differs, the same images in
    the same order; any other dataset as it is.

    >>> from lightnets.data import load_dataset
    >>> data = load_dataset("fashion_mnist", limit=1)
    >>> read_as_fed(data, InputConfig((1, 32, 32), (0.5,), (0.5,), 0.9, "bicubic")) is data
    True
    """
    if (
        not isinstance(dataset, ImageFolderDataset)
        or (dataset.img_size, dataset.crop_pct, dataset.interpolation) == config.transform
    ):
        return dataset
    return ImageFolderDataset(dataset.root, config.img_size, config.crop_pct, config.interpolation, limit=len(dataset),
                              split=dataset.split)
