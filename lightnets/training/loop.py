"""The one training loop of lightnets, over in-memory uint8 images, and the in-memory evaluation.

Each step of :func:`fit`: index → augment (crop, flip, random erasing) → mix (mixup / CutMix) → forward
under autocast → the teachers' (ensembled) logits → cross-entropy or distillation loss, shared between
the two labels of a mixed batch → finite check (agreed across processes) → backward through the loss
scaler → optimizer and scheduler step. ``python -m lightnets.train`` calls it once per epoch (under DDP,
with checkpoints between epochs); :func:`lightnets.compress.finetune` once for a whole, possibly
fractional, run.

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=4)
>>> images, labels = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8), torch.arange(64) % 4
>>> stats = fit(model, images, labels, torch.optim.SGD(model.parameters(), lr=0.01), FitConfig(batch_size=32))
>>> stats.steps, stats.images
(2, 64)
>>> sorted(evaluate(model, images, labels))
['count', 'loss', 'top1', 'top5']
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Optional, Sequence, Union

import torch
from torch import nn
from tqdm import tqdm

from ..data import normalize_batch
from ..inputs import resolve_input_config
from .augment import augment, mix_batch
from .feature_distillation import FeatureDistillation, FeatureStudent
from .losses import distillation_loss, ensemble_logits
from .runtime import Runtime

__all__ = ["FitConfig", "FitStats", "fit", "evaluate", "prepare_for", "set_train_mode", "in_memory", "channel_stats"]


@dataclass
class FitConfig:
    """What every training step of :func:`fit` does with its batch.

    >>> FitConfig(batch_size=64, mixup=0.2).label_smoothing
    0.1
    """

    batch_size: int = 128  # images per step on this process
    pad: int = 4  # random-crop padding in pixels (0: no crop)
    flip: bool = True  # random horizontal flip, p = 0.5
    erase_prob: float = 0.0  # random erasing, per image
    mixup: float = 0.0  # mixup's Beta α (0: off)
    cutmix: float = 0.0  # CutMix's Beta α (0: off)
    mix_prob: float = 1.0  # share of batches mixed
    label_smoothing: float = 0.1
    distill_alpha: float = 0.5  # weight of the soft-target term, with teachers
    temperature: float = 4.0  # distillation temperature
    amp_dtype: Optional[torch.dtype] = None  # autocast dtype; None: float32
    memory_format: torch.memory_format = torch.contiguous_format  # of the model inputs
    frozen_bn_eval: bool = False  # BatchNorms whose parameters are all frozen stay in eval mode
    progress: bool = False  # a tqdm bar on stderr (on rank 0)
    hint: str = "lower the learning rate"  # the advice of a non-finite loss's error
    bn_l1: float = 0.0  # λ of an L1 penalty λ·Σ|γ| on every BatchNorm scale (network slimming, Liu et al. 2017, Eq. 1)

    def autocast(self, device: torch.device) -> ContextManager[Any]:
        """The autocast context of a forward pass on ``device`` (disabled for float32)."""
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


@dataclass
class FitStats:
    """What :func:`fit` measured: images, correct predictions and summed loss (summed across processes),
    its wall time (this process's) and the loss of each step (this process's)."""

    steps: int
    images: int = 0
    correct: float = 0.0
    loss_sum: float = 0.0
    seconds: float = 0.0
    data_seconds: float = 0.0  # waiting for the next batch (decoding workers behind the model)
    losses: list[float] = field(default_factory=list)

    @property
    def loss(self) -> float:
        """Mean training loss per image."""
        return self.loss_sum / max(1, self.images)

    @property
    def top1(self) -> float:
        """Training accuracy (%); a mixed image counts as correct when the label with the larger share wins."""
        return 100 * self.correct / max(1, self.images)

    @property
    def data_wait(self) -> float:
        """Share of the wall time spent waiting for batches: near 0 when the model, not the data, is the bottleneck."""
        return self.data_seconds / self.seconds if self.seconds else 0.0

    @property
    def img_per_s(self) -> float:
        """Training throughput of all processes together."""
        return self.images / self.seconds if self.seconds else 0.0


def _device_of(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def prepare_for(model: nn.Module, memory_format: torch.memory_format = torch.contiguous_format,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function that turns a uint8 batch into ``model``'s input: its channels and size, normalised with
    ``mean`` / ``std`` (default: its ``pretrained_cfg``'s), in ``memory_format``; the channels, size and
    default statistics are :func:`lightnets.inputs.resolve_input_config`'s, as evaluation feeds the model.

    >>> import lightnets
    >>> prepare = prepare_for(lightnets.create_model("smallcnn_3x2", in_chans=1))
    >>> prepare(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 1, 28, 28])
    """
    config = resolve_input_config(model)
    mean = config.mean if mean is None else mean
    std = config.std if std is None else std

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return normalize_batch(batch, config.in_chans, config.img_size, mean, std).contiguous(
            memory_format=memory_format
        )

    return prepare


