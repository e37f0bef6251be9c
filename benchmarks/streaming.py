"""What streaming image files costs against training on tensors already in memory (issue #42's targets).

    python scripts/make_image_folder.py data/fmnist-160 --size 160 --tint --format jpg --train 20000 --val 1000
    python scripts/make_image_folder.py data/fmnist-png                      # 28 px grayscale PNGs
    python -m benchmarks.streaming --photos data/fmnist-160 --fmnist-folder data/fmnist-png

Four measurements, each side by side in this one run:

1. **Throughput.** mobilenet_v1_050 at 160 px, batch 64, ``channels_last``, SGD: ``lightnets.training.fit`` over
   the streamed JPEGs with the default training transforms (timm's RandomResizedCrop, flip, colour jitter,
   decoded by the default number of workers, by the other of 0 and 1, and without colour jitter) against a
   plain PyTorch loop over the same images pre-decoded into one normalised tensor. On 2 cores decoding
   competes with the compute threads: that is the point of the measurement.
2. **Memory.** Peak RSS (main process plus decoding workers) of the pipeline over 2,000 and over all
   (20,000) images, each in a fresh process training ``--steps`` steps.
3. **Start-up.** Seconds from that process's start to the end of its first training step.
4. **Equivalence.** ``lightnets-train`` fine-tuning a bundled Fashion-MNIST weight for one epoch on the
   folder form of Fashion-MNIST (streamed, ``--train-transform small``) and on the in-memory dataset, same
   recipe and seed: validation top-1 of each.
5. **Recipe** (``--recipe``): the fine-tuning recipe of docs/training.md on the PNG folder at twice the
   weights' resolution (56 px, timm's default training transforms): a linear probe (``--freeze-backbone``)
   against a full fine-tune with layer decay, from ``mobilenet_v1_050.fmnist``, on ``--recipe-images``
   training images, scored on the 10,000 validation images.

Run it on an otherwise idle machine; it prints a Markdown report.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

import lightnets
from lightnets.data import load_splits
from lightnets.machine import environment, machine_load
from lightnets.training import (FileAugment, FitConfig, StreamingBatches, default_workers, eval_transform, fit,
                                param_groups, peak_rss_mb, train_transform)
from lightnets.training.streaming import children_peak_rss_mb

MODEL, SIDE, BATCH = "mobilenet_v1_050", 160, 64


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, 5e-4, 0.05), lr=0.05, momentum=0.9, nesterov=True)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return lightnets.create_model(MODEL, num_classes=10).to(memory_format=torch.channels_last)


def throughput(folder: Path, images: int, steps: int,
               paths: dict[str, tuple[int, FileAugment]]) -> dict[str, float]:
    """img/s of a plain loop over pre-decoded tensors and of fit() over the streamed files along each of
    ``paths`` (label: decoding processes, 0 for the training process; training transform), alternated twice:
    ``{"plain": img/s, label: img/s, "data_wait " + label: share}``."""
    data = load_splits(f"imagefolder:{folder}", limit=images)
    decoded = data.train.with_transform(eval_transform(SIDE, 1.0, "bilinear"), channels=3)
    tensors = torch.stack([decoded[i][0] for i in range(min(len(decoded), BATCH * steps))])
    labels = data.train.labels[:len(tensors)]
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    inputs = ((tensors.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)

    def plain() -> float:
        model = _model().train()
        optimizer = _optimizer(model)
        started = time.perf_counter()
        for step in range(steps):
            x, y = inputs[step * BATCH:(step + 1) * BATCH], labels[step * BATCH:(step + 1) * BATCH]
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return steps * BATCH / (time.perf_counter() - started)

    def streamed(workers: int, augment: FileAugment) -> tuple[float, float]:
        files = data.train.with_transform(train_transform(SIDE, augment), channels=3)
        model = _model()
        model.pretrained_cfg.update(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                    input_size=(3, SIDE, SIDE))
        batches = StreamingBatches(files, BATCH, workers=workers)
        stats = fit(model, batches, None, _optimizer(model),
                    FitConfig(batch_size=BATCH, pad=0, flip=False, memory_format=torch.channels_last), steps=steps)
        return stats.img_per_s, stats.data_wait

    runs: dict[str, list[float]] = {"plain": []}
    for _ in range(2):  # alternated, so a drift in the machine's speed hits every path
        runs["plain"].append(plain())
        for label, (workers, augment) in paths.items():
            rate, wait = streamed(workers, augment)
            runs.setdefault(label, []).append(rate)
            runs.setdefault(f"data_wait {label}", []).append(wait)
    return {key: min(values) if key.startswith("data_wait") else max(values) for key, values in runs.items()}


def child(folder: Path, images: int, steps: int, started: float) -> None:
    """One fresh process: list the files, train ``steps`` streamed steps, print start-up time and peak memory."""
    data = load_splits(f"imagefolder:{folder}", limit=images)
    files = data.train.with_transform(train_transform(SIDE, FileAugment()), channels=3)
    model = _model()
    model.pretrained_cfg.update(input_size=(3, SIDE, SIDE))
    optimizer = _optimizer(model)
    batches = StreamingBatches(files, BATCH, workers=default_workers())
    first_step = None
    peak_workers = 0.0
    iterator = iter(batches)
    for step in range(steps):
        images_batch, labels = next(iterator)
        fit(model, [(images_batch, labels)], None, optimizer,
            FitConfig(batch_size=BATCH, pad=0, flip=False, memory_format=torch.channels_last), steps=1)
        if first_step is None:
            first_step = time.time() - started
        peak_workers = max(peak_workers, children_peak_rss_mb())
    print(json.dumps({"images": len(files), "first_step_s": first_step,
                      "peak_rss_mb": peak_rss_mb() + peak_workers}))


def memory_and_startup(folder: Path, sizes: Sequence[int], steps: int) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        started = time.time()
        output = subprocess.run([sys.executable, "-m", "benchmarks.streaming", "--child", str(folder), str(size),
                                 str(steps), repr(started)], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    return rows


def equivalence(folder: Path, weight: str, epochs: int) -> dict[str, float]:
    recipe = ["--finetune-from", weight, "--epochs", str(epochs), "--batch-size", "128", "--lr", "0.01",
              "--no-progress", "--seed", "0"]
    results = {}
    for name, extra in (("streamed", ["--dataset", f"imagefolder:{folder}", "--train-transform", "small"]),
                        ("in memory", ["--dataset", "fashion_mnist"])):
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"streaming-benchmark-{name.replace(' ', '-')}"
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-m", "lightnets.train", *recipe, *extra, "--work-dir", str(work)],
                                capture_output=True, text=True, check=True).stdout
        record = [json.loads(line) for line in output.splitlines() if line.startswith('{"epoch"')][-1]
        results[name] = {"top1": record.get("val_top1", record.get("test_top1")),
                         "seconds": time.perf_counter() - started}
    return results


RECIPES = {
    "linear probe": ["--freeze-backbone", "--lr", "0.05"],
    "full fine-tune, layer decay 0.7": ["--lr", "0.02", "--layer-decay", "0.7"],
}


def recipe(folder: Path, images: int, epochs: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, options in RECIPES.items():
        work = Path(os.environ.get("TMPDIR", "/tmp")) / f"streaming-recipe-{len(results)}"
        argv = ["--finetune-from", "mobilenet_v1_050.fmnist", "--dataset", f"imagefolder:{folder}", "--img-size", "56",
                "--limit", str(images), "--limit-test", "10000", "--epochs", str(epochs), "--batch-size", "128",
                "--seed", "0", *options]
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-m", "lightnets.train", *argv, "--no-progress", "--work-dir",
                                 str(work)], capture_output=True, text=True, check=True).stdout
        records = [json.loads(line) for line in output.splitlines() if line.startswith('{"epoch"')]
        results[name] = {"top1": max(r["val_top1"] for r in records), "img_per_s": records[-1]["img_per_s"],
                         "data_wait": records[-1]["data_wait"], "minutes": (time.perf_counter() - started) / 60,
                         "command": "lightnets-train " + " ".join(argv)}
    return results


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="folder of 160 px JPEGs (scripts/make_image_folder.py)")
    parser.add_argument("--fmnist-folder", type=Path, help="Fashion-MNIST as 28 px PNGs (scripts/make_image_folder.py)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per throughput / memory measurement")
    parser.add_argument("--weight", default="smallcnn_3x2.fmnist", help="the weight the equivalence run fine-tunes")
    parser.add_argument("--recipe", action="store_true", help="also run the docs' fine-tuning recipe (section 5)")
    parser.add_argument("--recipe-images", type=int, default=10000, help="training images of the recipe runs")
    parser.add_argument("--recipe-epochs", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        folder, images, steps, started = args.child
        child(Path(folder), int(images), int(steps), float(started))
        return 0
    load = machine_load()  # before this run's own work loads the machine
    print(f"# Streaming image files against tensors in memory\n\n`python -m benchmarks.streaming "
          f"{' '.join(argv)}`\n")
    if args.photos:
        default = default_workers()
        other = 1 if default == 0 else 0
        where = {count: "in the training process" if count == 0 else f"in {count} worker process(es)"
                 for count in (default, other)}
        paths = {f"decoded {where[default]} (the default here)": (default, FileAugment()),
                 f"decoded {where[other]}": (other, FileAugment()),
                 f"decoded {where[default]}, no colour jitter": (default, FileAugment(color_jitter=0.0))}
        rates = throughput(args.photos, BATCH * args.steps, args.steps, paths)
        print(f"## Throughput: {MODEL} at {SIDE} px, batch {BATCH}\n")
        print("| path | img/s | ÷ plain | data wait |\n|---|---:|---:|---:|")
        print(f"| plain loop over pre-decoded tensors | {rates['plain']:.1f} | 1.00 | – |")
        for label in paths:
            print(f"| lightnets fit over streamed JPEGs (timm transforms), {label} | {rates[label]:.1f} | "
                  f"{rates[label] / rates['plain']:.2f} | {rates['data_wait ' + label]:.1%} |")
        headline = next(iter(paths))
        print(f"\nstreamed with the default transforms and workers ÷ plain: "
              f"**{rates[headline] / rates['plain']:.2f}** (target ≥ 0.85)\n")
        total = len(load_splits(f"imagefolder:{args.photos}").train)
        rows = memory_and_startup(args.photos, [2000, total], args.steps)
        print(f"## Memory and start-up ({args.steps} steps in a fresh process)\n")
        print("| training images | peak RSS, main + workers (MiB) | first step after process start (s) |")
        print("|---:|---:|---:|")
        for row in rows:
            print(f"| {row['images']:,} | {row['peak_rss_mb']:.0f} | {row['first_step_s']:.1f} |")
        print(f"\npeak RSS {rows[-1]['images']:,} ÷ {rows[0]['images']:,} images: "
              f"**{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}** (target ≤ 1.10)\n")
    if args.fmnist_folder:
        results = equivalence(args.fmnist_folder, args.weight, 1)
        print(f"## Equivalence: `{args.weight}` fine-tuned 1 epoch, lr 0.01, batch 128, seed 0\n")
        print("| data | validation top-1 (%) | run (s) |\n|---|---:|---:|")
        for name, result in results.items():
            print(f"| {name} | {result['top1']:.2f} | {result['seconds']:.0f} |")
        gap = abs(results["streamed"]["top1"] - results["in memory"]["top1"])
        print(f"\n|streamed − in memory|: **{gap:.2f} points** (target ≤ 0.5)\n")
    if args.recipe and args.fmnist_folder:
        results = recipe(args.fmnist_folder, args.recipe_images, args.recipe_epochs)
        print(f"## Recipe: from `mobilenet_v1_050.fmnist` (28 px) to 56 px files, {args.recipe_images:,} training "
              f"images, {args.recipe_epochs} epochs, timm's default training transforms\n")
        print("| recipe | best validation top-1 (%) | img/s | data wait | minutes |\n|---|---:|---:|---:|---:|")
        for name, result in results.items():
            print(f"| {name} | {result['top1']:.2f} | {result['img_per_s']:.0f} | {result['data_wait']:.1%} | "
                  f"{result['minutes']:.1f} |")
        print("\n" + "\n".join(f"- {name}: `{result['command']}`" for name, result in results.items()) + "\n")
    env = environment(load=load)
    print(f"Measured on {env['cpu']}, {env['threads']} threads, torch {env['torch']}, load {env['load']}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
