"""The typed weight cfg: every cfg lightnets knows reads into it and back to the same plain dict and files."""
import json
from pathlib import Path

import pytest

import lightnets
from lightnets.models import catalog, mobilenet_v1, shufflenet_v1
from lightnets.models.imagenet_sources import SOURCES
from lightnets.pretrained import manifest
from lightnets.pretrained.folder_config import FolderConfig
from lightnets.pretrained.manifest import (WEIGHTS_DIR, ManifestError, bundled_cfgs, entry_weight_cfg, index_entry,
                                           read_index)
from lightnets.pretrained.native import WeightsFileError
from lightnets.pretrained.published import published_cfgs
from lightnets.weight_cfg import Metric, Metrics, WeightCfg

NAMES = lightnets.list_models()
TAGS = lightnets.list_pretrained()
CONFIGS = sorted(WEIGHTS_DIR.glob("*/config.json"))


def _same(a, b):
    """Equal, and of the same types all the way down (a tuple is not a list here)."""
    assert a == b
    assert type(a) is type(b)
    if isinstance(a, dict):
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b):
            _same(x, y)


@pytest.mark.parametrize("name", NAMES + TAGS)
def test_every_registered_cfg_reads_back_to_the_same_dict(name):
    cfg = lightnets.get_pretrained_cfg(name)
    _same(WeightCfg.from_dict(cfg).to_dict(), cfg)
    assert lightnets.registry.get_weight_cfg(name).to_dict() == cfg


@pytest.mark.parametrize("source", ["bundled", "published"])
def test_every_bundled_and_published_cfg_reads_back_to_the_same_dict(source):
    cfgs = bundled_cfgs() if source == "bundled" else published_cfgs()
    assert cfgs
    for name, cfg in cfgs.items():
        _same(WeightCfg.from_dict(cfg, where=name).to_dict(), cfg)


def test_a_built_models_cfg_reads_back_to_the_same_dict():
    for name in ("mobilenet_v1_025.fmnist", "shufflenet_g3.megvii_in1k", "smallcnn_3x2"):
        cfg = lightnets.create_model(name, in_chans=1).pretrained_cfg
        _same(WeightCfg.from_dict(cfg).to_dict(), cfg)


def test_the_manifest_reads_back_byte_for_byte():
    text = (WEIGHTS_DIR / "index.json").read_text()
    entries = read_index(WEIGHTS_DIR)
    rewritten = {name: index_entry(entry_weight_cfg(entry)) for name, entry in entries.items()}
    assert json.dumps({"weights": rewritten}, indent=2) + "\n" == text


@pytest.mark.parametrize("config_path", CONFIGS, ids=[path.parent.name for path in CONFIGS])
def test_every_weight_folders_config_reads_back_byte_for_byte(config_path):
    text = config_path.read_text()
    folder = FolderConfig.from_json(json.loads(text), config_path)
    assert json.dumps(folder.to_json(), indent=2, allow_nan=False) + "\n" == text
    assert folder.cfg.weight_name == config_path.parent.name


def test_an_unknown_key_is_refused_naming_it_and_the_field_it_may_mean():
    with pytest.raises(ValueError, match=r"unknown key 'num_clases' \(did you mean 'num_classes'\?\)"):
        WeightCfg.from_dict({"num_clases": 10})
    with pytest.raises(ValueError, match=r"pretrained_cfg: unknown key 'hf_hub' \(did you mean 'hf_hub_id'\?\)"):
        lightnets.create_model("mobilenet_v1_025", pretrained_cfg={"hf_hub": "org/name"})
    with pytest.raises(TypeError, match="must be a dict of cfg fields"):
        WeightCfg.from_dict(["num_classes"])


def test_an_unknown_key_in_the_manifest_or_a_config_is_refused_naming_it(tmp_path):
    entry = dict(read_index(WEIGHTS_DIR)["smallcnn_3x2.fmnist"], top_1=1.0)
    (tmp_path / "index.json").write_text(json.dumps({"weights": {"smallcnn_3x2.fmnist": entry}}))
    with pytest.raises(ManifestError, match="'smallcnn_3x2.fmnist'.*unknown key 'top_1'"):
        manifest.bundled_weight_cfgs(tmp_path)
    config = json.loads((WEIGHTS_DIR / "smallcnn_3x2.fmnist" / "config.json").read_text())
    config["lightnets"]["sha256"] = "0" * 64
    with pytest.raises(WeightsFileError, match=r"config.json: lightnets: unknown key 'sha256'"):
        FolderConfig.from_json(config, tmp_path / "config.json")
    config = json.loads((WEIGHTS_DIR / "smallcnn_3x2.fmnist" / "config.json").read_text())
    config["pretrained_cfg"]["crop"] = 0.9
    with pytest.raises(WeightsFileError, match=r"pretrained_cfg: unknown key 'crop' \(did you mean 'crop_pct'\?\)"):
        FolderConfig.from_json(config, tmp_path / "config.json")


