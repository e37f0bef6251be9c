"""What a number was measured on: the CPU, its SIMD extensions, the load, the threads and library versions.

Every measured table of lightnets (the eval harness's footer, ``benchmarks/``, the experiment scripts) says
where its numbers come from through this module, so they describe a machine the same way.

>>> sorted(environment())
['cpu', 'device', 'lightnets', 'load', 'memory_format', 'python', 'threads', 'torch']
"""
from __future__ import annotations

import contextlib
import importlib
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

if TYPE_CHECKING:
    import torch

__all__ = ["BUSY_LOAD_PER_CORE", "SIMD_FLAGS", "cpu_name", "environment", "gemm_rate", "library_versions",
           "machine_load", "others_busy", "simd_flags"]

# Timings taken on a machine busier than this are flagged (1-minute load average per logical core: half
# the cores busy): on a loaded 2-core machine they came out 100-600x off and looked plausible.
BUSY_LOAD_PER_CORE = 0.5
# The vector extensions that decide how fast fp32 and int8 kernels run, as /proc/cpuinfo names them.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


def cpu_name() -> str:
    """The CPU's model name (Linux: from /proc/cpuinfo; elsewhere what :mod:`platform` knows).

    >>> isinstance(cpu_name(), str)
    True
    """
    with contextlib.suppress(OSError):
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    """The :data:`SIMD_FLAGS` this CPU has, in that order; empty where /proc/cpuinfo cannot be read.

    >>> set(simd_flags()) <= set(SIMD_FLAGS)
    True
    """
    try:
        flags = CPUINFO.read_text().split("flags", 1)[-1].split("\n", 1)[0]
    except OSError:
        return []
    return [flag for flag in SIMD_FLAGS if f" {flag}" in flags]


def library_versions(packages: Sequence[str]) -> dict[str, Optional[str]]:
    """Each package's version: its installed distribution's (a name as pip knows it, ``litert-torch``), else its
    module's ``__version__``; None for one that is not installed.

    >>> library_versions(["torch", "no_such_package"])["no_such_package"] is None
    True
    """
    from importlib import metadata

    versions: dict[str, Optional[str]] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            try:
                versions[package] = getattr(importlib.import_module(package), "__version__", None)
            except ImportError:
                versions[package] = None
    return versions


def machine_load() -> Optional[dict[str, Any]]:
    """The 1-minute load average, the logical cores and whether that is too busy for timings (None where
    the OS has no load average).

    >>> sorted(machine_load())
    ['busy', 'cores', 'load_1min']
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None
    cores = os.cpu_count() or 1
    return {"load_1min": round(load, 2), "cores": cores, "busy": load / cores > BUSY_LOAD_PER_CORE}


def environment(device: Union[str, "torch.device"] = "cpu", channels_last: bool = False,
                load: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What the numbers were measured on: torch version, threads, CPU / GPU, memory format, and the
    machine's load (``load``: as :func:`machine_load` read it before the run; default: now)."""
    import torch

    from . import __version__

    device = torch.device(device)
    return {
        "load": load if load is not None else machine_load(),
        "torch": torch.__version__,
        "lightnets": __version__,
        "threads": torch.get_num_threads(),
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "memory_format": "channels_last" if channels_last else "contiguous (NCHW)",
        "python": platform.python_version(),
    }


def gemm_rate(size: int = 2048, repeats: int = 5) -> float:
    """This CPU's fp32 matmul rate in GMAC/s: median over ``repeats`` of a ``size``² × ``size``² product, in torch's
    current thread count (the ceiling a network's MACs are compared with: MACs ÷ this rate).

    >>> gemm_rate(size=64, repeats=1) > 0
    True
    """
    import statistics
    import time

    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return size**3 / statistics.median(times) / 1e9


def _busy_jiffies() -> Optional[tuple[int, int]]:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat; None where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def others_busy(interval: float = 0.2) -> bool:
    """Whether other processes keep more than :data:`BUSY_LOAD_PER_CORE` of the cores busy, sampled over
    ``interval`` seconds while this process waits: unlike the load average, this process's own earlier work
    does not count (Linux; elsewhere the load average decides).

    >>> isinstance(others_busy(0.05), bool)
    True
    """
    import time

    before, own_before = _busy_jiffies(), os.times()
    time.sleep(interval)
    after, own_after = _busy_jiffies(), os.times()
    if before is None or after is None or after[1] == before[1]:
        load = machine_load()
        return bool(load and load["busy"])
    cores = os.cpu_count() or 1
    share = (after[0] - before[0]) / (after[1] - before[1])  # of all cores
    own = (own_after.user + own_after.system - own_before.user - own_before.system) / (interval * cores)
    return share - own > BUSY_LOAD_PER_CORE

