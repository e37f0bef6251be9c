"""The eval harness end to end: the CLI's columns and formats, a trained model through it, every bad input."""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lightnets
from lightnets.data import load_dataset, normalize_batch
from lightnets.evaluation import evaluate
from lightnets.evaluation.cli import main
from lightnets.evaluation.figure import pareto_front
from lightnets.evaluation.report import render

FAST = ["--limit", "200", "--repeats", "2", "--warmup", "1", "--latency-batch-sizes", "1,8", "--threads", "1",
        "--no-progress", "--memory"]
PAIR = ["--model", "smallcnn_3x2", "--model", "smallcnn_3x2_dw123"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    """One CLI run on two untrained models over 200 embedded test images, as JSON, with a plot."""
    folder = tmp_path_factory.mktemp("eval")
    status = main([*PAIR, "--no-pretrained", *FAST, "--baseline", "smallcnn_3x2", "--format", "json",
                   "--output", str(folder / "out.json"), "--plot", str(folder / "zoo.png")])
    assert status == 0
    return json.loads((folder / "out.json").read_text()), folder


@pytest.mark.slow
def test_cli_reports_every_column_with_sane_values(json_run):
    report, _ = json_run
    rows = report["rows"]
    assert [row["model"] for row in rows] == ["smallcnn_3x2", "smallcnn_3x2_dw123"]
    for row in rows:
        model = lightnets.create_model(row["model"], num_classes=10)  # as the harness builds it: 10 classes
        profile = lightnets.profile(model, (3, 28, 28))
        assert row["tag"] == "random init" and row["input_size"] == "3x28x28" and row["images"] == 200
        assert row["params"] == profile.params and row["macs"] == profile.total_macs
        # Untrained: near chance. The classifier starts at ~0, so the loss is ~ln 10.
        assert 0 <= row["top1"] <= 30 and row["top1"] <= row["top5"] <= 100
        assert row["loss"] == pytest.approx(math.log(10), abs=0.05)
        for b in (1, 8):
            median, p90 = row[f"ms_bs{b}"], row[f"p90_ms_bs{b}"]
            assert 0 < median <= p90
            assert row[f"ms_per_img_bs{b}"] == pytest.approx(median / b)
            assert row[f"img_per_s_bs{b}"] == pytest.approx(1e3 * b / median)
            assert row[f"gmacs_per_s_bs{b}"] == pytest.approx(row["macs"] * row[f"img_per_s_bs{b}"] / 1e9)
        weights_mb = sum(t.numel() * 4 for t in (*model.parameters(), *model.buffers())) / 2**20
        assert weights_mb < row["peak_mem_mb"] < weights_mb + 50
    base, separable = rows
    assert base["mac_ratio"] == 1.0 and base["speedup_bs1"] == 1.0
    assert separable["mac_ratio"] == pytest.approx(separable["macs"] / base["macs"]) and separable["mac_ratio"] < 0.2
    for b in (1, 8):
        assert separable[f"speedup_bs{b}"] == pytest.approx(base[f"ms_bs{b}"] / separable[f"ms_bs{b}"])
        assert separable[f"speedup_per_mac_reduction_bs{b}"] == pytest.approx(
            separable[f"speedup_bs{b}"] * separable["mac_ratio"]
        )
    assert report["environment"]["threads"] == 1 and report["environment"]["torch"] == torch.__version__
    assert report["settings"]["latency_batch_sizes"] == [1, 8]


def test_every_output_format_parses_back(json_run):
    report, _ = json_run
    rows = report["rows"]
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert [r["model"] for r in parsed] == ["smallcnn_3x2", "smallcnn_3x2_dw123"]
    assert int(parsed[1]["macs"]) == rows[1]["macs"] and float(parsed[1]["top1"]) == rows[1]["top1"]
    assert float(parsed[1]["speedup_per_mac_reduction_bs8"]) == pytest.approx(rows[1]["speedup_per_mac_reduction_bs8"])

    markdown = render(rows, "md", report["environment"], report["settings"]).splitlines()
    header = [cell.strip() for cell in markdown[0].strip("|").split("|")]
    assert header[:8] == ["model", "tag", "input", "params (M)", "MMACs", "top-1 %", "top-5 %", "loss"]
    assert "bs1 speedup÷MAC cut" in header and "bs8 ms/img" in header and "bs1 ms/img" not in header
    first = [cell.strip() for cell in markdown[2].strip("|").split("|")]
    assert len(first) == len(header) and first[0] == "smallcnn_3x2" and first[4] == f"{rows[0]['macs'] / 1e6:.2f}"
    assert any("threads: 1" in line for line in markdown)
    # reproducible from the table
    assert any("command: `python -m eval --model smallcnn_3x2" in line for line in markdown)

    table = render(rows, "table", report["environment"], report["settings"]).splitlines()
    assert table[0].split()[:3] == ["model", "tag", "input"] and set(table[1]) == {"-", " "}
    assert table[2].startswith("smallcnn_3x2 ") and table[3].startswith("smallcnn_3x2_dw123 ")
    assert any(line.startswith("baseline smallcnn_3x2:") for line in table)


def test_plot_is_a_png(json_run):
    _, folder = json_run
    assert (folder / "zoo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pareto_front([(1.0, 50.0), (2.0, 40.0), (3.0, 70.0), (4.0, 70.0)]) == [0, 2]


def test_latency_is_measured_in_real_time():
    class Sleeper(nn.Module):  # 20 ms per forward pass, whatever the batch, and no CPU time
        def forward(self, x):
            time.sleep(0.02)
            return x.mean((2, 3))

    (row,) = evaluate(
        [Sleeper()], accuracy=False, latency_batch_sizes=(1, 4), repeats=3, warmup=1, progress=False, img_size=8
    )
    # a sleep overshoots by up to ~10 ms on a busy host; time per image (5 ms at bs4) would be far below
    for b in (1, 4):
        assert 20.0 <= row[f"ms_bs{b}"] < 40.0
    assert row["ms_per_img_bs4"] == pytest.approx(row["ms_bs4"] / 4) and row["macs"] == 0 and row["top1"] is None


def test_peak_memory_counts_the_activations():
    conv = nn.Conv2d(3, 64, 3, padding=1)
    row, = evaluate([conv], accuracy=False, latency_batch_sizes=(8,), repeats=1, warmup=0, progress=False, img_size=32)
    weights, batch, output = (64 * 3 * 9 + 64) * 4, 8 * 3 * 32 * 32 * 4, 8 * 64 * 32 * 32 * 4
    assert (weights + batch + output) / 2**20 <= row["peak_mem_mb"] < 3 * (weights + batch + output) / 2**20
    assert row["macs"] == 3 * 9 * 64 * 32 * 32  # conv MACs, bias excluded


def test_small_input_and_upsampling_of_a_224_px_model():
    rows = evaluate(["mobilenet_v1_025"], limit=16, small_input=True, latency_batch_sizes=(1,), repeats=1, warmup=0,
                    progress=False)
    assert rows[0]["input_size"] == "1x28x28"  # small-image form at the dataset's size and channels
    model = lightnets.create_model("mobilenet_v1_025")
    # As registered, it is fed the dataset upsampled to its 224 px: checked without the slow accuracy pass.
    big = evaluate([model], accuracy=False, latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False)
    assert big[0]["input_size"] == "3x224x224" and round(big[0]["macs"] / 1e6) == 41  # Table 6: 41 M mult-adds


def test_imagefolder_and_synthetic_through_the_engine(tmp_path):
    from PIL import Image

    for name, color in [("a", (250, 10, 10)), ("b", (10, 10, 250))]:
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (40 + 10 * i, 36), color).save(tmp_path / name / f"{i}.png")
    row, = evaluate(["smallcnn_3x2"], f"imagefolder:{tmp_path}", pretrained=False, latency_batch_sizes=(1,), repeats=1,
                    warmup=0, workers=0, progress=False)
    assert row["images"] == 6 and row["input_size"] == "3x28x28" and row["top1"] in (0.0, 50.0, 100.0)
    (row,) = evaluate(
        ["smallcnn_3x2"], "synthetic", pretrained=False, latency_batch_sizes=(2,), repeats=1, warmup=0, progress=False
    )
    assert row["top1"] is None and row["ms_bs2"] > 0


@pytest.fixture(scope="module")
def fmnist_folder(tmp_path_factory):
    """The first 60 embedded Fashion-MNIST test images as an image folder of PNG files."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fmnist_folder")
    test = load_dataset("fashion_mnist", limit=60)
    for i, (image, label) in enumerate(zip(test.images, test.labels.tolist())):
        folder = root / f"{label}_{test.classes[label].replace('/', '-')}"  # sorted like the dataset's labels
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{i}.png")
    return root


@pytest.mark.filterwarnings("ignore:.*was trained on the classes")  # folder names cannot hold "T-shirt/top"
@pytest.mark.parametrize("name", ["smallcnn_3x2.fmnist", "mobilenet_v1_025.fmnist"])
def test_an_image_folder_is_read_as_the_weights_were_tested(name, fmnist_folder):
    """The same 60 images from PNG files and from memory score the same, whatever --img-size says: each
    model reads the folder with its weights' crop (1.0 here: they were tested on whole images)."""
    fast = dict(latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False)
    (in_memory,) = evaluate([name], "fashion_mnist", limit=60, **fast)
    for img_size in (None, 28):
        (from_files,) = evaluate([name], f"imagefolder:{fmnist_folder}", img_size=img_size, workers=0, **fast)
        assert from_files["images"] == 60 and from_files["top1"] == in_memory["top1"], img_size
        assert from_files["loss"] == pytest.approx(in_memory["loss"], abs=1e-4)


def test_each_model_reads_an_image_folder_with_its_own_crop_and_filter(tmp_path, monkeypatch):
    import lightnets.evaluation.engine as engine
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 40), (200, 20, 20)).save(tmp_path / name / "0.png")
    model = lightnets.create_model("smallcnn_3x2", num_classes=2, in_chans=3, img_size=32)
    model.pretrained_cfg.update(crop_pct=0.9, interpolation="bicubic")  # as timm's ImageNet MobileNet v1 1.25
    loads = []
    monkeypatch.setattr(engine, "load_dataset", lambda *a, **k: loads.append(k) or load_dataset(*a, **k))
    evaluate([model], f"imagefolder:{tmp_path}", img_size=32, latency_batch_sizes=(1,), repeats=1, warmup=0,
             workers=0, progress=False)
    assert [(k["img_size"], k.get("crop_pct"), k.get("interpolation")) for k in loads] == [
        (32, None, None),
        (32, 0.9, "bicubic"),
    ]


