"""A pretrained weight's configuration as typed data, and the plain dict timm reads.

:class:`WeightCfg` has timm's ``PretrainedCfg`` fields (where the file is; input size, mean/std, crop and
interpolation; classes, first conv and classifier; licence) and lightnets' own: the checksums, the
architecture arguments the weight was trained with (``model_args``), who published it and in which
format, what it was derived from, its parameter and MAC counts, how it was trained, and its
:class:`Metrics`. A field left ``None`` is absent.

A model's ``pretrained_cfg``, :func:`lightnets.get_pretrained_cfg`, ``weights/index.json`` and a weight
folder's ``config.json`` stay the plain dicts timm's API and its tests expect: :meth:`WeightCfg.to_dict`
writes one, :meth:`WeightCfg.from_dict` reads one back and refuses a key it does not know.

Nothing here imports torch or another lightnets module: the model families declare their weights
with it (``lightnets/models/*_weights.py``), and every layer above reads them.

>>> cfg = WeightCfg.from_dict({"num_classes": 10, "input_size": [1, 28, 28],
...                            "metrics": {"top1": 93.5, "dataset": "fashion_mnist", "split": "test", "images": 10000}})
>>> cfg.input_size, cfg.metrics.get("top1").value, cfg.metrics.get("top1").provenance
((1, 28, 28), 93.5, 'measured')
>>> cfg.to_dict()["metrics"]
{'top1': 93.5, 'dataset': 'fashion_mnist', 'split': 'test', 'images': 10000}
>>> WeightCfg.from_dict({"num_clases": 10})
Traceback (most recent call last):
...
ValueError: pretrained cfg: unknown key 'num_clases' (did you mean 'num_classes'?); ...
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

__all__ = ["WEIGHT_SOURCE_FIELDS", "Metric", "Metrics", "WeightCfg", "as_weight_cfg"]

# The fields that say where a weight's file comes from: a cfg with any of them has weights
# ("download_page": a weight its publisher only gives by hand, loaded with pretrained_path=).
WEIGHT_SOURCE_FIELDS = ("hf_hub_id", "file", "url", "download_page")

Number = Union[int, float]


# The keys of the flat metrics dict that qualify its numbers rather than being one.
_QUALIFIERS = ("dataset", "split", "images", "reported_by")
# The key of the flat dict that lists rows scored under other conditions (another split, format or precision).
OTHER_SETTINGS = "other_settings"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Metric:
    """One number a weight scored, and what it was scored on, how, and by whom.

    >>> Metric("top1", 65.61, reported_by="imgclsmob's PyTorch results table").provenance
    "reported_by=imgclsmob's PyTorch results table"
    """

    name: str  # "top1", "top5", "loss", ...
    value: Number
    dataset: Optional[str] = None  # None: not recorded with the number (a published weight's: the cfg's dataset)
    split: Optional[str] = None  # "validation" or "test"; None: not recorded
    images: Optional[int] = None  # how many images the number is over
    format: str = "eager"  # how the model ran: "eager" PyTorch, or an export ("onnx", "openvino", "executorch", ...)
    precision: str = "float32"  # of the weights and activations: "float32", "float16", "int8", ...
    reported_by: Optional[str] = None  # None: measured by lightnets; else the source the number is quoted from

    def __post_init__(self) -> None:
        where = f"metrics[{self.name!r}]"
        if not isinstance(self.name, str) or not self.name or self.name in (*_QUALIFIERS, OTHER_SETTINGS):
            raise ValueError(f"a metric's name must be a non-empty string other than {', '.join(_QUALIFIERS)} and "
                             f"{OTHER_SETTINGS}, got {self.name!r}")
        if not _is_number(self.value):
            raise ValueError(f"{where} is {self.value!r}: a metric's value is a finite number")
        for field in ("dataset", "split", "reported_by"):
            if getattr(self, field) is not None and not isinstance(getattr(self, field), str):
                raise ValueError(f"{where}: {field} is {getattr(self, field)!r}, expected a string")
        for field in ("format", "precision"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ValueError(f"{where}: {field} is {getattr(self, field)!r}, expected a non-empty string")
        if self.images is not None and not (isinstance(self.images, int) and not isinstance(self.images, bool)
                                            and self.images >= 0):
            raise ValueError(f"{where}: images is {self.images!r}, expected a count of images (an integer >= 0)")

    @property
    def provenance(self) -> str:
        """``"measured"`` (by lightnets) or ``"reported_by=<source>"``."""
        return "measured" if self.reported_by is None else f"reported_by={self.reported_by}"

    @property
    def conditions(self) -> tuple[Any, ...]:
        """What the number was scored on and how: rows with the same conditions share one flat dict."""
        return (self.dataset, self.split, self.images, self.format, self.precision, self.reported_by)


@dataclass(frozen=True)
class Metrics:
    """A weight's metric rows, each a :class:`Metric`.

    Their plain dict is the flat form ``weights/index.json`` and config.json have always held: the numbers
    by name, then the ``dataset``, ``split``, ``images`` and ``reported_by`` they share. Rows scored under
    other conditions (the other split, an export format, another precision) are listed under
    ``"other_settings"``, one dict per row, so the flat form of today's weights does not change.

    >>> metrics = Metrics.from_dict({"top1": 93.5, "top5": 99.9, "dataset": "fashion_mnist", "split": "test",
    ...                              "images": 10000})
    >>> metrics = metrics.with_rows(Metric("top1", 93.4, "fashion_mnist", "test", 10000, format="onnx",
    ...                                    precision="int8"))
    >>> metrics.get("top1", format="onnx", precision="int8").value
    93.4
    >>> metrics.to_dict()["other_settings"]
    [{'name': 'top1', 'value': 93.4, 'dataset': 'fashion_mnist', 'split': 'test', 'images': 10000, 'format': 'onnx', 'precision': 'int8'}]
    >>> Metrics.from_dict(metrics.to_dict()) == metrics
    True
    """

    rows: tuple[Metric, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))

    def get(self, name: str, split: Optional[str] = None, format: str = "eager",
            precision: str = "float32") -> Optional[Metric]:
        """The first row named ``name`` run as ``format`` in ``precision`` (on ``split``, if given); None if there is
        none."""
        return next((row for row in self.rows if row.name == name and row.format == format
                     and row.precision == precision and (split is None or row.split == split)), None)

    def with_rows(self, *rows: Metric) -> "Metrics":
        """These metrics and ``rows`` after them."""
        return Metrics(self.rows + rows)

    def _headline(self) -> tuple[Metric, ...]:
        """The rows of the flat dict: eager float32, with the first such row's conditions."""
        first = next((row for row in self.rows if (row.format, row.precision) == ("eager", "float32")), None)
        return tuple(row for row in self.rows if first is not None and row.conditions == first.conditions)

    def to_dict(self) -> dict[str, Any]:
        """The flat plain dict (see the class docstring)."""
        headline = self._headline()
        out: dict[str, Any] = {row.name: row.value for row in headline}
        if headline:
            out.update({key: getattr(headline[0], key) for key in _QUALIFIERS if getattr(headline[0], key) is not None})
        others = [row for row in self.rows if row not in headline]
        if others:
            out[OTHER_SETTINGS] = [_row_dict(row) for row in others]
        return out

    @classmethod
    def from_dict(cls, metrics: Mapping[str, Any], where: str = "metrics") -> "Metrics":
        """Read the flat dict: every key that is not a qualifier (or ``other_settings``) is a metric and holds a
        number."""
        if not isinstance(metrics, Mapping):
            raise ValueError(f"{where} is {metrics!r}: expected an object of metric names and numbers")
        qualifiers = {key: metrics[key] for key in _QUALIFIERS if key in metrics}
        rows = []
        for key, value in metrics.items():
            if key in _QUALIFIERS or key == OTHER_SETTINGS:
                continue
            if not _is_number(value):
                raise ValueError(f"{where}[{key!r}] is {value!r}: a metric is a finite number; {where} may also give "
                                 f"{', '.join(_QUALIFIERS)} (what the numbers were measured on, or who reports them)")
            rows.append(Metric(key, value, **qualifiers))
        if qualifiers and not rows:
            raise ValueError(f"{where} gives {', '.join(qualifiers)} but no metric: add the numbers (e.g. top1)")
        others = metrics.get(OTHER_SETTINGS, [])
        if not isinstance(others, (list, tuple)) or not all(isinstance(row, Mapping) for row in others):
            raise ValueError(f"{where}[{OTHER_SETTINGS!r}] is {others!r}: expected a list of metric rows (objects)")
        for index, row in enumerate(others):
            unknown = sorted(set(row) - {field.name for field in dataclasses.fields(Metric)})
            if unknown or not {"name", "value"} <= set(row):
                raise ValueError(
                    f"{where}[{OTHER_SETTINGS!r}][{index}] has keys {sorted(row)}: a row has name and value, "
                    f"and may have {', '.join(f.name for f in dataclasses.fields(Metric)[2:])}"
                )
            rows.append(Metric(**row))
        return cls(tuple(rows))


