"""The images an int8 export calibrates its activation ranges on: a tensor the caller passes, or ``DATASET[:N]``.

A named dataset is read from its train split (calibrating on the test split would tune the ranges to the
images the accuracy is then measured on) and fed as the model is fed everywhere else
(:func:`lightnets.inputs.resolve_input_config`: side, channels, mean / std, the eval transform of an image
folder).
"""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

from ..data import load_dataset
from ..inputs import InputConfig, read_as_fed, resolve_input_config

__all__ = ["DEFAULT_CALIBRATION_IMAGES", "Calibration", "parse_calibration", "calibration_images", "dataset_pixels",
           "to_pixels"]

DEFAULT_CALIBRATION_IMAGES = 512
Calibration = Union[str, torch.Tensor]


def parse_calibration(spec: str) -> tuple[str, int]:
    """``DATASET[:N]`` as (dataset, N); N defaults to :data:`DEFAULT_CALIBRATION_IMAGES`.

    >>> parse_calibration("fashion_mnist:256"), parse_calibration("imagefolder:/data/photos")
    (('fashion_mnist', 256), ('imagefolder:/data/photos', 512))
    """
    name, sep, count = spec.rpartition(":")
    if sep and count.isdigit() and name:
        if int(count) < 1:
            raise ValueError(f"calibration {spec!r}: the image count must be at least 1")
        return name, int(count)
    return spec, DEFAULT_CALIBRATION_IMAGES


def calibration_images(model: nn.Module, calibration: Calibration, config: InputConfig | None = None) -> torch.Tensor:
    """Float32 (N, C, H, W) images as ``model`` takes them, checked against its input configuration.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> calibration_images(model, torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 1, 28, 28])
    """
    config = config or resolve_input_config(model)
    if isinstance(calibration, str):
        return _from_dataset(calibration, config)
    if not isinstance(calibration, torch.Tensor):
        raise TypeError(f"calibration must be a tensor of images or 'DATASET[:N]', got {type(calibration).__name__}")
    expected = tuple(config.input_size)
    if calibration.dim() != 4 or tuple(calibration.shape[1:]) != expected or len(calibration) == 0:
        raise ValueError(f"calibration images must be a float tensor (N ≥ 1, {', '.join(map(str, expected))}) as "
                         f"the model takes them, got {calibration.dtype} {tuple(calibration.shape)}")
    if not calibration.is_floating_point():
        raise ValueError(
            f"calibration images must be float (normalised as the model takes them), got {calibration.dtype}")
    if not torch.isfinite(calibration).all():
        raise ValueError("calibration images hold NaN or infinite values")
    return calibration.detach().to(device="cpu", dtype=torch.float32)


def _from_dataset(spec: str, config: InputConfig) -> torch.Tensor:
    images, _ = dataset_pixels(spec, config)
    if len(images) == 0:
        raise ValueError(f"calibration {spec!r}: the dataset's train split holds no images")
    return config.normalize(images)


def dataset_pixels(spec: str, config: InputConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The first N train images of ``DATASET[:N]`` as fed to a model of ``config`` (uint8, N × C × H × W),
    and their labels."""
    name, count = parse_calibration(spec)
    dataset = load_dataset(name, "train", limit=count, img_size=config.img_size, crop_pct=config.crop_pct,
                           interpolation=config.interpolation, in_chans=config.in_chans)
    dataset = read_as_fed(dataset, config)
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if images is None or labels is None:
        pairs = [dataset[index] for index in range(len(dataset))]
        images = torch.stack([image for image, _ in pairs]) if pairs else torch.empty(0, *config.input_size,
                                                                                       dtype=torch.uint8)
        labels = torch.tensor([label for _, label in pairs], dtype=torch.long)
    return images[:count], torch.as_tensor(labels)[:count]


def to_pixels(images: torch.Tensor, config: InputConfig) -> torch.Tensor:
    """Normalised NCHW images back as the uint8 NHWC pixels an app would pass (the inverse of its normalisation).

    >>> config = InputConfig((1, 2, 2), (0.5,), (0.25,), 1.0, "bilinear")
    >>> to_pixels(torch.zeros(1, 1, 2, 2), config).flatten().tolist()
    [128, 128, 128, 128]
    """
    mean = torch.tensor(config.mean).view(1, -1, 1, 1)
    std = torch.tensor(config.std).view(1, -1, 1, 1)
    pixels = ((images * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous()