def test_a_float_dataset_object_is_not_scaled_twice():
    class ToTensorStyle(torch.utils.data.Dataset):  # what torchvision's ToTensor() datasets yield: floats in [0, 1]
        classes = load_dataset("fashion_mnist", limit=1).classes

        def __init__(self):
            self.source = load_dataset("fashion_mnist", limit=100)

        def __len__(self):
            return len(self.source)

        def __getitem__(self, i):
            return self.source.images[i].float() / 255, int(self.source.labels[i])

    fast = dict(latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False, workers=0)
    (uint8,) = evaluate(["smallcnn_3x2.fmnist"], "fashion_mnist", limit=100, **fast)
    (floats,) = evaluate(["smallcnn_3x2.fmnist"], ToTensorStyle(), **fast)
    assert floats["top1"] == uint8["top1"] > 80


def test_a_weight_evaluated_on_other_classes_is_warned_about():
    from lightnets.data import InMemoryDataset

    test = load_dataset("fashion_mnist", limit=20)
    digits = InMemoryDataset(test.images, test.labels, [str(i) for i in range(10)], "digits", "test")
    with pytest.warns(
        UserWarning,
        match=r"trained on the classes T-shirt/top, Trouser, Pullover ... \(10\) but the dataset's are 0, 1, 2",
    ):
        evaluate(["smallcnn_3x2.fmnist"], digits, latency_batch_sizes=(1,), repeats=1, warmup=0, progress=False)


