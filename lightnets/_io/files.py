"""Atomic file writes: the old content or the whole new content, never half of it.

:func:`atomic_path` yields a temporary sibling to write (for a library that wants a path: ``torch.save``,
``torch.onnx.export``, ``savefig``); :func:`atomic_open` a file handle; :func:`write_bytes` and
:func:`write_text` take the content. When the block ends without an error, the temporary gets the permissions a
plain write would give (``0o666`` less the umask for a new file, the old file's mode and owner for a replaced
one) and is renamed over the target; if it raises, the target is left as it was and the temporary is removed.
A target written in place (:mod:`lightnets._io.targets`: standard output, a FIFO, a device) is streamed into
instead. A storage failure (a full disk) is one :class:`~lightnets._io.targets.WriteError` naming the path.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "table.txt"
>>> write_text(path, "hello\\n").read_text()
'hello\\n'
>>> with atomic_path(path) as temporary:
...     _ = temporary.write_text("bye\\n")
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('bye\\n', ['table.txt'])
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from .targets import (STDOUT, PathLike, Target, as_write_error, check_target, new_file_mode, resolve,
                      storage_failures_named)

__all__ = ["atomic_path", "atomic_open", "write_bytes", "write_text", "append_text", "fsync_folder"]

Check = Callable[[Path], None]


def _make_parents(path: PathLike) -> None:
    """Create the missing folders above ``path``'s target, as ``mkdir -p`` would (their mode follows the umask)."""
    target = resolve(path)
    if target.in_place:
        return
    try:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise as_write_error(error, target) from None


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _copy_ownership(source: os.stat_result, path: Path) -> None:
    with contextlib.suppress(OSError):  # only root may give a file to another user; elsewhere it stays ours
        if (source.st_uid, source.st_gid) != (os.getuid(), os.getgid()):
            os.chown(path, source.st_uid, source.st_gid)


def _writer() -> str:
    """This process as a temporary's name records it: ``host-pid`` (the host's first label, letters, digits and
    dashes)."""
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:32] or "host"
    return f"{host}-{os.getpid()}"


def _sibling(target: Path) -> Path:
    """A new, empty, hidden file beside ``target``: ``.name.host-pid.XXXXXXXX.tmp.ext``, ending in the target's own
    extension for the libraries that choose a format by it (matplotlib's savefig, onnx.save). What a killed writer
    of the same target left is removed first (:func:`_remove_killed_writers_temporaries`)."""
    _remove_killed_writers_temporaries(target)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:150]}.{_writer()}.",
                                    suffix=f".tmp{target.suffix[:20]}")
    os.close(handle)
    return Path(name)


def _remove_killed_writers_temporaries(target: Path) -> None:
    """Remove the temporaries of ``target`` whose writer, a process of this host, no longer runs: what a SIGKILL
    (or a power cut) left between creating a temporary and renaming it. A live writer's, another host's (a shared
    folder) or another user's are left alone; so is everything on a platform without POSIX process ids."""
    if os.name != "posix":
        return
    host = _writer().rsplit("-", 1)[0]
    ours = re.compile(
        rf"\.{re.escape(target.name[:150])}\.{re.escape(host)}-(\d+)\.[a-z0-9_]{{8}}\.tmp{re.escape(target.suffix[:20])}"
    )
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = ours.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _running(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): running
        return True
    return True


@contextlib.contextmanager
def _stream_through_temporary(target: Target, check: Optional[Check]) -> Iterator[Path]:
    """For a target written in place: the caller writes a temporary file, which is checked, then streamed in."""
    with tempfile.TemporaryDirectory(prefix="lightnets-") as scratch:
        temporary = Path(scratch) / (target.path.name if target.given != STDOUT else "output")
        temporary.touch()
        with storage_failures_named(target):
            yield temporary
        if check is not None:
            check(temporary)
        try:
            with open(temporary, "rb") as source:
                if target.given == STDOUT:
                    sys.stdout.flush()
                    shutil.copyfileobj(source, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                else:
                    with open(target.given, "wb") as out:
                        shutil.copyfileobj(source, out)
        except OSError as error:
            raise as_write_error(error, target) from None


@contextlib.contextmanager
def atomic_path(path: PathLike, *, parents: bool = False, check: Optional[Check] = None) -> Iterator[Path]:
    """Yield a temporary path to write instead of ``path``; when the block ends without an error, ``path`` gets
    that content whole.

    ``check(temporary)`` runs before the temporary takes the target's name: raising there leaves the target as
    it was (a download that does not parse is never named). ``parents`` creates missing parent folders. A target
    written in place (``-``, a FIFO, a device) gets the checked temporary's bytes streamed into it.
    """
    if parents:
        _make_parents(path)
    target = check_target(path)
    if target.in_place:
        with _stream_through_temporary(target, check) as temporary:
            yield temporary
        return
    try:
        existing = os.stat(target.path) if target.path.exists() else None
        temporary = _sibling(target.path)
    except OSError as error:
        raise as_write_error(error, target) from None
    try:
        with storage_failures_named(target):
            yield temporary
        if check is not None:
            check(temporary)
        try:
            _fsync_file(temporary)  # on disk before the rename makes it the target
            if existing is not None:
                os.chmod(temporary, existing.st_mode & 0o7777)
                _copy_ownership(existing, temporary)
            else:
                os.chmod(temporary, new_file_mode())
            os.replace(temporary, target.path)
        except OSError as error:
            raise as_write_error(error, target) from None
        fsync_folder(target.path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def atomic_open(
    path: PathLike, mode: str = "wb", *, encoding: Optional[str] = None, parents: bool = False
) -> Iterator[IO]:
    """Open ``path`` for writing so that it is replaced whole when the block ends without an error.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise). ``-`` writes to standard
    output; FIFOs and devices are streamed into directly. If the block raises, the target is left as it was.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "numbers.txt")
    >>> with atomic_open(path, "w") as out:
    ...     _ = out.write("1 2 3\\n")
    >>> open(path).read()
    '1 2 3\\n'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r}: atomic_open writes 'wb' or 'w'")
    text_encoding = (encoding or "utf-8") if mode == "w" else None
    if parents:
        _make_parents(path)
    target = check_target(path)
    if target.given == STDOUT:
        stream = sys.stdout if mode == "w" else sys.stdout.buffer
        with storage_failures_named(target):
            yield stream
            stream.flush()
    elif target.in_place:
        try:
            out = open(target.given, mode, encoding=text_encoding)
        except OSError as error:
            raise as_write_error(error, target) from None
        with storage_failures_named(target), out:
            yield out
    else:
        with atomic_path(path) as temporary, open(temporary, mode, encoding=text_encoding) as out:
            yield out


def write_bytes(path: PathLike, data: bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "wb", parents=parents) as out:
        out.write(data)
    return Path(path)


def write_text(path: PathLike, text: str, *, parents: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "w", parents=parents) as out:
        out.write(text)
    return Path(path)


def append_text(path: PathLike, text: str) -> Path:
    """Append ``text`` (UTF-8) to ``path``, creating it if missing: in place, as a log is written (a line cut off
    by a kill is the reader's to drop), refused where :func:`write_text` would be (a read-only file or folder)."""
    target = check_target(path)
    if target.given == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return Path(path)
    created = not target.in_place and not target.path.exists()
    try:
        with open(target.given, "a", encoding="utf-8") as out:
            out.write(text)
        if created:
            os.chmod(target.path, new_file_mode())
    except OSError as error:
        raise as_write_error(error, target) from None
    return Path(path)
