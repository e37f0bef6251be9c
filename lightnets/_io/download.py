"""Verified downloads: a body is named only once it is whole and checked.

:func:`download` streams a URL into a hidden temporary sibling of its target with a timeout on every network
operation, checks the length the server announced and the digests the caller expects, runs the caller's own
check (e.g. "it parses"), and only then renames it to the target (:func:`lightnets._io.atomic_path`). A
truncated, corrupt or interrupted download never sits under the final name, where every later load would
trust it; two processes filling the same target both end with a whole file.

Failures are one error each, naming the URL: :class:`DownloadError` (an OSError) for the transport (no
network, an HTTP error status, a stalled server, a body cut short) and :class:`DigestError` (a ValueError)
for a whole body with the wrong digest. Callers add what the user should do about it.
"""
from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Optional

from .files import atomic_path
from .targets import PathLike

__all__ = ["DOWNLOAD_TIMEOUT_S", "DownloadError", "DigestError", "download"]

DOWNLOAD_TIMEOUT_S = 60.0  # per network operation: a stalled server fails instead of hanging the caller
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A download that did not arrive whole: no connection, an HTTP error, a timeout or a body cut short."""

    def __init__(self, message: str, url: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.url, self.status = url, status


class DigestError(ValueError):
    """A downloaded body whose digest is not the expected one; it was discarded."""


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "lightnets"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        raise DownloadError(f"{url} answered HTTP {error.code} ({error.reason})", url, error.code) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not download {url}: {reason}", url) from None


def _progress_bar(description: Optional[str], total: Optional[int]):  # noqa: ANN202 (a tqdm bar, or a stand-in)
    if description is None:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=description, delay=1.0, leave=False)


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, count: int) -> None:
        return None


def download(
    url: str,
    path: PathLike,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    digests: Optional[Mapping[str, str]] = None,
    check: Optional[Callable[[Path], None]] = None,
    progress: Optional[str] = None,
) -> Path:
    """Download ``url`` to ``path`` (its parent folders created), naming it only once it is verified.

    Args:
        url: what to fetch (``http``, ``https`` or ``file``); redirects are followed.
        path: the file to write, replaced atomically (a FIFO or ``-`` gets the verified bytes streamed in).
        timeout: seconds each network operation may wait.
        digests: expected hex digests by hashlib name, e.g. ``{"md5": "..."}``; a mismatch is a :class:`DigestError`.
        check: called with the temporary file once it is whole; raising there discards it (e.g. "it parses").
        progress: a progress bar's label on stderr (shown after a second), or None for none.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "served.txt").write_text("lightnets")
    >>> path = download((folder / "served.txt").as_uri(), folder / "copy.txt",
    ...                 digests={"md5": "e9c5b2b5a67e8a5a3ba4ad1ad3ff8b1b"})
    Traceback (most recent call last):
    ...
    lightnets._io.download.DigestError: download of file:///.../served.txt has md5 ..., expected e9c5b2b5a67e8a5a3ba4ad1ad3ff8b1b; the file was discarded
    >>> sorted(p.name for p in folder.iterdir())
    ['served.txt']
    """
    hashers = {name: hashlib.new(name) for name in (digests or {})}
    with atomic_path(path, parents=True, check=check) as temporary, open(temporary, "wb") as out:
        with _open(url, timeout) as response:
            announced = response.headers.get("Content-Length")
            expected = int(announced) if announced and announced.isdigit() else None
            received = 0
            with _progress_bar(progress, expected) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException, ValueError) as error:
                        raise DownloadError(f"could not download {url}: {error!r} after {received} bytes", url) from None
                    if not chunk:
                        break
                    out.write(chunk)  # a full disk here is a WriteError naming the path
                    received += len(chunk)
                    for hasher in hashers.values():
                        hasher.update(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(f"the download of {url} stopped after {received} of {expected} bytes", url)
        for name, hasher in hashers.items():
            if hasher.hexdigest() != digests[name]:
                raise DigestError(f"download of {url} has {name} {hasher.hexdigest()}, expected {digests[name]}; "
                                  f"the file was discarded")
    return Path(path)