def test_a_tagged_name_without_its_weights_is_the_architecture_they_were_trained_with():
    (row,) = evaluate(["mobilenet_v1_025.fmnist"], pretrained=False, accuracy=False, latency_batch_sizes=(1,),
                      repeats=1, warmup=0, progress=False)
    assert (row["tag"], row["input_size"], round(row["macs"] / 1e6, 2)) == ("random init", "1x28x28", 2.90)


def test_globs_name_each_weight_once():
    from lightnets.evaluation.cli import model_names

    # not also the bare name: same weight
    assert model_names(["mobilenet_v1_025*"], False) == ["mobilenet_v1_025.fmnist"]
    assert model_names(["mobilenet_v1_025*"], False, pretrained=False) == [
        "mobilenet_v1_025",
        "mobilenet_v1_025.fmnist",
    ]
    names = model_names(["smallcnn_3x2*"], False)
    assert len(names) == len(set(names)) == len(lightnets.list_pretrained("smallcnn_3x2*"))
    assert "mobilenet_v1" in model_names(["mobilenet_v1*"], False)  # a model without weights stays


def test_all_pretrained_on_an_image_folder_takes_the_weights_for_its_classes():
    from lightnets.evaluation.cli import pretrained_for

    ten = pretrained_for("imagefolder:x", num_classes=10)
    assert "mobilenet_v1_100.timm_in1k" not in ten and set(ten) == set(pretrained_for("fashion_mnist"))
    # every ImageNet weight
    assert pretrained_for("imagefolder:x", num_classes=1000) == lightnets.list_pretrained("*_in1k")
    assert pretrained_for("imagefolder:x", num_classes=2) == []


