"""The input an app has: camera frames as uint8 RGB (or grey) pixels in NHWC order, normalised inside the file.

A file exported with ``app_input=True`` takes what Android's ``Bitmap`` / iOS's ``CVPixelBuffer`` give after a
resize to the model's side: ``(1, H, W, C)`` uint8, 0–255. The division by 255, the mean and the std and the
transpose to NCHW run in the file, so the app never repeats the model's preprocessing (and cannot get it wrong).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["UInt8NHWCInput"]


class UInt8NHWCInput(nn.Module):
    """``model`` fed uint8 NHWC pixels: ``model(((x / 255) - mean) / std)`` with ``x`` transposed to NCHW.

    >>> model = nn.Conv2d(3, 2, 1)
    >>> wrapped = UInt8NHWCInput(model, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    >>> pixels = torch.randint(0, 256, (1, 8, 8, 3), dtype=torch.uint8)
    >>> expected = model((pixels.permute(0, 3, 1, 2) / 255 - 0.5) / 0.25)
    >>> bool((wrapped(pixels) - expected).abs().max() < 1e-5)
    True
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel, got {len(mean)} and {len(std)}")
        self.model = model
        # x / 255 then (x - mean) / std, as one multiply-add per pixel: x × scale + shift.
        std_t = torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).view(1, -1, 1, 1))
        self.register_buffer("shift", (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Converted before the transpose: XNNPACK transposes float tensors, not uint8 ones (ExecuTorch).
        x = pixels.to(torch.float32).permute(0, 3, 1, 2)
        return self.model(x * self.scale + self.shift)
