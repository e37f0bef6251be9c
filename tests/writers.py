"""What the tests of writers share: a process killed mid-write, the temporaries a write leaves, a umask of 027."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import forkserver


def killed_at(delays, script: str, *args, in_runs: bool = False) -> Iterator[tuple[int, float, int]]:
    """Run ``python -c script *args`` (which prints "ready", then writes in a loop) once per delay, SIGKILL it that
    long after "ready", and yield (attempt, delay, the killed process's pid) for the caller to inspect what was left.
    With ``in_runs``, the script prints "ready SECONDS" (the length of one run of its loop) and each delay counts
    runs, not seconds: a busy machine runs slower.

    Each run is forked from a fork server that has imported torch, timm and lightnets (tests/forkserver.py): an
    interpreter's 5 s of imports are paid once per pytest worker, not once per attempt."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = forkserver.server(env)
    for attempt, delay in enumerate(delays):
        read, write = os.pipe()
        try:
            pid = server.start(["-c", script, *map(str, args)], cwd=os.getcwd(), env=env, stdout=write)
        finally:
            os.close(write)  # the child holds the only write end: the pipe ends when it exits
        line = b""
        with os.fdopen(read, "rb") as stdout:
            try:
                while not line.startswith(b"ready"):  # the lines a script logs before it
                    line = stdout.readline()
                    if not line:
                        break
                else:
                    time.sleep(delay * float(line.split()[1]) if in_runs else delay)
            finally:
                os.kill(pid, signal.SIGKILL)
                returncode = server.wait(pid)
        assert line.split()[:1] == [b"ready"], f"attempt {attempt}: the script exited {returncode} before 'ready'"
        assert returncode == -signal.SIGKILL, f"attempt {attempt}: the script exited {returncode} before the kill"
        yield attempt, delay, pid


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries a write left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
