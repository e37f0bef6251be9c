"""Fashion-MNIST: 28×28 grayscale, 10 classes, in the MNIST IDX format.

The 10k test split ships inside the package (``lightnets/datasets/fashion_mnist``, MIT, © Zalando SE); the
train split is read from ``data_dir``, from Debian's ``/usr/share/datasets/fashion-mnist/``, from the download
cache, or downloaded from the official release (md5-verified before it is named).

>>> load_fashion_mnist("test", None, False).images.shape
torch.Size([10000, 1, 28, 28])
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from . import files
from .files import CorruptDataError, DataFile, digest, download_file
from .in_memory import InMemoryDataset

__all__ = ["FASHION_MNIST_URL", "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "EMBEDDED_DIR", "DEBIAN_FASHION_MNIST",
           "read_idx", "load_fashion_mnist"]

PathLike = Union[str, Path]

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "datasets"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # the official release
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
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
    if (
        expected is not None
        and digest(raw, "md5") != expected.md5
        and digest(data, "sha256") != expected.content_sha256
    ):
        raise CorruptDataError(
            f"{path} is corrupt: expected gzip md5 {expected.md5} or decompressed sha256 {expected.content_sha256}, "
            f"got md5 {digest(raw, 'md5')}; delete it and download it again"
        )
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:  # magic: 0, 0, dtype 0x08 = uint8, ndim
        raise CorruptDataError(f"{path} is not an IDX file of uint8 data")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise CorruptDataError(
            f"{path} is truncated: its header says {shape}, it holds {len(data) - offset} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _fashion_mnist_dir(split: str, data_dir: Optional[PathLike], download: bool) -> Path:
    needed = FASHION_MNIST_FILES[split]

    def complete(folder: Path) -> bool:
        return all((folder / f.name).is_file() for f in needed)

    # The copies are interchangeable (every file is verified), so any complete one will do.
    candidates = [Path(data_dir).expanduser()] if data_dir else []
    if split == "test":
        candidates.append(EMBEDDED_DIR / "fashion_mnist")
    candidates += [DEBIAN_FASHION_MNIST, files.CACHE_DIR / "fashion_mnist"]
    for folder in candidates:
        if complete(folder):
            return folder
    target = Path(data_dir).expanduser() if data_dir else files.CACHE_DIR / "fashion_mnist"
    if not download:
        searched = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files ({', '.join(f.name for f in needed)}) not found in {searched}; "
            f"pass --data-dir to a folder holding them, or --download to fetch them into {target}"
        )
    for f in needed:
        if not (target / f.name).is_file():
            download_file(FASHION_MNIST_URL + f.name, target / f.name, f.md5)
    return target


def load_fashion_mnist(split: str, data_dir: Optional[PathLike], download: bool) -> InMemoryDataset:
    """The ``split`` (``train`` or ``test``) from the first complete, verified copy; downloaded when ``download``."""
    folder = _fashion_mnist_dir(split, data_dir, download)
    images_file, labels_file = FASHION_MNIST_FILES[split]
    images = read_idx(folder / images_file.name, images_file)
    labels = read_idx(folder / labels_file.name, labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDataError(f"{folder}: images {images.shape} and labels {labels.shape} do not pair up")
    return InMemoryDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                           FASHION_MNIST_CLASSES, "fashion_mnist", split, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
