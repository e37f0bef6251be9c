"""Staged folders: a folder's files are written into a temporary sibling, which then replaces the folder whole.

A crash or a kill at any point leaves either the old complete folder or the new complete one (a SIGKILL may
leave a hidden ``.name.*.tmp`` sibling beside it, never a half-written folder under the name).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "weights"
>>> with staged_folder(folder) as staging:
...     _ = (staging / "config.json").write_text("{}")
>>> sorted(p.name for p in folder.iterdir())
['config.json']
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .files import fsync_folder
from .targets import PathLike, Target, as_write_error, check_target, new_folder_mode, resolve, storage_failures_named

__all__ = ["staged_folder"]

_RENAME_EXCHANGE = 2  # linux/fs.h: renameat2 swaps the two paths in one step
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0


# What a killed write leaves: ``.name.XXXXXXXX.tmp`` (a folder), ``.name.XXXXXXXX.tmp.ext`` (a file), ``.old``.
_OUR_TEMPORARY = re.compile(r"\..*\.[a-z0-9_]{8}\.(tmp(\.[^.]*)?|old)")


def _is_our_temporary(name: str) -> bool:
    """A hidden temporary that a killed write left inside the folder: not carried over into the new one."""
    return _OUR_TEMPORARY.fullmatch(name) is not None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _carry_over(old: Path, staging: Path) -> None:
    """Hard-link (or copy) into ``staging`` what ``old`` holds and the new content did not write."""
    for entry in os.scandir(old):
        target = staging / entry.name
        if os.path.lexists(target) or _is_our_temporary(entry.name):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, str(target))


def _sync_files(folder: Path) -> None:
    """The new files on disk before the rename makes them the folder's."""
    for file in folder.iterdir():
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def _replace(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of the existing folder ``target``: one atomic swap where the kernel offers it,
    else two renames, the old folder put back if the second one fails."""
    if _exchange(staging, target):
        return  # staging now holds the old folder, removed by the caller
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name[:200]}.", suffix=".old"))
    try:
        os.rename(target, old / "folder")
        try:
            os.rename(staging, target)
        except OSError:
            os.rename(old / "folder", target)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _make_parents(target: Target) -> None:
    if target.in_place or target.path.exists():
        return
    try:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise as_write_error(error, target) from None


@contextlib.contextmanager
def staged_folder(path: PathLike, *, keep_other_files: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of the folder ``path``; when the block ends, it becomes that folder.

    Missing parent folders are created. A symlink to a folder is followed: the folder it points to is replaced,
    the link stays. An existing regular file at ``path`` is refused (:class:`~lightnets._io.targets.WriteError`
    naming it), never replaced by a folder, and so is a read-only folder. What an existing folder holds and the
    block did not write is carried over when ``keep_other_files``. The new folder gets the permissions ``mkdir``
    would give; a replaced one keeps its mode. If the block raises, the folder is left as it was.
    """
    _make_parents(resolve(path))
    target = check_target(path, what="folder")
    folder = target.path
    try:
        existing = os.stat(folder) if folder.exists() else None
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name[:200]}.", suffix=".tmp"))
    except OSError as error:
        raise as_write_error(error, target) from None
    try:
        with storage_failures_named(target):
            yield staging
        try:
            if existing is not None and keep_other_files:
                _carry_over(folder, staging)
            _sync_files(staging)
            os.chmod(staging, existing.st_mode & 0o7777 if existing is not None else new_folder_mode())
            if existing is None:
                os.rename(staging, folder)
            else:
                _replace(staging, folder)
        except OSError as error:
            raise as_write_error(error, target) from None
        fsync_folder(folder.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the old folder
