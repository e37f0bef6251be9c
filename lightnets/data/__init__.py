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
* ``hfds:PATH`` — a Hugging Face dataset folder (``save_to_disk``), for training.
* ``synthetic`` — seeded random images, for latency-only runs.

Training reads a run's splits with :func:`load_splits` (validation folders, ``--val-split``); image files
and ``hfds`` rows are then streamed (:class:`ImageFileDataset`), never held whole.

>>> test_set = load_dataset("fashion_mnist", limit=100)
>>> test_set.images.shape, test_set.classes[9]
(torch.Size([100, 1, 28, 28]), 'Ankle boot')
>>> normalize_batch(test_set.images[:8], in_chans=3, img_size=32, mean=test_set.mean, std=test_set.std).shape
torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

from .bad_images import BAD_IMAGE_MODES, BadImageError, BadImageLog
from .files import CorruptDataError, DataFile, download_file
from .image_files import BadImage, ImageFileDataset, decode_image
from .image_folder import ImageFolderDataset
from .in_memory import InMemoryDataset
from .load import DATASET_NAMES, load_dataset
from .normalize import normalize_batch
from .splits import TrainingData, load_splits, stratified_split

__all__ = ["DATASET_NAMES", "CorruptDataError", "DataFile", "InMemoryDataset", "ImageFolderDataset", "load_dataset",
           "normalize_batch", "download_file", "BAD_IMAGE_MODES", "BadImage", "BadImageError", "BadImageLog",
           "ImageFileDataset", "decode_image", "TrainingData", "load_splits", "stratified_split"]
