"""The Hugging Face Hub as lightnets calls it: lightnets' one download timeout, no hidden retries, errors told apart.

Left to itself, ``huggingface_hub.hf_hub_download`` takes its timeouts from constants read once at import
(``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``), resumes a stalled or cut-off transfer up to five times,
and asks again for a file's metadata with a 60 s timeout and back-off: a stalled server holds a load for
minutes, and what finally reaches the caller is an httpx exception. Here:

- :func:`hub_settings` gives one call ``LIGHTNETS_DOWNLOAD_TIMEOUT`` (:func:`lightnets._io.download_timeout`) for
  every request, and no retries: a server that sends nothing fails that call after that many seconds;
- :func:`announced_size` asks for a file's metadata once (the size the Hub announces, before any byte is
  downloaded);
- :func:`transport_errors` are the exception types of a transport failure, whatever HTTP library this
  huggingface_hub uses (requests before 1.0, httpx in 1.x, httpx2 in 2.x), and :func:`describe` says in words
  what happened and what to do about it.

>>> describe(TimeoutError("timed out"), 2.0)[0]
'the server sent nothing for 2 s (LIGHTNETS_DOWNLOAD_TIMEOUT=2)'
"""
from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import re
import threading
from typing import Any, Iterator, NamedTuple, Optional

from .._io import DOWNLOAD_TIMEOUT_ENV

__all__ = ["HubErrors", "announced_size", "cached_at_commit", "describe", "hub_errors", "hub_settings", "is_offline",
           "transport_errors"]

_SETTINGS_LOCK = threading.RLock()  # the settings are huggingface_hub's module globals: one patched call at a time
_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubErrors(NamedTuple):
    revision_missing: type
    entry_missing: type
    repo_missing: type
    not_cached: type
    http_error: type
    invalid_id: type


def hub_errors() -> HubErrors:
    """huggingface_hub's errors for a missing revision / file / repo, local miss, HTTP error (0.x and 1.x names).

    Before 1.0 there is one EntryNotFoundError, of which LocalEntryNotFoundError is a subclass; since 1.0
    the remote miss is RemoteEntryNotFoundError. Both are caught as EntryNotFoundError, after the local miss.
    """
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    return HubErrors(RevisionNotFoundError, EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError,
                     HfHubHTTPError, HFValidationError)


def transport_errors() -> tuple[type, ...]:
    """What a failed transfer raises: OSError (huggingface_hub's own HTTP and metadata errors are OSErrors), and
    the HTTP library's base error, found as a base of ``HfHubHTTPError`` (httpx's or httpx2's ``HTTPError``: its
    timeouts, protocol errors and redirect loops), so no library is named here that this huggingface_hub lacks."""
    from huggingface_hub.utils import HfHubHTTPError

    library = [base for base in HfHubHTTPError.__mro__[1:] if base.__name__ == "HTTPError"]
    return (OSError, *library[:1])


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_at_commit(repo_id: str, filename: str, revision: Optional[str]) -> bool:
    """The file is in the cache at a pinned commit: huggingface_hub then answers without any request."""
    if not revision or not _COMMIT.fullmatch(revision):
        return False
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)


