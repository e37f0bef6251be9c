"""The data of one ``lightnets-train`` run as the training loop takes it: its splits
(:func:`lightnets.data.load_splits`), the channels and size the model sees, and for each split a :class:`Feed`:
uint8 tensors held in memory (Fashion-MNIST, CIFAR-10, synthetic) or
:class:`~lightnets.training.StreamingBatches` of image files decoded in DataLoader workers, this process's
shard of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from ..data import BadImageLog, ImageFileDataset, TrainingData
from ..data.splits import with_validation
from ..training import FileAugment, Runtime, StreamingBatches, channel_stats, eval_transform, in_memory, train_transform
from .train_config import TrainRunConfig
from .train_model import parse_model_args

__all__ = ["Feed", "feeds_for", "input_shape", "load_run_data", "file_channel_stats"]


@dataclass
class Feed:
    """One split as :func:`lightnets.training.fit` / ``evaluate`` take it: ``images`` uint8 N×C×H×W with
    ``labels``, or batches (``labels`` None); ``count`` images in all (every process together)."""

    images: Union[torch.Tensor, StreamingBatches]
    labels: Optional[torch.Tensor]
    count: int


def load_run_data(config: TrainRunConfig, train_set: Any = None, test_set: Any = None) -> TrainingData:
    """The run's splits: ``--dataset`` (with ``--val-split``), or the in-memory ``train_set`` / ``test_set`` given."""
    from ..data import load_splits

    if train_set is None:
        return load_splits(config.dataset, data_dir=config.data_dir, download=config.download, limit=config.limit,
                           limit_test=config.limit_test, val_split=config.val_split, seed=config.seed)
    data = TrainingData(train_set, None, test_set, list(train_set.classes),
                        {"test": {"made_by": "the test images given", "source": getattr(test_set, "name", "given")}})
    return with_validation(data, config.val_split, config.seed) if config.val_split else data


def _source_input_size(config: TrainRunConfig) -> Optional[tuple[int, ...]]:
    """(C, H, W) the ``--finetune-from`` weights were trained at, or None."""
    from pathlib import Path

    from ..pretrained import read_config
    from ..registry import get_pretrained_cfg

    if not config.finetune_from:
        return None
    if Path(config.finetune_from).exists():
        return tuple(read_config(config.finetune_from).get("pretrained_cfg", {}).get("input_size", ()))
    return tuple(get_pretrained_cfg(config.finetune_from).get("input_size", ()))


def input_shape(config: TrainRunConfig, data: TrainingData) -> tuple[int, int]:
    """(channels, side) of the model's input: the images' own for in-memory data; for files, ``--img-size`` and
    ``--model-arg in_chans``, else what the ``--finetune-from`` weights were trained at, else 3 channels at the
    architecture's default size."""
    if not data.streamed:
        if config.img_size is not None:
            raise ValueError(f"--img-size applies to image files (imagefolder:PATH, hfds:PATH); {config.dataset} "
                             f"trains at its own size")
        _, channels, side, _ = data.train.images.shape
        return channels, side
    from ..registry import get_pretrained_cfg, split_model_name

    given = parse_model_args(config.model_arg)
    source = _source_input_size(config) or tuple(get_pretrained_cfg(split_model_name(config.model)[0])["input_size"])
    channels = int(given.get("in_chans") or (source[0] if config.finetune_from else 3))
    return channels, int(config.img_size or source[-1])


def file_channel_stats(dataset: ImageFileDataset, channels: int, img_size: int, count: int = 256,
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0–1 scale) of ``count`` evenly spaced images, decoded as evaluation sees them:
    the normalisation of a model trained from scratch on files."""
    files = dataset.with_transform(eval_transform(img_size, 1.0, "bilinear"), channels)
    step = max(1, len(files) // count)
    decoded = (files[index] for index in range(0, len(files), step)[:count])
    images = [image for image, _, bad in decoded if bad is None]  # a bad image is the training loop's to report
    if not images:
        raise ValueError(f"{dataset.name}: none of the {count} images sampled for the normalisation could be decoded")
    return channel_stats(torch.stack(images))


def feeds_for(data: TrainingData, config: TrainRunConfig, runtime: Runtime, channels: int, img_size: int,
              crop_pct: float, interpolation: str, augment: FileAugment, bad_images: BadImageLog, workers: int,
              ) -> dict[str, Feed]:
    """A :class:`Feed` per split the data has (``train``, ``validation``, ``test``); files are decoded in
    ``workers`` processes."""
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    feeds = {}
    local_batch = config.batch_size // runtime.world_size
    for name, split in splits.items():
        if split is None:
            continue
        if not isinstance(split, ImageFileDataset):
            images, labels = in_memory(split)
            feeds[name] = Feed(images, labels, len(labels))
            continue
        training = name == "train"
        transform = (train_transform(img_size, augment, crop_pct, interpolation) if training
                     else eval_transform(img_size, crop_pct, interpolation))
        files = split.with_transform(transform, channels)
        if training:
            sampler: Any = torch.utils.data.DistributedSampler(files, num_replicas=runtime.world_size,
                                                               rank=runtime.rank, shuffle=True, seed=config.seed,
                                                               drop_last=True)
        else:  # every image once, strided across processes (no padding duplicates)
            sampler = list(range(runtime.rank, len(files), runtime.world_size))
        batches = StreamingBatches(files, local_batch if training else local_batch * 2, workers=workers,
                                   sampler=sampler, drop_last=training, seed=config.seed, bad_images=bad_images,
                                   pin_memory=runtime.device.type == "cuda")
        feeds[name] = Feed(batches, None, len(files))
    return feeds
