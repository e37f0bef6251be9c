"""``python -m lightnets.train``: train, fine-tune or distil a lightnets model (see :mod:`lightnets.cli.train`).

The command line lives in :mod:`lightnets.cli.train`, the training loop and its parts in
:mod:`lightnets.training`. The names this module used to define are still importable from it
(``from lightnets.train import distillation_loss, train``); they load on first use, so
``python -m lightnets.train --help`` answers before torch is imported.
"""
from __future__ import annotations

import importlib
from typing import Any

from .cli.train import main

__all__ = ["distillation_loss", "ensemble_logits", "augment", "mix_batch", "autocast_dtype", "train", "main"]

# old name -> (module that defines it now, its name there)
_MOVED = {
    **{name: ("lightnets.training.losses", name) for name in ("distillation_loss", "ensemble_logits")},
    **{name: ("lightnets.training.augment", name) for name in ("augment", "mix_batch", "random_erase")},
    "_random_erase": ("lightnets.training.augment", "random_erase"),
    **{name: ("lightnets.training.schedules", name) for name in ("lr_lambda", "param_groups")},
    **{name: ("lightnets.training.runtime", name) for name in
       ("Runtime", "setup_runtime", "main_process_first", "autocast_dtype", "_cpu_has_native_bf16")},
    "_uses_cuda": ("lightnets.training.runtime", "uses_cuda"),
    **{name: ("lightnets.training.loop", name) for name in ("evaluate", "channel_stats")},
    "_in_memory": ("lightnets.training.loop", "in_memory"),
    **{name: ("lightnets.cli.train", name) for name in
       ("build_parser", "check_args", "train", "parse_model_args", "build_model", "build_teacher", "teacher_sources",
        "_finetune_args", "_weight_sha256")},
    **{name: ("lightnets.cli._train_run", name) for name in
       ("_RUN_SETTINGS", "_run_settings", "_check_same_run", "_reconcile_log")},
    "_fit": ("lightnets.cli._train_run", "fit_run"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, attribute = _MOVED[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'lightnets.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED])


if __name__ == "__main__":
    raise SystemExit(main())