def _row_dict(row: Metric) -> dict[str, Any]:
    """One row of ``other_settings``: its name and value, and every condition that is recorded."""
    return {field.name: getattr(row, field.name) for field in dataclasses.fields(Metric)
            if getattr(row, field.name) is not None}


@dataclass(frozen=True)
class WeightCfg:
    """The configuration of one pretrained weight: timm's ``PretrainedCfg`` fields and lightnets' own.

    Every field is optional: a family declares only what its weight changes, and the registry fills
    the rest from the family's defaults (:func:`lightnets.models.catalog.register_model`). Sequences
    are stored as tuples, and ``to_dict`` gives them back as the plain dict has always held them.

    >>> cfg = WeightCfg(hf_hub_id="timm/mobilenetv1_100.ra4_e3600_r224_in1k", crop_pct=0.875)
    >>> cfg.has_weights, cfg.to_dict()
    (True, {'hf_hub_id': 'timm/mobilenetv1_100.ra4_e3600_r224_in1k', 'crop_pct': 0.875})
    >>> cfg.updated({"crop_pct": 0.95}).crop_pct
    0.95
    """

    # Which weight: its registered name and tag (given by the registry; a family's declaration leaves them out).
    architecture: Optional[str] = None
    tag: Optional[str] = None

    # Where the file is, and what it must hash to.
    hf_hub_id: Optional[str] = None  # "org/name", or "org/name@revision"
    hf_hub_filename: Optional[str] = None
    revision: Optional[str] = None
    file: Any = None  # a bundled folder's name, or a local path (str or PathLike)
    url: Any = None  # a .safetensors URL, or a source's own file that source_format converts
    download_page: Optional[str] = None  # where a publisher gives the file only by hand
    download_file: Optional[str] = None  # which file to take from that page
    sha256: Optional[str] = None
    sha1: Optional[str] = None  # as a source publishes it (pytorchcv: of the .pth inside its zip)
    state_dict: Any = None  # timm's: a state dict given in memory
    custom_load: Optional[bool] = None  # timm's

    # Who made it, from what, and how its network and file differ from lightnets' defaults.
    source: Optional[str] = None  # a publisher (lightnets.models.imagenet_sources.SOURCES)
    source_name: Optional[str] = None  # the model's name in its source's library
    source_format: Optional[str] = None  # the converter its file needs (lightnets.pretrained.convert)
    source_transform: Optional[str] = None  # the source's own preprocessing, when the converter folds it in
    derived_from: Optional[str] = None  # the weight a compressed copy was made from ("name.tag")
    restructured: Optional[bool] = None  # pruned or converted after it was built: the loader reshapes the model
    model_args: Optional[Mapping[str, Any]] = None  # architecture arguments it was trained with

    # How to feed it (timm's data config) and what it outputs.
    num_classes: Optional[int] = None
    input_size: Optional[tuple[int, ...]] = None
    test_input_size: Optional[tuple[int, ...]] = None
    min_input_size: Optional[tuple[int, ...]] = None
    fixed_input_size: Optional[bool] = None
    interpolation: Optional[str] = None
    crop_pct: Optional[float] = None
    test_crop_pct: Optional[float] = None
    crop_mode: Optional[str] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    label_offset: Optional[int] = None
    label_names: Optional[tuple[str, ...]] = None
    label_descriptions: Optional[Mapping[str, str]] = None
    pool_size: Optional[tuple[int, ...]] = None
    test_pool_size: Optional[tuple[int, ...]] = None
    first_conv: Optional[str] = None
    classifier: Optional[str] = None

    # What it is, what it costs and what it scored.
    license: Optional[str] = None
    description: Optional[str] = None
    origin_url: Optional[str] = None
    paper_name: Optional[str] = None
    paper_ids: Any = None
    notes: Any = None
    dataset: Optional[str] = None  # the dataset it was trained on
    params: Optional[int] = None
    macs: Optional[int] = None  # conv + FC multiply-adds of one image at input_size
    metrics: Optional[Metrics] = None
    training: Optional[Mapping[str, Any]] = None  # how it was trained: dataset, command, epochs, seed, teacher, ...

    # Where create_model read it from: a weight folder's config.json, and the architecture that names.
    saved_from: Optional[str] = None
    saved_architecture: Optional[str] = None

    def __post_init__(self) -> None:
        for field in ("input_size", "test_input_size", "min_input_size", "pool_size", "test_pool_size", "mean", "std",
                      "label_names"):
            value = getattr(self, field)
            if value is not None:
                if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                    raise ValueError(f"pretrained cfg: {field} is {value!r}, expected a sequence")
                object.__setattr__(self, field, tuple(value))
        for field in ("model_args", "training", "label_descriptions"):
            value = getattr(self, field)
            if value is not None:
                if not isinstance(value, Mapping):
                    raise ValueError(f"pretrained cfg: {field} is {value!r}, expected an object")
                object.__setattr__(self, field, dict(value))
        if self.metrics is not None and not isinstance(self.metrics, Metrics):
            object.__setattr__(self, "metrics", Metrics.from_dict(self.metrics))

    @property
    def has_weights(self) -> bool:
        """True if the cfg names a weight source (a Hub repo, a file, a URL or a download page)."""
        return any(getattr(self, field) for field in WEIGHT_SOURCE_FIELDS)

    @property
    def weight_name(self) -> str:
        """``"name.tag"``, or the bare name of an untagged weight."""
        return f"{self.architecture}.{self.tag}" if self.tag else str(self.architecture)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict: every field that is set, in the order above (a named cfg always says its tag, None if
        untagged)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and not (field.name == "tag" and self.architecture is not None):
                continue
            if field.name == "label_names":
                value = list(value)  # as the manifest and config.json give them
            elif field.name == "metrics":
                value = value.to_dict()
            elif isinstance(value, dict):
                value = dict(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], where: str = "pretrained cfg") -> "WeightCfg":
        """Read a plain dict; a key that is not a field is an error naming it (and the field it may mean)."""
        if not isinstance(cfg, Mapping):
            raise TypeError(f"{where} must be a dict of cfg fields, got {type(cfg).__name__}")
        for key in cfg:
            if key not in _FIELD_NAMES:
                close = difflib.get_close_matches(str(key), _FIELD_NAMES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"{where}: unknown key {key!r}{hint}; a weight cfg has timm's PretrainedCfg fields and "
                    f"lightnets' own (lightnets.weight_cfg.WeightCfg lists them)"
                )
        metrics = cfg.get("metrics")
        if metrics is not None and not isinstance(metrics, Metrics):
            metrics = Metrics.from_dict(metrics, where=f"{where}: metrics")
        return cls(**{**cfg, "metrics": metrics})

    def updated(self, overrides: Union["WeightCfg", Mapping[str, Any]]) -> "WeightCfg":
        """This cfg with ``overrides`` on top: the fields a WeightCfg sets, or a dict's keys (a None value clears the
        field)."""
        if isinstance(overrides, WeightCfg):
            overrides = {
                field: getattr(overrides, field) for field in _FIELD_NAMES if getattr(overrides, field) is not None
            }
        return WeightCfg.from_dict({**self.to_dict(), **overrides})


_FIELD_NAMES = [field.name for field in dataclasses.fields(WeightCfg)]


def as_weight_cfg(cfg: Union[WeightCfg, Mapping[str, Any], None], where: str = "pretrained cfg") -> WeightCfg:
    """``cfg`` as a :class:`WeightCfg`: as it is, read from a plain dict (strictly), or empty for None.

    >>> as_weight_cfg({"num_classes": 10}).num_classes, as_weight_cfg(None) == WeightCfg()
    (10, True)
    """
    if cfg is None:
        return WeightCfg()
    if isinstance(cfg, WeightCfg):
        return cfg
    return WeightCfg.from_dict(cfg, where)
