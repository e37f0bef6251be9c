"""Every shipped weight re-earns the accuracy recorded beside it (weights/index.json) on the embedded test split."""
from __future__ import annotations

import json

import pytest
import torch

import lightnets
from lightnets.pretrained import sha256sum
from lightnets.pretrained.manifest import WEIGHTS_DIR
from lightnets.evaluation import evaluate

INDEX = json.loads((WEIGHTS_DIR / "index.json").read_text())["weights"]
FMNIST_WEIGHTS = sorted(name for name, entry in INDEX.items() if entry["training"].get("dataset") == "fashion_mnist")


def test_the_manifest_matches_the_folders():
    """index.json is what `lightnets-weights index` writes from the folders: no stale checksum, no orphan."""
    folders = sorted(path.parent.name for path in WEIGHTS_DIR.glob("*/config.json"))
    assert sorted(entry["folder"] for entry in INDEX.values()) == folders
    for name, entry in INDEX.items():
        assert sha256sum(WEIGHTS_DIR / entry["folder"] / "model.safetensors") == entry["sha256"], name
        assert name in lightnets.list_pretrained(), f"{name} is in index.json but not registered"


@pytest.mark.slow
@pytest.mark.parametrize("name", FMNIST_WEIGHTS)
def test_shipped_weight_reproduces_its_recorded_accuracy(name):
    (row,) = evaluate([name], "fashion_mnist", split="test", latency_batch_sizes=(1,), repeats=1, warmup=1, progress=False)
    assert row["images"] == 10_000  # the whole embedded test split, not a subset
    # exactly, to the recorded two decimals: `python -m eval` shows the recorded figures in place of measuring them
    for metric in ("top1", "top5"):
        recorded = INDEX[name]["metrics"][metric]
        assert round(row[metric], 2) == recorded, f"{name}: measured {metric} {row[metric]:.2f}%, recorded {recorded:.2f}%"


@pytest.mark.parametrize("name", FMNIST_WEIGHTS)
def test_shipped_weight_records_the_eval_transform_it_was_tested_with(name):
    # Tested on whole 28x28 images: timm's create_transform (and our image-folder reader) must not crop them.
    cfg = lightnets.get_pretrained_cfg(name)
    assert (cfg["crop_pct"], cfg["interpolation"]) == (1.0, "bilinear")
    config = json.loads((WEIGHTS_DIR / INDEX[name]["folder"] / "config.json").read_text())
    assert config["pretrained_cfg"]["crop_pct"] == 1.0
    import timm

    model = timm.create_model(lightnets.timm_name(name.split(".")[0]) + "." + name.split(".")[1], pretrained=True)
    assert timm.data.resolve_data_config(model=model)["crop_pct"] == 1.0  # what timm's create_transform will use


@pytest.mark.parametrize("name", FMNIST_WEIGHTS)
def test_shipped_weight_loads_with_its_recorded_shape(name):
    model = lightnets.create_model(name, pretrained=True)
    assert model.pretrained_cfg["input_size"] == tuple(INDEX[name]["input_size"])
    assert model.num_classes == 10 and sum(p.numel() for p in model.parameters()) == INDEX[name]["params"]
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, *INDEX[name]["input_size"])).shape == (2, 10)
