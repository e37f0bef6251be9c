"""Datasets held in memory whole: ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,), so a batch is a slice
and no file is read while a model is timed. Fashion-MNIST and CIFAR-10 load into this form, and so does
``synthetic`` data (seeded random images, for latency-only runs).

>>> dataset = synthetic_dataset("test", img_size=8, in_chans=1, num_classes=3, length=4, seed=0)
>>> dataset
InMemoryDataset(synthetic/test: 4 images (1, 8, 8), 3 classes)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from ..models.arguments import check_positive_int

__all__ = ["InMemoryDataset", "synthetic_dataset"]


class InMemoryDataset(Dataset):
    """Images and labels held as tensors: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``mean`` / ``std`` are the per-channel statistics of the train split (0–1 scale) that models
    trained on this dataset normalise with, or None when unknown.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], name: str, split: str,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
        self.images, self.labels = images, labels.long()
        self.classes, self.name, self.split = list(classes), name, split
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name}/{self.split}: {len(self)} images {tuple(self.images.shape[1:])}, "
                f"{len(self.classes)} classes)")


def synthetic_dataset(
    split: str, img_size: int, in_chans: int, num_classes: int, length: int, seed: int
) -> InMemoryDataset:
    """``length`` seeded random images of side ``img_size`` and labels below ``num_classes`` (another seed per
    split)."""
    for argument, value in (("img_size", img_size), ("in_chans", in_chans), ("num_classes", num_classes),
                            ("length", length)):
        check_positive_int(argument, value)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    generator = torch.Generator().manual_seed(seed + (split == "train"))
    images = torch.randint(0, 256, (length, in_chans, img_size, img_size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (length,), generator=generator)
    return InMemoryDataset(images, labels, [f"class_{i}" for i in range(num_classes)], "synthetic", split)
