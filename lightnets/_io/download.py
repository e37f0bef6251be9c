"""Verified downloads: a body is named only once it is whole and checked.

:func:`download` streams a URL into a hidden temporary sibling of its target with a timeout on every network
operation, checks the length the server announced and the digests the caller expects, runs the caller's own
check (e.g. "it parses"), and only then renames it to the target (:func:`lightnets._io.atomic_path`). A
truncated, corrupt or interrupted download never sits under the final name, where every later load would
trust it; two processes filling the same target both end with a whole file.

Failures are one error each, naming the URL: :class:`DownloadError` (an OSError) for the transport (no
network, an HTTP error status, a stalled server, a body cut short, a body larger than the caller allows) and
:class:`DigestError` (a ValueError) for a whole body with the wrong digest. Callers add what the user should
do about it.

How long a stalled server is waited for is one setting for every download of lightnets (this one, and the
Hugging Face Hub's in :mod:`lightnets.pretrained.download`): the environment variable
``LIGHTNETS_DOWNLOAD_TIMEOUT`` in seconds (default 60), read at each download by :func:`download_timeout`.
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Optional

from .files import atomic_path
from .targets import PathLike

__all__ = ["DOWNLOAD_TIMEOUT_ENV", "DOWNLOAD_TIMEOUT_S", "DownloadError", "DigestError", "download", "download_timeout"]

DOWNLOAD_TIMEOUT_ENV = "LIGHTNETS_DOWNLOAD_TIMEOUT"
DOWNLOAD_TIMEOUT_S = 60.0  # the default: per network operation, so a stalled server fails instead of hanging the caller
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A download that did not arrive whole: no connection, an HTTP error, a timeout or a body cut short."""

    def __init__(self, message: str, url: str, status: Optional[int] = None, too_large: Optional[str] = None) -> None:
        super().__init__(message)
        self.url, self.status = url, status
        self.too_large = too_large  # refused for its size: "is N bytes" (announced) or "sent more than N bytes"


class DigestError(ValueError):
    """A downloaded body whose digest is not the expected one; it was discarded."""


def download_timeout() -> float:
    """Seconds a download waits for a server that sends nothing (to connect, to answer, between two pieces of
    the body) before it fails: ``LIGHTNETS_DOWNLOAD_TIMEOUT`` as it is set now, else :data:`DOWNLOAD_TIMEOUT_S`.

    >>> import os
    >>> os.environ["LIGHTNETS_DOWNLOAD_TIMEOUT"] = "2.5"
    >>> download_timeout()
    2.5
    >>> os.environ["LIGHTNETS_DOWNLOAD_TIMEOUT"] = "soon"
    >>> download_timeout()
    Traceback (most recent call last):
    ...
    ValueError: LIGHTNETS_DOWNLOAD_TIMEOUT='soon' is not a number of seconds > 0: set it to one (e.g. 120), or unset it for the default (60 s)
    >>> del os.environ["LIGHTNETS_DOWNLOAD_TIMEOUT"]
    """
    text = os.environ.get(DOWNLOAD_TIMEOUT_ENV, "").strip()
    if not text:
        return DOWNLOAD_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{DOWNLOAD_TIMEOUT_ENV}={text!r} is not a number of seconds > 0: set it to one (e.g. 120), "
                         f"or unset it for the default ({DOWNLOAD_TIMEOUT_S:g} s)")
    return seconds


def _stalled(url: str, timeout: float, received: int) -> DownloadError:
    return DownloadError(f"{url} sent nothing for {timeout:g} s after {received:,} bytes (a slow server needs a longer "
                         f"{DOWNLOAD_TIMEOUT_ENV}, now {timeout:g})", url)


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "lightnets"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if 300 <= error.code < 400:  # urllib gives up on a redirect that leads back where it has been (or >10 of them)
            raise DownloadError(f"{url} redirected in a loop (HTTP {error.code}, one redirect after another, never the "
                                f"file)", url, error.code) from None
        reason = str(error.reason).strip().splitlines()
        raise DownloadError(f"{url} answered HTTP {error.code} ({reason[0] if reason else 'no reason given'})", url,
                            error.code) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError):
            raise _stalled(url, timeout, 0) from None
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
    timeout: Optional[float] = None,
    digests: Optional[Mapping[str, str]] = None,
    check: Optional[Callable[[Path], None]] = None,
    progress: Optional[str] = None,
    max_bytes: Optional[int] = None,
) -> Path:
    """Download ``url`` to ``path`` (its parent folders created), naming it only once it is verified.

    Args:
        url: what to fetch (``http``, ``https`` or ``file``); redirects are followed.
        path: the file to write, replaced atomically (a FIFO or ``-`` gets the verified bytes streamed in).
        timeout: seconds each network operation may wait (default: :func:`download_timeout`).
        digests: expected hex digests by hashlib name, e.g. ``{"md5": "..."}``; a mismatch is a :class:`DigestError`.
        check: called with the temporary file once it is whole; raising there discards it (e.g. "it parses").
        progress: a progress bar's label on stderr (shown after a second), or None for none.
        max_bytes: the largest body accepted: a larger announced length is refused before the body is read,
            and a body that grows past it (no length announced, or a false one) is cut off and discarded.

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
    timeout = download_timeout() if timeout is None else timeout
    hashers = {name: hashlib.new(name) for name in (digests or {})}
    with atomic_path(path, parents=True, check=check) as temporary, open(temporary, "wb") as out:
        with _open(url, timeout) as response:
            announced = response.headers.get("Content-Length")
            expected = int(announced) if announced and announced.isdigit() else None
            if max_bytes is not None and expected is not None and expected > max_bytes:
                raise DownloadError(f"{url} announces {expected:,} bytes, more than the {max_bytes:,} expected; "
                                    f"nothing was downloaded", url, too_large=f"is {expected:,} bytes")
            received = 0
            with _progress_bar(progress, expected) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except TimeoutError:
                        raise _stalled(url, timeout, received) from None
                    except (OSError, http.client.HTTPException, ValueError) as error:
                        raise DownloadError(
                            f"could not download {url}: {error!r} after {received} bytes", url
                        ) from None
                    if not chunk:
                        break
                    out.write(chunk)  # a full disk here is a WriteError naming the path
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise DownloadError(f"{url} sent more than the {max_bytes:,} bytes expected; the download "
                                            f"was stopped and discarded", url,
                                            too_large=f"sent more than {max_bytes:,} bytes")
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
