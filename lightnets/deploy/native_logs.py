"""Native runtimes' log lines kept off the user's terminal.

The LiteRT converter and interpreter and ExecuTorch's runtime write from C++ straight to file descriptors 1 and
2 (flatbuffer statistics, "Created TensorFlow Lite XNNPACK delegate", cpuinfo probes on virtual machines):
Python's own ``sys.stdout`` redirection does not reach them.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["native_output_silenced"]


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Silence what native code writes to the process's stdout and stderr (file descriptors 1 and 2): the
    LiteRT converter's and ExecuTorch's C++ log lines, which Python's own redirection cannot catch."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
