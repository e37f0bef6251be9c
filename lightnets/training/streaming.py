"""Training on image files that do not fit in memory: each batch decoded and augmented in DataLoader workers,
handed to :func:`lightnets.training.fit` as uint8, so both kinds of data go through the same training step.

The workers run timm's own transforms (``create_transform`` with ``use_prefetcher=True``: uint8 out, the
normalisation and random erasing left to the training step, as timm's prefetcher does), or, with
``FileAugment(kind="small")``, the evaluation crop alone, leaving the small-image pad-crop and flip to the step
as for in-memory data. Each process reads only its DistributedSampler shard; the workers' seeds follow from
the run's seed, the epoch and the rank, so an epoch's order and augmentations replay. Memory is bounded by
batch size × workers × prefetch, not by the dataset.

>>> import tempfile
>>> from PIL import Image
>>> from lightnets.data import ImageFileDataset
>>> root = Path(tempfile.mkdtemp())
>>> for i in range(4):
...     Image.new("RGB", (40, 30), "red").save(root / f"{i}.png")
>>> (root / "4.png").write_bytes(b"not a png")
9
>>> files = ImageFileDataset([(root / f"{i}.png", i % 2) for i in range(5)], ["a", "b"], "example")
>>> files = files.with_transform(eval_transform(24, 0.875, "bilinear"), channels=3)
>>> batches = StreamingBatches(files, batch_size=5, shuffle=False, drop_last=False)
>>> [(tuple(images.shape), labels.tolist()) for images, labels in batches]
[((4, 3, 24, 24), [0, 1, 0, 1])]
>>> batches.bad_images.summary()["skipped"]
1
"""
from __future__ import annotations

import os
import random
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.bad_images import BadImageLog
from ..data.image_files import BadImage, ImageFileDataset

__all__ = ["FileAugment", "StreamingBatches", "collate_decoded", "eval_transform", "train_transform",
           "default_workers", "peak_rss_mb", "children_peak_rss_mb"]


@dataclass(frozen=True)
class FileAugment:
    """The training transform of streamed images.

    ``kind="timm"``: timm's ``RandomResizedCrop(scale, ratio)``, horizontal flip, then RandAugment
    (``auto_augment``, e.g. ``"rand-m9-mstd0.5"``) or colour jitter. The default scale is gentler than
    ImageNet's (0.08, 1): small models underfit rather than overfit, and both papers train them with less
    augmentation (MobileNet v1 §4, ShuffleNet v1 §4: "slightly less aggressive scale augmentation").
    ``kind="small"``: the evaluation resize and crop, then the small-image pad-crop and flip of in-memory
    training (``FitConfig.pad`` / ``flip``) in the training step.
    """

    kind: str = "timm"
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    color_jitter: float = 0.4
    auto_augment: Optional[str] = None
    interpolation: str = "random"  # timm's train script: bilinear or bicubic, drawn per image

    def __post_init__(self) -> None:
        if self.kind not in ("timm", "small"):
            raise ValueError(f"the training transform must be 'timm' or 'small', got {self.kind!r}")
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"--scale must be two fractions 0 < MIN <= MAX <= 1, got {low} {high}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"--ratio must be 0 < MIN <= MAX, got {self.ratio[0]} {self.ratio[1]}")
        if self.color_jitter < 0:
            raise ValueError(f"--color-jitter must be >= 0, got {self.color_jitter}")


def train_transform(img_size: int, augment: FileAugment, crop_pct: float = 0.875,
                    interpolation: str = "bilinear") -> Callable[[Any], torch.Tensor]:
    """A PIL image → uint8 C×H×W tensor of side ``img_size``, augmented as ``augment`` says."""
    from timm.data import create_transform

    if augment.kind == "small":
        return eval_transform(img_size, crop_pct, interpolation)
    try:
        return create_transform(img_size, is_training=True, scale=augment.scale, ratio=augment.ratio,
                                hflip=0.5 if augment.hflip else 0.0, color_jitter=augment.color_jitter,
                                auto_augment=augment.auto_augment, interpolation=augment.interpolation,
                                use_prefetcher=True)
    except (AssertionError, ValueError, KeyError) as error:  # timm's parse of an unknown --aa string
        raise ValueError(f"--aa {augment.auto_augment!r} is not a timm auto-augment policy ({error}); "
                         f"e.g. rand-m9-mstd0.5, rand-m7-mstd0.5-inc1, augmix-m5-w4-d2, v0") from None