def test_a_failing_plot_keeps_the_table(tmp_path, monkeypatch, capsys):
    import lightnets.evaluation.cli as cli

    def broken_plot(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cli, "plot", broken_plot)
    status, out, err = run(capsys, *PAIR, "--no-pretrained", *FAST, "--format", "csv", "--output",
                           str(tmp_path / "t.csv"), "--plot", str(tmp_path / "p.png"))
    assert status == 2 and "disk full" in err
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 3  # header + two models


def test_plot_labels_name_a_weight_once():
    from lightnets.evaluation.figure import _point_label

    assert _point_label({"model": "smallcnn_3x2.fmnist", "tag": "fmnist"}) == "smallcnn_3x2.fmnist"
    assert _point_label({"model": "smallcnn_3x2", "tag": "fmnist"}) == "smallcnn_3x2.fmnist"
    assert _point_label({"model": "smallcnn_3x2", "tag": "random init"}) == "smallcnn_3x2"


def test_peak_memory_counts_a_temporary_freed_inside_an_op():
    from lightnets.evaluation.measure import _forward_peak_bytes

    class CrossEntropy(nn.Module):  # cross_entropy's log_softmax output lives and dies inside it
        def forward(self, x):
            return F.cross_entropy(x, torch.zeros(len(x), dtype=torch.long))

    x = torch.randn(256, 4096)
    assert _forward_peak_bytes(CrossEntropy(), x, torch.device("cpu")) >= x.numel() * 4


