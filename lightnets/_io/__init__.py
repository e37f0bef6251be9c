"""The one place that writes: atomic files, staged folders and verified downloads, following the rules every
writer of lightnets follows.

A write leaves either the old content or the whole new content, never half of it, and changes what a plain
``open(path, "w")`` would change and nothing else:

- a symlink is followed, and its *target* is replaced atomically (the link stays a link);
- a FIFO, a character or block device, ``-`` or ``/dev/stdout`` is streamed into, never renamed over;
- a new file gets the permissions a plain write gives (``0o666`` less the umask), a replaced file keeps its
  mode (and, where we may, its owner); a new folder gets ``0o777`` less the umask;
- a target a plain write could not change is refused: a read-only file or folder, judged by its mode bits as
  well as by ``os.access`` (root may write anywhere, but a file marked read-only stays unwritten);
- no temporary is left behind after success or failure (only a SIGKILL can leave a hidden ``.name.*.tmp``, and
  the next write to the same file removes it);
- a full disk, or any other failure of the storage, is one :class:`WriteError` naming the path;
- a download is named only once it is whole and verified (:func:`download`).

Where a write lands is :mod:`~lightnets._io.targets`; files are :mod:`~lightnets._io.files`, folders
:mod:`~lightnets._io.folders`, downloads :mod:`~lightnets._io.download`.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "table.txt"
>>> write_text(path, "hello\\n").read_text()
'hello\\n'
"""
from __future__ import annotations

from .download import DOWNLOAD_TIMEOUT_ENV, DOWNLOAD_TIMEOUT_S, DigestError, DownloadError, download, download_timeout
from .files import append_text, atomic_open, atomic_path, write_bytes, write_text
from .folders import staged_folder
from .targets import STDOUT, PathLike, WriteError, check_writable, resolve_target

__all__ = [
    "DOWNLOAD_TIMEOUT_ENV", "DOWNLOAD_TIMEOUT_S", "STDOUT", "DigestError", "DownloadError", "PathLike", "WriteError",
    "append_text", "atomic_open", "atomic_path", "check_writable", "download", "download_timeout", "resolve_target",
    "staged_folder", "write_bytes", "write_text",
]
