"""Datasets as uint8 image tensors, and the one function that turns them into model inputs.

Every dataset yields ``(image, label)`` with ``image`` a uint8 tensor (C, H, W) and has ``.classes``.
The small ones are held in memory whole (``.images`` uint8 N×C×H×W, ``.labels`` int64 N), so a batch is
a slice and no file is read while a model is timed:

* ``fashion_mnist`` — 28×28 grayscale, 10 classes. The 10k test split ships inside the package
  (``lightnets/datasets/fashion_mnist``, MIT, © Zalando SE); the train split is read from ``data_dir``,
  from Debian's ``/usr/share/datasets/fashion-mnist/``, from the download cache, or downloaded.
* ``cifar10`` — 32×32 RGB, 10 classes, from the official python batches (``cifar-10-batches-py``).
* ``imagefolder:PATH`` — one subfolder of images per class (ImageNet layout), decoded on access and
  resized / center-cropped to ``img_size`` as timm's eval transform does.
* ``synthetic`` — seeded random images, for latency-only runs.

>>> test_set = load_dataset("fashion_mnist", limit=100)
>>> test_set.images.shape, test_set.classes[9]
(torch.Size([100, 1, 28, 28]), 'Ankle boot')
>>> normalize_batch(test_set.images[:8], in_chans=3, img_size=32, mean=test_set.mean, std=test_set.std).shape
torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

from .files import CorruptDataError, DataFile, download_file
from .image_folder import ImageFolderDataset
from .in_memory import InMemoryDataset
from .load import DATASET_NAMES, load_dataset
from .normalize import normalize_batch

__all__ = ["DATASET_NAMES", "CorruptDataError", "DataFile", "InMemoryDataset", "ImageFolderDataset", "load_dataset",
           "normalize_batch", "download_file"]
