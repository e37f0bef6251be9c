"""Find the file of a pretrained weight, downloading it if it must, and verify its sha256.

:func:`resolve_weights` looks in this order: an explicit ``pretrained_path`` (file or Hub-layout
folder); the bundled ``weights/`` folder (the cfg's ``file``, or the ``name.tag`` entry of
``weights/index.json``); the Hugging Face Hub repo of the cfg (``hf_hub_id``, through
:func:`huggingface_hub.hf_hub_download`, so HF_ENDPOINT, HF_HUB_OFFLINE, the standard cache and
``revision`` pinning all apply, with lightnets' one download timeout and no hidden retries:
:mod:`~lightnets.pretrained.hub`); a ``url`` to a ``.safetensors`` (:func:`lightnets._io.download`: verified
and parsed before it takes its name in torch.hub's checkpoints folder). Only safetensors files are taken
from a download, so nothing downloaded is ever unpickled. A download larger than the weight could be
(:class:`SizeLimit`) is refused before it is made; a failed one is one :class:`WeightsUnavailableError` naming
the repo or URL, the file, what happened and what to do.

>>> path = resolve_weights({"architecture": "smallcnn_3x2", "tag": "fmnist"})
>>> path.parent.name, path.name
('smallcnn_3x2.fmnist', 'model.safetensors')
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Union

from .. import _io
from ..weight_cfg import WeightCfg, as_weight_cfg
from . import hub, manifest
from .manifest import INDEX_NAME, WEIGHTS_NAME, read_index

__all__ = ["ChecksumError", "SizeLimit", "WeightsUnavailableError", "resolve_weights", "sha256sum"]

PathLike = Union[str, Path]


class ChecksumError(ValueError):
    """A weight file's sha256 is not the one its cfg or the manifest records."""


class WeightsUnavailableError(OSError):
    """No source of a pretrained weight could deliver it; the message says what was tried."""


def sha256sum(path: PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"lightnets")
    >>> sha256sum(f.name)[:16]
    '79c4868ab4d4460c'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: Optional[str], advice: str) -> None:
    """Raise :class:`ChecksumError` naming the file and both checksums, then what to do about it."""
    if not expected:
        return
    actual = sha256sum(path)
    if actual != expected:
        raise ChecksumError(f"sha256 mismatch for {path}: expected {expected}, got {actual}. {advice}")


def _bundled_folder(path: Path) -> Optional[str]:
    """The folder of ``weights/`` (:data:`manifest.WEIGHTS_DIR`) that ``path`` lies in; None outside it."""
    try:
        parts = path.resolve().relative_to(manifest.WEIGHTS_DIR.resolve()).parts
    except ValueError:
        return None
    return parts[0] if parts else None


def _restore_advice(folder: str) -> str:
    """What to do about a bundled weight that fails its checksum: restore it, never delete it (it ships)."""
    weights_dir = manifest.WEIGHTS_DIR.resolve()
    git = f"`git checkout -- weights/{folder}`"
    reinstall = "reinstall lightnets (`pip install --force-reinstall --no-deps lightnets`)"
    if weights_dir == manifest.INSTALLED_WEIGHTS_DIR:
        how = reinstall
    elif weights_dir == manifest.CHECKOUT_WEIGHTS_DIR:
        how = f"{git} in the source checkout"
    else:
        how = f"{git} in a source checkout, or {reinstall}"
    return (f"It is a bundled weight, changed since lightnets shipped it (e.g. a training run wrote over it): "
            f"do not delete it, restore it with {how}. If it was retrained on purpose, rebuild the manifest "
            f"with `lightnets-weights index`")


def _local_advice() -> str:
    return ("The file was replaced or is corrupt: write it again (lightnets.save_pretrained), or give the "
            "sha256 of the file you mean in the pretrained cfg")


def _hub_advice() -> str:
    from huggingface_hub import constants

    return (f"The download is corrupt or the repo's file was replaced: delete its snapshot in the huggingface_hub "
            f"cache ({constants.HF_HUB_CACHE}) and load again. If the Hub repo was updated since the checksum was "
            f"recorded, pin the revision it belongs to (revision= in the pretrained cfg, or 'org/repo@rev')")


