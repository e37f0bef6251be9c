"""``load_dataset``: a dataset by name, in the form every loader of :mod:`lightnets.data` gives.

>>> load_dataset("synthetic", limit=2, img_size=8).images.shape
torch.Size([2, 3, 8, 8])
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional, Union

from torch.utils.data import Dataset

from ..models.arguments import check_positive_int
from .cifar10 import load_cifar10
from .fashion_mnist import load_fashion_mnist
from .image_folder import SPLIT_FOLDERS, load_image_folder
from .in_memory import synthetic_dataset

__all__ = ["DATASET_NAMES", "load_dataset"]

DATASET_NAMES = ("fashion_mnist", "cifar10", "imagefolder:PATH", "synthetic")
PathLike = Union[str, Path]


def load_dataset(
    name: str,
    split: str = "test",
    data_dir: Optional[PathLike] = None,
    download: bool = False,
    limit: Optional[int] = None,
    *,
    img_size: int = 224,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
    in_chans: int = 3,
    num_classes: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name: ``fashion_mnist``, ``cifar10``, ``imagefolder:PATH`` or ``synthetic``.

    Args:
        name: the dataset (see :data:`DATASET_NAMES`).
        split: ``"train"`` or ``"test"`` (imagefolder: ``"train"``, ``"val"`` or ``"test"``, the subfolder
            of that name when the folder has split subfolders).
        data_dir: folder holding the dataset's files (default: the embedded / system / cache copies).
        download: fetch missing files from the official source, verifying their checksum.
        limit: keep only the first ``limit`` images (of an imagefolder, with its classes interleaved: a balanced
            subset).
        img_size, crop_pct, interpolation: output side, crop fraction and resize filter (``bilinear``,
            ``bicubic``, ``nearest``) of ``imagefolder`` images (``img_size``: ``synthetic``'s side too).
        in_chans, num_classes, seed: shape, label range and seed of ``synthetic`` data
            (``limit`` images, 256 by default).

    >>> load_dataset("synthetic", limit=4, img_size=32).images.shape
    torch.Size([4, 3, 32, 32])
    """
    kind, _, path = name.partition(":")
    if limit is not None:
        check_positive_int("limit", limit)
    if kind == "imagefolder":
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"unknown split {split!r} for {name}; choose one of {', '.join(SPLIT_FOLDERS)}")
        return load_image_folder(path, split, img_size, crop_pct, interpolation, limit)
    loaders = {"fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}
    if (kind not in loaders and kind != "synthetic") or path:
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}{hint}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r} for {name}; choose train or test")
    if kind == "synthetic":
        return synthetic_dataset(split, img_size, in_chans, num_classes, limit or 256, seed)
    dataset = loaders[kind](split, data_dir, download)
    if limit is not None:
        dataset.images, dataset.labels = dataset.images[:limit], dataset.labels[:limit]
    return dataset