def eval_transform(img_size: int, crop_pct: float, interpolation: str) -> Callable[[Any], torch.Tensor]:
    """timm's evaluation transform (resize the shorter side to ``img_size / crop_pct``, centre crop), uint8 out."""
    from timm.data import create_transform

    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                            use_prefetcher=True)


def collate_decoded(batch: Sequence[tuple[Optional[torch.Tensor], int, Optional[BadImage]]],
                    ) -> tuple[Optional[torch.Tensor], torch.Tensor, list[BadImage]]:
    """Stack the decoded images of a batch and their labels; the undecodable ones are left out and listed."""
    good = [(image, label) for image, label, bad in batch if bad is None]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, torch.tensor([label for _, label in good], dtype=torch.long), [b for _, _, b in batch if b]


def default_workers(device: Union[torch.device, str] = "cpu") -> int:
    """Processes decoding image files for training on ``device``: none on a CPU of two cores or fewer, else one
    per core beyond the first (the training process needs one), at most 8.

    With no worker the training process decodes each batch between its steps. On two cores a worker runs beside
    the two compute threads: it preempts one, and the other waits for it at every barrier of the step, so one
    worker costs more than decoding in turn (mobilenet_v1_050 at 160 px on the 2-core EPYC, results/streaming.md:
    0.84× a plain loop over decoded tensors decoding in the training process, 0.70× with one worker).

    >>> default_workers("cuda") >= 1
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.device(device).type == "cpu" and cores <= 2:
        return 0
    return max(1, min(8, cores - 1))


def children_peak_rss_mb() -> float:
    """Summed peak resident memory (VmHWM) of this process's live children, e.g. decoding workers, in MiB (Linux;
    0 elsewhere)."""
    total = 0
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
    return total / 1024  # /proc reports KiB


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if os.uname().sysname == "Darwin" else 1024)


class StreamingBatches:
    """An epoch's ``(uint8 images, labels)`` batches of ``dataset``, decoded in ``workers`` processes.

    ``sampler`` (default: all images, shuffled when ``shuffle``) picks this process's images — a
    DistributedSampler under torchrun; :meth:`set_epoch` reseeds order and augmentation. Undecodable images are
    dropped from their batch and recorded in ``bad_images`` (which stops the run when its mode says so).
    ``peak_workers_mb`` is the largest summed peak memory of the decoding workers seen in the last epoch.
    """

    def __init__(self, dataset: ImageFileDataset, batch_size: int, *, workers: int = 0,
                 sampler: Optional[Sampler] = None, shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 bad_images: Optional[BadImageLog] = None, pin_memory: bool = False) -> None:
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.sampler, self.shuffle, self.drop_last, self.seed = sampler, shuffle, drop_last, seed
        self.bad_images = bad_images if bad_images is not None else BadImageLog("skip")
        self.pin_memory, self.peak_workers_mb = pin_memory, 0.0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Order and augmentation of ``epoch`` from ``seed`` (the run's seed, epoch and rank combined)."""
        self.seed = seed
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        images = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return images // self.batch_size if self.drop_last else -(-images // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        if self.workers == 0:  # the transforms draw from the global generators of this process
            random.seed(self.seed)
        loader = DataLoader(self.dataset, self.batch_size, shuffle=self.shuffle if self.sampler is None else None,
                            sampler=self.sampler, num_workers=self.workers, collate_fn=collate_decoded,
                            generator=generator, drop_last=self.drop_last, pin_memory=self.pin_memory,
                            persistent_workers=False)
        self.peak_workers_mb = 0.0
        for images, labels, bad in loader:
            self.bad_images.record(len(labels) + len(bad), bad)
            if self.workers:
                self.peak_workers_mb = max(self.peak_workers_mb, children_peak_rss_mb())
            if images is not None:
                yield images, labels