def test_published_metrics_are_reported_and_bundled_ones_measured():
    for name in lightnets.list_pretrained("*_in1k"):
        cfg = lightnets.registry.get_weight_cfg(name)
        assert {row.provenance for row in cfg.metrics.rows} == {f"reported_by={cfg.metrics.rows[0].reported_by}"}
        assert cfg.metrics.rows[0].reported_by and cfg.dataset == "imagenet-1k"
    for name in read_index(WEIGHTS_DIR):
        top1 = lightnets.registry.get_weight_cfg(name).metrics.get("top1", split="test")
        assert top1.provenance == "measured" and (top1.dataset, top1.images) == ("fashion_mnist", 10_000)
        assert (top1.format, top1.precision) == ("eager", "float32")


def test_metrics_of_another_split_format_or_precision_leave_the_flat_form_as_it_is():
    flat = {"top1": 93.5, "top5": 99.9, "dataset": "fashion_mnist", "split": "test", "images": 10000}
    metrics = Metrics.from_dict(flat)
    assert metrics.to_dict() == flat
    more = metrics.with_rows(Metric("top1", 93.1, "fashion_mnist", "validation", 5000),
                             Metric("top1", 93.2, "fashion_mnist", "test", 10000, format="onnx", precision="int8"))
    assert {k: v for k, v in more.to_dict().items() if k != "other_settings"} == flat
    assert len(more.to_dict()["other_settings"]) == 2 and Metrics.from_dict(more.to_dict()) == more
    assert more.get("top1", split="validation").value == 93.1
    assert more.get("top1", format="onnx", precision="int8").value == 93.2
    assert more.get("top1", format="onnx") is None  # the ONNX row is int8, not float32


@pytest.mark.parametrize("metrics, message", [
    ({"top1": "93.5"}, r"metrics\['top1'\] is '93.5': a metric is a finite number"),
    ({"top1": float("nan")}, r"metrics\['top1'\] is nan"),
    ({"top1": True}, r"metrics\['top1'\] is True"),
    ({"dataset": "fashion_mnist"}, "gives dataset but no metric"),
    ({"top1": 1.0, "images": -1}, "images is -1"),
    ({"top1": 1.0, "other_settings": [{"name": "top1"}]}, r"other_settings'\]\[0\] has keys \['name'\]"),
])
def test_a_malformed_metric_is_refused_naming_it(metrics, message):
    with pytest.raises(ValueError, match=message):
        Metrics.from_dict(metrics)


def test_each_family_declares_its_published_weights_beside_it():
    declared = {**mobilenet_v1.default_cfgs, **shufflenet_v1.default_cfgs}
    assert set(declared) == set(published_cfgs()) == set(lightnets.list_pretrained("*_in1k"))
    for name, cfg in declared.items():
        assert isinstance(cfg, WeightCfg) and cfg.license == SOURCES[cfg.source]["license"]
        family = mobilenet_v1 if name.startswith("mobilenet") else shufflenet_v1
        assert catalog.entry(name.split(".")[0]).fn.__module__ == family.__name__
    assert Path(mobilenet_v1.__file__).with_name("mobilenet_v1_weights.py").is_file()


def test_updated_overrides_set_fields_and_a_dicts_none_clears():
    cfg = WeightCfg(url="https://example.org/w.safetensors", sha256="0" * 64, crop_pct=0.875)
    assert cfg.updated(WeightCfg(crop_pct=0.9)) == WeightCfg(url=cfg.url, sha256=cfg.sha256, crop_pct=0.9)
    assert cfg.updated({"sha256": None}).sha256 is None and cfg.updated({"sha256": None}).url == cfg.url
    assert cfg.has_weights and not WeightCfg(crop_pct=0.9).has_weights
