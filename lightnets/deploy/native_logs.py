"""Native runtimes' log lines kept off the user's terminal.

The LiteRT converter and interpreter and ExecuTorch's runtime write from C++ straight to file descriptors 1 and
2 (flatbuffer statistics, "Created TensorFlow Lite XNNPACK delegate", cpuinfo probes on virtual machines), and
torch's profiler (kineto) logs its start and stop to 2: Python's own ``sys.stdout`` redirection does not reach
them.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Sequence

__all__ = ["native_output_silenced"]


@contextlib.contextmanager
def native_output_silenced(fds: Sequence[int] = (1, 2)) -> Iterator[None]:
    """Silence what is written to file descriptors ``fds`` (stdout and stderr by default) while the block runs:
    native code's log lines, which Python's own redirection cannot catch, and Python's own output too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(os.devnull, "wb") as devnull, open(os.devnull, "w") as quiet, contextlib.ExitStack() as python:
            for fd in fds:
                os.dup2(devnull.fileno(), fd)
            # sys.stdout / sys.stderr need not be fds 1 / 2 (a caller capturing them, pytest's capsys): silence
            # Python's writes there too (litert-torch prints its conversion progress with print()).
            if 1 in fds:
                python.enter_context(contextlib.redirect_stdout(quiet))
            if 2 in fds:
                python.enter_context(contextlib.redirect_stderr(quiet))
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
