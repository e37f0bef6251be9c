"""The splits a training run uses — train, validation, test — found where the user keeps them or carved from the
training images, and a record of how each was made.

* ``imagefolder:PATH``: ``train/`` plus ``val/`` or ``validation/`` (the validation split) and ``test/``; a
  folder of class folders alone is all training images.
* ``hfds:PATH``: the dataset's ``train``, ``validation`` (or ``val``) and ``test`` splits.
* ``fashion_mnist``, ``cifar10``, ``synthetic``: their train and test splits, held in memory.

``val_split=FRACTION`` carves a stratified, seeded validation split out of the training images when the data
has none (each class gives ``round(FRACTION × its images)``, at least one when it has two or more). Classes
that a validation or test folder has and ``train/`` lacks are an error naming them.

>>> import tempfile
>>> from PIL import Image
>>> root = Path(tempfile.mkdtemp())
>>> for split, count in (("train", 3), ("val", 1)):
...     for name in ("cat", "dog"):
...         (root / split / name).mkdir(parents=True)
...         for i in range(count):
...             Image.new("RGB", (8, 8)).save(root / split / name / f"{i}.png")
>>> splits = load_splits(f"imagefolder:{root}")
>>> len(splits.train), len(splits.validation), splits.test, splits.streamed
(6, 2, None, True)
>>> carved = load_splits(f"imagefolder:{root}/train", val_split=0.34, seed=0)
>>> len(carved.train), len(carved.validation)
(4, 2)
>>> carved.records["validation"]["made_by"]
'fraction 0.34 of the training images, stratified by class, seed 0'
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..models.arguments import check_positive_int
from .hf_folder import load_hf_folder
from .image_files import ImageFileDataset, list_class_images
from .in_memory import InMemoryDataset
from .load import load_dataset

__all__ = ["TrainingData", "load_splits", "stratified_split", "with_validation", "VALIDATION_FOLDERS"]

VALIDATION_FOLDERS = ("val", "validation")
Split = Union[InMemoryDataset, ImageFileDataset]


@dataclass
class TrainingData:
    """The splits of one run (``validation`` / ``test``: None where there is none), their class names, and for
    each split a record of how it was made (the card and config.json carry it)."""

    train: Split
    validation: Optional[Split]
    test: Optional[Split]
    classes: list[str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def streamed(self) -> bool:
        """True when the images are files decoded as they are read, not tensors in memory."""
        return isinstance(self.train, ImageFileDataset)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): ``round(fraction × n)`` images of each class of ``n`` (at least one
    when ``n`` ≥ 2, never all of them) go to validation, drawn by a generator seeded with ``seed``.

    >>> stratified_split(torch.tensor([0, 0, 0, 0, 1, 1]), 0.5, seed=0)
    ([2, 3, 5], [0, 1, 4])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--val-split must be a fraction in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    validation: list[int] = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = min(len(members) - 1, max(int(len(members) >= 2), round(fraction * len(members))))
        validation += members[torch.randperm(len(members), generator=generator)[:count]].tolist()
    chosen = set(validation)
    return [i for i in range(len(labels)) if i not in chosen], sorted(validation)


def _fingerprint(dataset: Split) -> str:
    """sha256 of what identifies the training images: the file list with labels, or the pixels and labels."""
    digest = hashlib.sha256()
    if isinstance(dataset, ImageFileDataset):
        digest.update("\n".join(dataset.file_list()).encode())
    else:
        digest.update(dataset.images.contiguous().numpy().tobytes())
        digest.update(dataset.labels.numpy().tobytes())
    return digest.hexdigest()


def _carve(dataset: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    train, validation = stratified_split(dataset.labels, fraction, seed)
    if isinstance(dataset, ImageFileDataset):
        return dataset.subset(train, f"{dataset.name} (train part)"), dataset.subset(validation, f"{dataset.name} "
                                                                                                 "(validation part)")
    return tuple(InMemoryDataset(dataset.images[index], dataset.labels[index], dataset.classes, dataset.name, split,
                                 dataset.mean, dataset.std)
                 for index, split in ((torch.tensor(train, dtype=torch.long), "train"),
                                      (torch.tensor(validation, dtype=torch.long), "validation")))


def _aligned(split: ImageFileDataset, classes: list[str], where: str) -> ImageFileDataset:
    """``split`` with its labels renumbered into ``classes`` (the training split's); extra classes are an error."""
    extra = [name for name in split.classes if name not in classes]
    if extra:
        raise ValueError(f"{where} has the classes {', '.join(extra)}, which the training images lack; "
                         f"add them to train/ or remove them from {where}")
    return split.with_classes(classes)


def _image_folder_splits(path: str) -> dict[str, ImageFileDataset]:
    root = Path(path).expanduser()
    if not path or not root.is_dir():
        raise FileNotFoundError(f"imagefolder:{path}: no such folder (give imagefolder:PATH to a folder of class "
                                f"subfolders, or of train/ and val/ folders of them)")
    names = {"train": ["train"], "validation": list(VALIDATION_FOLDERS), "test": ["test"]}
    found = {split: [root / n for n in folders if (root / n).is_dir()] for split, folders in names.items()}
    if len(found["validation"]) > 1:
        raise ValueError(f"{root} has both val/ and validation/: keep one validation folder")
    if not any(found.values()):
        found["train"] = [root]
    elif not found["train"]:
        raise ValueError(f"{root} has {', '.join(p.name + '/' for f in found.values() for p in f)} but no train/ "
                         f"folder of training images")
    splits = {}
    for split, folders in found.items():
        if folders:
            classes, samples = list_class_images(folders[0])
            if not samples:
                raise FileNotFoundError(f"{folders[0]} holds no images in class subfolders (expected "
                                        f"{folders[0]}/<class>/<image>)")
            splits[split] = ImageFileDataset(samples, classes, f"imagefolder:{folders[0]}")
    return splits


def load_splits(name: str, *, data_dir: Optional[str] = None, download: bool = False, limit: Optional[int] = None,
                limit_test: Optional[int] = None, val_split: Optional[float] = None, seed: int = 0) -> TrainingData:
    """The train / validation / test splits of dataset ``name`` (see the module's description).

    ``limit`` keeps the first N training images (an image folder's classes interleaved: a balanced subset) before
    a validation split is carved; ``limit_test`` (default ``limit``) the first N of validation and test.
    """
    for argument, value in (("limit", limit), ("limit_test", limit_test)):
        if value is not None:
            check_positive_int(argument, value)
    limit_test = limit if limit_test is None else limit_test
    kind, _, path = name.partition(":")
    records: dict[str, dict[str, Any]] = {}
    if kind in ("imagefolder", "hfds"):
        found = _image_folder_splits(path) if kind == "imagefolder" else load_hf_folder(path)
        train = found["train"]
        splits: dict[str, Any] = {"train": train.subset(range(min(len(train), limit or len(train))), train.name)}
        for split in ("validation", "test"):
            if split in found:
                data = _aligned(found[split], train.classes, found[split].name)
                splits[split] = data.subset(range(min(len(data), limit_test or len(data))), data.name)
                records[split] = {"made_by": f"the {split} split of the data", "source": data.name}
        if not found.keys() - {"train"} and not val_split:
            raise ValueError(f"{name} has no validation or test images (a val/, validation/ or test/ folder, or "
                             f"split): give --val-split FRACTION to hold out part of the training images")
    else:
        splits = {"train": load_dataset(name, "train", data_dir, download, limit, seed=seed),
                  "test": load_dataset(name, "test", data_dir, download, limit_test, seed=seed)}
        records["test"] = {"made_by": "the test split of the data", "source": f"{name}/test"}
    records["train"] = {"made_by": "the training split of the data", "source": getattr(splits["train"], "name", name)}
    data = TrainingData(splits["train"], splits.get("validation"), splits.get("test"), list(splits["train"].classes),
                        records)
    return with_validation(data, val_split, seed) if val_split else data


def with_validation(data: TrainingData, fraction: float, seed: int) -> TrainingData:
    """``data`` with a validation split of ``fraction`` of its training images, carved by :func:`stratified_split`
    (an error when it has a validation split already)."""
    if data.validation is not None:
        raise ValueError(f"the data has its own validation split ({getattr(data.validation, 'name', '')}); "
                         f"drop --val-split, or remove that folder to carve one from the training images")
    fingerprint = _fingerprint(data.train)
    train, validation = _carve(data.train, fraction, seed)
    records = {**data.records, "validation": {
        "made_by": f"fraction {fraction} of the training images, stratified by class, seed {seed}",
        "fraction": fraction, "seed": seed, "training_images_sha256": fingerprint}}
    records["train"] = {**records.get("train", {}), "made_by": "the training images less the validation part"}
    return TrainingData(train, validation, data.test, data.classes, records)
