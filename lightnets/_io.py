"""The one place that writes: atomic files, staged folders, and the rules every writer of lightnets follows.

A write must leave either the old content or the whole new content, never half of it, and must change
what a plain ``open(path, "w")`` would change and nothing else:

- a symlink is followed, and its *target* is replaced atomically (the link stays a link);
- a FIFO, a character or block device, or ``-`` (standard output) is streamed into, never renamed over;
- a new file gets the permissions a plain write gives (``0o666`` less the umask), a replaced file keeps
  its mode (and, where we may, its owner); a new folder gets ``0o777`` less the umask, not ``mkdtemp``'s 0700;
- a target a plain write could not change is refused: a read-only file or folder, judged by its mode
  bits as well as by ``os.access`` (root may write anywhere, but a file marked read-only stays unwritten);
- no temporary is left behind after success or failure (only a SIGKILL can leave a hidden ``.name.*.tmp``);
- a full disk, or any other OS failure, is one :class:`WriteError` naming the path.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "table.txt"
>>> write_text(path, "hello\\n").read_text()
'hello\\n'
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

STDOUT = "-"
_RENAME_EXCHANGE = 2  # linux/fs.h


class WriteError(OSError):
    """A write lightnets refused or could not finish; the message names the path and what to do."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_stream(path: Path) -> bool:
    """True for a FIFO, a character or block device or a socket: written into in place, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def resolve_target(path: PathLike) -> Path:
    """The path a write to ``path`` changes: symlinks followed to their (possibly missing) target."""
    return Path(os.path.realpath(os.fspath(path)))


def _read_only(path: Path) -> bool:
    mode = os.stat(path).st_mode
    return not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def check_writable(path: PathLike, *, what: str = "file") -> Path:
    """The target of ``path`` if a plain write could create or change it; a :class:`WriteError` otherwise.

    Refused: an existing folder where a file is asked for (and the reverse), a read-only file, and a
    missing or read-only parent folder.
    """
    given = Path(path)
    target = resolve_target(given)
    shown = f"{given}" if target == given.absolute() else f"{given} (-> {target})"
    if target.exists() and not _is_stream(target):
        if what == "file" and target.is_dir():
            raise WriteError(errno.EISDIR, f"{shown} is a folder: name a file to write")
        if what == "folder" and not target.is_dir():
            raise WriteError(errno.ENOTDIR, f"{shown} is an existing file, not a folder: name a folder, or move the file away")
        if _read_only(target):
            raise WriteError(errno.EACCES, f"{shown} is read-only: make it writable, or name another path")
    elif not target.exists():
        parent = target.parent
        if not parent.is_dir():
            raise WriteError(errno.ENOENT, f"cannot write {shown}: the folder {parent} does not exist")
        if _read_only(parent):
            raise WriteError(errno.EACCES, f"cannot write {shown}: the folder {parent} is read-only")
    return target


def _copy_ownership(source_stat: os.stat_result, path: str) -> None:
    with contextlib.suppress(OSError):  # only root may give a file to another user; elsewhere keep ours
        if (source_stat.st_uid, source_stat.st_gid) != (os.getuid(), os.getgid()):
            os.chown(path, source_stat.st_uid, source_stat.st_gid)


def _os_error(error: OSError, target: Path) -> WriteError:
    if isinstance(error, WriteError):
        return error
    reason = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
    return WriteError(error.errno or errno.EIO, f"could not write {target}: {reason}; nothing was changed")


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: Optional[str] = None) -> Iterator[BinaryIO]:
    """Open ``path`` for writing so that it is replaced whole when the block ends without an error.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise). ``-`` writes to
    standard output; FIFOs and devices are written into directly. If the block raises, the target is
    left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r}: atomic_open writes 'wb' or 'w'")
    text = mode == "w"
    if os.fspath(path) == STDOUT:
        stream = sys.stdout if text else sys.stdout.buffer
        yield stream
        stream.flush()
        return
    target = check_writable(path)
    if _is_stream(target):
        try:
            with open(target, mode, encoding=(encoding or "utf-8") if text else None) as handle:
                yield handle
        except OSError as error:
            raise _os_error(error, target) from None
        return
    existing = os.stat(target) if target.exists() else None
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise _os_error(error, target) from None
    try:
        with os.fdopen(handle, mode, encoding=(encoding or "utf-8") if text else None) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if existing is not None:
            os.chmod(temporary, stat.S_IMODE(existing.st_mode))
            _copy_ownership(existing, temporary)
        else:
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except OSError as error:
        raise _os_error(error, target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "wb") as out:
        out.write(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "w") as out:
        out.write(text)
    return Path(path)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE) == 0


def _carry_over(old: Path, staging: Path) -> None:
    """Hard-link (or copy) into ``staging`` the files of ``old`` that the new content did not write."""
    for entry in os.scandir(old):
        target = staging / entry.name
        if target.exists() or entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True)
        else:
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target)


@contextlib.contextmanager
def staged_folder(path: PathLike, *, keep_other_files: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of the folder ``path``; when the block ends, it becomes that folder.

    A symlink to a folder is followed: the folder it points to is replaced, the link stays. An existing
    regular file at ``path`` is refused (:class:`WriteError`), never replaced by a folder. Files of an
    existing folder that the block did not write are carried over when ``keep_other_files``. The swap is
    one atomic step where the kernel offers it (renameat2), so a crash leaves the old whole folder or the
    new one; the new folder gets the permissions ``mkdir`` would give (an existing one keeps its mode).
    """
    given = Path(path)
    target = resolve_target(given)
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _os_error(error, target) from None
    target = check_writable(given, what="folder")
    existing = os.stat(target) if target.exists() else None
    try:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as error:
        raise _os_error(error, target) from None
    try:
        yield staging
        if existing is not None and keep_other_files:
            _carry_over(target, staging)
        for file in staging.iterdir():  # on disk before the rename makes them the folder's
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        os.chmod(staging, stat.S_IMODE(existing.st_mode) if existing is not None else 0o777 & ~_umask())
        if existing is None:
            os.rename(staging, target)
        elif not _exchange(staging, target):  # no atomic swap: two renames, the old folder kept until the end
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            try:
                os.rename(target, old / "folder")
                os.rename(staging, target)
            finally:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise _os_error(error, target) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the old folder
