"""A Python process that imports torch, timm and lightnets once, then forks a child per command (issue #39).

Starting ``python`` and importing torch and timm takes about 5 s on the 2-core CI box; a test that starts many
interpreters spends most of its time there. A :class:`ForkServer` is a helper process, started lazily (one per
pytest worker and environment), that has imported them and run no torch op (so forking it is safe: no thread
pool is started yet). On request it forks a child that runs what ``python -m MODULE ARGS...``,
``python -c SCRIPT ARGS...`` or ``python FILE ARGS...`` would run, with the given argv, working directory,
environment and standard streams, and exits as that interpreter would: the code passed to ``sys.exit`` (a
message passed to it printed to stderr, and 1), 1 with the traceback on an uncaught exception, 0 otherwise;
its atexit handlers run and its stdio is flushed before ``os._exit``.

The server and its client talk over a Unix socket pair: each request is one JSON packet, and the child's stdin,
stdout and stderr travel as file descriptors beside it (SCM_RIGHTS), so the caller points them at a file or at
the write end of a pipe it reads. The server answers a request to start with the child's pid, and a request to
wait with its exit status (``subprocess`` style: the exit code, or minus the signal that killed it).

    server = forkserver.server({**os.environ, "OMP_NUM_THREADS": "1"})
    result = server.run(["-m", "lightnets.flops", "--model", "smallcnn_3x2"], cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr  # result.stdout: what it printed
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
_PACKET = 1 << 20  # the largest request: a -c script and its arguments
_STREAMS = 3  # stdin, stdout, stderr


class ForkServer:
    """One helper process, started with ``env`` from the repository root; see the module's docstring."""

    def __init__(self, env: Mapping[str, str]):
        self.env = dict(env)
        self._socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = tempfile.TemporaryFile()  # the server's own output: why it failed to start, if it did
        with theirs:
            # "-c": sys.path[0] is the working directory, ROOT, as for the interpreters it stands in for
            self._process = subprocess.Popen(
                [sys.executable, "-c", f"import sys; sys.path.insert(1, {str(Path(__file__).parent)!r}); "
                                       f"import forkserver; forkserver._serve({theirs.fileno()})"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                pass_fds=[theirs.fileno()])
        atexit.register(self.close)

    def start(self, argv: Sequence[str], *, cwd: os.PathLike | str, env: Optional[Mapping[str, str]] = None,
              stdin: Optional[int] = None, stdout: Optional[int] = None, stderr: Optional[int] = None) -> int:
        """Fork a child that runs ``python *argv`` (``["-m", MODULE, ...]``, ``["-c", SCRIPT, ...]`` or
        ``[FILE, ...]``) in ``cwd``, with ``env`` as its environment (the server's when None) and the given file
        descriptors as its standard streams (/dev/null for None); the child's pid."""
        argv = [str(arg) for arg in argv]
        if argv[:1] in (["-m"], ["-c"]) and len(argv) >= 2:
            mode, target, args = argv[0], argv[1], argv[2:]
        elif argv and not argv[0].startswith("-"):
            mode, target, args = "file", argv[0], argv[1:]
        else:
            raise ValueError(f"argv must start with -m MODULE, -c SCRIPT or a file, got {argv[:2]}")
        request = {"op": "start", "mode": mode, "target": target, "args": args,
                   "cwd": str(cwd), "env": None if env is None else dict(env)}
        with open(os.devnull, "r+b") as null:
            fds = [null.fileno() if fd is None else fd for fd in (stdin, stdout, stderr)]
            socket.send_fds(self._socket, [json.dumps(request).encode()], fds)
        return self._answer()["pid"]

    def wait(self, pid: int, timeout: Optional[float] = None) -> int:
        """The exit status of child ``pid``: its exit code, or minus the signal that ended it. After ``timeout``
        seconds the child is killed and ``subprocess.TimeoutExpired`` raised."""
        self._socket.send(json.dumps({"op": "wait", "pid": pid}).encode())
        if not select.select([self._socket], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            self._answer()
            raise subprocess.TimeoutExpired(f"forked child {pid}", timeout)
        return self._answer()["returncode"]

    def run(self, argv: Sequence[str], *, cwd: os.PathLike | str, env: Optional[Mapping[str, str]] = None,
            timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        """``subprocess.run([python, *argv], stdin=DEVNULL, capture_output=True, text=True)``, forked."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = self.start(argv, cwd=cwd, env=env, stdout=out.fileno(), stderr=err.fileno())
            returncode = self.wait(pid, timeout)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(["python", *argv], returncode,
                                               out.read().decode(errors="replace"), err.read().decode(errors="replace"))

    def _answer(self) -> dict:
        answer = self._socket.recv(_PACKET)
        if not answer:
            self._log.seek(0)
            raise RuntimeError(f"the fork server exited {self._process.wait()}:\n{self._log.read().decode()}")
        return json.loads(answer)

    def close(self) -> None:
        """End the server (it kills the children still running), and wait for it."""
        if self._socket.fileno() != -1:
            self._socket.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._log.close()


# Variables nothing the server imports reads (pytest sets the first for each test; matplotlib, which reads the
# last, is not imported): servers whose environments differ only in them are one server. Each child gets the
# environment of its own request, these included.
_CHILD_ONLY = ("PYTEST_CURRENT_TEST", "PATH", "MPLBACKEND")
_servers: dict[frozenset, ForkServer] = {}


def server(env: Mapping[str, str]) -> ForkServer:
    """This process's fork server for ``env`` (whatever its :data:`_CHILD_ONLY` variables), started on first use;
    it ends when this process exits. Pass ``env`` to each request too: a child's environment is what it is given."""
    key = frozenset((name, value) for name, value in env.items() if name not in _CHILD_ONLY)
    if key not in _servers:
        _servers[key] = ForkServer(dict(key))
    return _servers[key]


# ------------------------------------------------------------------------------------------------
# The server's side


def _serve(fd: int) -> None:
    del sys.path[1]  # this folder, which the interpreters the children stand in for do not have
    import torch  # noqa: F401 - imported once here, for every child
    import timm  # noqa: F401

    import lightnets  # noqa: F401

    assert "matplotlib" not in sys.modules, "MPLBACKEND is read at import: it cannot be one of _CHILD_ONLY"
    channel = socket.socket(fileno=fd)
    children: set[int] = set()
    while True:
        try:
            packet, fds, _, _ = socket.recv_fds(channel, _PACKET, _STREAMS)
        except ConnectionResetError:
            packet = b""
        if not packet:  # the client closed its end, or exited: nothing may outlive the server
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            return
        request = json.loads(packet)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                channel.close()
                _child(request, fds)  # never returns
            for stream in fds:
                os.close(stream)
            children.add(pid)
            channel.send(json.dumps({"pid": pid}).encode())
        else:
            _, status = os.waitpid(request["pid"], 0)
            children.discard(request["pid"])
            channel.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())


def _child(request: dict, fds: list[int]) -> None:
    """Run the request as ``python -m``/``python -c`` would, then ``os._exit`` with that interpreter's code."""
    for target, stream in enumerate(fds):
        os.dup2(stream, target)
        os.close(stream)
    code = 1
    try:
        os.chdir(request["cwd"])
        if request["env"] is not None:
            os.environ.clear()
            os.environ.update(request["env"])
        if request["mode"] == "-m":
            import runpy

            sys.argv = ["-m", *request["args"]]  # runpy puts the module's path in sys.argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
        else:  # -c SCRIPT, or a FILE: run in a fresh __main__, whose globals the code's are
            import __main__

            for name in [name for name in vars(__main__) if not name.startswith("__")]:
                delattr(__main__, name)
            if request["mode"] == "-c":
                sys.argv = ["-c", *request["args"]]
                sys.path[0] = ""
                source, filename = request["target"], "<string>"
            else:
                sys.argv = [request["target"], *request["args"]]
                sys.path[0] = os.path.dirname(os.path.realpath(request["target"]))
                filename = __main__.__file__ = os.path.abspath(request["target"])
                with open(filename, "rb") as file:
                    source = file.read()
            exec(compile(source, filename, "exec"), vars(__main__))
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except BaseException as error:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        error = error.with_traceback(error.__traceback__.tb_next)  # from the command's own frames, not this one's
        sys.excepthook(type(error), error, error.__traceback__)
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(code) -> int:
    """The exit code ``sys.exit(code)`` gives an interpreter."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
