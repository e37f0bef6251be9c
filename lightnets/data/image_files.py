"""Image files decoded one at a time: the class folders they are listed from, how each file becomes an image of
the model's channels, and the dataset that streams them (:class:`ImageFileDataset`), never holding more than
the image being read.

Listing skips hidden files and folders (``.DS_Store``, macOS' ``._photo.jpg``) and files that are not images
by extension. Decoding applies the EXIF orientation and converts every PIL mode (grayscale, palette, RGBA,
CMYK, 16-bit) to RGB or grayscale. A file that cannot be decoded becomes a :class:`BadImage` record instead of
an exception, so a data-loading worker never dies of one photo: :mod:`lightnets.data.bad_images` decides what a
run does about it.

>>> import tempfile
>>> from PIL import Image
>>> root = Path(tempfile.mkdtemp())
>>> for name in ("cat", "dog"):
...     (root / name).mkdir()
...     Image.new("RGB", (40, 30), "red").save(root / name / "a.jpg")
>>> (root / "dog" / "notes.txt").write_text("not an image")
12
>>> classes, samples = list_class_images(root)
>>> classes, [(path.name, label) for path, label in samples]
(['cat', 'dog'], [('a.jpg', 0), ('a.jpg', 1)])
>>> image = decode_image(samples[0][0], channels=1)
>>> image.mode, image.size
('L', (40, 30))
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "BadImage", "ImageFileDataset", "decode_image", "list_class_images", "to_channels"]

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


@dataclass(frozen=True)
class BadImage:
    """A file that could not be decoded, and why (PIL's message)."""

    path: str
    reason: str


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_class_images(root: PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names (sorted subfolder names of ``root``) and the ``(path, label)`` of every image under them,
    the classes interleaved (first image of each class, then the second ...), so the first N are class-balanced.

    A class folder without images is an error naming it: it would be a class the model can never learn.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [
        [(path, label) for path in sorted((root / name).rglob("*"))
         if path.suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(path, root) and path.is_file()]
        for label, name in enumerate(classes)
    ]
    empty = [name for name, images in zip(classes, per_class) if not images]
    if classes and empty:
        raise ValueError(f"{root}: the class folders {', '.join(empty)} hold no images (extensions "
                         f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folders")
    return classes, [sample for rank in itertools.zip_longest(*per_class) for sample in rank if sample]


def _to_8_bit(image: Any) -> Any:
    """16- and 32-bit integer and float images scaled to 8 bits (PIL's own ``convert("L")`` clips them at 255)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image)
    if image.mode == "F":
        scaled = np.clip(pixels, 0.0, 1.0) * 255 if pixels.max(initial=0.0) <= 1.0 else np.clip(pixels, 0, 255)
    else:  # I;16 / I: 16-bit data (PNG, TIFF) spans 0–65535
        scaled = np.clip(pixels.astype(np.int64), 0, 65535) / 257
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def to_channels(image: Any, channels: int) -> Any:
    """A PIL image converted to ``channels`` (1: grayscale ``L``, 3: ``RGB``): palette and alpha images lose their
    transparency, CMYK and YCbCr become RGB, high-bit-depth images are scaled to 8 bits."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8_bit(image)
    if image.mode == "P" and "transparency" in image.info:  # avoids PIL's warning about palette transparency
        image = image.convert("RGBA")
    return image.convert("L" if channels == 1 else "RGB")


def decode_image(path: Union[PathLike, BinaryIO], channels: int = 3) -> Any:
    """The image in ``path`` (or an open binary file), upright (its EXIF orientation applied) and with
    ``channels`` channels, fully read.

    Raises OSError for a file PIL cannot decode (truncated, corrupt, not an image) and PIL's
    DecompressionBombError for one larger than ``PIL.Image.MAX_IMAGE_PIXELS`` × 2.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.load()
        return to_channels(ImageOps.exif_transpose(image), channels)


class ImageFileDataset(Dataset):
    """``(path, label)`` samples decoded on access through ``transform`` (a PIL image → uint8 C×H×W tensor).

    An undecodable file gives ``(None, label, BadImage)`` instead of raising, for
    :func:`lightnets.training.streaming.collate_decoded` to drop and count. ``source`` says where the samples
    came from (``imagefolder:data/train``); ``classes`` are the label names.
    """

    def __init__(self, samples: Sequence[tuple[Any, int]], classes: Sequence[str], source: str,
                 channels: int = 3, transform: Optional[Callable[[Any], torch.Tensor]] = None) -> None:
        self.samples = [(key, int(label)) for key, label in samples]
        self.classes, self.name, self.channels, self.transform = list(classes), source, channels, transform
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def _copy(self, samples: Sequence[tuple[Any, int]], source: str, channels: int,
              transform: Optional[Callable[[Any], torch.Tensor]], classes: Optional[Sequence[str]] = None,
              ) -> ImageFileDataset:
        return type(self)(samples, self.classes if classes is None else classes, source, channels, transform)

    def with_classes(self, classes: Sequence[str]) -> ImageFileDataset:
        """The same samples labelled by their class names' index in ``classes`` (a superset of this one's)."""
        index = [list(classes).index(name) for name in self.classes]
        return self._copy([(key, index[label]) for key, label in self.samples], self.name, self.channels,
                          self.transform, classes)

    def with_transform(self, transform: Callable[[Any], torch.Tensor], channels: int) -> ImageFileDataset:
        """The same samples decoded to ``channels`` and passed through ``transform``."""
        return self._copy(self.samples, self.name, channels, transform)

    def subset(self, indices: Sequence[int], source: str) -> ImageFileDataset:
        """The samples at ``indices``, named ``source``."""
        return self._copy([self.samples[i] for i in indices], source, self.channels, self.transform)

    def file_list(self) -> list[str]:
        """One line per sample, ``<file>\t<label>``: what identifies the data (hashed into a split's record)."""
        return [f"{key}\t{label}" for key, label in self.samples]

    def describe(self, index: int) -> str:
        """Where sample ``index`` is read from, for a bad image's record."""
        return str(self.samples[index][0])

    def decode(self, index: int) -> Any:
        """Sample ``index`` as a PIL image of this dataset's channels (see :func:`decode_image`)."""
        return decode_image(self.samples[index][0], self.channels)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Optional[torch.Tensor], int, Optional[BadImage]]:
        from PIL import Image

        label = self.samples[index][1]
        try:
            image = self.decode(index)
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt, a bomb
            return None, label, BadImage(self.describe(index), f"{type(error).__name__}: {error}")
        if self.transform is None:
            import torchvision.transforms.functional as TF

            return TF.pil_to_tensor(image), label, None
        return torch.as_tensor(self.transform(image)), label, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {len(self)} images, {len(self.classes)} classes)"
