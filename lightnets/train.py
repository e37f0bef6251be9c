"""Train, fine-tune or distil a lightnets model; runs unchanged under ``torchrun --nproc_per_node K``.

    python -m lightnets.train --model mobilenet_v1_050 --model-arg small_input=true \\
        --dataset fashion_mnist --epochs 30 --output weights/mobilenet_v1_050.fmnist --tag fmnist

Datasets are held in memory as uint8 tensors; augmentation (random crop with zero padding,
horizontal flip, random erasing, mixup / CutMix) runs batched on the training device. Under
torchrun every process trains on its DistributedSampler shard (gloo on CPU, nccl on GPU),
metrics are summed across processes, and only rank 0 writes: ``<work-dir>/last.pth``
(resumable with ``--resume``), ``<work-dir>/log.jsonl`` (one JSON record per epoch) and, with
``--output``, the Hub-layout folder of the final model with its measured test metrics
(:func:`lightnets.save_pretrained`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["distillation_loss", "ensemble_logits", "augment", "mix_batch", "autocast_dtype", "train", "main"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 4.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015, arXiv 1503.02531): α·T²·KL(p_T ‖ q_T) + (1 − α)·CE(q, y).

    p_T and q_T are the teacher's and student's softmax at temperature T; the T² keeps the soft
    term's gradients on the scale of the hard term's as T changes (Section 2 of the paper).

    >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    >>> round(distillation_loss(s, t, torch.tensor([0]), alpha=1.0).item(), 6)  # same logits: no soft loss
    0.0
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * temperature**2
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def ensemble_logits(member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of an ensemble that averages its members' probabilities: log(mean_i softmax(z_i)).

    Their softmax is the ensemble's averaged prediction, so a distillation teacher made of several models
    teaches that average (at temperature T, softened as one model's logits are). One member's logits are
    returned as they are: the soft targets are the same either way.

    >>> ensemble_logits([torch.tensor([[0.0, 50.0]]), torch.tensor([[50.0, 0.0]])]).softmax(-1)
    tensor([[0.5000, 0.5000]])
    """
    if not member_logits:
        raise ValueError("an ensemble needs at least one member's logits")
    if len(member_logits) == 1:
        return member_logits[0]
    log_probs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits in member_logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(member_logits))


def augment(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator,
            erase_prob: float = 0.0) -> torch.Tensor:
    """Random crop with ``padding`` zero pixels on each side, then a horizontal flip with p = 0.5, then,
    with probability ``erase_prob``, random erasing (Zhong et al. 2020), per image.

    Erasing fills one rectangle of 2-33% of the image, aspect ratio 0.3-3.3 (log-uniform), with
    uniform random pixels: the paper's and timm's ``--reprob`` settings (timm's "pixel" mode draws
    N(0, 1) in normalised space; here the noise is drawn on the uint8 image, so that a distillation
    teacher sees the same image as the student). All randomness comes from ``generator``, so a resumed
    run replays its epochs exactly.

    >>> g = torch.Generator().manual_seed(0)
    >>> augment(torch.ones(4, 1, 28, 28, dtype=torch.uint8), 4, True, g, erase_prob=0.25).shape
    torch.Size([4, 1, 28, 28])
    """
    n, c, h, w = images.shape
    device = images.device
    if padding:
        padded = F.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator).to(device)
        dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator).to(device)
        rows = (dy + torch.arange(h, device=device))[:, None, :, None]
        cols = (dx + torch.arange(w, device=device))[:, None, None, :]
        images = padded[torch.arange(n, device=device)[:, None, None, None], torch.arange(c, device=device)[None, :, None, None], rows, cols]
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(device)[:, None, None, None]
        images = torch.where(flipped, images.flip(-1), images)
    if erase_prob > 0:
        images = _random_erase(images, erase_prob, generator)
    return images


