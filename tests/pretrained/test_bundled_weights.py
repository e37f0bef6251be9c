"""Every shipped weight re-earns the accuracy recorded beside it (weights/index.json) on the embedded test split.

All 27 are re-measured by ``scripts/make_results.sh`` (``python -m eval --all-pretrained --remeasure`` writes
results/zoo.md), and a test here requires that table to agree with every record; the suite itself
re-measures one weight per family, on all 10,000 test images."""
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
# One bundled weight per family (loading, shapes, the transform timm reads).
REPRESENTATIVE_WEIGHTS = ["mobilenet_v1_025.fmnist", "shufflenet_g3_050.fmnist", "sepcnn_both.fmnist",
                          "smallcnn_3x2_dw12.fmnist", "vgg11_bn.fmnist"]
# Re-measured in the suite on all 10,000 test images: the two cheapest to run (a few seconds each); every
# weight's record is held to results/zoo.md, which scripts/make_results.sh measures.
REMEASURED_WEIGHTS = ["mobilenet_v1_025.fmnist", "smallcnn_3x2_dw12.fmnist"]
ZOO_TABLE = WEIGHTS_DIR.parent / "results" / "zoo.md"


def test_the_manifest_matches_the_folders():
    """index.json is what `lightnets-weights index` writes from the folders: no stale checksum, no orphan."""
    folders = sorted(path.parent.name for path in WEIGHTS_DIR.glob("*/config.json"))
    assert sorted(entry["folder"] for entry in INDEX.values()) == folders
    for name, entry in INDEX.items():
        assert sha256sum(WEIGHTS_DIR / entry["folder"] / "model.safetensors") == entry["sha256"], name
        assert name in lightnets.list_pretrained(), f"{name} is in index.json but not registered"


def test_the_measured_zoo_table_agrees_with_every_record():
    """results/zoo.md is measured (--remeasure) by scripts/make_results.sh: each bundled weight's row there must
    show the top-1 and top-5 its record states, so a weight or a record changed since is caught."""
    if not ZOO_TABLE.exists():
        pytest.skip("an installed lightnets has no results/ folder")
    header, _, *rows = [
        [cell.strip() for cell in line.strip("|\n").split("|")]
        for line in ZOO_TABLE.read_text().splitlines()
        if line.startswith("|")
    ]
    table = {row[header.index("model")]: row for row in rows}
    assert set(FMNIST_WEIGHTS) <= set(table), "results/zoo.md lacks weights: run scripts/make_results.sh"
    for name in FMNIST_WEIGHTS:
        for metric, column in (("top1", "top-1 %"), ("top5", "top-5 %")):
            assert float(table[name][header.index(column)]) == INDEX[name]["metrics"][metric], (name, metric)


@pytest.mark.slow
@pytest.mark.parametrize("name", REMEASURED_WEIGHTS)
def test_shipped_weight_reproduces_its_recorded_accuracy(name):
    (row,) = evaluate(
        [name], "fashion_mnist", split="test", latency_batch_sizes=(1,), repeats=1, warmup=1, progress=False
    )
    assert row["images"] == 10_000  # the whole embedded test split, not a subset
    # exactly, to the recorded two decimals: `python -m eval` shows the recorded figures in place of measuring them
    for metric in ("top1", "top5"):
        recorded = INDEX[name]["metrics"][metric]
        assert round(row[metric], 2) == recorded, (
            f"{name}: measured {metric} {row[metric]:.2f}%, recorded {recorded:.2f}%"
        )


def test_every_shipped_weight_records_the_eval_transform_it_was_tested_with():
    # Tested on whole 28x28 images: timm's create_transform (and our image-folder reader) must not crop them.
    for name in FMNIST_WEIGHTS:
        cfg = lightnets.get_pretrained_cfg(name)
        assert (cfg["crop_pct"], cfg["interpolation"]) == (1.0, "bilinear"), name
        config = json.loads((WEIGHTS_DIR / INDEX[name]["folder"] / "config.json").read_text())
        assert config["pretrained_cfg"]["crop_pct"] == 1.0, name


@pytest.mark.parametrize("name", REPRESENTATIVE_WEIGHTS)
def test_timm_reads_the_eval_transform_of_a_shipped_weight(name):
    import timm

    model = timm.create_model(lightnets.timm_name(name.split(".")[0]) + "." + name.split(".")[1], pretrained=True)
    assert timm.data.resolve_data_config(model=model)["crop_pct"] == 1.0  # what timm's create_transform will use


@pytest.mark.parametrize("name", REPRESENTATIVE_WEIGHTS)
def test_shipped_weight_loads_with_its_recorded_shape(name):
    model = lightnets.create_model(name, pretrained=True)
    assert model.pretrained_cfg["input_size"] == tuple(INDEX[name]["input_size"])
    assert model.num_classes == 10 and sum(p.numel() for p in model.parameters()) == INDEX[name]["params"]
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, *INDEX[name]["input_size"])).shape == (2, 10)
