"""Datasets: the embedded Fashion-MNIST split, loaders on files the tests write, downloads from a local server."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import pickle
import shutil
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lightnets import data
from lightnets.data import cifar10, fashion_mnist
from lightnets.data import files as data_files
from lightnets.data import CorruptDataError, load_dataset, normalize_batch

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over http://127.0.0.1 for the duration of a test; yields (folder, base_url)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_system_copies(tmp_path, monkeypatch):
    """Hide the Debian copy and the download cache, so only what a test names can be found."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data_files, "CACHE_DIR", tmp_path / "no-cache")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------------


def test_embedded_fashion_mnist_test_split():
    test_set = load_dataset("fashion_mnist")
    assert test_set.images.shape == (10_000, 1, 28, 28) and test_set.images.dtype == torch.uint8
    assert test_set.labels.dtype == torch.int64
    assert torch.bincount(test_set.labels).tolist() == [1000] * 10  # the test split is balanced
    assert test_set.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert test_set.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    image, label = test_set[0]
    assert image.shape == (1, 28, 28) and label == 9
    assert test_set.mean == (0.2860,) and test_set.std == (0.3530,)
    assert len(load_dataset("fashion_mnist", limit=50)) == 50


def test_embedded_files_are_packaged_with_their_licence():
    folder = Path(data.__file__).parent.parent / "datasets" / "fashion_mnist"
    assert md5(folder / "t10k-images-idx3-ubyte.gz") == "f78720b4224f21cce2f2ccf2d7a94c9a"
    assert md5(folder / "t10k-labels-idx1-ubyte.gz") == "0d30e22e447f3c33dab9ed536400ac01"
    assert "Zalando SE" in (folder / "LICENSE").read_text()


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_train_split_from_the_system_copy():
    train_set = load_dataset("fashion_mnist", "train", limit=1000)
    assert train_set.images.shape == (1000, 1, 28, 28)
    assert train_set.labels[:5].tolist() == [9, 0, 0, 3, 0]  # the first train labels of the official release


def test_corrupt_and_missing_fashion_mnist_files(tmp_path, no_system_copies):
    shutil.copy(fashion_mnist.EMBEDDED_DIR / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz", tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10_000, 28, 28)))  # valid IDX, wrong content
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte.gz is corrupt: expected gzip md5 bef4ecab"):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz.*not found.*--download"):
        load_dataset("fashion_mnist", "train", data_dir=tmp_path)


