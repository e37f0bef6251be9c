"""On-device files of the bundled Fashion-MNIST weights: accuracy, agreement, size, export time and latency.

    python -m benchmarks.on_device                                   # every bundled weight (an hour or more)
    python -m benchmarks.on_device --weight smallcnn_3x2.fmnist --weight shufflenet_g3_050.fmnist

For each weight, each format (ExecuTorch with XNNPACK, LiteRT) and each precision (float32; int8 with
per-channel weights; int8 with per-tensor weights, where MobileNets are known to collapse):

* top-1 of the file over the whole test split, run image by image in the runtime's own interpreter, beside
  the eager float model's, and the share of images whose top-1 class agrees with the eager model's;
* the file's size and the time its export took;
* median latency at batch 1 in ``--threads`` threads, every file and the eager model measured side by side in
  one run (lightnets.evaluation.measure: paths take turns, repeat by repeat).

int8 files are calibrated on ``--calibration`` (default 512 images of the train split). The numbers are
XNNPACK on this machine's CPU, not on a phone: the results file records the CPU and its load.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

import lightnets
from lightnets import _io, deploy
from lightnets.data import load_dataset
from lightnets.evaluation.candidate import Candidate
from lightnets.evaluation.measure import measure_latency
from lightnets.inputs import resolve_input_config
from lightnets.machine import environment, library_versions, machine_load
from lightnets.tables import markdown_table

FORMATS = ("executorch", "litert")
PRECISIONS = ("float32", "int8", "int8-per-tensor")
RUNNERS = {"executorch": deploy.ExecuTorchModule, "litert": deploy.LiteRTModule}
SUFFIX = {"executorch": ".pte", "litert": ".tflite"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.on_device", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight", action="append", help="a bundled name.tag (default: every *.fmnist weight)")
    parser.add_argument("--format", action="append", choices=FORMATS, help="default: both")
    parser.add_argument("--precision", action="append", choices=PRECISIONS, help="default: all three")
    parser.add_argument("--calibration", default="fashion_mnist:512", help="DATASET[:N] for the int8 files")
    parser.add_argument("--limit", type=int, help="test images (default: the whole split)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output", default="results/on_device.md")
    return parser.parse_args(argv)


def top1_in_runtime(runner: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([runner(images[i:i + 1]).argmax(1) for i in range(len(images))])


def measure_weight(weight: str, args: argparse.Namespace, folder: Path) -> list[dict]:
    model = lightnets.create_model(weight, pretrained=True).eval()
    config = resolve_input_config(model)
    test = load_dataset("fashion_mnist", "test", limit=args.limit)
    images, labels = config.normalize(test.images), test.labels
    with torch.inference_mode():
        eager_top1 = torch.cat([model(images[i:i + 256]).argmax(1) for i in range(0, len(images), 256)])
    rows = [{"weight": weight, "format": "eager (PyTorch)", "precision": "float32",
             "top1": (eager_top1 == labels).float().mean().item() * 100, "agree": 100.0, "size": None,
             "export_s": None}]
    candidates = [Candidate(weight, "eager", model, config.input_size, config.mean, config.std, config.crop_pct)]
    for file_format in args.format or FORMATS:
        for precision in args.precision or PRECISIONS:
            quantize = None if precision == "float32" else precision
            path = folder / f"{weight}.{precision}{SUFFIX[file_format]}"
            exported = lightnets.export(model, path, format=file_format, quantize=quantize, overwrite=True,
                                        calibration=args.calibration if quantize else None)
            runner = RUNNERS[file_format](exported.path, num_threads=args.threads)
            top1 = top1_in_runtime(runner, images)
            rows.append({"weight": weight, "format": file_format, "precision": precision,
                         "top1": (top1 == labels).float().mean().item() * 100,
                         "agree": (top1 == eager_top1).float().mean().item() * 100,
                         "size": exported.size_bytes, "export_s": exported.seconds,
                         "undelegated": exported.undelegated})
            candidates.append(Candidate(weight, f"{file_format} {precision}", runner, config.input_size,
                                        config.mean, config.std, config.crop_pct))
            print(f"{weight} {file_format} {precision}: top-1 {rows[-1]['top1']:.2f} "
                  f"(eager {rows[0]['top1']:.2f}), export {exported.seconds:.1f} s", file=sys.stderr, flush=True)
    times = measure_latency(candidates, [1], args.repeats, warmup=3, device=torch.device("cpu"),
                            memory_format=torch.contiguous_format, progress=False)
    for index, row in enumerate(rows):
        row["ms"] = statistics.median(times[index, 1]) * 1e3
        row["vs_eager"] = rows[0]["ms"] / row["ms"] if index else 1.0
    return rows


def render(rows: list[dict], args: argparse.Namespace, argv: Sequence[str], load_before: dict | None) -> str:
    env = environment(load=load_before)
    versions = library_versions(["executorch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao"])
    body = []
    for row in rows:
        eager = next(r for r in rows if r["weight"] == row["weight"] and r["format"].startswith("eager"))
        delta = row["top1"] - eager["top1"]
        left = ", ".join(f"{op} ×{n}" for op, n in sorted(row.get("undelegated", {}).items()))
        body.append([f"`{row['weight']}`", row["format"], row["precision"], f"{row['top1']:.2f}",
                     "–" if row is eager else f"{delta:+.2f}", f"{row['agree']:.2f}",
                     "–" if row["size"] is None else f"{row['size'] / 1024:,.0f}",
                     "–" if row["export_s"] is None else f"{row['export_s']:.1f}",
                     f"{row['ms']:.3f}", f"{row['vs_eager']:.1f}×", left or "–"])
    lines = [
        "# On-device files: accuracy, size and latency", "",
        f"_Generated by `python -m benchmarks.on_device {shlex.join(argv)}`._ XNNPACK on this x86 CPU, not a phone:"
        f" {env['cpu']}, {args.threads} threads, torch {env['torch']}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items() if version)
        + f"; load before the run: {env['load']}.", "",
        "Top-1 on the Fashion-MNIST test split "
        f"({'all 10,000 images' if args.limit is None else f'first {args.limit} images'}), each file run image by "
        "image in its runtime's Python interpreter; Δ against the eager float model; agreement: images whose top-1 "
        f"class is the eager model's. int8 files calibrated on `{args.calibration}` (train split). Latency: median "
        "of batch-1 passes, every row of a weight measured side by side in one run.", "",
        *markdown_table(["weight", "runtime", "precision", "top-1 %", "Δ top-1", "agree %", "KiB", "export s",
                         "ms (bs1)", "vs eager", "not delegated"],
                        ["---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"], body),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = machine_load()
    weights = args.weight or [name for name in lightnets.list_pretrained() if name.endswith(".fmnist")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lightnets-on-device-") as folder:
        for weight in weights:
            rows += measure_weight(weight, args, Path(folder))
            # after each weight: a long run shows its progress, and a stopped one keeps what it measured
            _io.write_text(args.output, render(rows, args, argv, load_before), parents=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
