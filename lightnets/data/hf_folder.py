"""``hfds:PATH``: a Hugging Face dataset folder written by ``datasets``' ``save_to_disk``, streamed image by image.

The image column is the one of feature type ``datasets.Image``, the label column the one of type
``ClassLabel`` (its names are the classes). A ``DatasetDict`` folder has its splits by name (``train``,
``validation`` / ``val``, ``test``); a single ``Dataset`` folder is the train split. The images stay in the
folder's Arrow files (memory-mapped) and are decoded one at a time by :class:`HFImageDataset`, with the same
bad-image handling as image files. ``datasets`` is an optional dependency (the ``data`` extra).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from .image_files import ImageFileDataset, decode_image

__all__ = ["HFImageDataset", "load_hf_folder"]


class HFImageDataset(ImageFileDataset):
    """Rows of a ``datasets.Dataset`` (the sample keys are row numbers) decoded on access, as
    :class:`~lightnets.data.image_files.ImageFileDataset` decodes files."""

    def __init__(self, samples: Sequence[tuple[Any, int]], classes: Sequence[str], source: str,
                 channels: int = 3, transform: Any = None, *, table: Any = None, image_column: str = "") -> None:
        super().__init__(samples, classes, source, channels, transform)
        self.table, self.image_column = table, image_column

    def _copy(self, samples: Sequence[tuple[Any, int]], source: str, channels: int, transform: Any,
              classes: Any = None) -> HFImageDataset:
        return HFImageDataset(samples, self.classes if classes is None else classes, source, channels, transform,
                              table=self.table, image_column=self.image_column)

    def describe(self, index: int) -> str:
        return f"{self.name} row {self.samples[index][0]}"

    def file_list(self) -> list[str]:
        fingerprint = getattr(self.table, "_fingerprint", "")  # datasets' hash of the table's content and history
        return [f"{fingerprint}:{row}\t{label}" for row, label in self.samples]

    def decode(self, index: int) -> Any:
        cell = self.table[int(self.samples[index][0])][self.image_column]
        source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell.get("path")
        if source is None:
            raise OSError("the row holds neither image bytes nor a path")
        return decode_image(source, self.channels)


def _columns(table: Any, folder: str) -> tuple[str, str, list[str]]:
    import datasets

    images = [name for name, feature in table.features.items() if isinstance(feature, datasets.Image)]
    labels = [name for name, feature in table.features.items() if isinstance(feature, datasets.ClassLabel)]
    if len(images) != 1 or len(labels) != 1:
        raise ValueError(f"hfds:{folder}: needs one column of type Image and one of type ClassLabel, it has the "
                         f"columns {', '.join(f'{k} ({type(v).__name__})' for k, v in table.features.items())}")
    return images[0], labels[0], list(table.features[labels[0]].names)


def load_hf_folder(path: str) -> dict[str, HFImageDataset]:
    """The splits of the dataset folder ``path`` by name (``train``, ``validation``, ``test``; ``val`` is read as
    ``validation``), each an :class:`HFImageDataset` sharing the train split's class names."""
    try:
        import datasets
    except ImportError:
        raise ImportError("hfds:PATH datasets need the datasets package: pip install 'lightnets[data]'") from None
    folder = Path(path).expanduser()
    if not path or not folder.is_dir():
        raise FileNotFoundError(f"hfds:{path}: no such folder (give hfds:PATH to a folder that datasets' "
                                f"save_to_disk wrote)")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"hfds:{path}: not a dataset folder written by save_to_disk ({error})") from None
    tables = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    tables = {("validation" if name == "val" else name): table for name, table in tables.items()}
    unknown = sorted(set(tables) - {"train", "validation", "test"})
    if unknown or "train" not in tables:
        raise ValueError(f"hfds:{path}: has the splits {', '.join(sorted(tables))}; lightnets reads train, "
                         f"validation (or val) and test, and needs train")
    image_column, label_column, classes = _columns(tables["train"], path)
    splits = {}
    for name, table in tables.items():
        _, _, names = _columns(table, path)
        if names != classes:
            extra = sorted(set(names) - set(classes))
            raise ValueError(f"hfds:{path}: the {name} split's classes differ from train's"
                             + (f" (train lacks {', '.join(extra)})" if extra else f": {names} against {classes}"))
        labels = table.with_format(None)[label_column]
        raw = table.cast_column(image_column, datasets.Image(decode=False))
        splits[name] = HFImageDataset(list(enumerate(labels)), classes, f"hfds:{path}/{name}", table=raw,
                                      image_column=image_column)
    return splits