def test_fashion_mnist_download_from_a_local_server(tmp_path, http_folder, monkeypatch, no_system_copies):
    served, url = http_folder
    images = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    files = (write_idx(served / "train-images-idx3-ubyte.gz", images),
             write_idx(served / "train-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5])))
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_URL", url)
    monkeypatch.setitem(fashion_mnist.FASHION_MNIST_FILES, "train", tuple(data.DataFile(f.name, md5(f)) for f in files))
    target = tmp_path / "downloaded"
    train_set = load_dataset("fashion_mnist", "train", data_dir=target, download=True)
    assert train_set.labels.tolist() == [3, 1, 4, 1, 5]
    assert torch.equal(train_set.images[:, 0], torch.from_numpy(images.astype(np.uint8)))
    assert sorted(p.name for p in target.iterdir()) == sorted(f.name for f in files)

    # A download whose checksum does not match is discarded, not kept under the final name.
    monkeypatch.setitem(fashion_mnist.FASHION_MNIST_FILES, "train",
                        (data.DataFile(files[0].name, "0" * 32), data.DataFile(files[1].name, md5(files[1]))))
    other = tmp_path / "other"
    with pytest.raises(CorruptDataError, match="expected 0{32}; the file was discarded"):
        load_dataset("fashion_mnist", "train", data_dir=other, download=True)
    assert not any(other.iterdir())


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, per_batch: int = 4) -> Path:
    """The official layout with ``per_batch`` images per batch; pixel values encode (batch, image, position)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [name.encode() for name in CIFAR_CLASSES], b"num_vis": 3072}, f)
    for index, name in enumerate(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    ):
        pixels = (np.arange(per_batch * 3072).reshape(per_batch, 3072) + 7 * index) % 256
        labels = [(index + i) % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": pixels.astype(np.uint8)}, f)
    return folder


def test_cifar10_reads_the_official_batch_layout(tmp_path):
    write_cifar(tmp_path)
    train_set = load_dataset("cifar10", "train", data_dir=tmp_path)
    test_set = load_dataset("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")
    assert train_set.images.shape == (20, 3, 32, 32) and len(test_set) == 4
    assert train_set.classes == CIFAR_CLASSES and train_set.mean == (0.4914, 0.4822, 0.4465)
    assert train_set.labels[:6].tolist() == [0, 1, 2, 3, 1, 2]
    # Each row is the R plane, then G, then B, each 32×32 row-major.
    first = torch.arange(3072) % 256
    assert torch.equal(train_set.images[0].flatten().long(), first)
    assert train_set.images[0, 1, 0, 0] == 1024 % 256 and train_set.images[0, 0, 1, 0] == 32
    assert test_set.labels.tolist() == [5, 6, 7, 8]


def test_cifar10_refuses_a_pickle_that_runs_code(tmp_path):
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f)
    with pytest.raises(CorruptDataError, match="refusing to load pathlib"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar10_missing_corrupt_and_downloaded(tmp_path, http_folder, monkeypatch):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found.*--download"):
        load_dataset("cifar10", data_dir=tmp_path / "empty")
    folder = write_cifar(tmp_path / "corrupt")
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(
        CorruptDataError, match="data_batch_3 is not a CIFAR-10 python batch.*c58f30108f718f92721af3b95e74349a"
    ):
        load_dataset("cifar10", "train", data_dir=tmp_path / "corrupt")

    served, url = http_folder
    write_cifar(tmp_path / "source")
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "source" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url + archive.name)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5(archive))
    test_set = load_dataset("cifar10", data_dir=tmp_path / "fresh", download=True)
    assert test_set.labels.tolist() == [5, 6, 7, 8]
    assert (tmp_path / "fresh" / "cifar-10-batches-py" / "batches.meta").is_file()


# ---------------------------------------------------------------------------------------------
# Image folders, synthetic data
# ---------------------------------------------------------------------------------------------


def write_image_folder(root: Path) -> Path:
    from PIL import Image

    for label, (name, color) in enumerate([("cat", (255, 0, 0)), ("dog", (0, 0, 255))]):
        (root / name).mkdir(parents=True)
        for i, size in enumerate([(40, 30), (64, 64), (30, 50)]):
            Image.new("RGB", size, color).save(root / name / f"{i}.png")
    Image.new("L", (20, 20), 128).save(root / "dog" / "gray.jpg")  # grayscale files become RGB
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_resizes_and_crops_per_the_model_cfg(tmp_path):
    write_image_folder(tmp_path / "pets")
    dataset = load_dataset(f"imagefolder:{tmp_path / 'pets'}", img_size=24, crop_pct=0.75)
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 7
    image, label = dataset[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.uint8 and label == 0
    assert image[:, 12, 12].tolist() == [255, 0, 0]
    gray, label = dataset[6]
    assert label == 1 and gray.shape == (3, 24, 24) and gray[:, 5, 5].tolist() == [128, 128, 128]
    limited = load_dataset(f"imagefolder:{tmp_path / 'pets'}", limit=2)  # one image of each class, not 2 cats
    assert [label for _, label in limited.samples] == [0, 1]


def test_imagefolder_split_subfolders(tmp_path):
    write_image_folder(tmp_path / "data" / "val")
    write_image_folder(tmp_path / "data" / "train")
    assert load_dataset(f"imagefolder:{tmp_path / 'data'}", "val", img_size=8).classes == ["cat", "dog"]
    with pytest.raises(ValueError, match="split 'test' not found.*train, val"):
        load_dataset(f"imagefolder:{tmp_path / 'data'}", "test")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")


def test_synthetic_is_seeded():
    a = load_dataset("synthetic", limit=3, img_size=16, in_chans=1, num_classes=7)
    b = load_dataset("synthetic", limit=3, img_size=16, in_chans=1, num_classes=7)
    assert a.images.shape == (3, 1, 16, 16) and len(a.classes) == 7
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, load_dataset("synthetic", limit=3, img_size=16, in_chans=1, seed=1).images)


@pytest.mark.parametrize("kwargs, error", [
    ({"name": "fashion-mnist"}, r"unknown dataset 'fashion-mnist'.*did you mean fashion_mnist\?"),
    ({"name": "imagenet"},
     r"unknown dataset 'imagenet'; choose one of fashion_mnist, cifar10, imagefolder:PATH, synthetic"),
    ({"name": "fashion_mnist", "split": "val"}, r"unknown split 'val' for fashion_mnist; choose train or test"),
    ({"name": "fashion_mnist", "limit": 0}, r"limit must be an integer >= 1, got 0"),
])
def test_bad_dataset_arguments(kwargs, error):
    with pytest.raises(ValueError, match=error):
        load_dataset(**kwargs)


# ---------------------------------------------------------------------------------------------
# normalize_batch
# ---------------------------------------------------------------------------------------------


def test_normalize_batch_channels_size_and_statistics():
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb = normalize_batch(gray, 3, 28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert rgb.shape == (2, 3, 28, 28) and rgb.dtype == torch.float32
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    assert torch.allclose(rgb[:, 1], (gray[:, 0].float() / 255 - 0.5) / 0.25)

    color = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    color[:, 0], color[:, 1], color[:, 2] = 255, 100, 0
    luma = normalize_batch(color, 1, 4, (0.0,), (1.0,))
    assert luma.shape == (1, 1, 4, 4)
    assert luma[0, 0, 0, 0].item() == pytest.approx(0.299 + 0.587 * 100 / 255, abs=1e-6)
    # An ImageNet mean / std given for a 1-channel model is averaged.
    averaged = normalize_batch(color, 1, 4, (0.2, 0.4, 0.6), (0.5, 0.5, 0.5))
    assert averaged[0, 0, 0, 0].item() == pytest.approx((luma[0, 0, 0, 0].item() - 0.4) / 0.5, abs=1e-6)

    resized = normalize_batch(torch.full((3, 1, 28, 28), 51, dtype=torch.uint8), 1, 56, (0.0,), (1.0,))
    assert resized.shape == (3, 1, 56, 56) and torch.allclose(resized, torch.full_like(resized, 0.2))


def test_normalize_batch_takes_float_images_as_already_scaled_and_leaves_them_alone():
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    scaled = images.float() / 255  # what torchvision's ToTensor gives
    before = scaled.clone()
    expected = normalize_batch(images, 1, 28, (0.3,), (0.2,))
    torch.testing.assert_close(normalize_batch(scaled, 1, 28, (0.3,), (0.2,)), expected)
    torch.testing.assert_close(normalize_batch(scaled.double(), 1, 28, (0.3,), (0.2,)), expected)
    assert torch.equal(scaled, before)  # the caller's tensor is not scaled in place


def test_imagefolder_resize_filter_is_chosen_and_checked(tmp_path):
    write_image_folder(tmp_path / "pets")
    nearest = load_dataset(f"imagefolder:{tmp_path / 'pets'}", img_size=8, crop_pct=0.5, interpolation="nearest")
    assert nearest.interpolation == "nearest" and nearest[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="interpolation must be one of bilinear, bicubic, .*got 'cubic'"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}", interpolation="cubic")


def test_normalize_batch_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match="cannot feed 4-channel images to a model with in_chans=3"):
        normalize_batch(torch.zeros(1, 4, 8, 8, dtype=torch.uint8), 3, 8, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="mean has 2 values, the model takes 3 channels"):
        normalize_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 3, 8, (0.5, 0.5), (0.5,))
