"""Image files as a user keeps them (issue #42): the splits found by folder name or carved from the training
images, every PIL mode and EXIF orientation decoded to the model's channels, bad images skipped and counted
or stopping the run, and the streamed batches: this process's shard, replayable from the seed."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from lightnets.data import (BadImage, BadImageError, BadImageLog, ImageFileDataset, decode_image, load_splits,
                            stratified_split)
from lightnets.training import FileAugment, StreamingBatches, eval_transform, train_transform


def write_folder(root, splits=("train", "val"), classes=("cat", "dog"), count=4, side=12):
    for split in splits:
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((side, side, 3), 40 * label + 10 * i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_validation_and_test_folders_are_found_by_name(tmp_path):
    for validation in ("val", "validation"):
        root = write_folder(tmp_path / validation, splits=("train", validation, "test"))
        data = load_splits(f"imagefolder:{root}")
        assert (len(data.train), len(data.validation), len(data.test)) == (8, 8, 8)
        assert data.records["validation"]["source"] == f"imagefolder:{root / validation}"
    only_test = write_folder(tmp_path / "t", splits=("train", "test"))
    data = load_splits(f"imagefolder:{only_test}")
    assert data.validation is None and len(data.test) == 8


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    root = write_folder(tmp_path, splits=("train", "val"))
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "cat" / "._0.png").write_bytes(b"AppleDouble")  # macOS resource fork: an "image" by name
    (root / "train" / "cat" / "readme.txt").write_text("notes")
    (root / "train" / ".cache").mkdir()
    (root / "train" / "cat" / ".thumbs").mkdir()
    Image.new("RGB", (4, 4)).save(root / "train" / "cat" / ".thumbs" / "0.png")
    data = load_splits(f"imagefolder:{root}")
    assert data.classes == ["cat", "dog"] and len(data.train) == 8


@pytest.mark.parametrize("layout, message", [
    ("extra_class", r"val has the classes bird, which the training images lack"),
    ("empty_class", r"the class folders dog hold no images"),
    ("no_evaluation", r"has no validation or test images .* give --val-split FRACTION"),
    ("both_validation_folders", r"has both val/ and validation/"),
])
def test_split_mistakes_are_errors_naming_them(tmp_path, layout, message):
    root = write_folder(tmp_path, splits=("train", "val"))
    if layout == "extra_class":
        write_folder(tmp_path, splits=("val",), classes=("bird",))
    elif layout == "empty_class":
        for image in (root / "train" / "dog").iterdir():
            image.unlink()
    elif layout == "no_evaluation":
        root = root / "train"
    else:
        write_folder(tmp_path, splits=("validation",))
    with pytest.raises(ValueError, match=message):
        load_splits(f"imagefolder:{root}")


def test_val_split_is_stratified_seeded_and_recorded(tmp_path):
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 3 + [3])
    train, validation = stratified_split(labels, 0.2, seed=0)
    assert sorted(train + validation) == list(range(len(labels)))
    assert [int((labels[validation] == c).sum()) for c in range(4)] == [10, 6, 1, 0]  # never a class's only image
    assert stratified_split(labels, 0.2, seed=0) == (train, validation)
    assert stratified_split(labels, 0.2, seed=1)[1] != validation

    data = load_splits(f"imagefolder:{write_folder(tmp_path, splits=('train',), count=10) / 'train'}",
                       val_split=0.3, seed=5)
    assert (len(data.train), len(data.validation), data.test) == (14, 6, None)
    record = data.records["validation"]
    assert (record["fraction"], record["seed"]) == (0.3, 5) and len(record["training_images_sha256"]) == 64
    write_folder(tmp_path, splits=("val",))
    with pytest.raises(ValueError, match=r"has its own validation split .* drop --val-split"):
        load_splits(f"imagefolder:{tmp_path}", val_split=0.3)


def test_val_split_carves_in_memory_data_too():
    data = load_splits("synthetic", val_split=0.5, limit=4)  # 1000 classes: one image each, nothing to carve
    assert len(data.validation) == 0 and len(data.train) == 4
    assert not data.streamed


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_every_mode_and_the_exif_orientation_decode_to_the_models_channels(tmp_path):
    sixteen_bit = Image.fromarray(np.array([[0, 32896, 65535, 65535]], dtype=np.uint16))
    cases = {
        "gray.png": Image.new("L", (4, 2), 7),
        "palette.gif": Image.new("P", (4, 2), 3),
        "rgba.png": Image.new("RGBA", (4, 2), (10, 20, 30, 0)),
        "cmyk.jpg": Image.new("CMYK", (4, 2), (0, 0, 0, 0)),
        "sixteen.png": sixteen_bit,
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        for channels, mode in ((1, "L"), (3, "RGB")):
            decoded = decode_image(tmp_path / name, channels)
            assert (decoded.mode, decoded.size) == (mode, (4, 2 if name != "sixteen.png" else 1)), name
    assert np.asarray(decode_image(tmp_path / "sixteen.png", 1)).tolist() == [[0, 128, 255, 255]]  # scaled, not clipped
    assert np.asarray(decode_image(tmp_path / "cmyk.jpg", 3))[0, 0].tolist() == [255, 255, 255]

    upright = Image.new("RGB", (6, 2), "red")
    exif = upright.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    (tmp_path / "rotated.jpg").write_bytes(_encoded(upright, "JPEG", exif=exif))
    assert decode_image(tmp_path / "rotated.jpg").size == (2, 6)


def bad_files(root):
    good = _encoded(Image.new("RGB", (16, 16), "blue"), "JPEG")
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "garbage.png").write_bytes(b"\x89PNG not really")
    Image.new("L", (64, 64)).save(root / "bomb.png")  # over the pixel limit the test sets
    return [root / "truncated.jpg", root / "garbage.png", root / "bomb.png"]


def test_bad_images_are_dropped_from_their_batch_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 > 2 × 1000: a decompression bomb
    good = [tmp_path / f"{i}.png" for i in range(3)]
    for path in good:
        Image.new("RGB", (16, 16), "green").save(path)
    files = ImageFileDataset([(p, 0) for p in good + bad_files(tmp_path)], ["a"], "test files")
    batches = StreamingBatches(files.with_transform(eval_transform(8, 1.0, "bilinear"), 3), 6, shuffle=False,
                               drop_last=False)
    [(images, labels)] = list(batches)
    assert images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 0, 0]
    summary = batches.bad_images.summary()
    assert (summary["skipped"], summary["read"]) == (3, 6)
    reasons = dict(line.split(" (", 1) for line in summary["files"])
    assert reasons[str(tmp_path / "bomb.png")].startswith("DecompressionBombError")
    assert set(reasons) == {str(p) for p in bad_files(tmp_path)}

    strict = StreamingBatches(files, 6, shuffle=False, drop_last=False, bad_images=BadImageLog("fail"))
    with pytest.raises(BadImageError, match=r"cannot decode .*truncated.jpg .*--on-bad-image fail"):
        list(strict)


def test_skip_stops_once_over_one_percent_after_a_hundred_reads():
    log = BadImageLog("skip")
    log.record(50, [])
    log.record(49, [BadImage("a.jpg", "OSError"), BadImage("b.jpg", "OSError")])  # 2 of 99: under 100 reads
    log.record(101, [])  # 2 of 200: 1%, not over it
    with pytest.raises(BadImageError, match=r"3 of the 201 images read so far could not be decoded .* c.jpg"):
        log.record(1, [BadImage("c.jpg", "OSError")])


def test_batches_replay_from_the_seed_and_shard_across_processes(tmp_path):
    root = write_folder(tmp_path, splits=("train",), count=8, side=20)
    data = load_splits(f"imagefolder:{root}", val_split=0.25)
    augment = FileAugment(auto_augment="rand-m9-mstd0.5")
    files = data.train.with_transform(train_transform(16, augment), channels=3)

    def epoch(seed, workers=1, rank=0, world=1):
        sampler = torch.utils.data.DistributedSampler(files, num_replicas=world, rank=rank, seed=3)
        batches = StreamingBatches(files, 4, workers=workers, sampler=sampler, drop_last=False)
        batches.set_epoch(0, seed)
        return [(images.clone(), labels.clone()) for images, labels in batches]

    first, again, other = epoch(11), epoch(11), epoch(12)
    assert first[0][0].shape == (4, 3, 16, 16) and first[0][0].dtype == torch.uint8
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    shards = [torch.cat([labels for _, labels in epoch(11, workers=0, rank=r, world=2)]) for r in range(2)]
    assert sum(len(s) for s in shards) == len(files)  # 12 images, 6 per process, each read by one process


def test_a_bad_aa_policy_is_one_line():
    with pytest.raises(ValueError, match=r"--aa 'v9' is not a timm auto-augment policy"):
        train_transform(16, FileAugment(auto_augment="v9"))


@pytest.mark.parametrize("cores, device, workers", [(2, "cpu", 0), (1, "cpu", 0), (4, "cpu", 3), (2, "cuda", 1),
                                                    (32, "cuda", 8)])
def test_decoding_stays_in_the_training_process_on_a_two_core_cpu(cores, device, workers, monkeypatch):
    from lightnets.training import default_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_workers(device) == workers