def _random_erase(images: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    n, c, h, w = images.shape
    area = torch.empty(n).uniform_(0.02, 1 / 3, generator=generator) * h * w
    aspect = torch.empty(n).uniform_(math.log(0.3), math.log(1 / 0.3), generator=generator).exp()
    # The paper redraws a rectangle that does not fit; clamping to the image keeps this one batched draw.
    box_h = (area * aspect).sqrt().round().clamp(1, h)
    box_w = (area / aspect).sqrt().round().clamp(1, w)
    top = (torch.rand(n, generator=generator) * (h - box_h + 1)).floor()
    left = (torch.rand(n, generator=generator) * (w - box_w + 1)).floor()
    erased = torch.rand(n, generator=generator) < prob
    noise = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)
    rows, cols = torch.arange(h), torch.arange(w)
    inside = (((rows[None, :] >= top[:, None]) & (rows[None, :] < (top + box_h)[:, None]))[:, :, None]
              & ((cols[None, :] >= left[:, None]) & (cols[None, :] < (left + box_w)[:, None]))[:, None, :]
              & erased[:, None, None])
    device = images.device
    return torch.where(inside[:, None].to(device), noise.to(device, images.dtype), images)


def mix_batch(images: torch.Tensor, generator: torch.Generator, mixup_alpha: float = 0.0,
              cutmix_alpha: float = 0.0, prob: float = 1.0) -> tuple[torch.Tensor, float]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of each image with its mirror in the batch,
    image i with image n − 1 − i (timm's batch mode). Returns the mixed batch and λ, the share of each
    image's own label: the loss is λ·L(y) + (1 − λ)·L(y.flip(0)).

    λ ~ Beta(α, α). Mixup blends whole images; CutMix pastes one box covering 1 − λ of the image from
    the mirror (one box for the batch, clipped at the border, λ then recomputed from the pixels actually
    pasted). With both alphas > 0 a batch gets CutMix or Mixup with p = 0.5 (timm's switch
    probability); with ``prob`` < 1 it is left alone (λ = 1) with probability 1 − ``prob``. Both
    alphas 0: the batch comes back untouched and ``generator`` is not drawn from, so a run without
    mixing replays as before. Otherwise all randomness comes from ``generator``, as in :func:`augment`.
    uint8 batches stay uint8 (a blend is rounded to the nearest level), so a distillation teacher
    sees the student's image.

    >>> images = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 100.0)])
    >>> mixed, lam = mix_batch(images, torch.Generator().manual_seed(0), mixup_alpha=1.0)
    >>> torch.allclose(mixed[0], torch.full((1, 4, 4), 100 * (1 - lam)))
    True
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha!r} and {cutmix_alpha!r}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return images, 1.0
    apply, pick_cutmix, cy, cx = torch.rand(4, generator=generator).tolist()
    # torch draws Beta variates from its global generator only; a seed taken from ours keeps λ replayable.
    beta = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    if apply >= prob:
        return images, 1.0
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or pick_cutmix < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = beta.betavariate(alpha, alpha)
    mirror = images.flip(0)
    if not use_cutmix:
        mixed = lam * images.float() + (1 - lam) * mirror.float()
        return (mixed if images.is_floating_point() else mixed.round()).to(images.dtype), lam
    h, w = images.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    center_y, center_x = int(cy * h), int(cx * w)
    top, bottom = max(center_y - cut_h // 2, 0), min(center_y + cut_h // 2, h)
    left, right = max(center_x - cut_w // 2, 0), min(center_x + cut_w // 2, w)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = mirror[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (h * w)


# ---------------------------------------------------------------------------------------------
# Processes and devices
# ---------------------------------------------------------------------------------------------


@dataclass
class Runtime:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
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


def _uses_cuda(device: Optional[str]) -> bool:
    """Whether ``--device`` (None: CUDA when there is one) trains on a GPU."""
    return (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")


def setup_runtime(device: Optional[str]) -> Runtime:
    """One process, or the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = _uses_cuda(device)
    if world_size == 1:
        return Runtime(0, 1, torch.device(device or ("cuda" if use_cuda else "cpu")))
    if "LOCAL_RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={world_size} but LOCAL_RANK is not set: start several processes with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(dist.get_rank(), world_size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


# ---------------------------------------------------------------------------------------------
# Data, model, optimisation
# ---------------------------------------------------------------------------------------------


def _in_memory(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N×C×H×W images, int64 labels) of a dataset, without copying the in-memory ones."""
    if hasattr(dataset, "images"):
        return torch.as_tensor(dataset.images), torch.as_tensor(dataset.labels, dtype=torch.long)
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0–1 scale."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(round(v, 4) for v in pixels.mean(1).tolist()), tuple(round(v, 4) for v in pixels.std(1).tolist())


def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["alpha=0.5", "small_input=true", "act_layer=relu6"]`` → ``{"alpha": 0.5, "small_input": True, ...}``."""
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}.get(value.lower(), value)
    return args


def build_model(args: argparse.Namespace, num_classes: int, in_chans: int, img_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """The model to train and the architecture arguments that rebuild it."""
    from .registry import create_model, get_pretrained_cfg, model_arguments, split_model_name

    kwargs = parse_model_args(args.model_arg)
    source = args.finetune_from
    if source and Path(source).exists():  # a weight file or Hub-layout folder
        from .hub import read_config

        saved = read_config(source)
        name = args.model or saved.get("lightnets", {}).get("architecture")
        if not name:
            raise ValueError(f"--finetune-from {source}: give --model (the file does not say which architecture it holds)")
        kwargs = _finetune_args(name, saved.get("model_args", {}), kwargs, img_size)
        model = create_model(name, pretrained=True, pretrained_path=source, num_classes=num_classes, in_chans=in_chans, **kwargs)
    elif source:  # a registered name.tag
        name = split_model_name(source)[0]
        if args.model and args.model != name:
            raise ValueError(f"--model {args.model} is not the architecture of --finetune-from {source} ({name}); drop --model")
        kwargs = _finetune_args(name, get_pretrained_cfg(source).get("model_args", {}), kwargs, img_size)
        model = create_model(source, pretrained=True, num_classes=num_classes, in_chans=in_chans, **kwargs)
    else:
        name = args.model
        if "img_size" in model_arguments(name) and "img_size" not in kwargs and "rho" not in kwargs:
            kwargs["img_size"] = img_size  # train at the data's native size (a fixed-size model too): the cfg records it
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return model, kwargs


def build_teacher(source: str) -> nn.Module:
    """The ``--teacher``: a registered ``name.tag``, or a Hub-layout folder (or the weight file in one) whose
    config.json names its architecture, e.g. the ``--output`` of an earlier run that has not shipped."""
    from .hub import read_config
    from .registry import create_model

    if not Path(source).expanduser().exists():
        return create_model(source, pretrained=True)
    name = read_config(source).get("lightnets", {}).get("architecture")
    if not name:
        raise ValueError(f"--teacher {source}: no config.json beside it names the architecture; give a folder "
                         f"written by save_pretrained / train --output, or a registered name.tag")
    return create_model(name, pretrained=True, pretrained_path=source)


def teacher_sources(teacher: str) -> list[str]:
    """The models a ``--teacher`` names: one source, or several separated by commas (an ensemble)."""
    sources = [source.strip() for source in teacher.split(",")]
    if not all(sources):
        raise ValueError(f"--teacher {teacher!r}: an empty name between commas; give NAME_OR_PATH[,NAME_OR_PATH...]")
    return sources


def _weight_sha256(source: str) -> str:
    """sha256 of the weight file a ``--finetune-from`` / ``--teacher`` source (name.tag, file or Hub folder) resolves to.

    Recorded in the card: a name such as ``mobilenet_v1_100.fmnist`` names whichever weight ships under it
    today, which may be the very weight this run replaces."""
    from .hub import _weights_file, resolve_weights, sha256sum
    from .registry import get_pretrained_cfg

    path = Path(source).expanduser()
    return sha256sum(_weights_file(path) if path.exists() else resolve_weights(get_pretrained_cfg(source)))


def _follows_data_size(name: str) -> bool:
    from .registry import has_fixed_input_size, model_arguments

    return "img_size" in model_arguments(name) and not has_fixed_input_size(name)


def _finetune_args(name: str, saved: dict[str, Any], given: dict[str, Any], data_img_size: int) -> dict[str, Any]:
    """The weight's architecture arguments overridden by the user's. A model that pools globally is
    fine-tuned at the data's own size (the weights fit any size); one with a fixed size keeps its own."""
    args = {key: value for key, value in saved.items() if key not in ("num_classes", "in_chans")}
    if _follows_data_size(name):
        args.pop("img_size", None)
        args.pop("rho", None)
        if "img_size" not in given and "rho" not in given:
            args["img_size"] = data_img_size
    return {**args, **given}


def param_groups(model: nn.Module, weight_decay: float, lr: Optional[float] = None,
                 layer_decay: Optional[float] = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups: weight decay on conv and linear weights only (BN parameters and biases
    are not decayed) and, with ``layer_decay``, layer-wise learning rates for fine-tuning (BEiT's
    recipe, through timm): the layers of ``model.group_matcher()`` in the order they run, the k-th of n
    at ``lr * layer_decay ** (n - 1 - k)``, so the classifier learns at ``lr`` and the stem slowest.

    >>> from lightnets import create_model
    >>> groups = param_groups(create_model("smallcnn_3x2"), 5e-4, lr=0.1, layer_decay=0.5)
    >>> sorted({group["lr"] for group in groups})  # 3 convs, then the hidden FC and classifier together
    [0.0125, 0.025, 0.05, 0.1]
    """
    if layer_decay is None:
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if lr is None:
        raise ValueError("layer_decay scales the learning rate: give lr too")
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)
    return [{"params": group["params"], "weight_decay": group["weight_decay"], "lr": lr * group["lr_scale"]}
            for group in groups]


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Per-step LR factor: linear warmup, then cosine to zero, or a one-cycle (Smith 2018) ramp up and down."""
    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if schedule == "onecycle":  # up over the first 30%, cosine down to 1/1000 (torch's OneCycleLR shape)
            peak = max(1, int(0.3 * total_steps))
            if step < peak:
                return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
            return 1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi * (step - peak) / max(1, total_steps - peak))) / 2
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    return factor


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor],
             runtime: Runtime, batch_size: int, autocast: Callable[[], Any]) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy, each process on its shard, summed across processes."""
    model.eval()
    shard = torch.arange(runtime.rank, len(labels), runtime.world_size)
    correct1 = correct5 = loss_sum = 0.0
    for start in range(0, len(shard), batch_size):
        index = shard[start:start + batch_size]
        target = labels[index].to(runtime.device)
        with autocast():
            logits = model(prepare(images[index].to(runtime.device))).float()
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == target).sum().item()
        correct5 += (top == target[:, None]).any(1).sum().item()
    correct1, correct5, loss_sum, count = runtime.sum(correct1, correct5, loss_sum, len(shard))
    return {"top1": round(100 * correct1 / count, 2), "top5": round(100 * correct5 / count, 2),
            "loss": round(loss_sum / count, 4), "count": int(count)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lightnets-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", help="registered model name, e.g. mobilenet_v1_050")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture argument, repeatable: --model-arg small_input=true --model-arg alpha=0.5")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (tiny runs)")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test images (default: --limit)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128, help="global batch, split across processes")
    p.add_argument("--opt", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--layer-decay", type=float, default=None, metavar="FACTOR",
                   help="layer-wise LR decay for fine-tuning, in (0, 1]: each layer learns at FACTOR times the LR of the "
                        "layer after it, the classifier at --lr (see ClassifierNet.group_matcher)")
    p.add_argument("--sched", choices=("cosine", "onecycle", "constant"), default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--pad", type=int, default=4, help="random-crop padding in pixels (0: no crop)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    p.add_argument("--reprob", type=float, default=0.0, metavar="P",
                   help="random erasing probability per image (timm's name; 0.25 is a common choice)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup with λ ~ Beta(ALPHA, ALPHA) (timm's name; 0.2 is a common choice; 0: off)")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                   help="CutMix with λ ~ Beta(ALPHA, ALPHA) (1.0 is the paper's); with --mixup too, each batch gets one of the two")
    p.add_argument("--mix-prob", type=float, default=1.0, metavar="P",
                   help="share of batches that --mixup / --cutmix mix (timm's --mixup-prob)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                   help="auto: bf16 autocast on CUDA (fp16 + loss scaling on GPUs without bf16), float32 on the CPU; "
                        "bf16: bf16 autocast on the CPU too (faster for dense convs on CPUs with AMX / AVX512-BF16, "
                        "slower for depthwise ones; emulated and far slower elsewhere)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute the body's activations in the backward pass instead of keeping them (less memory, "
                        "about a third more compute per step); see ClassifierNet.set_grad_checkpointing")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile (inductor; on the CPU it needs a C++ compiler). Checkpoints and "
                        "--output are the same as without it; the first steps are slow while it compiles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on GPU)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    p.add_argument("--finetune-from", metavar="NAME_OR_PATH", help="start from weights (name.tag, file or Hub folder) with a new head / in_chans")
    p.add_argument("--teacher", metavar="NAME_OR_PATH[,...]",
                   help="distil from this pretrained model (name.tag, or a Hub folder that train --output wrote); several, "
                        "separated by commas, teach as an ensemble: their softmax outputs averaged")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the soft-target term")
    p.add_argument("--distill-T", type=float, default=4.0, help="distillation temperature")
    p.add_argument("--work-dir", default=None, help="checkpoints and log (default: runs/<model>-<dataset>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from <work-dir>/last.pth if it exists")
    p.add_argument("--output", default=None, help="write the final model here as a Hub-layout folder")
    p.add_argument("--tag", default=None, help="pretrained tag recorded in --output (e.g. fmnist)")
    p.add_argument("--fp16-weights", action="store_true", help="store --output weights in float16 (metrics measured on them)")
    p.add_argument("--no-progress", action="store_true")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible settings before any data is read or process group is joined."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("limit", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    for name in ("weight_decay", "warmup_epochs", "pad"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.layer_decay is not None and not 0.0 < args.layer_decay <= 1.0:
        raise ValueError(f"--layer-decay must be in (0, 1], got {args.layer_decay}")
    if not 0.0 <= args.reprob <= 1.0:
        raise ValueError(f"--reprob must be in [0, 1], got {args.reprob}")
    for name in ("mixup", "cutmix"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0 (0: off), got {getattr(args, name)}")
    if not 0.0 <= args.mix_prob <= 1.0:
        raise ValueError(f"--mix-prob must be in [0, 1], got {args.mix_prob}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0.0 <= args.distill_alpha <= 1.0:
        raise ValueError(f"--distill-alpha must be in [0, 1], got {args.distill_alpha}")
    if args.distill_T <= 0:
        raise ValueError(f"--distill-T must be > 0, got {args.distill_T}")
    if not args.model and not args.finetune_from:
        raise ValueError("give --model NAME (or --finetune-from NAME.tag / PATH)")
    if args.compile and not _uses_cuda(args.device):
        from .deploy import cpp_compiler

        if cpp_compiler() is None:
            raise ValueError("--compile on the CPU needs a C++ compiler for inductor's kernels "
                             "(install g++ or clang++, or set CXX); drop --compile to train eagerly")


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


def train(argv: Sequence[str], train_set: Any = None, test_set: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """Run a training from command-line arguments; returns the model and the last epoch's record (test metrics included).

    ``train_set`` / ``test_set`` replace ``--dataset`` with datasets in lightnets.data's in-memory form
    (``.images`` uint8 N×C×H×W, ``.labels``, ``.classes``).
    """
    from .data import load_dataset

    args = build_parser().parse_args(list(argv))
    check_args(args)
    runtime = setup_runtime(args.device)
    # Process-wide switches this run sets, restored when it ends (train() may be called from a larger program).
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        if args.batch_size % runtime.world_size:
            raise ValueError(f"--batch-size {args.batch_size} must be divisible by the number of processes ({runtime.world_size})")
        torch.manual_seed(args.seed)
        if args.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not args.deterministic
        if train_set is None:
            with main_process_first(runtime):  # one process downloads; the others then read its files
                train_set = load_dataset(args.dataset, split="train", data_dir=args.data_dir, download=args.download, limit=args.limit)
                test_set = load_dataset(args.dataset, split="test", data_dir=args.data_dir, download=args.download,
                                        limit=args.limit_test if args.limit_test is not None else args.limit)
        return _fit(args, list(argv), runtime, train_set, test_set)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if runtime.world_size > 1:
            dist.destroy_process_group()


# Settings that define a run: resuming with another value would silently train something else.
_RUN_SETTINGS = ("model", "model_arg", "dataset", "limit", "epochs", "batch_size", "opt", "lr", "momentum", "weight_decay",
                 "layer_decay", "sched", "warmup_epochs", "label_smoothing", "pad", "no_flip", "reprob", "seed", "finetune_from", "teacher",
                 "distill_alpha", "distill_T", "mixup", "cutmix", "mix_prob")


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in _RUN_SETTINGS}


def _check_same_run(args: argparse.Namespace, saved: dict[str, Any], work_dir: Path) -> None:
    """Refuse to resume a checkpoint made with other settings (another --epochs would change the schedule)."""
    changed = [key for key in _RUN_SETTINGS if key in saved and saved[key] != getattr(args, key)]
    if changed:
        differences = ", ".join(f"--{key.replace('_', '-')} {saved[key]!r} then, {getattr(args, key)!r} now" for key in changed)
        raise ValueError(f"--resume: {work_dir} holds a run with other settings ({differences}); "
                         f"resume it with the same settings or start this one in another --work-dir")


def _reconcile_log(log_path: Path, epoch: int, record: Optional[dict[str, Any]]) -> None:
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
        log_path.write_text(after)


def _fit(args: argparse.Namespace, argv: list[str], runtime: Runtime, train_set: Any, test_set: Any) -> tuple[nn.Module, dict[str, Any]]:
    from tqdm import tqdm

    from .data import normalize_batch
    from .hub import save_pretrained
    from .registry import create_model

    train_images, train_labels = _in_memory(train_set)
    test_images, test_labels = _in_memory(test_set)
    _, in_chans, img_size, _ = train_images.shape
    classes = list(train_set.classes)
    model, model_args = build_model(args, len(classes), in_chans, img_size)
    cfg = model.pretrained_cfg
    if args.finetune_from and len(cfg.get("mean", ())) == model.in_chans:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])  # the features were learnt on this normalisation
    else:
        mean, std = getattr(train_set, "mean", None), getattr(train_set, "std", None)
        if mean is None:
            mean, std = channel_stats(train_images)
    cfg.update(mean=tuple(mean), std=tuple(std))
    # The eval transform the weights are tested with: the test images as they are in memory, i.e. whole
    # (crop_pct 1.0) for Fashion-MNIST / CIFAR-10, or as an image folder was decoded (its crop and filter).
    cfg.update(crop_pct=getattr(test_set, "crop_pct", 1.0), interpolation=getattr(test_set, "interpolation", "bilinear"))

    memory_format = torch.preserve_format if args.no_channels_last else torch.channels_last
    model = model.to(runtime.device, memory_format=memory_format)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()

    def prepare_for(net: nn.Module, net_mean: Sequence[float], net_std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
        def prepare(batch: torch.Tensor) -> torch.Tensor:
            x = normalize_batch(batch, net.in_chans, net.img_size, net_mean, net_std)
            return x.contiguous(memory_format=memory_format)
        return prepare

    prepare = prepare_for(model, mean, std)
    teacher_names = teacher_sources(args.teacher) if args.teacher else []
    teachers: list[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]] = []  # each with its own normalisation
    for source in teacher_names:
        teacher = build_teacher(source).to(runtime.device, memory_format=memory_format).eval()
        if teacher.num_classes != len(classes):
            raise ValueError(f"--teacher {source} predicts {teacher.num_classes} classes, the dataset has {len(classes)}")
        teachers.append((teacher, prepare_for(teacher, teacher.pretrained_cfg["mean"], teacher.pretrained_cfg["std"])))

    amp_dtype = autocast_dtype(runtime.device, args.amp)
    use_amp = amp_dtype is not None

    def autocast() -> Any:
        return torch.autocast(runtime.device.type, dtype=amp_dtype, enabled=use_amp)

    scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_amp and amp_dtype == torch.float16)
    net = model
    if runtime.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if args.compile:  # only the training forward/backward: `model` (saved, evaluated) stays the eager module
        net = torch.compile(net)
    if args.opt == "sgd":
        optimizer = torch.optim.SGD(param_groups(model, args.weight_decay, args.lr, args.layer_decay), lr=args.lr,
                                    momentum=args.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.lr, args.layer_decay), lr=args.lr)
    sampler = torch.utils.data.DistributedSampler(range(len(train_labels)), num_replicas=runtime.world_size, rank=runtime.rank,
                                                  shuffle=True, seed=args.seed, drop_last=True)
    local_batch = args.batch_size // runtime.world_size
    steps_per_epoch = max(1, len(sampler) // local_batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        args.sched, args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch)))
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    def loss_against(output: torch.Tensor, teacher_logits: Optional[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if teacher_logits is None:
            return criterion(output, labels)
        return distillation_loss(output, teacher_logits, labels, args.distill_alpha, args.distill_T, args.label_smoothing)

    work_dir = Path(args.work_dir or f"runs/{(args.model or args.finetune_from).replace('/', '_')}-{args.dataset}-s{args.seed}")
    checkpoint_path = work_dir / "last.pth"
    start_epoch = 0
    sources: Optional[dict[str, str]] = None  # sha256 of the --finetune-from / --teacher weights when the run first started
    if args.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=runtime.device, weights_only=True)
        # The checkpoint carries its settings; older ones only have the args.json their run began with.
        saved_args = work_dir / "args.json"
        settings = state.get("settings") or (json.loads(saved_args.read_text()) if saved_args.is_file() else {})
        _check_same_run(args, settings, work_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"]
        sources = state.get("sources")
        if runtime.is_main:
            _reconcile_log(work_dir / "log.jsonl", start_epoch, state.get("record"))
            print(f"resumed from {checkpoint_path} after epoch {start_epoch}")
    if sources is None:
        sources = {"finetuned_from": _weight_sha256(args.finetune_from)} if args.finetune_from else {}
        if teacher_names:  # one sha256 per teacher, comma-separated in --teacher's order
            sources["teacher"] = ",".join(map(_weight_sha256, teacher_names))
    if runtime.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")

    record: dict[str, Any] = {"epoch": start_epoch}
    for epoch in range(start_epoch, args.epochs):
        # Every random choice of an epoch follows from (seed, epoch, rank): a resumed run replays it exactly.
        epoch_seed = args.seed * 100_003 + epoch * 1_009 + runtime.rank
        torch.manual_seed(epoch_seed)
        generator = torch.Generator().manual_seed(epoch_seed)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        net.train()
        seen = correct = 0
        loss_sum = 0.0
        started = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, dynamic_ncols=True,
                   disable=args.no_progress or not runtime.is_main)
        for step in bar:
            index = order[step * local_batch:(step + 1) * local_batch]
            batch = augment(train_images[index].to(runtime.device), args.pad, not args.no_flip, generator, args.reprob)
            batch, lam = mix_batch(batch, generator, args.mixup, args.cutmix, args.mix_prob)
            target = train_labels[index].to(runtime.device)
            with autocast():
                output = net(prepare(batch)).float()
                teacher_logits = None
                if teachers:
                    with torch.no_grad():
                        teacher_logits = ensemble_logits([teacher(prepare_teacher(batch)).float()
                                                          for teacher, prepare_teacher in teachers])
                loss = loss_against(output, teacher_logits, target)
                if lam < 1.0:  # mixed images: the loss is shared between their two labels
                    loss = lam * loss + (1 - lam) * loss_against(output, teacher_logits, target.flip(0))
            runtime.check_finite(loss, f"epoch {epoch + 1} step {step}", f"lower --lr (now {args.lr})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(index)
            loss_sum += loss.item() * len(index)
            # A mixed image counts as correct when the label with the larger share wins.
            correct += (output.argmax(1) == (target if lam >= 0.5 else target.flip(0))).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                            img_s=f"{seen * runtime.world_size / (time.perf_counter() - started):.0f}")
        bar.close()
        elapsed = time.perf_counter() - started
        seen, correct, loss_sum = runtime.sum(seen, correct, loss_sum)
        runtime.sync_buffers(model)
        test = evaluate(model, test_images, test_labels, prepare, runtime, local_batch * 2, autocast)
        record = {"epoch": epoch + 1, "lr": round(max(scheduler.get_last_lr()), 6),  # the head's, with --layer-decay
                  "train_loss": round(loss_sum / seen, 4), "train_top1": round(100 * correct / seen, 2),
                  "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                  "epoch_s": round(elapsed, 2), "img_per_s": round(seen / elapsed, 1)}
        if runtime.is_main:
            print(json.dumps(record), flush=True)
            # Written to a temporary file and renamed: a run killed mid-write keeps the previous epoch's checkpoint.
            partial = checkpoint_path.with_name(checkpoint_path.name + ".part")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(), "epoch": epoch + 1, "record": record,
                        "settings": _run_settings(args), "sources": sources}, partial)
            os.replace(partial, checkpoint_path)
            with open(work_dir / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")

    if args.output:
        runtime.sync_buffers(model)
        model = model.to(memory_format=torch.contiguous_format)
        if args.fp16_weights:  # measure what is shipped: the weights rounded to float16
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        # The recorded metrics are the float32 model's, as a user runs it (training may have used bf16 autocast).
        test = evaluate(model, test_images, test_labels, prepare, runtime, local_batch * 2, contextlib.nullcontext)
        record.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"])
        if runtime.is_main:
            metrics = {"top1": test["top1"], "top5": test["top5"], "dataset": args.dataset, "split": "test", "images": test["count"]}
            training = {"dataset": args.dataset, "command": "python -m lightnets.train " + shlex.join(argv),
                        "epochs": args.epochs, "seed": args.seed, "processes": runtime.world_size,
                        "device": runtime.device.type,
                        "precision": f"{str(amp_dtype).removeprefix('torch.')} autocast" if use_amp else "float32",
                        "train_images": len(train_labels)}
            if args.finetune_from:
                training.update(finetuned_from=args.finetune_from, finetuned_from_sha256=sources["finetuned_from"])
            if args.teacher:
                training.update(teacher=args.teacher, teacher_sha256=sources["teacher"])
            folder = save_pretrained(model.cpu(), args.output, metrics=metrics, tag=args.tag, model_args=model_args,
                                     label_names=classes, training=training, fp16=args.fp16_weights)
            print(f"wrote {folder} (test top-1 {test['top1']}%)")
    return model, record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m lightnets.train`` / ``lightnets-train``; returns the exit status."""
    try:
        train(sys.argv[1:] if argv is None else argv)
    except (ValueError, TypeError, OSError) as error:  # bad arguments, unknown model or weights, missing files
        print(f"lightnets-train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
