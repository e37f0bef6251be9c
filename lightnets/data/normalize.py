"""The one function that turns dataset images into model inputs: channels, size and normalisation."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.arguments import check_positive_int

__all__ = ["normalize_batch"]


def normalize_batch(images: torch.Tensor, in_chans: int, img_size: int, mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
    """Images (N, C, H, W) → float32 model input (N, in_chans, img_size, img_size), normalised.

    uint8 images are 0-255; floating-point ones are taken as already scaled to [0, 1] (torchvision's
    ``ToTensor``). The caller's tensor is never modified.

    Grayscale becomes RGB by repeating the channel; RGB becomes grayscale by its ITU-R 601 luma
    (0.299 R + 0.587 G + 0.114 B, as torchvision's ``rgb_to_grayscale``). Other sizes are resized
    with antialiased bilinear interpolation. A 3-value mean / std given for a 1-channel model is
    averaged; a 1-value one is broadcast.

    >>> x = normalize_batch(torch.full((2, 1, 28, 28), 255, dtype=torch.uint8), 3, 28, (0.5,), (0.5,))
    >>> x.shape, x.max().item()
    (torch.Size([2, 3, 28, 28]), 1.0)
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor batch (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {tuple(images.shape)}")
    check_positive_int("in_chans", in_chans)
    check_positive_int("img_size", img_size)
    mean_t, std_t = _per_channel(mean, in_chans, "mean"), _per_channel(std, in_chans, "std")
    x = images.float() / 255 if not images.is_floating_point() else images.to(torch.float32, copy=True)
    channels = x.shape[1]
    if channels != in_chans:
        if channels == 1:
            x = x.expand(-1, in_chans, -1, -1)
        elif channels == 3 and in_chans == 1:
            x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot feed {channels}-channel images to a model with in_chans={in_chans} "
                             "(only 1 → N and 3 → 1 channels are converted)")
    if x.shape[-2:] != (img_size, img_size):
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=True, align_corners=False)
    return ((x - mean_t.to(x.device)) / std_t.to(x.device)).contiguous()


def _per_channel(values: Sequence[float], channels: int, label: str) -> torch.Tensor:
    try:
        numbers = [float(v) for v in values] if not isinstance(values, (str, bytes)) else []
    except (TypeError, ValueError):
        numbers = []
    if not numbers or not all(map(math.isfinite, numbers)):
        raise ValueError(f"{label} must be finite numbers, one per channel or one for all, got {values!r}")
    if label == "std" and min(numbers) <= 0:
        raise ValueError(f"std must be positive (each channel is divided by it), got {values!r}")
    values = numbers
    if len(values) == channels:
        pass
    elif len(values) == 1:
        values = values * channels
    elif channels == 1:
        values = [sum(values) / len(values)]
    else:
        raise ValueError(f"{label} has {len(values)} values, the model takes {channels} channels")
    return torch.tensor(values).view(1, channels, 1, 1)
