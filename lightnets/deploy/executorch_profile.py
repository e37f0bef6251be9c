"""Where an ExecuTorch file spends its time: each operator's share, from the runtime's own event trace (ETDump).

XNNPACK's delegate reports every operator it runs (``Convolution (NHWC, F32) IGEMM #3``, ``Fully Connected
(NC, QD8, F32, QC8W) GEMM #7``, ``Convert (NC, F32, QD8) #2``, ...) and ExecuTorch every operator left on its
portable kernels, each with its time per run. Grouped by kind (the name without its ``#N``), that says why a
file is as fast as it is: for example whether int8 saves time in its GEMMs and spends it again converting
activations, or which operators run outside the delegate.
"""
from __future__ import annotations

import os
import re
import statistics
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Optional, Union

import torch

from .native_logs import native_output_silenced
from .runtimes import require_package

__all__ = ["operator_times"]

PathLike = Union[str, os.PathLike]
_INSTANCE = re.compile(r"\s*#\d+$")
# Events of the runtime itself, not of one operator: a call (wrapping its operators), and loading.
_FRAME_EVENTS = {"DELEGATE_CALL", "OPERATOR_CALL", "Method::execute", "Method::init", "Program::load_method"}


def operator_times(path: PathLike, example: torch.Tensor, *, runs: int = 20, warmup: int = 3,
                   num_threads: Optional[int] = None) -> dict[str, float]:
    """Milliseconds per forward pass of each operator kind of the ``.pte`` at ``path``, on input ``example``.

    The median over ``runs`` passes after ``warmup``, summed over the operator's instances; the key
    ``"total"`` is the median of the whole ``forward`` (so the kinds' sum falls short of it by the runtime's
    own overhead). ``num_threads`` sets XNNPACK's thread pool (process-wide).

    >>> import tempfile, lightnets, torch
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1).eval()
    >>> path = tempfile.mkdtemp() + "/m.pte"
    >>> _ = lightnets.export(model, path, format="executorch")  # doctest: +SKIP
    >>> sorted(operator_times(path, torch.randn(1, 1, 28, 28)))[0]  # doctest: +SKIP
    'Convolution (NHWC, F32) IGEMM'
    """
    require_package("executorch", extra="mobile")
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be ≥ 1 and warmup ≥ 0, got runs={runs}, warmup={warmup}")
    with warnings.catch_warnings(), native_output_silenced():
        warnings.simplefilter("ignore")
        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib

        if num_threads is not None:
            portable_lib._unsafe_reset_threadpool(num_threads)
        module = portable_lib._load_for_executorch(str(path), enable_etdump=True)
        inputs = [example.detach().cpu().contiguous()]
        for _ in range(warmup + runs):
            module.forward(inputs)
        with tempfile.TemporaryDirectory(prefix="lightnets-etdump-") as folder:
            trace = Path(folder) / "trace.etdp"
            module.write_etdump_result_to_file(str(trace))
            blocks = Inspector(etdump_path=str(trace)).event_blocks
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * runs)
    total: list[float] = []
    for block in blocks:
        for event in block.events:
            times = list(event.perf_data.raw)[warmup:] if event.perf_data is not None else []
            if len(times) != runs:  # an event of loading, not of each pass
                continue
            if event.name == "Method::execute":
                total = times
            elif event.name not in _FRAME_EVENTS:
                kind = _INSTANCE.sub("", event.name)
                for index, value in enumerate(times):
                    per_run[kind][index] += value
    result = {kind: statistics.median(values) for kind, values in per_run.items()}
    if total:
        result["total"] = statistics.median(total)
    return result
