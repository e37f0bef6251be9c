"""What a ``lightnets-train`` run keeps in its ``--work-dir``, and how ``--resume`` reads it back.

``last.pth`` holds the model, optimizer, schedule and scaler after the last finished epoch, with that epoch's
record, the run's settings (:func:`~lightnets.cli.train_config.TrainRunConfig.run_settings`) and the sha256 of
the weights it started from. ``--resume`` refuses a checkpoint made with other settings
(:func:`check_same_run`), and the log is reconciled with it (:func:`reconcile_log`), so a run killed at any
point resumes to the same weights as a run never stopped.

>>> import tempfile
>>> from pathlib import Path
>>> log = Path(tempfile.mkdtemp()) / "log.jsonl"
>>> _ = log.write_text('{"epoch": 1}\\n{"epoch": 2, "to')  # killed while writing epoch 2's line
>>> reconcile_log(log, 2, {"epoch": 2})
>>> log.read_text()
'{"epoch": 1}\\n{"epoch": 2}\\n'
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from .. import _io
from .train_config import RUN_SETTINGS, TrainRunConfig

__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "ARGS_NAME", "check_same_run", "saved_settings", "reconcile_log", "save_checkpoint",
           "save_arguments", "append_log"]

CHECKPOINT_NAME = "last.pth"
LOG_NAME = "log.jsonl"  # one JSON record per finished epoch
ARGS_NAME = "args.json"  # the options of the run that wrote last.pth


def check_same_run(config: TrainRunConfig, saved: dict[str, Any], work_dir: Path) -> None:
    """Refuse to resume a checkpoint made with other settings (another --epochs would change the schedule)."""
    changed = [key for key in RUN_SETTINGS if key in saved and saved[key] != getattr(config, key)]
    if changed:
        differences = ", ".join(f"--{key.replace('_', '-')} {saved[key]!r} then, {getattr(config, key)!r} now" for key in changed)
        raise ValueError(f"--resume: {work_dir} holds a run with other settings ({differences}); "
                         f"resume it with the same settings or start this one in another --work-dir")


def saved_settings(state: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """The settings a checkpoint was made with; older checkpoints only have the args.json their run began with."""
    args_path = work_dir / ARGS_NAME
    return state.get("settings") or (json.loads(args_path.read_text()) if args_path.is_file() else {})


def reconcile_log(log_path: Path, epoch: int, record: Optional[dict[str, Any]]) -> None:
    """Make the log end at the checkpoint's epoch: a run killed between writing its checkpoint and its
    log line (or in the middle of that line) gets the line back, as the checkpoint carries it; lines past
    the checkpoint are dropped."""
    before = log_path.read_text() if log_path.is_file() else ""
    lines = []
    for text in before.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # cut off by a kill
            continue
        if isinstance(line, dict) and line.get("epoch", epoch + 1) <= epoch:
            lines.append(line)
    if record is not None and (not lines or lines[-1]["epoch"] < epoch):
        lines.append(record)
    after = "".join(json.dumps(line) + "\n" for line in lines)
    if after != before:
        _io.write_text(log_path, after)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` with torch.save, atomically (:func:`lightnets._io.atomic_path`): a run killed mid-write
    keeps the previous epoch's checkpoint."""
    with _io.atomic_path(path) as temporary:
        torch.save(state, temporary)


def save_arguments(work_dir: Path, config: TrainRunConfig) -> None:
    """Write ``args.json``: the options of the run whose checkpoint lies beside it."""
    _io.write_text(work_dir / ARGS_NAME, json.dumps(config.arguments(), indent=2) + "\n")


def append_log(log_path: Path, record: dict[str, Any]) -> None:
    """Add one epoch's record to the log (a line cut off by a kill is dropped by :func:`reconcile_log`)."""
    _io.append_text(log_path, json.dumps(record) + "\n")
