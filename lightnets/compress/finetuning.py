"""Fine-tuning of a pruned or converted model in memory, optionally distilling from a teacher, on the
training loop that ``python -m lightnets.train`` runs (:func:`lightnets.training.fit`)."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..training import FeatureDistillation, FitConfig, fit, in_memory, lr_lambda, param_groups, prepare_for

__all__ = ["finetune"]


def _check_number(name: str, value: Any, low: float, high: float = math.inf, low_inclusive: bool = False,
                  high_inclusive: bool = False) -> float:
    """``value`` as a float if it is a finite number in the range, else a ValueError naming ``name`` and the range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and (value <= high if high_inclusive else value < high)
    if not ok:
        bounds = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return float(value)


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
    feature_teacher: Optional[nn.Module] = None,
    feature_loss: str = "hint",
    feature_weight: Optional[float] = None,
    feature_pairs: Optional[Sequence[tuple[int, int]]] = None,
    bn_l1: float = 0.0,
    pad: int = 2,
    flip: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` in place on an in-memory dataset: SGD (Nesterov, momentum 0.9), cosine LR, crop + flip.

    Only parameters with ``requires_grad`` train; BatchNorms whose parameters are all frozen stay in eval
    mode, so a frozen model part is truly untouched. With ``teacher`` (any model taking the same images),
    the loss is :func:`lightnets.training.distillation_loss` on its logits. With ``feature_teacher`` the loss
    adds a feature term (:class:`lightnets.training.FeatureDistillation`): ``feature_loss`` ``"hint"``
    (FitNets, through 1×1 adapters where widths differ) or ``"attention"`` (attention transfer), on
    ``feature_pairs`` (student, teacher) ``feature_info`` indices (default: the deepest map at each common
    reduction), weighted by ``feature_weight`` (default 1 for hints, 50 for attention); it may be the same
    model as ``teacher``. ``bn_l1`` adds network slimming's L1 penalty on every BatchNorm scale
    (:attr:`lightnets.training.FitConfig.bn_l1`). Inputs are normalised with each
    model's ``pretrained_cfg`` mean / std. ``epochs`` is at least one pass and may end part-way (1.5). Training runs on
    the device of the model's parameters (``model.cuda()`` first to fine-tune on a GPU; the teacher must be there
    too); the images stay on the CPU until each batch is drawn. ``progress`` shows a tqdm bar on stderr.
    A non-finite loss stops the run with FloatingPointError (lower ``lr``) and restores the weights the model
    started from. Arguments are checked first: ``epochs`` finite and >= 1 (a fraction below one pass is refused: it
    leaves part of the dataset unseen), ``lr``, ``temperature`` finite and > 0, ``weight_decay`` >= 0,
    ``label_smoothing`` in [0, 1), ``distill_alpha`` in [0, 1], ``batch_size`` an integer >= 1, and the dataset
    not empty.
    Returns ``{"steps", "loss"}`` (mean training loss of the last 10% of steps).

    >>> import lightnets
    >>> from lightnets.data import load_dataset
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    >>> record = finetune(model, load_dataset("fashion_mnist", limit=64), epochs=1, batch_size=32)
    >>> record["steps"], model.training  # left in eval mode
    (2, False)
    """
    _check_number("epochs", epochs, 1, low_inclusive=True)
    _check_number("lr", lr, 0)
    _check_number("weight_decay", weight_decay, 0, low_inclusive=True)
    _check_number("label_smoothing", label_smoothing, 0, 1, low_inclusive=True)
    _check_number("distill_alpha", distill_alpha, 0, 1, low_inclusive=True, high_inclusive=True)
    _check_number("temperature", temperature, 0)
    _check_number("bn_l1", bn_l1, 0, low_inclusive=True)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    images, labels = in_memory(train_set)
    if len(labels) == 0:
        raise ValueError("finetune got an empty dataset: give it at least one image")
    steps = max(1, int(epochs * len(labels) / batch_size))
    features = None
    groups = param_groups(model, weight_decay)
    if feature_teacher is not None:
        param = next(model.parameters())
        features = FeatureDistillation(model, feature_teacher, feature_loss, feature_pairs, feature_weight)
        features = features.to(param.device, param.dtype)
        calibration = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:256]]
        calibration = calibration.to(param.device)
        features.fit_adapters(model, prepare_for(model)(calibration), prepare_for(feature_teacher)(calibration))
        groups.append({"params": list(features.parameters()), "weight_decay": weight_decay})  # the 1×1 adapters
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda("cosine", steps, 0))
    generator = torch.Generator().manual_seed(seed)
    # A fractional or multiple-epoch run walks one reshuffled pass of the images after another.
    passes = math.ceil(steps * batch_size / len(labels))
    order = torch.cat([torch.randperm(len(labels), generator=generator) for _ in range(passes)])
    config = FitConfig(batch_size=batch_size, pad=pad, flip=flip, label_smoothing=label_smoothing,
                       distill_alpha=distill_alpha, temperature=temperature, frozen_bn_eval=True, bn_l1=bn_l1,
                       progress=progress, hint=f"lower lr (now {lr})")
    start = {key: value.detach().clone() for key, value in model.state_dict().items()}
    try:
        stats = fit(model, images, labels, optimizer, config, order=order, steps=steps, generator=generator,
                    scheduler=scheduler, teachers=[teacher] if teacher is not None else [], features=features,
                    desc="finetune")
    except FloatingPointError as error:  # a diverged run leaves the model as it was, not half-trained with NaNs
        model.load_state_dict(start)
        model.eval()
        raise FloatingPointError(f"{error} (finetune restored the weights the model started from)") from None
    model.eval()
    tail = stats.losses[-max(1, len(stats.losses) // 10):]
    return {"steps": steps, "loss": sum(tail) / len(tail)}