def announced_size(repo_id: str, filename: str, revision: Optional[str], timeout: float) -> Optional[int]:
    """The size in bytes the Hub announces for a file (None if it announces none), from one metadata request
    (HEAD, redirects on the Hub followed) with no retry; its errors are huggingface_hub's and the HTTP library's."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    return get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision), timeout=timeout).size


@contextlib.contextmanager
def hub_settings(timeout: float) -> Iterator[None]:
    """For the calls made inside the block: ``timeout`` seconds for every request huggingface_hub makes, and none
    retried (a stalled transfer resumed five times, a metadata request asked again with 60 s and back-off).

    huggingface_hub reads these at call time from module globals, which are set here and restored after; a
    name this huggingface_hub does not have is left alone, so another version keeps its own behaviour there.
    """
    from huggingface_hub import constants, file_download

    changes: list[tuple[Any, str, Any]] = [
        (constants, "HF_HUB_DOWNLOAD_TIMEOUT", timeout),  # the GET of the file
        (constants, "HF_HUB_ETAG_TIMEOUT", timeout),  # the metadata request (it overrides the etag_timeout argument)
        (file_download, "_ETAG_RETRY_TIMEOUT", timeout),  # the metadata request asked again
        (file_download, "_DEFAULT_RETRY_ON_EXCEPTIONS", ()),  # ... which is then not asked again at all
        (file_download, "_DEFAULT_RETRY_ON_STATUS_CODES", ()),
    ]
    http_get = getattr(file_download, "http_get", None)
    if http_get is not None and "_nb_retries" in inspect.signature(http_get).parameters:
        changes.append((file_download, "http_get", functools.partial(http_get, _nb_retries=0)))
    logger = logging.getLogger(file_download.__name__)
    with _SETTINGS_LOCK:
        saved = [(module, name, getattr(module, name)) for module, name, _ in changes if hasattr(module, name)]
        logger.addFilter(_no_retry_warnings)
        try:
            for module, name, value in changes:
                if hasattr(module, name):
                    setattr(module, name, value)
            yield
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
            logger.removeFilter(_no_retry_warnings)


def _no_retry_warnings(record: logging.LogRecord) -> bool:
    """Drop huggingface_hub's "Error while downloading from ... Max retries exceeded." (nothing is retried here,
    and the error the caller raises says what happened); keep its other messages."""
    return not str(record.msg).startswith("Error while downloading from")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, then its causes (huggingface_hub raises LocalEntryNotFoundError *from* the transport error)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


_YOURSELF = "or download the file yourself and pass it as pretrained_path="


def describe(error: BaseException, timeout: float) -> tuple[str, str]:
    """What a transport error was, in words, and what the user can do about it.

    >>> describe(ConnectionRefusedError(111, "Connection refused"), 60)[0]
    'could not connect ([Errno 111] Connection refused)'
    """
    for cause in _chain(error):
        kinds = {kind.__name__ for kind in type(cause).__mro__}
        if kinds & {"TimeoutException", "TimeoutError", "ReadTimeout", "ConnectTimeout", "Timeout"}:
            return (
                f"the server sent nothing for {timeout:g} s ({DOWNLOAD_TIMEOUT_ENV}={timeout:g})",
                f"load again; if the server is slow rather than stalled, give it longer with {DOWNLOAD_TIMEOUT_ENV}",
            )
        if "TooManyRedirects" in kinds:
            return ("the server redirected in a loop (one redirect after another, never the file)",
                    f"check HF_ENDPOINT and any proxy between you and the Hub, {_YOURSELF}")
        if (
            "RemoteProtocolError" in kinds
            or "ChunkedEncodingError" in kinds
            or "Consistency check failed" in str(cause)
        ):
            return ("the connection closed before the whole file arrived (the partial download was not kept)",
                    f"load again; if it keeps failing, check the network (or a proxy), {_YOURSELF}")
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            from huggingface_hub import constants

            return (f"the disk of the huggingface_hub cache ({constants.HF_HUB_CACHE}) is full",
                    "free some space, or point HF_HUB_CACHE at a disk that has it")
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):
            return (f"the server answered HTTP {status}",
                    f"load again later; if it keeps failing, check HF_ENDPOINT, {_YOURSELF}")
        if kinds & {"ConnectError", "ConnectionError"}:
            first = str(cause).strip().splitlines()
            return (
                f"could not connect ({first[0] if first else type(cause).__name__})",
                f"check the network, HF_ENDPOINT and any proxy; set HF_HUB_OFFLINE=1 to use only the cache, "
                f"{_YOURSELF}",
            )
    first = str(error).strip().splitlines()
    return (first[0] if first else type(error).__name__,
            f"load again; if it keeps failing, check the network and HF_ENDPOINT, {_YOURSELF}")
