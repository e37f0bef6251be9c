"""The one function that turns dataset images into model inputs: channels, size and normalisation."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

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
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {tuple(images.shape)}")
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
    mean_t, std_t = (_per_channel(values, in_chans, label).to(x.device) for values, label in ((mean, "mean"), (std, "std")))
    return ((x - mean_t) / std_t).contiguous()


def _per_channel(values: Sequence[float], channels: int, label: str) -> torch.Tensor:
    values = [float(v) for v in values]
    if len(values) == channels:
        pass
    elif len(values) == 1:
        values = values * channels
    elif channels == 1:
        values = [sum(values) / len(values)]
    else:
        raise ValueError(f"{label} has {len(values)} values, the model takes {channels} channels")
    return torch.tensor(values).view(1, channels, 1, 1)
