"""What a ``lightnets-train`` run keeps in its ``--work-dir``, and how ``--resume`` reads it back.

``last.pth`` holds the model, optimizer, schedule and scaler after the last finished epoch, with that epoch's
record, the run's settings (:func:`~lightnets.cli.train_config.TrainRunConfig.run_settings`) and the sha256 of
the weights it started from. ``--resume`` reads it with ``weights_only=True`` (:func:`read_checkpoint`: nothing
but tensors and plain containers is unpickled), refuses one that is damaged, foreign, of another model
(:func:`restore`) or made with other settings (:func:`check_same_run`) in one line that names the file and
leaves it as it is, and reconciles the log with it (:func:`reconcile_log`), so a run killed at any point resumes
to the same weights as a run never stopped.

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
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .. import _io
from .train_config import RUN_SETTINGS, TrainRunConfig

__all__ = ["CHECKPOINT_NAME", "LOG_NAME", "ARGS_NAME", "check_same_run", "read_checkpoint", "restore", "saved_settings",
           "reconcile_log", "save_checkpoint", "save_arguments", "append_log"]

CHECKPOINT_NAME = "last.pth"
LOG_NAME = "log.jsonl"  # one JSON record per finished epoch
ARGS_NAME = "args.json"  # the options of the run that wrote last.pth


# What a checkpoint of lightnets-train holds (save_checkpoint's callers write these, and more), and of which type.
_PARTS = {"model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "epoch": int}
_CHOICES = ("It was left as it is: run again without --resume to start over (the first epoch's checkpoint replaces "
            "it), or give another --work-dir")


def cannot_resume(path: Path, reason: str) -> ValueError:
    """The one-line error of a checkpoint --resume cannot continue from: the file, why, and the choices."""
    return ValueError(f"--resume: {path} cannot be resumed from: {reason}. {_CHOICES}")


def read_checkpoint(path: Path, device: Any = "cpu") -> dict[str, Any]:
    """``last.pth`` as --resume reads it: with ``torch.load(weights_only=True)``, so a pickled object is refused
    unrun, then checked to be a lightnets-train checkpoint. Any file that is not (cut short, random bytes, Python
    objects, another program's checkpoint) is one :func:`cannot_resume` error; the file is not touched.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "last.pth"
    >>> _ = path.write_bytes(b"not a checkpoint")
    >>> read_checkpoint(path)
    Traceback (most recent call last):
    ...
    ValueError: --resume: .../last.pth cannot be resumed from: it is not a PyTorch checkpoint. It was left as it is: ...
    """
    try:
        # torch's remarks on a file it then refuses ("pickle protocol 4"): not the user's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        # torch's message suggests weights_only=False, which would run the file's code: never pass that on.
        if zipfile.is_zipfile(path):  # torch.save's own format, holding more than tensors and plain containers
            raise cannot_resume(path, "it holds Python objects other than tensors, which are not unpickled "
                                      "(nothing in it was run)") from None
        raise cannot_resume(path, "it is not a PyTorch checkpoint") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile):
        raise cannot_resume(path, "it is cut short or corrupt (not a whole PyTorch checkpoint; a run killed while "
                                  "writing it keeps the previous epoch's, so it was damaged afterwards)") from None
    if not isinstance(state, dict):
        raise cannot_resume(path, f"it holds a {type(state).__name__}, not the checkpoint of a lightnets-train run")
    wrong = [
        key for key, kind in _PARTS.items() if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)
    ]
    if wrong:
        raise cannot_resume(path, f"it is not the checkpoint of a lightnets-train run (no {', '.join(wrong)} in it)")
    return state


def restore(state: Mapping[str, Any], path: Path, parts: Mapping[str, Optional[Any]]) -> None:
    """Load each of ``parts`` (name in the checkpoint → model, optimizer ... or None for a part this run lacks)
    from ``state``; a checkpoint of another model, or whose optimizer or schedule does not fit this run, is one
    :func:`cannot_resume` error naming what differs."""
    model = parts["model"]
    misfit = _misfit(model, state["model"])
    if misfit:
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise cannot_resume(path, f"it holds the weights of another model than this {architecture} ({misfit})")
    for name, part in parts.items():
        if part is None:
            continue
        if not isinstance(state.get(name), dict):
            raise cannot_resume(path, f"it has no {name}, which this run needs")
        try:
            part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            first = str(error).strip().splitlines()
            raise cannot_resume(
                path, f"its {name} does not fit this run ({first[0] if first else type(error).__name__})"
            ) from None


def _misfit(model: nn.Module, saved: Mapping[str, Any]) -> str:
    """How a saved state dict differs from the model's (missing or unexpected keys, shapes); "" when it fits."""
    own = model.state_dict()
    missing = [key for key in own if key not in saved]
    unexpected = [key for key in saved if key not in own]
    shapes = [key for key in own if key in saved and getattr(saved[key], "shape", None) != own[key].shape]
    problems = []
    if shapes:
        key = shapes[0]
        problems.append(f"{key} is {tuple(getattr(saved[key], 'shape', ()))} there, {tuple(own[key].shape)} here"
                        + (f", and {len(shapes) - 1} more shapes differ" if len(shapes) > 1 else ""))
    if missing:
        problems.append(f"{len(missing)} of this model's tensors missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors it does not have, e.g. {unexpected[0]}")
    return "; ".join(problems)


def check_same_run(config: TrainRunConfig, saved: dict[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint (``path``) made with other settings (another --epochs would change the
    schedule)."""
    changed = [key for key in RUN_SETTINGS if key in saved and saved[key] != getattr(config, key)]
    if changed:
        differences = ", ".join(
            f"--{key.replace('_', '-')} {saved[key]!r} then, {getattr(config, key)!r} now" for key in changed
        )
        raise ValueError(f"--resume: {path} holds a run with other settings ({differences}); resume it with the same "
                         f"settings, run again without --resume to start over, or start this one in another --work-dir")


def saved_settings(state: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """The settings a checkpoint was made with; older checkpoints only have the args.json their run began with."""
    settings = state.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise cannot_resume(work_dir / CHECKPOINT_NAME, f"its settings are a {type(settings).__name__}, not a mapping")
    args_path = work_dir / ARGS_NAME
    if settings or not args_path.is_file():
        return settings or {}
    try:
        saved = json.loads(args_path.read_text())
    except (OSError, ValueError) as error:
        raise cannot_resume(
            work_dir / CHECKPOINT_NAME, f"the {ARGS_NAME} beside it, which holds its settings, cannot be read ({error})"
        ) from None
    if not isinstance(saved, dict):
        raise cannot_resume(
            work_dir / CHECKPOINT_NAME,
            f"the {ARGS_NAME} beside it holds a JSON {type(saved).__name__}, not its settings",
        )
    return saved


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
