"""CIFAR-10: 32×32 RGB, 10 classes, from the official python batches (``cifar-10-batches-py``).

The batches are pickles (the published format), read by an unpickler that takes numpy arrays and nothing else;
``--download`` fetches the official tarball, md5-verified, and unpacks it into a staged folder that takes its
name only once whole.

>>> import tempfile
>>> load_cifar10("test", tempfile.mkdtemp(), False)
Traceback (most recent call last):
...
FileNotFoundError: CIFAR-10 not found: no cifar-10-batches-py/batches.meta in ...
"""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .. import _io
from . import files
from .files import CorruptDataError, download_file
from .in_memory import InMemoryDataset

__all__ = ["CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_FOLDER", "CIFAR10_MEAN", "CIFAR10_STD", "load_cifar10"]

PathLike = Union[str, Path]

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
        raise CorruptDataError(
            f"{path} is not a CIFAR-10 python batch ({err}); the official archive has md5 {CIFAR10_MD5}"
        ) from err
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{path} is not a CIFAR-10 python batch (it holds a {type(batch).__name__}, not a dict)")
    return batch


def _cifar10_dir(data_dir: Optional[PathLike], download: bool) -> Path:
    roots = [Path(data_dir).expanduser()] if data_dir else [files.CACHE_DIR / "cifar10"]
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
    _unpack(archive, root / CIFAR10_FOLDER)
    return root / CIFAR10_FOLDER


def _unpack(archive: Path, folder: Path) -> None:
    """The archive's ``cifar-10-batches-py/`` files, unpacked into a staged folder that takes ``folder``'s name
    only once every file is out (an interrupted unpacking leaves no folder that looks complete)."""
    prefix = CIFAR10_FOLDER + "/"

    def batches_only(member: tarfile.TarInfo, destination: str) -> Optional[tarfile.TarInfo]:
        if not member.name.startswith(prefix):
            return None
        # tarfile's "data" filter: no absolute paths, links out of the folder or devices
        return tarfile.data_filter(member.replace(name=member.name[len(prefix):], deep=False), destination)

    with _io.staged_folder(folder) as staging, tarfile.open(archive, "r:gz") as tar:
        tar.extractall(staging, filter=batches_only)


def load_cifar10(split: str, data_dir: Optional[PathLike], download: bool) -> InMemoryDataset:
    """The ``split`` (``train`` or ``test``) from ``data_dir`` or the cache; downloaded when ``download``."""
    folder = _cifar10_dir(data_dir, download)
    classes = [name.decode() if isinstance(name, bytes) else str(name)
               for name in _read_cifar_batch(folder / "batches.meta").get(b"label_names", [])]
    if not classes:
        raise CorruptDataError(f"{folder / 'batches.meta'} has no label_names")
    images, labels = [], []
    for name in CIFAR10_BATCHES[split]:
        batch = _read_cifar_batch(folder / name)
        data, batch_labels = np.asarray(batch.get(b"data")), np.asarray(batch.get(b"labels"), dtype=np.int64)
        if (
            data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
            or batch_labels.shape != (len(data),)
        ):
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
