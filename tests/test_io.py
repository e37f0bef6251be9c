"""lightnets._io: every write changes what a plain write would change, whole or not at all (issue #40 item 1).

Targets are made in tmp_path only: symlinks, FIFOs (read by a thread), read-only files and folders, and, when
the tests run as root, a character device made with mknod (a copy of /dev/null's numbers), never a system node.
"""
from __future__ import annotations

import errno
import http.server
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lightnets import _io
from lightnets._io import DigestError, DownloadError, WriteError
from writers import leftovers

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0




class FifoReader:
    """Reads a FIFO to its end in a thread, as a consumer process would."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self.thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as fifo:
            self.data = fifo.read()

    def result(self) -> bytes:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the writer never closed the FIFO"
        return self.data


# --- symlinks are followed, the link stays --------------------------------------------------------------------


def test_a_symlink_to_a_file_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real.name)
    _io.write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert real.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_a_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "sub" / "made.bin")
    _io.write_bytes(link, b"\x00\x01")
    assert link.is_symlink() and (tmp_path / "sub" / "made.bin").read_bytes() == b"\x00\x01"


def test_a_symlink_to_a_folder_is_followed_with_umask_permissions(tmp_path, umask_027):
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real.name)  # dangling: the folder it names is made
    with _io.staged_folder(link) as staging:
        (staging / "a.txt").write_text("1")
    assert link.is_symlink() and (real / "a.txt").read_text() == "1"
    assert stat.S_IMODE(real.stat().st_mode) == 0o750
    with _io.staged_folder(link) as staging:  # replacing it: the link still leads there, nothing beside it
        (staging / "b.txt").write_text("2")
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["a.txt", "b.txt"]
    assert leftovers(tmp_path) == []


# --- FIFOs, devices and standard output are streamed into ----------------------------------------------------


def test_a_fifo_is_streamed_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    reader = FifoReader(fifo)
    _io.write_bytes(fifo, b"through the pipe")
    assert reader.result() == b"through the pipe"
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and leftovers(tmp_path) == []


def test_a_symlink_to_a_fifo_streams_into_the_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    reader = FifoReader(fifo)
    (tmp_path / "link").symlink_to(fifo)
    with _io.atomic_path(tmp_path / "link") as temporary:  # a library that wants a path: its bytes arrive whole
        temporary.write_bytes(b"written to a path")
    assert reader.result() == b"written to a path"
    assert (tmp_path / "link").is_symlink() and stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(not IS_ROOT, reason="mknod of a character device needs root")
def test_a_character_device_is_written_into_not_replaced(tmp_path):
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers, made here
    _io.write_text(device, "discarded")
    with _io.atomic_open(device) as out:
        out.write(b"discarded too")
    assert stat.S_ISCHR(device.lstat().st_mode) and device.lstat().st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_dash_writes_to_standard_output(capsys):
    _io.write_text("-", "to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    with _io.atomic_path("-") as temporary:
        temporary.write_text("via a path\n")
    assert capsys.readouterr().out == "via a path\n"


@pytest.mark.parametrize("where", ["pipe", "file"])
def test_dev_stdout_is_written_in_place(tmp_path, where):
    """/dev/stdout leads through /proc to whatever fd 1 is: a pipe, or a file the shell opened (kept, not renamed
    over)."""
    code = "from lightnets._io import write_text; write_text('/dev/stdout', 'hello\\n')"
    if where == "pipe":
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello\n"
        return
    out = tmp_path / "out.txt"
    out.write_text("")
    inode = out.stat().st_ino
    with open(out, "w") as handle:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, stdout=handle, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "hello\n" and out.stat().st_ino == inode and leftovers(tmp_path) == []


# --- what a plain write could not change is refused -------------------------------------------------------------


def test_a_read_only_file_is_refused_even_as_root(tmp_path):
    path = tmp_path / "frozen.txt"
    path.write_text("keep")
    path.chmod(0o444)
    with pytest.raises(WriteError, match=r"frozen.txt is read-only: make it writable, or name another path"):
        _io.write_text(path, "changed")
    assert path.read_text() == "keep" and leftovers(tmp_path) == []


def test_a_read_only_folder_is_refused_even_as_root(tmp_path):
    folder = tmp_path / "frozen"
    folder.mkdir()
    (folder / "old.txt").write_text("keep")
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=r"the folder .*frozen is read-only"):
            _io.write_text(folder / "new.txt", "x")
        with pytest.raises(WriteError, match=r"frozen is read-only"):
            with _io.staged_folder(folder) as staging:
                (staging / "new.txt").write_text("x")
        assert sorted(p.name for p in folder.iterdir()) == ["old.txt"] and leftovers(tmp_path) == []
    finally:
        folder.chmod(0o755)


def test_an_existing_file_is_refused_as_a_folder_and_a_folder_as_a_file(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(
        WriteError, match=r"notes.txt is an existing file, not a folder: name a folder, or move the file away"
    ):
        with _io.staged_folder(file) as staging:
            (staging / "a").write_text("x")
    assert file.read_text() == "mine" and leftovers(tmp_path) == []
    with pytest.raises(WriteError, match=r"is a folder: name a file to write"):
        _io.write_text(tmp_path, "x")


def test_a_missing_folder_is_named_unless_parents_are_asked_for(tmp_path):
    with pytest.raises(WriteError, match=r"the folder .*/no/such does not exist"):
        _io.write_text(tmp_path / "no" / "such" / "file.txt", "x")
    assert _io.write_text(tmp_path / "no" / "such" / "file.txt", "x", parents=True).read_text() == "x"


# --- permissions: those of a plain write ------------------------------------------------------------------------


def test_new_files_and_folders_follow_the_umask(tmp_path, umask_027):
    assert stat.S_IMODE(_io.write_text(tmp_path / "new.txt", "x").stat().st_mode) == 0o640
    with _io.atomic_path(tmp_path / "new.bin") as temporary:
        temporary.write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640
    with _io.staged_folder(tmp_path / "folder") as staging:
        (staging / "a").write_text("x")
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750


def test_an_existing_file_and_folder_keep_their_mode(tmp_path, umask_027):
    path = tmp_path / "secret.txt"
    path.write_text("old")
    path.chmod(0o600)
    _io.write_text(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new"
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o775)
    with _io.staged_folder(folder) as staging:
        (staging / "a").write_text("x")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o775


def test_appending_follows_links_gives_new_files_the_umask_and_refuses_read_only_files(tmp_path, umask_027):
    log = tmp_path / "log.jsonl"
    _io.append_text(log, "1\n")
    _io.append_text(log, "2\n")
    assert log.read_text() == "1\n2\n" and stat.S_IMODE(log.stat().st_mode) == 0o640
    (tmp_path / "link").symlink_to(log)
    _io.append_text(tmp_path / "link", "3\n")
    assert log.read_text() == "1\n2\n3\n" and (tmp_path / "link").is_symlink()
    log.chmod(0o444)
    with pytest.raises(WriteError, match="log.jsonl is read-only"):
        _io.append_text(log, "4\n")
    assert log.read_text() == "1\n2\n3\n"


# --- whole or not at all, and nothing left behind ----------------------------------------------------------------


def test_an_error_in_the_block_leaves_the_old_content_and_no_temporary(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("old")
    with pytest.raises(ValueError, match="the caller's own error"):
        with _io.atomic_open(path, "w") as out:
            out.write("half")
            raise ValueError("the caller's own error")
    folder = tmp_path / "weights"
    with _io.staged_folder(folder) as staging:
        (staging / "a").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with _io.staged_folder(folder) as staging:
            (staging / "a").write_text("new")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and (folder / "a").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_replaced_folder_keeps_the_users_other_files_but_not_a_killed_writes_temporaries(tmp_path):
    folder = tmp_path / "repo"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / "notes.txt").write_text("mine")
    (folder / "config.json").write_text("old")
    (folder / ".model.safetensors.k2j4x9q1.tmp.safetensors").write_bytes(b"half")  # a SIGKILLed write's leftover
    with _io.staged_folder(folder) as staging:
        (staging / "config.json").write_text("new")
    assert sorted(p.name for p in folder.iterdir()) == [".git", ".gitattributes", "config.json", "notes.txt"]
    assert (folder / "config.json").read_text() == "new" and (folder / ".git" / "HEAD").read_text().startswith("ref:")


def test_a_full_disk_is_one_error_naming_the_path_with_the_old_content_intact(tmp_path, monkeypatch):
    path = tmp_path / "table.txt"
    path.write_text("old")
    with pytest.raises(
        WriteError, match=r"could not write .*table.txt: the disk is full; it was left unchanged"
    ) as raised:
        with _io.atomic_open(path, "w") as out:
            out.write("half")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises
    assert raised.value.errno == errno.ENOSPC

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the data reaches the disk at fsync: the disk fills there
    with pytest.raises(WriteError, match=r"could not write .*table.txt: the disk is full"):
        _io.write_text(path, "new")
    with pytest.raises(WriteError, match=r"could not write .*weights: the disk is full"):
        with _io.staged_folder(tmp_path / "weights") as staging:
            (staging / "a").write_text("x")
    assert path.read_text() == "old" and leftovers(tmp_path) == [] and not (tmp_path / "weights").exists()


def test_writers_racing_for_one_path_each_leave_a_whole_file(tmp_path):
    path = tmp_path / "entry.bin"
    bodies = [bytes([i]) * 300_000 for i in range(8)]
    threads = [threading.Thread(target=_io.write_bytes, args=(path, body)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_bytes() in bodies and leftovers(tmp_path) == []


# --- verified downloads --------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    """Serves ``files[path] = (body, announced length or None)`` on 127.0.0.1; yields (files, base URL)."""
    files: dict[str, tuple[bytes, int | None]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path not in files:
                self.send_error(500 if self.path == "/broken" else 404)
                return
            body, announced = files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if announced is None else announced))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_download_is_named_only_when_whole_and_verified(tmp_path, server):
    import hashlib

    files, base = server
    body = b"weights" * 1000
    files["/w.bin"] = (body, None)
    target = tmp_path / "cache" / "w.bin"  # its folder is made
    assert _io.download(f"{base}/w.bin", target, digests={"md5": hashlib.md5(body).hexdigest()}).read_bytes() == body

    files["/short.bin"] = (body[:100], len(body))  # the server announces more than it sends
    with pytest.raises(DownloadError, match=rf"{base}/short.bin"):
        _io.download(f"{base}/short.bin", tmp_path / "short.bin", timeout=5)
    with pytest.raises(DigestError, match=r"has md5 .*, expected 0{32}; the file was discarded"):
        _io.download(f"{base}/w.bin", tmp_path / "bad.bin", digests={"md5": "0" * 32})
    with pytest.raises(DownloadError, match=r"/broken answered HTTP 500") as raised:
        _io.download(f"{base}/broken", tmp_path / "broken.bin")
    assert raised.value.status == 500

    def does_not_parse(path: Path) -> None:
        raise ValueError(f"{path.name} does not parse")

    with pytest.raises(ValueError, match="does not parse"):
        _io.download(f"{base}/w.bin", tmp_path / "checked.bin", check=does_not_parse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