def set_train_mode(model: nn.Module, frozen_bn_eval: bool = False) -> None:
    """``model.train()``; with ``frozen_bn_eval``, BatchNorms whose parameters are all frozen stay in eval mode,
    so a frozen part of the model is truly untouched (its running statistics too).

    >>> bn = nn.BatchNorm2d(4).requires_grad_(False)
    >>> set_train_mode(bn, frozen_bn_eval=True); bn.training
    False
    """
    model.train()
    if frozen_bn_eval:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters()
            ):
                module.eval()


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def fit(
    model: nn.Module,
    images: Union[torch.Tensor, Batches],
    labels: Optional[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: Optional[FitConfig] = None,
    *,
    order: Optional[torch.Tensor] = None,
    steps: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    scheduler: Optional[Any] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    teachers: Sequence[nn.Module] = (),
    features: Optional[FeatureDistillation] = None,
    net: Optional[nn.Module] = None,
    runtime: Optional[Runtime] = None,
    desc: str = "train",
    where: Optional[str] = None,
) -> FitStats:
    """Train ``model`` in place for ``steps`` steps of ``config.batch_size`` images on uint8 ``images``.

    Step k takes ``images[order[k·B:(k+1)·B]]`` (``order`` default: a permutation drawn from ``generator``;
    ``steps`` default: ``len(order) // B``, at least 1). ``images`` may instead be an iterable of
    ``(uint8 images, labels)`` batches (``labels`` None; ``steps`` default: its ``len``), e.g. the
    :class:`~lightnets.training.streaming.StreamingBatches` of image files: each then goes through the same
    step, and the time spent waiting for it is ``FitStats.data_seconds``. Inputs are normalised with each model's
    ``pretrained_cfg`` mean / std (:func:`prepare_for`). With ``teachers`` (models taking the same images)
    the loss is :func:`~lightnets.training.losses.distillation_loss` on the logits of their ensemble.
    With ``features`` the loss adds its feature term (FitNets hints or attention transfer, from
    ``forward_intermediates``; its teacher may also be one of ``teachers``, run once for both).
    ``net`` runs the forward pass when it wraps ``model`` (DDP, ``torch.compile``; with ``features``, it
    wraps :class:`~lightnets.training.feature_distillation.FeatureStudent`). All augmentation
    randomness comes from ``generator`` (default: seeded with 0), so a run replays exactly.
    ``scheduler.step()`` runs after every optimizer step; ``scaler`` (default: one that scales fp16 only)
    keeps its state across calls when given. Training runs on ``runtime.device`` (default: one process on
    the device of ``model``'s parameters); a non-finite loss raises FloatingPointError naming
    ``where`` (default ``desc``) and the step, and ``config.hint``.

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=2)
    >>> images, labels = torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1] * 4)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    >>> order = torch.arange(8).repeat(2)  # two passes over the images
    >>> stats = fit(model, images, labels, optimizer, FitConfig(batch_size=4, mixup=1.0), order=order, steps=3)
    >>> stats.steps, stats.images, len(stats.losses)
    (3, 12, 3)
    """
    config = config or FitConfig()
    runtime = runtime or Runtime(0, 1, _device_of(model))
    device, batch_size = runtime.device, config.batch_size
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    streamed = not isinstance(images, torch.Tensor)
    if streamed:
        if labels is not None or order is not None:
            raise ValueError("batches of images come with their labels and order: give labels=None, no order")
        steps = len(images) if steps is None else steps
        batches = iter(images)
    else:
        labels = torch.as_tensor(labels, dtype=torch.long)
        order = torch.randperm(len(labels), generator=generator) if order is None else torch.as_tensor(order)
        steps = max(1, len(order) // batch_size) if steps is None else steps
        if steps < 1 or (steps - 1) * batch_size >= len(order):
            raise ValueError(f"{steps} steps of {batch_size} images need {steps * batch_size} indices in order, "
                             f"it has {len(order)}")
    forward = net if net is not None else (model if features is None else FeatureStudent(model, features))
    prepare = prepare_for(model, config.memory_format)
    teacher_inputs = [(teacher.eval(), prepare_for(teacher, config.memory_format)) for teacher in teachers]
    prepare_feature_teacher = prepare_for(features.teacher, config.memory_format) if features is not None else None
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=config.amp_dtype == torch.float16)

    def loss_against(
        output: torch.Tensor, teacher_logits: Optional[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        if teacher_logits is None:
            return criterion(output, target)
        return distillation_loss(output, teacher_logits, target, config.distill_alpha, config.temperature,
                                 config.label_smoothing)

    if not (isinstance(config.bn_l1, (int, float)) and math.isfinite(config.bn_l1) and config.bn_l1 >= 0):
        raise ValueError(f"bn_l1 must be a finite number >= 0, got {config.bn_l1!r}")
    scales = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None
              and m.weight.requires_grad] if config.bn_l1 else []
    set_train_mode(forward, config.frozen_bn_eval)
    stats = FitStats(steps)
    seen = correct = 0
    loss_sum = data_seconds = 0.0
    started = time.perf_counter()
    bar = tqdm(
        range(steps), desc=desc, leave=False, dynamic_ncols=True, disable=not config.progress or not runtime.is_main
    )
    for step in bar:
        waited = time.perf_counter()
        if streamed:
            fetched = next(batches, None)
            if fetched is None:  # batches whose every image was undecodable were left out
                break
            source, source_labels = fetched
        else:
            index = order[step * batch_size:(step + 1) * batch_size]
            source, source_labels = images[index], labels[index]
        data_seconds += time.perf_counter() - waited
        batch = augment(source.to(device, non_blocking=True), config.pad, config.flip, generator, config.erase_prob)
        batch, lam = mix_batch(batch, generator, config.mixup, config.cutmix, config.mix_prob)
        target = source_labels.to(device, non_blocking=True)
        with config.autocast(device):
            if features is None:
                output = forward(prepare(batch)).float()
            else:
                output, student_maps = forward(prepare(batch))
                output = output.float()
                feature_teacher_logits, teacher_maps = features.teacher_outputs(prepare_feature_teacher(batch))
            teacher_logits = None
            if teacher_inputs:
                with torch.no_grad():
                    teacher_logits = ensemble_logits([
                        feature_teacher_logits.float() if features is not None and teacher is features.teacher
                        else teacher(prepare_teacher(batch)).float() for teacher, prepare_teacher in teacher_inputs])
            loss = loss_against(output, teacher_logits, target)
            if lam < 1.0:  # mixed images: the loss is shared between their two labels
                loss = lam * loss + (1 - lam) * loss_against(output, teacher_logits, target.flip(0))
            if features is not None:  # the maps of mixed images against the teacher's maps of the same images
                loss = loss + features.loss(student_maps, teacher_maps)
        runtime.check_finite(loss, f"{where or desc} step {step}", config.hint)
        optimizer.zero_grad(set_to_none=True)
        # The sparsity term trains, the reported loss stays the task's (its subgradient: λ·sign(γ)).
        penalised = loss + config.bn_l1 * sum(scale.abs().sum() for scale in scales) if scales else loss
        scaler.scale(penalised).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        value = loss.item()
        stats.losses.append(value)
        seen += len(target)
        loss_sum += value * len(target)
        # A mixed image counts as correct when the label with the larger share wins.
        correct += (output.argmax(1) == (target if lam >= 0.5 else target.flip(0))).sum().item()
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                        img_s=f"{seen * runtime.world_size / elapsed:.0f}", data=f"{data_seconds / elapsed:.0%}")
    bar.close()
    stats.seconds, stats.data_seconds = time.perf_counter() - started, data_seconds
    seen, stats.correct, stats.loss_sum = runtime.sum(seen, correct, loss_sum)
    stats.images = int(seen)
    return stats


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: Union[torch.Tensor, Batches],
    labels: Optional[torch.Tensor],
    *,
    batch_size: int = 256,
    runtime: Optional[Runtime] = None,
    amp_dtype: Optional[torch.dtype] = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%), mean cross-entropy and image count of ``model`` on uint8 ``images``.

    Inputs are normalised with the model's ``pretrained_cfg`` (or ``prepare``); it runs in eval mode on
    ``runtime.device`` (default: where the model's parameters are), each process on its shard of the
    images, the counts summed across processes. ``images`` may instead be an iterable of ``(uint8 images,
    labels)`` batches (``labels`` None), already this process's share (see :func:`fit`).

    >>> import lightnets
    >>> model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=2)
    >>> evaluate(model, torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.long))["count"]
    5
    """
    model.eval()
    runtime = runtime or Runtime(0, 1, _device_of(model))
    prepare = prepare or prepare_for(model, memory_format)
    if isinstance(images, torch.Tensor):
        labels = torch.as_tensor(labels, dtype=torch.long)
        shard = torch.arange(runtime.rank, len(labels), runtime.world_size)
        batches: Batches = ((images[index], labels[index]) for index in shard.split(batch_size))
    else:
        batches = images
    correct1 = correct5 = loss_sum = 0.0
    count = 0
    for source, source_labels in batches:
        target = source_labels.to(runtime.device)
        count += len(target)
        with torch.autocast(runtime.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(prepare(source.to(runtime.device))).float()
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == target).sum().item()
        correct5 += (top == target[:, None]).any(1).sum().item()
    correct1, correct5, loss_sum, count = runtime.sum(correct1, correct5, loss_sum, count)
    count = max(count, 1)
    return {"top1": round(100 * correct1 / count, 2), "top5": round(100 * correct5 / count, 2),
            "loss": round(loss_sum / count, 4), "count": int(count)}


def in_memory(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N×C×H×W images, int64 labels) of a dataset, without copying an in-memory one (lightnets.data form).

    >>> from lightnets.data import load_dataset
    >>> images, labels = in_memory(load_dataset("fashion_mnist", limit=3))
    >>> images.dtype, labels.tolist()
    (torch.uint8, [9, 2, 1])
    """
    if hasattr(dataset, "images"):
        return torch.as_tensor(dataset.images), torch.as_tensor(dataset.labels, dtype=torch.long)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0–1 scale, rounded to 4 digits.

    >>> channel_stats(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
    ((0.5,), (0.7071,))
    """
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(round(v, 4) for v in pixels.mean(1).tolist()), tuple(round(v, 4) for v in pixels.std(1).tolist())
