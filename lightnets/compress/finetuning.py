"""Fine-tuning of a pruned or converted model in memory, optionally distilling from a teacher, on the
training loop that ``python -m lightnets.train`` runs (:func:`lightnets.training.fit`)."""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..training import FitConfig, fit, in_memory, lr_lambda, param_groups

__all__ = ["finetune"]


def finetune(
    model: nn.Module,
    train_set: Any,
    *,
    epochs: float = 1.0,
    lr: float = 0.01,
    batch_size: int = 128,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    teacher: Optional[nn.Module] = None,
    distill_alpha: float = 0.5,
    temperature: float = 4.0,
    pad: int = 2,
    flip: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` in place on an in-memory dataset: SGD (Nesterov, momentum 0.9), cosine LR, crop + flip.

    Only parameters with ``requires_grad`` train; BatchNorms whose parameters are all frozen stay in eval
    mode, so a frozen model part is truly untouched. With ``teacher`` (any model taking the same images),
    the loss is :func:`lightnets.training.distillation_loss` on its logits. Inputs are normalised with each
    model's ``pretrained_cfg`` mean / std. ``epochs`` may be a fraction (a short run). Training runs on the
    device of the model's parameters (``model.cuda()`` first to fine-tune on a GPU; the teacher must be there
    too); the images stay on the CPU until each batch is drawn. ``progress`` shows a tqdm bar on stderr.
    A non-finite loss stops the run with FloatingPointError (lower ``lr``).
    Returns ``{"steps", "loss"}`` (mean training loss of the last 10% of steps).

    >>> import lightnets
    >>> from lightnets.data import load_dataset
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> record = finetune(model, load_dataset("fashion_mnist", limit=64), epochs=1, batch_size=32)
    >>> record["steps"], model.training  # left in eval mode
    (2, False)
    """
    images, labels = in_memory(train_set)
    steps = max(1, int(epochs * len(labels) / batch_size))
    optimizer = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda("cosine", steps, 0))
    generator = torch.Generator().manual_seed(seed)
    # A fractional or multiple-epoch run walks one reshuffled pass of the images after another.
    passes = math.ceil(steps * batch_size / len(labels))
    order = torch.cat([torch.randperm(len(labels), generator=generator) for _ in range(passes)])
    config = FitConfig(batch_size=batch_size, pad=pad, flip=flip, label_smoothing=label_smoothing,
                       distill_alpha=distill_alpha, temperature=temperature, frozen_bn_eval=True,
                       progress=progress, hint=f"lower lr (now {lr})")
    stats = fit(model, images, labels, optimizer, config, order=order, steps=steps, generator=generator,
                scheduler=scheduler, teachers=[teacher] if teacher is not None else [], desc="finetune")
    model.eval()
    tail = stats.losses[-max(1, len(stats.losses) // 10):]
    return {"steps": steps, "loss": sum(tail) / len(tail)}
