"""Image folders in the ImageNet layout: one subfolder of images per class (optionally under ``train/``,
``val/``, ``test/``), decoded on access and resized / center-cropped as timm's eval transform does.

>>> import tempfile
>>> load_image_folder(tempfile.mkdtemp() + "/missing", "val", 224, 0.875, "bilinear", None)
Traceback (most recent call last):
...
FileNotFoundError: imagefolder:.../missing: no such folder (give imagefolder:PATH to a folder of class subfolders)
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch.utils.data import Dataset

from ..models.arguments import check_positive_int
from .files import CorruptDataError
from .image_files import IMAGE_EXTENSIONS

__all__ = ["ImageFolderDataset", "load_image_folder", "check_crop_pct", "SPLIT_FOLDERS", "RESIZE_FILTERS",
           "IMAGE_EXTENSIONS"]

PathLike = Union[str, Path]

RESIZE_FILTERS = ("bilinear", "bicubic", "nearest", "nearest-exact", "box", "hamming", "lanczos")  # torchvision's


class ImageFolderDataset(Dataset):
    """Class subfolders of images; each image is decoded to RGB, its shorter side resized to
    ``floor(img_size / crop_pct)`` and center-cropped to ``img_size`` (timm's eval transform, create_transform).

    The class names are the sorted subfolder names; label ``i`` is ``classes[i]``.
    """

    def __init__(self, root: PathLike, img_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bilinear",
                 limit: Optional[int] = None, split: str = "") -> None:
        self.img_size, self.crop_pct = check_positive_int("img_size", img_size), check_crop_pct(crop_pct)
        self.root, self.split = Path(root), split
        self.name = f"imagefolder:{root}"
        if interpolation not in RESIZE_FILTERS:
            raise ValueError(f"interpolation must be one of {', '.join(RESIZE_FILTERS)}, got {interpolation!r}")
        self.interpolation = interpolation
        self.mean = self.std = None
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        per_class = [
            [(path, label) for path in sorted((self.root / class_name).rglob("*"))
             if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()]
            for label, class_name in enumerate(self.classes)
        ]
        # Classes interleaved (first image of each class, then the second ...): ``limit`` keeps a
        # class-balanced subset, not the first classes whole.
        self.samples = [sample for rank in itertools.zip_longest(*per_class) for sample in rank if sample][:limit]
        if not self.samples:
            raise FileNotFoundError(
                f"{self.root} holds no images in class subfolders (expected {self.root}/<class>/<image>, "
                f"with extensions {', '.join(IMAGE_EXTENSIONS)})"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, Image.DecompressionBombError) as err:  # unreadable, truncated, or a decompression bomb
            raise CorruptDataError(f"cannot decode image {path}: {err}") from err
        image = TF.resize(
            image, math.floor(self.img_size / self.crop_pct), interpolation=InterpolationMode(self.interpolation)
        )
        return TF.pil_to_tensor(TF.center_crop(image, self.img_size)), label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.root}: {len(self)} images, {len(self.classes)} classes, {self.img_size} px)"
        )


SPLIT_FOLDERS = ("train", "val", "test")


def check_crop_pct(value: Any) -> float:
    """``crop_pct``: the fraction of the resized image the center crop keeps, in (0, 1] (timm's eval transform
    resizes to ``img_size / crop_pct``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"crop_pct must be a number in (0, 1] (the fraction of the resized image the center crop "
                         f"keeps; timm's default 0.875), got {value!r}")
    return float(value)


def load_image_folder(path: str, split: str, img_size: int, crop_pct: float, interpolation: str,
                      limit: Optional[int]) -> ImageFolderDataset:
    """``imagefolder:PATH``'s ``split``: the subfolder of that name when ``path`` has split subfolders, else ``path``
    itself."""
    root = Path(path).expanduser()
    if not path or not root.is_dir():
        raise FileNotFoundError(
            f"imagefolder:{path}: no such folder (give imagefolder:PATH to a folder of class subfolders)"
        )
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if present and split not in present:
        raise ValueError(
            f"split {split!r} not found: {root} has the split folders {', '.join(present)}; choose one of them"
        )
    return ImageFolderDataset(
        root / split if present else root, img_size, crop_pct, interpolation, limit=limit, split=split
    )
