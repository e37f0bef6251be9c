"""What the tests of writers share: a process killed mid-write, the temporaries a write leaves, a umask of 027."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator


def killed_at(delays, script: str, *args) -> Iterator[tuple[int, float, int]]:
    """Run ``script`` (which prints "ready", then writes in a loop) once per delay, SIGKILL it that long after
    "ready", and yield (attempt, delay, the killed process's pid) for the caller to inspect what was left."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt, delay in enumerate(delays):
        process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env)
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        yield attempt, delay, process.pid


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries a write left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
