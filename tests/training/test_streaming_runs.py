"""Training runs on image files (issue #42): the streamed path trains exactly as the in-memory one on the same
pixels, a run with a validation split publishes its best epoch and tests once, the card says how each split
was made and which images were skipped, --resume continues at the next epoch, hfds folders train too, and
--freeze-backbone trains the head alone."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import lightnets
from lightnets.cli.train import main, train
from lightnets.data import InMemoryDataset, load_splits
from lightnets.training import eval_transform, in_memory


def write_fmnist_folder(root, images, labels, classes):
    for index, (pixels, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[0].numpy(), "L").save(folder / f"{index:04d}.png")


@pytest.fixture(scope="module")
def fmnist_folder(tmp_path_factory):
    """128 training and 64 validation images of Fashion-MNIST's test split as 28 px grayscale PNGs."""
    test_split = lightnets.data.load_dataset("fashion_mnist", "test", limit=192)
    classes = [f"{i}_{name.replace('/', '-')}" for i, name in enumerate(test_split.classes)]  # sorts as the labels
    root = tmp_path_factory.mktemp("fmnist")
    write_fmnist_folder(root / "train", test_split.images[:128], test_split.labels[:128], classes)
    write_fmnist_folder(root / "val", test_split.images[128:], test_split.labels[128:], classes)
    return root


def test_the_streamed_path_trains_as_the_in_memory_path_on_the_same_pixels(fmnist_folder, tmp_path):
    recipe = ["--finetune-from", "smallcnn_3x2.fmnist", "--epochs", "1", "--batch-size", "32", "--lr", "0.02",
              "--no-progress", "--workers", "0"]
    streamed, streamed_record = train(recipe + ["--dataset", f"imagefolder:{fmnist_folder}", "--train-transform",
                                                "small", "--work-dir", str(tmp_path / "streamed")])
    data = load_splits(f"imagefolder:{fmnist_folder}")
    as_decoded = [split.with_transform(eval_transform(28, 1.0, "bilinear"), channels=1)
                  for split in (data.train, data.validation)]
    train_set, val_set = (InMemoryDataset(*in_memory(_decoded(split)), data.classes, "folder", name)
                          for split, name in zip(as_decoded, ("train", "test")))
    held, held_record = train(recipe + ["--work-dir", str(tmp_path / "held")], train_set, val_set)
    assert streamed_record["train_loss"] == held_record["train_loss"]
    assert streamed_record["val_top1"] == held_record["test_top1"]
    assert all(torch.equal(a, b) for a, b in zip(streamed.state_dict().values(), held.state_dict().values()))


def _decoded(files):
    items = [files[i] for i in range(len(files))]
    return type("Decoded", (), {"__len__": lambda self: len(items), "__getitem__": lambda self, i: items[i][:2]})()


def test_a_run_with_validation_publishes_its_best_epoch_and_tests_once(fmnist_folder, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    shutil.copytree(fmnist_folder / "train", root / "train")
    for split in ("val", "test"):
        (root / split).symlink_to(fmnist_folder / "val")
    bad = root / "train" / "0_T-shirt-top" / "broken.png"
    bad.write_bytes(b"\x89PNG truncated")
    argv = ["--model", "smallcnn_3x2", "--dataset", f"imagefolder:{root}", "--img-size", "24", "--epochs", "3",
            "--batch-size", "32", "--lr", "0.05", "--no-progress", "--workers", "1", "--aa", "rand-m9-mstd0.5",
            "--reprob", "0.25", "--work-dir", str(tmp_path / "run"), "--output", str(tmp_path / "out"),
            "--resume"]
    fits = []
    real_fit = lightnets.cli.train_run.fit

    def interrupted_fit(*args, **kwargs):  # the machine goes down during the second epoch
        fits.append(kwargs["desc"])
        if len(fits) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(lightnets.cli.train_run, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        train(argv)
    monkeypatch.setattr(lightnets.cli.train_run, "fit", real_fit)
    model, record = train(argv)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    epochs = [line for line in lines if "epoch" in line]
    assert [line["epoch"] for line in epochs] == [1, 2, 3]  # resumed at epoch 2
    assert all("val_top1" in line and "test_top1" not in line for line in epochs)
    assert all(line["peak_rss_mb"] > 0 and 0 <= line["data_wait"] < 1 for line in epochs)
    best = max(epochs, key=lambda line: (line["val_top1"], -line["epoch"]))
    assert record["best_epoch"] == best["epoch"] and record["val_top1"] == best["val_top1"]
    [final] = [line for line in lines if line.get("final") == "test"]
    assert final["weights_of_epoch"] == best["epoch"]

    config = json.loads((tmp_path / "out" / "config.json").read_text())
    training = config["lightnets"]["training"]
    assert training["weights_of_epoch"] == f"{best['epoch']} (best validation top-1)"
    assert training["splits"]["validation"]["source"] == f"imagefolder:{root / 'val'}"
    assert training["bad_images"]["skipped"] >= 1 and str(bad) in training["bad_images"]["files"][0]
    metrics = config["lightnets"]["metrics"]
    assert metrics["split"] == "test" and metrics["top1"] == record["test_top1"]
    assert [row["split"] for row in metrics["other_settings"]] == ["validation", "validation"]
    assert config["pretrained_cfg"]["input_size"] == [3, 24, 24]
    reloaded = lightnets.create_model("smallcnn_3x2", pretrained=True, pretrained_path=str(tmp_path / "out"))
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_hfds_folders_train_and_freeze_backbone_trains_the_head_alone(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})

    def split(count):
        images = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(count)]
        return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(count)]}, features=features)

    datasets.DatasetDict({"train": split(32), "validation": split(8)}).save_to_disk(str(tmp_path / "hf"))
    source = lightnets.create_model("smallcnn_3x2", num_classes=5, img_size=16)
    lightnets.save_pretrained(source, tmp_path / "source")
    model, record = train(["--finetune-from", str(tmp_path / "source"), "--dataset", f"hfds:{tmp_path / 'hf'}",
                           "--freeze-backbone", "--epochs", "1", "--batch-size", "16", "--no-progress",
                           "--workers", "0", "--work-dir", str(tmp_path / "run")])
    assert record["epoch"] == 1 and "val_top1" in record and model.num_classes == 2
    start = source.state_dict()
    changed = {name for name, value in model.state_dict().items()
               if name in start and value.shape == start[name].shape and not torch.equal(value, start[name])}
    assert changed == set()  # the backbone (BatchNorm statistics too) is as loaded; the new head is not in `start`


def test_a_folder_without_evaluation_images_is_one_line(tmp_path, capsys):
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "0.png")
    assert main(["--model", "smallcnn_3x2", "--dataset", f"imagefolder:{tmp_path}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "give --val-split FRACTION" in error
