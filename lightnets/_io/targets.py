"""Where a write lands, and whether a plain write could make it there.

A path names one of three kinds of target:

- standard output (``-``), a FIFO, a character or block device, a socket, or a name that reaches an open file
  through ``/proc`` (``/dev/stdout``, ``/dev/fd/3``): written into in place, never renamed over;
- anything else: a regular file or folder, existing or not, replaced whole through a temporary sibling. A
  symlink is followed to its target, which is what gets replaced; the link stays a link.

A target that a plain write could not change is refused with a :class:`WriteError` naming it: a read-only
file or folder (judged by its mode bits as well as by ``os.access``, so that root, who may write anywhere,
still leaves a file marked read-only alone), a missing or read-only parent folder, a folder where a file is
asked for and the reverse.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> os.symlink("real.txt", os.path.join(folder, "link.txt"))
>>> resolve(os.path.join(folder, "link.txt")).path.name
'real.txt'
>>> resolve("-").in_place
True
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

__all__ = ["STDOUT", "PathLike", "WriteError", "Target", "resolve", "resolve_target", "check_target", "check_writable",
           "new_file_mode", "new_folder_mode", "as_write_error", "is_storage_error", "storage_failures_named"]

PathLike = Union[str, "os.PathLike[str]"]

STDOUT = "-"
_MAX_SYMLINKS = 40  # the kernel's own limit (MAXSYMLINKS)
# Errors of the storage itself: raised while writing, they mean the disk, not the caller's code, failed.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


class WriteError(OSError):
    """A write lightnets refused or could not finish; the message names the path and what to do.

    ``errno`` says why (EACCES, ENOSPC, ...); the message is shown without OSError's ``[Errno N]`` prefix.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


@dataclass(frozen=True)
class Target:
    """What a write to ``given`` changes: ``path``, with symlinks followed, and whether it is written in place."""

    given: str  # the path as the caller named it
    path: Path  # the file or folder that changes (symlinks followed); for standard output, ``-``
    in_place: bool  # standard output, a FIFO, a device, a socket or a name through /proc: written into, never renamed

    @property
    def shown(self) -> str:
        """The path for a message: as given, and where it leads when that is elsewhere."""
        if self.given == STDOUT or self.path == Path(os.path.abspath(self.given)):
            return self.given
        return f"{self.given} (-> {self.path})"


def _is_stream(path: str) -> bool:
    """True for a FIFO, a character or block device or a socket (symlinks followed)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def _reaches_through_proc(path: str) -> bool:
    """True when following ``path``'s symlinks passes through ``/proc``, as ``/dev/stdout`` -> ``/proc/self/fd/1``
    does: such a name stands for a file some process has open, and renaming over it would cut that tie."""
    current = os.path.abspath(path)
    for _ in range(_MAX_SYMLINKS):
        folder, name = os.path.split(current)
        current = os.path.join(os.path.realpath(folder), name)
        if current == "/proc" or current.startswith("/proc/"):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return False


def resolve(path: PathLike) -> Target:
    """The :class:`Target` a write to ``path`` changes."""
    given = os.fspath(path)
    if given == STDOUT:
        return Target(given, Path(STDOUT), in_place=True)
    in_place = _is_stream(given) or _reaches_through_proc(given)
    return Target(given, Path(os.path.realpath(given)), in_place)


def resolve_target(path: PathLike) -> Path:
    """The file or folder a write to ``path`` changes: symlinks followed to their (possibly missing) target."""
    return resolve(path).path


def _read_only(path: Path) -> bool:
    mode = os.stat(path).st_mode
    return not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def check_writable(path: PathLike, *, what: str = "file") -> Path:
    """The file or folder a write to ``path`` changes, if a plain write could create or change it as a ``what``
    (``"file"`` or ``"folder"``); a :class:`WriteError` naming it and what to do otherwise.

    >>> import tempfile
    >>> check_writable(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    lightnets._io.targets.WriteError: ... is a folder: name a file to write
    """
    return check_target(path, what=what).path


def check_target(path: PathLike, *, what: str = "file") -> Target:
    """The :class:`Target` of ``path``, checked as :func:`check_writable` does."""
    if what not in ("file", "folder"):
        raise ValueError(f"what={what!r}: check_writable checks a 'file' or a 'folder'")
    target = resolve(path)
    if target.given == STDOUT:
        if what == "folder":
            raise WriteError(errno.ENOTDIR, "- (standard output) is not a folder: name a folder to write")
        return target
    if target.in_place:
        if what == "folder":
            raise WriteError(
                errno.ENOTDIR, f"{target.shown} is not a folder (a FIFO, device or open file): name a folder"
            )
        if _read_only(Path(target.given)):
            raise WriteError(errno.EACCES, f"{target.shown} is read-only: make it writable, or name another path")
        return target
    if target.path.exists():
        if what == "file" and target.path.is_dir():
            raise WriteError(errno.EISDIR, f"{target.shown} is a folder: name a file to write")
        if what == "folder" and not target.path.is_dir():
            raise WriteError(
                errno.ENOTDIR, f"{target.shown} is an existing file, not a folder: name a folder, or move the file away"
            )
        if _read_only(target.path):
            raise WriteError(errno.EACCES, f"{target.shown} is read-only: make it writable, or name another path")
    parent = target.path.parent
    if not parent.is_dir():
        raise WriteError(errno.ENOENT, f"cannot write {target.shown}: the folder {parent} does not exist")
    if _read_only(parent):
        # Even an existing writable file: it is replaced through a temporary sibling, which its folder must take.
        raise WriteError(
            errno.EACCES,
            f"cannot write {target.shown}: the folder {parent} is read-only; make it writable, "
            f"or name a path in another folder",
        )
    return target


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (another thread may be creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def new_folder_mode() -> int:
    """The permissions ``mkdir`` gives a new folder: ``0o777`` less the umask."""
    return 0o777 & ~_umask()


def is_storage_error(error: BaseException) -> bool:
    """True for an OSError of the storage itself (a full disk or quota, a file too large, an I/O or read-only-disk
    error)."""
    return isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS


def as_write_error(error: OSError, target: Target) -> WriteError:
    """``error`` as one :class:`WriteError` naming ``target`` (a WriteError already is one)."""
    if isinstance(error, WriteError):
        return error
    reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else (error.strerror or str(error))
    what = "left unchanged" if not target.in_place else "written in part (a stream cannot be rolled back)"
    return WriteError(error.errno or errno.EIO, f"could not write {target.shown}: {reason}; it was {what}")


@contextlib.contextmanager
def storage_failures_named(target: Target) -> Iterator[None]:
    """Let a caller's errors through as they are, except a failure of the storage, which becomes a
    :class:`WriteError` naming ``target``."""
    try:
        yield
    except OSError as error:
        if is_storage_error(error):
            raise as_write_error(error, target) from None
        raise
