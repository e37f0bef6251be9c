"""Write Fashion-MNIST as a folder of image files, the layout a user's own photos arrive in (issue #42's
benchmark and recipe data): ``OUT/train/<label>_<class>/<n>.<ext>`` and ``OUT/val/<label>_<class>/<n>.<ext>``.

    python scripts/make_image_folder.py data/fmnist-png                       # 28 px grayscale PNGs, as stored
    python scripts/make_image_folder.py data/fmnist-160 --size 160 --tint --format jpg --train 20000

``--tint`` colours each image with a hue drawn from its index (RGB photos, not grayscale); ``--size``
upscales (bicubic) so the decoding cost is that of photos at the training size. Train images come from the
train split (Debian's copy or the download cache), validation images from the test split, in order.
"""
from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lightnets.data import load_dataset


def _tinted(gray: np.ndarray, index: int) -> Image.Image:
    red, green, blue = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.6, 1.0)
    rgb = gray[..., None].astype(np.float32) * np.array([red, green, blue], dtype=np.float32)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def write_split(images: np.ndarray, labels: np.ndarray, classes: list[str], folder: Path, size: int, tint: bool,
                extension: str) -> None:
    # "0_T-shirt-top": the folder names sort as the labels, so a run on the folder and one on the tensors agree
    names = [f"{label}_{name.replace('/', '-').replace(' ', '_')}" for label, name in enumerate(classes)]
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(images, labels)):
        image = _tinted(pixels, index) if tint else Image.fromarray(pixels, "L")
        if size != image.width:
            image = image.resize((size, size), Image.BICUBIC)
        image.save(folder / names[label] / f"{index:06d}.{extension}", quality=90)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", type=int, default=28, help="side of the written images (default: 28, as stored)")
    parser.add_argument("--tint", action="store_true", help="RGB images, each tinted with its own hue")
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--train", type=int, default=60000, metavar="N", help="training images to write")
    parser.add_argument("--val", type=int, default=10000, metavar="N", help="validation images to write")
    args = parser.parse_args(argv)
    for split, folder, count in (("train", "train", args.train), ("test", "val", args.val)):
        dataset = load_dataset("fashion_mnist", split, limit=count)
        write_split(dataset.images[:, 0].numpy(), dataset.labels.numpy(), dataset.classes, args.output / folder,
                    args.size, args.tint, args.format)
        print(f"wrote {len(dataset)} images to {args.output / folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