@pytest.mark.slow
@pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason="needs Fashion-MNIST's train split (Debian's dataset-fashion-mnist)"
)
def test_a_trained_model_scores_well_above_chance(tmp_path, capsys):
    from safetensors.torch import save_file

    train = load_dataset("fashion_mnist", "train", limit=20_000)
    model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        index = torch.randint(0, len(train), (32,), generator=generator)
        x = normalize_batch(train.images[index], 1, 28, train.mean, train.std)
        loss = F.cross_entropy(model(x), train.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_file(model.state_dict(), str(tmp_path / "smallcnn.safetensors"))
    model.pretrained_cfg.update(mean=train.mean, std=train.std)
    lightnets.save_pretrained(model, tmp_path / "folder")

    args = ["--model", "smallcnn_3x2", "--limit", "1000", "--latency-batch-sizes", "1", "--repeats", "1",
            "--warmup", "0", "--format", "json", "--no-progress"]
    top1 = []
    for checkpoint in (tmp_path / "smallcnn.safetensors", tmp_path / "folder"):  # a bare file, a Hub-layout folder
        status, out, err = run(capsys, *args, "--checkpoint", str(checkpoint))
        assert status == 0, err
        row, = json.loads(out)["rows"]
        assert row["tag"] == f"ckpt:{checkpoint.name}" and row["input_size"] == "1x28x28"
        top1.append(row["top1"])
    assert top1[0] > 60  # chance is 10%; 200 steps reach ~80%
    assert top1[1] == top1[0]  # the folder's config.json rebuilds the same model with the same normalisation


@pytest.mark.slow
def test_the_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "eval", "--model", "smallcnn_3x2", "--limit", "100", "--repeats", "1", "--warmup", "0",
         "--latency-batch-sizes", "1", "--format", "csv", "--no-progress", "--threads", "1"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    row, = csv.DictReader(io.StringIO(result.stdout))
    assert row["model"] == "smallcnn_3x2" and int(row["images"]) == 100 and float(row["ms_bs1"]) > 0


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, no traceback
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "fmnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "fmnist" / name).write_bytes(b"\x1f\x8b not really gzip")
    from safetensors.torch import save_file

    save_file(
        lightnets.create_model("smallcnn_3x2_dw123", num_classes=10).state_dict(), str(tmp_path / "other.safetensors")
    )
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["--model", "mobilenet_v9"], "unknown model 'mobilenet_v9'; did you mean"),
    (["--model", "resnet*"], "no model matches 'resnet*'"),
    ([], "give --model NAME"),
    (["--model", "smallcnn_3x2", "--dataset", "imagenet"], "unknown dataset 'imagenet'; choose one of fashion_mnist"),
    (["--model", "smallcnn_3x2", "--split", "val"], "unknown split 'val' for fashion_mnist; choose train or test"),
    (["--model", "smallcnn_3x2", "--dataset", "cifar10", "--data-dir", "{tmp}/none"], "CIFAR-10 not found"),
    (["--model", "smallcnn_3x2", "--data-dir", "{tmp}/fmnist"],
     "t10k-images-idx3-ubyte.gz is corrupt: expected gzip md5"),
    (["--model", "smallcnn_3x2", "--checkpoint", "{tmp}/other.safetensors"],
     "other.safetensors does not fit smallcnn_3x2: "),
    (["--model", "smallcnn_3x2", "--checkpoint", "{tmp}/missing.safetensors"], "no weight file at"),
    (["--model", "smallcnn_3x2", "--model", "sepcnn_regular", "--checkpoint", "{tmp}/other.safetensors"],
     "a checkpoint belongs to one model"),
    (["--model", "smallcnn_3x2", "--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--model", "smallcnn_3x2", "--latency-batch-sizes", "0,4"], "batch sizes must be integers >= 1"),
    (["--model", "smallcnn_3x2", "--repeats", "0"], "repeats must be an integer >= 1, got 0"),
    (["--model", "mobilenet_v1_025", "--img-size", "16", "--no-pretrained"],
     "MobileNetV1 takes images of at least 32x32, got img_size=16; build it with small_input=True"),
    (["--model", "smallcnn_3x2", "--img-size", "16"],  # the shipped .fmnist weight: its FC layer is sized for 28 px
     "weights smallcnn_3x2.fmnist were trained with img_size=28; got img_size=16"),
    (["--model", "vgg13", "--pretrained"], "model 'vgg13' has no pretrained weights"),
    (["--model", "smallcnn_3x2", "--plot", "x.png", "--no-accuracy"], "--plot draws top-1 accuracy"),
    (["--model", "smallcnn_3x2", "--plot", "x.png", "--dataset", "synthetic"], "--plot draws top-1 accuracy"),
    (["--model", "smallcnn_3x2", "--device", "gpu"], "unknown device 'gpu'; use cpu or cuda[:N]"),
    (["--model", "smallcnn_3x2", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
])
def test_bad_input_gets_a_one_line_error(argv, message, bad_files, capsys):
    argv = [arg.replace("{tmp}", str(bad_files)) for arg in argv]
    try:
        status = main(
            [*argv, "--limit", "10", "--repeats", "1", "--warmup", "0", "--latency-batch-sizes", "1", "--no-progress"]
            if "--latency-batch-sizes" not in argv and "--repeats" not in argv
            else [*argv, "--no-progress"]
        )
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("python -m eval: error: ")
    assert message in captured.err and "Traceback" not in captured.err


def test_all_pretrained_when_no_weight_exists(monkeypatch, capsys):
    monkeypatch.setattr(lightnets, "list_pretrained", lambda pattern="*": [])
    status, out, err = run(capsys, "--all-pretrained")
    assert status == 2 and "no weights trained on fashion_mnist yet" in err


def test_all_pretrained_picks_the_weights_of_the_dataset():
    from lightnets.evaluation.cli import pretrained_for

    assert "mobilenet_v1_100.timm_in1k" in pretrained_for("synthetic")
    assert "mobilenet_v1_100.timm_in1k" not in pretrained_for("fashion_mnist")
    assert all(
        lightnets.get_pretrained_cfg(name)["dataset"] == "fashion_mnist" for name in pretrained_for("fashion_mnist")
    )
