"""Weights published in another library's format: download, verify, convert once, cache as safetensors.

A pytorchcv ``.pth.zip``, a Keras ``.h5`` or a megvii ``.pth.tar`` is converted to lightnets' layout
(:mod:`lightnets.pretrained.convert`) the first time it is loaded, and the result is cached as
safetensors under :func:`cache_dir` (``$LIGHTNETS_CACHE``, else ``$XDG_CACHE_HOME/lightnets``, else
``~/.cache/lightnets``), keyed by the source URL, or by the sha256 of a file the user passed. A second
load reads the cache: no download, no unpickling. Every write goes through :mod:`lightnets._io` (a
temporary sibling, renamed into place when complete), so an interrupted download or conversion never
leaves a file behind that a later load would trust.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .. import _io
from ..weight_cfg import WeightCfg
from .download import ChecksumError, SizeLimit, WeightsUnavailableError, _too_large, sha256sum
from .native import WeightsFileError, read_weights, zip_member_sha1

__all__ = ["cache_dir", "converted_from_file", "converted_from_url", "download_file", "safetensors_bytes",
           "save_state_dict"]

StateDict = dict[str, torch.Tensor]


def cache_dir() -> Path:
    """Where converted weights are cached: ``$LIGHTNETS_CACHE``, ``$XDG_CACHE_HOME/lightnets`` or
    ``~/.cache/lightnets``."""
    if os.environ.get("LIGHTNETS_CACHE"):
        return Path(os.environ["LIGHTNETS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lightnets"


def safetensors_bytes(state_dict: StateDict, metadata: Optional[dict[str, str]] = None) -> bytes:
    """A safetensors file's bytes, the same for the same tensors and metadata.

    safetensors writes its ``__metadata__`` in hash-map order, which changes from run to run; the header
    is rewritten here with the metadata sorted (same keys and values, so the same length).
    """
    import json

    from safetensors.torch import save

    raw = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=metadata or None)
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    meta = header.pop("__metadata__", None)
    ordered = {**({"__metadata__": dict(sorted(meta.items()))} if meta else {}), **header}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # serialised differently from safetensors: keep its own bytes
        return raw
    return raw[:8] + text + b" " * (length - len(text)) + raw[8 + length:]


def save_state_dict(state_dict: StateDict, path: Path, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write a safetensors file atomically (:func:`lightnets._io.write_bytes`; its folder made if missing) and
    deterministically (:func:`safetensors_bytes`)."""
    return _io.write_bytes(path, safetensors_bytes(state_dict, metadata), parents=True)


def download_file(url: str, target: Path, name: str, limit: Optional[SizeLimit] = None) -> Path:
    """Download ``url`` to ``target`` (:func:`lightnets._io.download`: a temporary sibling, renamed once whole,
    every network operation bounded by ``LIGHTNETS_DOWNLOAD_TIMEOUT``, :func:`lightnets._io.download_timeout`).

    Every transport failure is one :class:`WeightsUnavailableError` naming the weight and the URL; so is a file
    larger than ``limit`` (refused before its body is read when the server announces its length).
    """
    try:
        return _io.download(url, target, max_bytes=limit.max_bytes if limit else None)
    except _io.DownloadError as error:
        if limit is not None and error.too_large is not None:
            raise _too_large(name, f"{url} {error.too_large}", limit, "It is not this model's weight: check the url "
                             "in the pretrained cfg") from None
        raise WeightsUnavailableError(f"{name}: {error}; {_download_advice(error)}") from None


def _download_advice(error: _io.DownloadError) -> str:
    yourself = "download the file yourself and pass it as pretrained_path="
    if error.status is not None:
        return f"check the URL, or {yourself}"
    return f"load again; if it keeps failing, check the network (or a proxy), or {yourself}"


def _convert(state_dict: StateDict, cfg: WeightCfg, source: str) -> StateDict:
    from .convert import ConversionError, convert_state_dict

    try:
        return convert_state_dict(state_dict, cfg.source_format)
    except ConversionError as error:
        raise WeightsFileError(f"{source} is not the {cfg.source_format} weight this tag expects: {error}") from None


def _read_cached(path: Path) -> Optional[StateDict]:
    """A cached conversion, or None (and the file removed) when it is missing or does not parse."""
    if not path.is_file():
        return None
    try:
        return read_weights(path)
    except WeightsFileError:
        path.unlink(missing_ok=True)  # a corrupt cache entry is converted again, once
        return None


def _cache_path(name: str, key: str) -> Path:
    return cache_dir() / "converted" / name / f"{key}.safetensors"


def converted_from_file(path: Path, cfg: WeightCfg, name: str, first_conv: str) -> tuple[StateDict, Path]:
    """A source's own file (``pretrained_path=``) in lightnets' layout, converted once per file content.

    A file already in lightnets' layout (its ``first_conv`` key present) is returned as read.
    """
    cached = _cache_path(name, sha256sum(path)[:32])
    state_dict = _read_cached(cached)
    if state_dict is not None:
        return state_dict, cached
    state_dict = read_weights(path)
    if first_conv in state_dict:
        return state_dict, path
    state_dict = _convert(state_dict, cfg, str(path))
    save_state_dict(state_dict, cached, {"source": str(path), "source_format": cfg.source_format})
    return state_dict, cached


def _verify_source(path: Path, cfg: WeightCfg, url: str, name: str) -> None:
    """Check the sha1 a source publishes (pytorchcv: of the .pth inside its zip)."""
    expected = cfg.sha1
    if not expected:
        return
    actual = zip_member_sha1(path) if path.suffix == ".zip" else hashlib.sha1(path.read_bytes()).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{name}: sha1 mismatch for the file downloaded from {url}: expected {expected}, got {actual}. "
            f"The download is corrupt or the file at the URL changed; load again, or report it"
        )


def converted_from_url(cfg: WeightCfg, name: str, limit: Optional[SizeLimit] = None) -> tuple[StateDict, Path]:
    """The weight at ``cfg.url`` in lightnets' layout: from the cache, or downloaded (refused if larger than
    ``limit``), verified and converted."""
    url = cfg.url
    cached = _cache_path(name, hashlib.sha256(url.encode()).hexdigest()[:32])
    state_dict = _read_cached(cached)
    if state_dict is not None:
        return state_dict, cached
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    file_name = url.split("?")[0].rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(dir=downloads) as scratch:  # the source file is not kept once converted
        source = download_file(url, Path(scratch) / file_name, name, limit)
        _verify_source(source, cfg, url, name)
        state_dict = _convert(read_weights(source), cfg, url)
    save_state_dict(state_dict, cached, {"source": url, "source_format": cfg.source_format})
    return state_dict, cached

