"""Batched augmentation of uint8 image batches on the training device: random crop with zero padding,
horizontal flip, random erasing, and mixup / CutMix.

Every random choice comes from one ``torch.Generator``, so a resumed run replays its epochs exactly, and the
images stay uint8, so a distillation teacher sees the very images the student sees.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

__all__ = ["augment", "random_erase", "mix_batch"]


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
        images = padded[torch.arange(n, device=device)[:, None, None, None],
                        torch.arange(c, device=device)[None, :, None, None], rows, cols]
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(device)[:, None, None, None]
        images = torch.where(flipped, images.flip(-1), images)
    if erase_prob > 0:
        images = random_erase(images, erase_prob, generator)
    return images


def random_erase(images: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``prob`` per image, fill one random rectangle with uniform noise (see :func:`augment`).

    >>> erased = random_erase(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 1.0, torch.Generator().manual_seed(0))
    >>> bool((erased.flatten(1) > 0).any(1).all())  # each image got its rectangle of noise
    True
    """
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