def _weights_file(path: Path) -> Path:
    """A weight file, or the ``model.safetensors`` of a Hub-layout folder."""
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsUnavailableError(
            f"no weight file at {path} (expected a .safetensors file or a folder holding {WEIGHTS_NAME})"
        )
    return path


def resolve_weights(cfg: Union[WeightCfg, Mapping[str, Any]], pretrained_path: Optional[PathLike] = None, *,
                    limit: Optional[SizeLimit] = None) -> Path:
    """The local, verified weight file of a pretrained cfg (typed, or its plain dict), downloading it if it must.

    ``limit``: the largest file a download may be (:meth:`SizeLimit.for_weights`, which
    :func:`~lightnets.pretrained.load_pretrained` gives from the model's own parameter count): a Hub file or URL
    that announces more is refused before it is downloaded.

    >>> resolve_weights({"architecture": "mobilenet_v1_100"})
    Traceback (most recent call last):
    ...
    lightnets.pretrained.download.WeightsUnavailableError: mobilenet_v1_100 has no weight source: its pretrained cfg names no file, hf_hub_id or url, and weights/index.json has no entry for it
    """
    if pretrained_path is not None:
        return _weights_file(Path(pretrained_path).expanduser())
    cfg = as_weight_cfg(cfg)
    name = cfg.weight_name
    weights_dir = manifest.WEIGHTS_DIR
    # The manifest's own entry, read as it is: a partial or broken entry must still say what is wrong with its checksum.
    indexed = read_index(weights_dir).get(name, {})
    expected_sha = _expected_sha256(cfg, indexed, name)
    bundled = cfg.file or indexed.get("folder")
    if bundled:
        path = Path(bundled) if Path(bundled).is_absolute() else weights_dir / bundled
        if path.exists():
            path = _weights_file(path)
            folder = _bundled_folder(path)
            _verify(path, expected_sha, _restore_advice(folder) if folder else _local_advice())
            return path
    hf_hub_id = cfg.hf_hub_id or indexed.get("hf_hub_id")
    if hf_hub_id:
        filename = cfg.hf_hub_filename or WEIGHTS_NAME
        if not filename.endswith(".safetensors"):
            raise ValueError(
                f"{name}: only .safetensors weights are loaded from the Hub, got hf_hub_filename={filename!r}"
            )
        repo_id, revision = _split_revision(hf_hub_id, cfg.revision)
        path = _download_from_hub(repo_id, filename, revision, name, limit=limit)
        if not _intact(path, expected_sha):  # a corrupt cached file is fetched again, once, and checked again
            path = _download_from_hub(repo_id, filename, revision, name, force=True, limit=limit)
            _verify(path, expected_sha, _hub_advice())
            if not _intact(path, None):
                raise ChecksumError(f"{name}: {path} downloaded again from {repo_id} and still does not parse as "
                                    f"safetensors. " + _hub_advice())
        return path
    if cfg.url:
        return _download_url(cfg.url, name, expected_sha, limit)
    if bundled:
        raise WeightsUnavailableError(
            f"{name}: bundled weights not found at {weights_dir / bundled} and no hf_hub_id or url to fetch them from"
        )
    if cfg.download_page:
        raise WeightsUnavailableError(
            f"{name}: its publisher ({cfg.source or 'the source'}) gives this weight only as a manual download: get "
            f"{cfg.download_file or 'the checkpoint'} from {cfg.download_page}, then pass it: "
            f"create_model({name!r}, pretrained=True, pretrained_path='path/to/the/file')"
        )
    raise WeightsUnavailableError(
        f"{name} has no weight source: its pretrained cfg names no file, hf_hub_id or url, "
        f"and weights/{INDEX_NAME} has no entry for it"
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _expected_sha256(cfg: WeightCfg, indexed: Mapping[str, Any], name: str) -> Optional[str]:
    """The sha256 a weight must have: the cfg's, else its manifest entry's. A recorded checksum that is empty or
    not 64 hex digits, or a manifest entry without one, is an error: a broken checksum never means "skip the check"."""
    if cfg.sha256 is not None:
        value, where = cfg.sha256, "its pretrained cfg"
    elif indexed:
        value, where = indexed.get("sha256"), f"weights/{INDEX_NAME}"
    else:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ChecksumError(
            f"{name}: the sha256 recorded in {where} is {value!r}, not 64 hex digits, so the file cannot be "
            f"verified; rebuild the manifest with `lightnets-weights index` (or give the right sha256)"
        )
    return value


def _split_revision(hf_hub_id: str, revision: Optional[str]) -> tuple[str, Optional[str]]:
    """``"org/name@v1"`` → ``("org/name", "v1")`` (timm's way of pinning a revision); an explicit revision wins.

    >>> _split_revision("org/name@v1", None), _split_revision("org/name@v1", "v2")
    (('org/name', 'v1'), ('org/name', 'v2'))
    """
    repo_id, _, pinned = hf_hub_id.partition("@")
    return repo_id, revision or pinned or None


def _intact(path: Path, expected_sha: Optional[str]) -> bool:
    """The file has the expected sha256 (when one is known) and, if it is a ``.safetensors`` file, a header that
    parses."""
    if expected_sha and sha256sum(path) != expected_sha:
        return False
    return path.suffix != ".safetensors" or _parses_as_safetensors(path)


def _parses_as_safetensors(path: Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt"):
            return True
    except Exception:  # noqa: BLE001 (safetensors raises its own error types for a bad header)
        return False


class SizeLimit(NamedTuple):
    """The largest file a download may be: ``max_bytes``, ``what`` it is the limit of, and the ``rule`` that sets it."""

    max_bytes: int
    what: str
    rule: str

    @classmethod
    def for_weights(cls, architecture: str, numbers: int) -> "SizeLimit":
        """A weight of ``architecture``, whose parameters and buffers hold ``numbers`` numbers: float64 (8 bytes,
        twice what lightnets writes) for each, plus 1 MiB for the safetensors header.

        >>> SizeLimit.for_weights("smallcnn_3x2", 1000).rule
        '8 bytes (float64) for each of its 1,000 parameters and buffers, plus 1 MiB of header: 1,056,576 bytes'
        """
        max_bytes = 8 * numbers + HEADER_ALLOWANCE
        return cls(max_bytes, f"a weight of {architecture}",
                   f"8 bytes (float64) for each of its {numbers:,} parameters and buffers, plus 1 MiB of header: "
                   f"{max_bytes:,} bytes")


HEADER_ALLOWANCE = 1 << 20
# A config.json is a few kB of text (label names included); this is what a Hub repo's may be before it is refused.
CONFIG_LIMIT = SizeLimit(16 << 20, "a config.json", "16 MiB, far more than any model's settings and label names take")


def _too_large(name: str, source: str, limit: SizeLimit, advice: str) -> WeightsUnavailableError:
    """A download refused for its size; ``source`` names the file and says how large it is."""
    return WeightsUnavailableError(f"{name}: {source}, more than {limit.what} can be ({limit.rule}); it was not "
                                   f"downloaded. {advice}")


def _download_from_hub(repo_id: str, filename: str, revision: Optional[str], name: str, force: bool = False,
                       limit: Optional[SizeLimit] = None) -> Path:
    """``hf_hub_download`` within lightnets' download timeout and without hidden retries
    (:func:`lightnets.pretrained.hub.hub_settings`), its errors turned into one :class:`WeightsUnavailableError` each.

    Online, the file's metadata is asked for first, once: a file larger than ``limit`` is refused before it is
    downloaded, and a Hub that cannot be reached (stalled, failing, redirecting in a loop) leaves only the cache,
    from which the file is taken if it is there (never when ``force``: then the cached copy is the one known bad).
    """
    from huggingface_hub import constants, hf_hub_download

    errors = hub.hub_errors()
    where = f"{constants.ENDPOINT}/{repo_id}" + (f" at revision {revision}" if revision else "")
    timeout = _io.download_timeout()
    unreachable: Optional[BaseException] = None  # why the metadata could not be had
    try:
        with hub.hub_settings(timeout):
            if not hub.is_offline() and (force or not hub.cached_at_commit(repo_id, filename, revision)):
                try:
                    size = hub.announced_size(repo_id, filename, revision, timeout)
                except (errors.revision_missing, errors.entry_missing, errors.repo_missing, errors.invalid_id):
                    raise
                except hub.transport_errors() as error:
                    if force:
                        raise
                    unreachable = error
                else:
                    if limit is not None and size is not None and size > limit.max_bytes:
                        raise _too_large(name, f"{filename} of Hub repo {where} is {size:,} bytes", limit,
                                         "It is not this model's weight: check hf_hub_id and hf_hub_filename in the "
                                         "pretrained cfg")
            return Path(hf_hub_download(repo_id, filename, revision=revision, force_download=force,
                                        local_files_only=unreachable is not None, etag_timeout=timeout))
    except errors.not_cached as error:  # before entry_missing: in huggingface_hub 0.x it is a subclass of it
        if hub.is_offline():
            raise WeightsUnavailableError(
                f"{name}: HF_HUB_OFFLINE is set and {filename} of {repo_id} is not in the cache "
                f"({constants.HF_HUB_CACHE}); download it once online, or pass pretrained_path="
            ) from error
        what, advice = hub.describe(unreachable or error.__cause__ or error, timeout)
        raise WeightsUnavailableError(
            f"{name}: could not download {filename} from {where}, and it is not cached: {what}; {advice}"
        ) from error
    except errors.revision_missing as error:
        raise WeightsUnavailableError(f"{name}: revision {revision!r} not found in Hub repo {where}") from error
    except errors.entry_missing as error:
        raise WeightsUnavailableError(f"{name}: Hub repo {where} has no file {filename!r}") from error
    except errors.repo_missing as error:  # also a private or gated repo without a token
        raise WeightsUnavailableError(
            f"{name}: Hub repo {where} not found (or private: log in with `hf auth login`)"
        ) from error
    except errors.invalid_id as error:
        raise WeightsUnavailableError(f"{name}: {repo_id!r} is not a Hub repo id ({error}); give org/name") from None
    except WeightsUnavailableError:
        raise
    except (*hub.transport_errors(), ValueError) as error:  # ValueError: hf's "force download failed", "install hf_xet"
        what, advice = hub.describe(error, timeout)
        raise WeightsUnavailableError(
            f"{name}: could not download {filename} from {where}: {what}; {advice}"
        ) from error


def _url_cache_path(url: str) -> Path:
    """Where a ``url`` weight is cached: torch.hub's checkpoints folder, keyed by the whole URL (every Hub-style
    URL ends in model.safetensors, so the file name alone would collide)."""
    import torch

    url_key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(torch.hub.get_dir()) / "checkpoints" / f"{url_key}-{url.split('?')[0].rsplit('/', 1)[-1]}"


def _download_url(url: str, name: str, expected_sha: Optional[str], limit: Optional[SizeLimit] = None) -> Path:
    """A ``.safetensors`` URL's file: from the cache when it verifies and parses, else downloaded once more.

    The body is checked (its sha256 when one is recorded, its safetensors header) before it takes the cache
    name, so a truncated or corrupt response is never cached; a cached file that no longer verifies or parses
    (an older version's, or one written before these checks) is fetched again, once.
    """
    if not url.split("?")[0].endswith(".safetensors"):
        raise ValueError(f"{name}: only .safetensors URLs are loaded (a .pth would be unpickled), got url={url!r}")
    target = _url_cache_path(url)
    if target.is_file() and _intact(target, expected_sha):
        return target

    def verified(temporary: Path) -> None:
        actual = sha256sum(temporary) if expected_sha else None
        if actual != expected_sha:
            raise ChecksumError(
                f"{name}: sha256 mismatch for the download of {url}: expected {expected_sha}, got {actual}. "
                f"The download is corrupt or the file at the URL changed: load again, or use the URL of "
                f"the version the checksum was recorded for"
            )
        if not _parses_as_safetensors(temporary):
            raise WeightsUnavailableError(
                f"{name}: the download of {url} is not a readable safetensors file (a truncated "
                f"or corrupt response, not cached): load again, or download the file "
                f"yourself and pass it as pretrained_path="
            )

    try:
        return _io.download(url, target, check=verified, max_bytes=limit.max_bytes if limit else None)
    except _io.DownloadError as error:
        if limit is not None and error.too_large is not None:
            raise _too_large(name, f"{url} {error.too_large}", limit, "It is not this model's weight: check the url in "
                             "the pretrained cfg") from None
        raise WeightsUnavailableError(f"{name}: {error}; load again, or download the file yourself and pass it as "
                                      f"pretrained_path=") from None
