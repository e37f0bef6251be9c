"""Processes and devices of a training run: one process, or the group torchrun starts (DDP), and the
mixed-precision dtype a device trains in.

>>> runtime = setup_runtime("cpu")  # no WORLD_SIZE in the environment: one process
>>> runtime.is_main, runtime.world_size, runtime.sum(2.0, 3.0)
(True, 1, [2.0, 3.0])
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Runtime", "setup_runtime", "main_process_first", "uses_cuda", "autocast_dtype"]


@dataclass
class Runtime:
    """This process's place in the run: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes files."""
        return self.rank == 0

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's BN statistics (DDP syncs them only at the start of a forward)."""
        if self.world_size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def check_finite(self, loss: torch.Tensor, where: str, hint: str) -> None:
        """Raise FloatingPointError on every process when the loss is not finite on any of them.

        Agreed through one all-reduce, so the processes stop together: a process raising alone would
        leave the others waiting in the gradient all-reduce until torchrun tore the group down.

        >>> Runtime(0, 1, torch.device("cpu")).check_finite(torch.tensor(float("nan")), "step 3", "lower the LR")
        Traceback (most recent call last):
        FloatingPointError: loss is nan at step 3; lower the LR
        """
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
        if self.world_size > 1:
            dist.all_reduce(bad)
        if bad.item():
            value = f"{loss.item()}" if not torch.isfinite(loss) else "not finite on another process"
            raise FloatingPointError(f"loss is {value} at {where}; {hint}")

    def sum(self, *values: float) -> list[float]:
        """Sum numbers across processes (one all-reduce)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor.tolist()


@contextlib.contextmanager
def main_process_first(runtime: Runtime) -> Iterator[None]:
    """Run the block on rank 0 first and on the other ranks after it (a download, a cache fill)."""
    if runtime.world_size > 1 and not runtime.is_main:
        dist.barrier()
    try:
        yield
    finally:  # rank 0 failing still releases the others (which then meet the same error themselves)
        if runtime.world_size > 1 and runtime.is_main:
            dist.barrier()


def uses_cuda(device: Optional[str]) -> bool:
    """Whether ``device`` (None: CUDA when there is one) is a GPU.

    >>> uses_cuda("cpu")
    False
    """
    return (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")


def check_device(device: Optional[str]) -> None:
    """Refuse a device this machine does not have, naming it and what there is (before anything is built).

    >>> check_device("cpu"); check_device(None)
    >>> check_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: --device must be cpu, cuda or cuda:N, got 'tpu'
    """
    if device is None or device == "cpu":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no usable CUDA GPU (torch.cuda.is_available() is "
                             f"False); train on the CPU with --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")


def setup_runtime(device: Optional[str]) -> Runtime:
    """One process, or the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK): gloo on the
    CPU, nccl on GPUs, each process on its LOCAL_RANK's GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = uses_cuda(device)
    check_device(device)
    if world_size == 1:
        return Runtime(0, 1, torch.device(device or ("cuda" if use_cuda else "cpu")))
    if "LOCAL_RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={world_size} but LOCAL_RANK is not set: start several processes with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def autocast_dtype(device: torch.device, amp: str = "auto") -> Optional[torch.dtype]:
    """The mixed-precision dtype ``--amp`` selects on ``device``; None trains in float32.

    ``auto`` uses bf16 on CUDA (fp16 with loss scaling on GPUs without bf16) and float32 on the CPU, where
    bf16 pays only for some models even with native support. Training steps at batch 128 on 28 px
    Fashion-MNIST on a 2-core Xeon with AMX, float32 → bf16 autocast: VGG-11-BN 510 → 363 ms and
    ShuffleNet g=2 644 → 548 ms, but MobileNet v1 α=1.0 281 → 400 ms and ShuffleNet g=3 592 → 616 ms
    (depthwise convs); without native bf16 (AVX2) it is emulated, a MobileNet 0.5 step took 0.37-0.45 s in
    float32 and 6.7-8.4 s in bf16 on an AMD EPYC. ``bf16`` opts in to bf16 autocast on the CPU (a warning
    says when the CPU would emulate it); ``off`` is float32 everywhere.

    >>> autocast_dtype(torch.device("cpu"), "off") is None
    True
    """
    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if amp == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        if device.type == "cpu" and not _cpu_has_native_bf16():
            warnings.warn("--amp bf16: this CPU has no native bf16 (AVX512-BF16 / AMX), so bf16 is emulated and "
                          "training runs many times slower than in float32 (--amp off)", stacklevel=2)
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
