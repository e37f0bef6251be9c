"""The files a dataset is read from: the checksums that identify a good copy, the error for a bad one, where
downloads are cached, and the verified download itself (:func:`lightnets._io.download`).

>>> DataFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310").name
't10k-labels-idx1-ubyte.gz'
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .. import _io

__all__ = ["CACHE_DIR", "CorruptDataError", "DataFile", "digest", "download_file"]

PathLike = Union[str, Path]

CACHE_DIR = Path(os.environ.get("LIGHTNETS_DATA_DIR") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lightnets" / "datasets")


class CorruptDataError(ValueError):
    """A data file exists but is not what it should be (checksum, format or size)."""


@dataclass(frozen=True)
class DataFile:
    """A file of a published dataset: its name and the checksums that identify a good copy."""

    name: str
    md5: str  # of the file as the publisher serves it
    content_sha256: Optional[str] = None  # of the decompressed bytes (gzip files): independent of how it was packed


def digest(data: bytes, algorithm: str) -> str:
    """The hex digest of ``data`` by hashlib's ``algorithm`` name."""
    return hashlib.new(algorithm, data).hexdigest()


def download_file(url: str, path: PathLike, md5: str, timeout: Optional[float] = None) -> Path:
    """Download ``url`` to ``path``, verifying its md5 before the file takes its final name.

    The bytes are streamed to a hidden temporary sibling and renamed only when whole and of the right md5,
    so an interrupted or tampered download never looks like a good file. A failed download is an OSError
    naming the URL; a wrong checksum a :class:`CorruptDataError`. ``timeout``: seconds a stalled server is
    waited for (default: ``LIGHTNETS_DOWNLOAD_TIMEOUT``, :func:`lightnets._io.download_timeout`).
    """
    path = Path(path)
    try:
        return _io.download(url, path, timeout=timeout, digests={"md5": md5}, progress=f"downloading {path.name}")
    except _io.DigestError as error:
        raise CorruptDataError(str(error)) from None
    except _io.DownloadError as error:
        raise OSError(f"{error}; check the network (or a proxy), or download it yourself into {path.parent}") from None
