"""Training: the one loop (:func:`fit`) over in-memory uint8 images or streamed image files, augmentation,
losses, schedules and the process runtime (one process or torchrun's DDP group).

``python -m lightnets.train`` (:mod:`lightnets.cli.train`) runs it per epoch with checkpoints and logs;
:func:`lightnets.compress.finetune` runs it to fine-tune a pruned or converted model.

>>> from lightnets.training import FitConfig, fit, evaluate
>>> FitConfig().batch_size
128
"""
from .augment import augment, mix_batch, random_erase
from .feature_distillation import FEATURE_LOSSES, FeatureDistillation, FeatureStudent, attention_loss, hint_loss
from .loop import FitConfig, FitStats, channel_stats, evaluate, fit, in_memory, prepare_for, set_train_mode
from .losses import distillation_loss, ensemble_logits
from .runtime import Runtime, autocast_dtype, main_process_first, setup_runtime, uses_cuda
from .schedules import SCHEDULES, lr_lambda, param_groups
from .streaming import FileAugment, StreamingBatches, default_workers, eval_transform, peak_rss_mb, train_transform

__all__ = [
    "FitConfig",
    "FitStats",
    "fit",
    "evaluate",
    "prepare_for",
    "set_train_mode",
    "in_memory",
    "channel_stats",
    "augment",
    "random_erase",
    "mix_batch",
    "distillation_loss",
    "ensemble_logits",
    "FEATURE_LOSSES",
    "FeatureDistillation",
    "FeatureStudent",
    "hint_loss",
    "attention_loss",
    "lr_lambda",
    "param_groups",
    "SCHEDULES",
    "Runtime",
    "setup_runtime",
    "main_process_first",
    "uses_cuda",
    "autocast_dtype",
    "FileAugment",
    "StreamingBatches",
    "train_transform",
    "eval_transform",
    "default_workers",
    "peak_rss_mb",
]
