"""Datasets as uint8 image tensors, and the one function that turns them into model inputs.

Every dataset yields ``(image, label)`` with ``image`` a uint8 tensor (C, H, W) and has ``.classes``.
The small ones are held in memory whole (``.images`` uint8 N×C×H×W, ``.labels`` int64 N), so a batch is
a slice and no file is read while a model is timed:

* ``fashion_mnist`` — 28×28 grayscale, 10 classes. The 10k test split ships inside the package
  (``lightnets/datasets/fashion_mnist``, MIT, © Zalando SE); the train split is read from ``data_dir``,
  from Debian's ``/usr/share/datasets/fashion-mnist/``, from the download cache, or downloaded.
* ``cifar10`` — 32×32 RGB, 10 classes, from the official python batches (``cifar-10-batches-py``).
* ``imagefolder:PATH`` — one subfolder of images per class (ImageNet layout), decoded on access and
  resized / center-cropped to ``img_size`` as timm's eval transform does.
* ``synthetic`` — seeded random images, for latency-only runs.

>>> test_set = load_dataset("fashion_mnist", limit=100)
>>> test_set.images.shape, test_set.classes[9]
(torch.Size([100, 1, 28, 28]), 'Ankle boot')
>>> normalize_batch(test_set.images[:8], in_chans=3, img_size=32, mean=test_set.mean, std=test_set.std).shape
torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

import difflib
import gzip
import hashlib
import itertools
import math
import os
import pickle
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["DATASET_NAMES", "CorruptDataError", "InMemoryDataset", "ImageFolderDataset", "load_dataset",
           "normalize_batch", "download_file"]

DATASET_NAMES = ("fashion_mnist", "cifar10", "imagefolder:PATH", "synthetic")
PathLike = Union[str, Path]

EMBEDDED_DIR = Path(__file__).resolve().parent / "datasets"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("LIGHTNETS_DATA_DIR") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lightnets" / "datasets")


class CorruptDataError(ValueError):
    """A data file exists but is not what it should be (checksum, format or size)."""


# ---------------------------------------------------------------------------------------------
# Dataset classes
# ---------------------------------------------------------------------------------------------


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
        return f"{type(self).__name__}({self.name}/{self.split}: {len(self)} images {tuple(self.images.shape[1:])}, {len(self.classes)} classes)"


RESIZE_FILTERS = ("bilinear", "bicubic", "nearest", "nearest-exact", "box", "hamming", "lanczos")  # torchvision's
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class ImageFolderDataset(Dataset):
    """Class subfolders of images; each image is decoded to RGB, its shorter side resized to
    ``floor(img_size / crop_pct)`` and center-cropped to ``img_size`` (timm's eval transform, create_transform).

    The class names are the sorted subfolder names; label ``i`` is ``classes[i]``.
    """

    def __init__(self, root: PathLike, img_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bilinear",
                 limit: Optional[int] = None, split: str = "") -> None:
        self.root, self.img_size, self.crop_pct, self.split = Path(root), img_size, crop_pct, split
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
        image = TF.resize(image, math.floor(self.img_size / self.crop_pct), interpolation=InterpolationMode(self.interpolation))
        return TF.pil_to_tensor(TF.center_crop(image, self.img_size)), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}: {len(self)} images, {len(self.classes)} classes, {self.img_size} px)"


# ---------------------------------------------------------------------------------------------
# Files: checksums and downloads
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """A file of a published dataset: its name and the checksums that identify a good copy."""

    name: str
    md5: str  # of the file as the publisher serves it
    content_sha256: Optional[str] = None  # of the decompressed bytes (gzip files): independent of how it was packed


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def download_file(url: str, path: PathLike, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``path``, verifying its md5 before the file takes its final name.

    The bytes are streamed to ``path.part`` and renamed only when the checksum matches, so an
    interrupted or tampered download never looks like a good file.
    """
    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {path.name}", delay=1.0, leave=False) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except OSError as err:  # URLError, HTTPError, timeouts, disk errors
        partial.unlink(missing_ok=True)
        raise OSError(f"could not download {url}: {err}") from err
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise CorruptDataError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}; the file was discarded")
    os.replace(partial, path)
    return path


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------------------------

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # the official release
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Mean / std of the 60k train images on the 0–1 scale (computed from the train split).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
# md5: the official gzip files (zalandoresearch/fashion-mnist README); content_sha256: the decompressed
# IDX bytes of Debian's copy, whose gzip files differ byte-wise from the official ones.
FASHION_MNIST_FILES = {
    "train": (
        DataFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        DataFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ),
    "test": (
        DataFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                 "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        DataFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                 "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
}


def read_idx(path: PathLike, expected: Optional[DataFile] = None) -> np.ndarray:
    """Read a (gzipped) IDX file — the MNIST format — as a uint8 array, verifying it against ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {path}")
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as err:
        data = b""
        if expected is None:
            raise CorruptDataError(f"{path} is not a valid gzip file: {err}") from err
    if expected is not None and _digest(raw, "md5") != expected.md5 and _digest(data, "sha256") != expected.content_sha256:
        raise CorruptDataError(
            f"{path} is corrupt: expected gzip md5 {expected.md5} or decompressed sha256 {expected.content_sha256}, "
            f"got md5 {_digest(raw, 'md5')}; delete it and download it again"
        )
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:  # magic: 0, 0, dtype 0x08 = uint8, ndim
        raise CorruptDataError(f"{path} is not an IDX file of uint8 data")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise CorruptDataError(f"{path} is truncated: its header says {shape}, it holds {len(data) - offset} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _fashion_mnist_dir(split: str, data_dir: Optional[PathLike], download: bool) -> Path:
    files = FASHION_MNIST_FILES[split]

    def complete(folder: Path) -> bool:
        return all((folder / f.name).is_file() for f in files)

    # The copies are interchangeable (every file is verified), so any complete one will do.
    candidates = [Path(data_dir).expanduser()] if data_dir else []
    if split == "test":
        candidates.append(EMBEDDED_DIR / "fashion_mnist")
    candidates += [DEBIAN_FASHION_MNIST, CACHE_DIR / "fashion_mnist"]
    for folder in candidates:
        if complete(folder):
            return folder
    target = Path(data_dir).expanduser() if data_dir else CACHE_DIR / "fashion_mnist"
    if not download:
        searched = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files ({', '.join(f.name for f in files)}) not found in {searched}; "
            f"pass --data-dir to a folder holding them, or --download to fetch them into {target}"
        )
    for f in files:
        if not (target / f.name).is_file():
            download_file(FASHION_MNIST_URL + f.name, target / f.name, f.md5)
    return target


def _load_fashion_mnist(split: str, data_dir: Optional[PathLike], download: bool) -> InMemoryDataset:
    folder = _fashion_mnist_dir(split, data_dir, download)
    images_file, labels_file = FASHION_MNIST_FILES[split]
    images = read_idx(folder / images_file.name, images_file)
    labels = read_idx(folder / labels_file.name, labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDataError(f"{folder}: images {images.shape} and labels {labels.shape} do not pair up")
    return InMemoryDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                           FASHION_MNIST_CLASSES, "fashion_mnist", split, FASHION_MNIST_MEAN, FASHION_MNIST_STD)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (the official python batches)
# ---------------------------------------------------------------------------------------------

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # the official tarball's (cs.toronto.edu/~kriz/cifar.html)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# Per-channel mean / std of the 50k train images on the 0–1 scale (the values torchvision's recipes use).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays, and refuses every other global.

    The official CIFAR batches are pickles (that is the published format). Only the checksummed
    official tarball is ever downloaded, and even a batch file from elsewhere cannot run code here:
    the only callables it may name are numpy's array reconstructors.
    """

    _ALLOWED = {
        "_reconstruct": np.ndarray((0,)).__reduce__()[0],
        "_frombuffer": np.ndarray((1,)).__reduce_ex__(5)[0],
        "ndarray": np.ndarray,
        "dtype": np.dtype,
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if module.split(".")[0] == "numpy" and name in self._ALLOWED:
            return self._ALLOWED[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only numpy arrays")


def _read_cifar_batch(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing CIFAR-10 file {path}")
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise CorruptDataError(f"{path} is not a CIFAR-10 python batch ({err}); the official archive has md5 {CIFAR10_MD5}") from err
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{path} is not a CIFAR-10 python batch (it holds a {type(batch).__name__}, not a dict)")
    return batch


def _cifar10_dir(data_dir: Optional[PathLike], download: bool) -> Path:
    roots = [Path(data_dir).expanduser()] if data_dir else [CACHE_DIR / "cifar10"]
    for root in roots:
        for folder in (root / CIFAR10_FOLDER, root):
            if (folder / "batches.meta").is_file():
                return folder
    root = roots[0]
    if not download:
        raise FileNotFoundError(
            f"CIFAR-10 not found: no {CIFAR10_FOLDER}/batches.meta in {root}; pass --data-dir to the folder holding "
            f"{CIFAR10_FOLDER}/, or --download to fetch it ({CIFAR10_URL}, 163 MiB)"
        )
    archive = download_file(CIFAR10_URL, root / "cifar-10-python.tar.gz", CIFAR10_MD5)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")  # "data": no absolute paths, links or devices
    return root / CIFAR10_FOLDER


def _load_cifar10(split: str, data_dir: Optional[PathLike], download: bool) -> InMemoryDataset:
    folder = _cifar10_dir(data_dir, download)
    classes = [name.decode() if isinstance(name, bytes) else str(name)
               for name in _read_cifar_batch(folder / "batches.meta").get(b"label_names", [])]
    if not classes:
        raise CorruptDataError(f"{folder / 'batches.meta'} has no label_names")
    images, labels = [], []
    for name in CIFAR10_BATCHES[split]:
        batch = _read_cifar_batch(folder / name)
        data, batch_labels = np.asarray(batch.get(b"data")), np.asarray(batch.get(b"labels"), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or batch_labels.shape != (len(data),):
            raise CorruptDataError(
                f"{folder / name}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape} and "
                f"{batch_labels.shape} labels; the official archive has md5 {CIFAR10_MD5}"
            )
        if len(batch_labels) and not 0 <= batch_labels.min() <= batch_labels.max() < len(classes):
            raise CorruptDataError(f"{folder / name}: labels outside 0..{len(classes) - 1}")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are the R, G, B planes of 32×32, row-major
        labels.append(batch_labels)
    return InMemoryDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)),
                           classes, "cifar10", split, CIFAR10_MEAN, CIFAR10_STD)


# ---------------------------------------------------------------------------------------------
# Image folders and synthetic data
# ---------------------------------------------------------------------------------------------

SPLIT_FOLDERS = ("train", "val", "test")


def _load_imagefolder(path: str, split: str, img_size: int, crop_pct: float, interpolation: str,
                      limit: Optional[int]) -> ImageFolderDataset:
    root = Path(path).expanduser()
    if not path or not root.is_dir():
        raise FileNotFoundError(f"imagefolder:{path}: no such folder (give imagefolder:PATH to a folder of class subfolders)")
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if present and split not in present:
        raise ValueError(f"split {split!r} not found: {root} has the split folders {', '.join(present)}; choose one of them")
    return ImageFolderDataset(root / split if present else root, img_size, crop_pct, interpolation, limit=limit, split=split)


def _synthetic(split: str, img_size: int, in_chans: int, num_classes: int, length: int, seed: int) -> InMemoryDataset:
    generator = torch.Generator().manual_seed(seed + (split == "train"))
    images = torch.randint(0, 256, (length, in_chans, img_size, img_size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (length,), generator=generator)
    return InMemoryDataset(images, labels, [f"class_{i}" for i in range(num_classes)], "synthetic", split)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


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
        limit: keep only the first ``limit`` images (of an imagefolder, with its classes interleaved: a balanced subset).
        img_size, crop_pct, interpolation: output side, crop fraction and resize filter (``bilinear``,
            ``bicubic``, ``nearest``) of ``imagefolder`` images (``img_size``: ``synthetic``'s side too).
        in_chans, num_classes, seed: shape, label range and seed of ``synthetic`` data
            (``limit`` images, 256 by default).

    >>> load_dataset("synthetic", limit=4, img_size=32).images.shape
    torch.Size([4, 3, 32, 32])
    """
    kind, _, path = name.partition(":")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    if kind == "imagefolder":
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"unknown split {split!r} for {name}; choose one of {', '.join(SPLIT_FOLDERS)}")
        return _load_imagefolder(path, split, img_size, crop_pct, interpolation, limit)
    loaders = {"fashion_mnist": _load_fashion_mnist, "cifar10": _load_cifar10}
    if (kind not in loaders and kind != "synthetic") or path:
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}{hint}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r} for {name}; choose train or test")
    if kind == "synthetic":
        return _synthetic(split, img_size, in_chans, num_classes, limit or 256, seed)
    dataset = loaders[kind](split, data_dir, download)
    if limit is not None:
        dataset.images, dataset.labels = dataset.images[:limit], dataset.labels[:limit]
    return dataset


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
