"""On-device files of the bundled Fashion-MNIST weights: accuracy, agreement, size, export time and latency.

    python -m benchmarks.on_device                                   # every bundled weight (an hour or more)
    python -m benchmarks.on_device --weight smallcnn_3x2.fmnist --weight shufflenet_g3_050.fmnist
    python -m benchmarks.on_device --weight none --speed mobilenet_v1_100@224 --speed shufflenet_g3@224
    python -m benchmarks.on_device --no-latency --output results/on_device_accuracy.md   # the whole matrix

For each weight, each format (ExecuTorch with XNNPACK, LiteRT) and each precision (float32; int8 with
per-channel weights; int8 with per-tensor weights, where MobileNets are known to collapse):

* top-1 of the file over the whole test split, run image by image in the runtime's own interpreter, beside
  the eager float model's, and the share of images whose top-1 class agrees with the eager model's;
* the file's size and the time its export took;
* median latency at batch 1 in ``--threads`` threads, every file and the eager model measured side by side in
  one run (lightnets.evaluation.measure: paths take turns, repeat by repeat).

int8 files are calibrated on ``--calibration`` (default 512 images of the train split). Where one loses more than
0.5 top-1 points, a row beside it gives the same int8 layout after ``--qat-epochs`` of quantization-aware training
on ``--qat-data`` (``lightnets.quantize``, the float model distilling into it; ``--qat always`` for every int8
file; its export time includes the training). The numbers are
XNNPACK on this machine's CPU, not on a phone: the results file records the CPU and its load.

``--speed NAME@SIDE`` adds a latency-only table for a network at ImageNet sizes (random weights): eager, ONNX
Runtime, OpenVINO, and the ExecuTorch and LiteRT files in float and int8, measured side by side at batch 1,
with each file's size and the GEMM-bound ceiling (the network's MACs ÷ this CPU's fp32 matmul rate,
measured in the same run).
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

import lightnets
from lightnets import _io, deploy
from lightnets.data import InMemoryDataset, load_dataset
from lightnets.evaluation.candidate import Candidate
from lightnets.evaluation.measure import measure_latency
from lightnets.inputs import resolve_input_config
from lightnets.machine import environment, gemm_rate, library_versions, machine_load
from lightnets.tables import markdown_table

FORMATS = ("executorch", "litert")
PRECISIONS = ("float32", "int8", "int8-per-tensor")
RUNNERS = {"executorch": deploy.ExecuTorchModule, "litert": deploy.LiteRTModule}
SUFFIX = {"executorch": ".pte", "litert": ".tflite"}
QAT_THRESHOLD = 0.5  # top-1 points an int8 file may lose before quantization-aware training is tried (#41)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.on_device", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight", action="append", help="a bundled name.tag (default: every *.fmnist weight)")
    parser.add_argument("--format", action="append", choices=FORMATS, help="default: both")
    parser.add_argument("--precision", action="append", choices=PRECISIONS, help="default: all three")
    parser.add_argument("--calibration", default="fashion_mnist:512", help="DATASET[:N] for the int8 files")
    parser.add_argument("--limit", type=int, help="test images (default: the whole split)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--qat", choices=("needed", "always", "never"), default="needed",
                        help="add a quantization-aware trained int8 file (lightnets.quantize) beside each int8 file "
                             "that lost more than 0.5 top-1 points (needed), beside every int8 file, or never")
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=1e-3, help="QAT's learning rate (a tenth of it if it diverges)")
    parser.add_argument("--qat-data", default="fashion_mnist:10000", help="DATASET[:N] the QAT trains on")
    parser.add_argument("--no-latency", action="store_true",
                        help="accuracy, agreement and size only: no latency or export time, so it may run while the "
                             "machine is busy")
    parser.add_argument("--speed", action="append", default=[], metavar="NAME@SIDE",
                        help="latency-only rows for a network at a side, e.g. mobilenet_v1_100@224")
    parser.add_argument("--output", default="results/on_device.md")
    return parser.parse_args(argv)


def top1_in_runtime(runner: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([runner(images[i:i + 1]).argmax(1) for i in range(len(images))])


def measure_weight(weight: str, test: InMemoryDataset, args: argparse.Namespace, folder: Path) -> list[dict]:
    model = lightnets.create_model(weight, pretrained=True).eval()
    config = resolve_input_config(model)
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
            lost = rows[0]["top1"] - rows[-1]["top1"]
            if quantize and (args.qat == "always" or (args.qat == "needed" and lost > QAT_THRESHOLD)):
                rows.append(qat_row(model, weight, file_format, precision, images, labels, eager_top1, args, folder))
                if "path" in rows[-1]:
                    candidates.append(Candidate(weight, f"{file_format} {precision} QAT",
                                                RUNNERS[file_format](rows[-1].pop("path"), num_threads=args.threads),
                                                config.input_size, config.mean, config.std, config.crop_pct))
    if args.no_latency:
        for row in rows:
            row["ms"] = row["vs_eager"] = row["export_s"] = None
        return rows
    times = measure_latency(candidates, [1], args.repeats, warmup=3, device=torch.device("cpu"),
                            memory_format=torch.contiguous_format, progress=False)
    timed = iter(range(len(candidates)))
    for row in rows:
        index = next(timed) if row["top1"] is not None else None  # a QAT that diverged has no file to time
        row["ms"] = None if index is None else statistics.median(times[index, 1]) * 1e3
        row["vs_eager"] = None if index is None else (rows[0]["ms"] / row["ms"] if index else 1.0)
    return rows


def qat_row(model: torch.nn.Module, weight: str, file_format: str, precision: str, images: torch.Tensor,
            labels: torch.Tensor, eager_top1: torch.Tensor, args: argparse.Namespace, folder: Path) -> dict:
    """The row of ``precision``'s int8 file after ``args.qat_epochs`` of quantization-aware training: at
    ``--qat-lr``, and at a tenth of it if that diverges (the row says which)."""
    started = time.perf_counter()
    row = {"weight": weight, "format": file_format, "top1": None, "agree": None, "size": None, "undelegated": {}}
    failures = []
    for lr in (args.qat_lr, args.qat_lr / 10):
        try:
            trained = lightnets.quantize(model, args.qat_data, format=file_format, mode=precision,
                                         qat_epochs=args.qat_epochs, lr=lr)
        except FloatingPointError:
            failures.append(f"lr {lr:g} diverged")
            continue
        exported = lightnets.export(trained, folder / f"{weight}.{precision}.qat{SUFFIX[file_format]}",
                                    format=file_format, overwrite=True)
        top1 = top1_in_runtime(RUNNERS[file_format](exported.path, num_threads=args.threads), images)
        row.update(top1=(top1 == labels).float().mean().item() * 100,
                   agree=(top1 == eager_top1).float().mean().item() * 100, size=exported.size_bytes,
                   undelegated=exported.undelegated, path=exported.path)
        failures.append(f"lr {lr:g}")
        break
    row["precision"] = f"{precision} QAT ({args.qat_epochs} ep., {'; '.join(failures)})"
    row["export_s"] = time.perf_counter() - started
    print(f"{weight} {file_format} {row['precision']}: top-1 {row['top1']}", file=sys.stderr, flush=True)
    return row


def measure_speed(spec: str, args: argparse.Namespace, folder: Path, gemm_gmacs: float) -> list[dict]:
    """Latency-only rows for ``NAME@SIDE``: every runtime side by side, random weights, random calibration."""
    name, _, side = spec.partition("@")
    model = lightnets.create_model(name, img_size=int(side)).eval()
    input_size = (model.in_chans, int(side), int(side))
    macs = lightnets.count_macs(model, input_size)
    example = torch.randn(1, *input_size)
    paths: dict[str, tuple[torch.nn.Module, int | None]] = {"eager (PyTorch)": (model, None)}
    for backend in ("onnxruntime", "openvino"):
        if backend in deploy.available_backends():
            runner = deploy.optimize_for_inference(model, backend, example_input=example, num_threads=args.threads,
                                                   spin_wait=False)
            paths[backend] = (runner, None)
    calibration = torch.randn(16, *input_size, generator=torch.Generator().manual_seed(0))
    for file_format in args.format or FORMATS:
        for precision in ("float32", "int8"):
            quantize = None if precision == "float32" else precision
            exported = lightnets.export(model, folder / f"{name}-{side}.{precision}{SUFFIX[file_format]}",
                                        format=file_format, quantize=quantize, overwrite=True,
                                        calibration=calibration if quantize else None)
            paths[f"{file_format} {precision}"] = (RUNNERS[file_format](exported.path, num_threads=args.threads),
                                                    exported.size_bytes)
            print(f"{spec} {file_format} {precision}: export {exported.seconds:.1f} s", file=sys.stderr, flush=True)
    candidates = [Candidate(label, "", runner, input_size, (0.0,), (1.0,), 1.0) for label, (runner, _) in paths.items()]
    times = measure_latency(candidates, [1], args.repeats, warmup=3, device=torch.device("cpu"),
                            memory_format=torch.contiguous_format, progress=False)
    ceiling_ms = macs / (gemm_gmacs * 1e9) * 1e3
    rows = []
    for index, (label, (_, size)) in enumerate(paths.items()):
        ms = statistics.median(times[index, 1]) * 1e3
        rows.append({"network": f"`{name}` @ {side}", "runtime": label, "ms": ms, "size": size, "macs": macs,
                     "ceiling_ms": ceiling_ms})
    eager_ms = rows[0]["ms"]
    for row in rows:
        row["vs_eager"] = eager_ms / row["ms"]
        row["vs_ceiling"] = row["ms"] / ceiling_ms
    return rows


def render_speed(rows: list[dict], gemm_gmacs: float) -> list[str]:
    if not rows:
        return []
    body = [[row["network"], row["runtime"], f"{row['ms']:.2f}", f"{row['vs_eager']:.2f}×",
             "–" if row["size"] is None else f"{row['size'] / 1024:,.0f}", f"{row['macs'] / 1e6:,.0f}",
             f"{row['vs_ceiling']:.1f}×"] for row in rows]
    return ["", "## Latency at ImageNet sizes (random weights)", "",
            f"Batch 1, median ms, every runtime of a network measured side by side in one run. GEMM-bound ceiling: "
            f"the network's conv + FC MACs at this CPU's fp32 matmul rate, {gemm_gmacs:.1f} GMAC/s (a 2048² matmul, "
            "measured in the same run); `× ceiling` is the time over that bound (1.0× = as fast as fp32 GEMM "
            "allows; int8 can beat it). int8 files calibrated on random images: speed does not depend on the ranges.",
            "",
            *markdown_table(["network", "runtime", "ms (bs1)", "vs eager", "KiB", "MMACs", "× ceiling"],
                            ["---", "---", "---:", "---:", "---:", "---:", "---:"], body)]


def render(rows: list[dict], args: argparse.Namespace, argv: Sequence[str], load_before: dict | None,
           speed_rows: Sequence[dict] = (), gemm_gmacs: float = 0.0) -> str:
    env = environment(load=load_before)
    versions = library_versions(["executorch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao"])
    body = []
    for row in rows:
        eager = next(r for r in rows if r["weight"] == row["weight"] and r["format"].startswith("eager"))
        left = ", ".join(f"{op} ×{n}" for op, n in sorted(row.get("undelegated", {}).items()))
        measured = row["top1"] is not None
        body.append([f"`{row['weight']}`", row["format"], row["precision"],
                     f"{row['top1']:.2f}" if measured else "–",
                     "–" if row is eager or not measured else f"{row['top1'] - eager['top1']:+.2f}",
                     f"{row['agree']:.2f}" if measured else "–",
                     "–" if row["size"] is None else f"{row['size'] / 1024:,.0f}",
                     "–" if row["export_s"] is None else f"{row['export_s']:.1f}",
                     "–" if row["ms"] is None else f"{row['ms']:.3f}",
                     "–" if row["vs_eager"] is None else f"{row['vs_eager']:.1f}×", left or "–"])
    header = [
        "# On-device files: accuracy, size and latency", "",
        f"_Generated by `python -m benchmarks.on_device {shlex.join(argv)}`._ XNNPACK on this x86 CPU, not a phone:"
        f" {env['cpu']}, {args.threads} threads, torch {env['torch']}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items() if version)
        + f"; load before the run: {env['load']}.",
    ]
    accuracy = [
        "", "Top-1 on the Fashion-MNIST test split "
        f"({'all 10,000 images' if args.limit is None else f'first {args.limit} images'}), each file run image by "
        "image in its runtime's Python interpreter; Δ against the eager float model; agreement: images whose top-1 "
        f"class is the eager model's. int8 files calibrated on `{args.calibration}` (train split). "
        + ({"never": "", "always": "Every int8 file also after quantization-aware training ",
            "needed": f"An int8 file that lost more than {QAT_THRESHOLD} points also after quantization-aware "
                      "training "}
           [args.qat] + (f"({args.qat_epochs} epoch(s) on `{args.qat_data}`, `lightnets.quantize`; its export s "
                         "includes the training). " if args.qat != "never" else ""))
        + ("Latency and export time not measured in this run (`--no-latency`, so it could run beside other "
           "work); results/on_device.md times a representative of each family on an idle machine."
           if args.no_latency else
           "Latency: median of batch-1 passes, every row of a weight measured side by side in one run."), "",
        *markdown_table(["weight", "runtime", "precision", "top-1 %", "Δ top-1", "agree %", "KiB", "export s",
                         "ms (bs1)", "vs eager", "not delegated"],
                        ["---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"], body),
    ] if rows else []
    lines = [
        *header,
        *accuracy,
        *render_speed(list(speed_rows), gemm_gmacs),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = machine_load()
    weights = args.weight or [name for name in lightnets.list_pretrained()
                              if name.partition(".")[2].startswith("fmnist")]
    weights = [weight for weight in weights if weight != "none"]
    rows: list[dict] = []
    speed_rows: list[dict] = []
    gemm_gmacs = gemm_rate() if args.speed else 0.0
    with tempfile.TemporaryDirectory(prefix="lightnets-on-device-") as folder:
        test = load_dataset("fashion_mnist", "test", limit=args.limit)
        for weight in weights:
            rows += measure_weight(weight, test, args, Path(folder))
            # after each weight: a long run shows its progress, and a stopped one keeps what it measured
            _io.write_text(args.output, render(rows, args, argv, load_before), parents=True)
        for spec in args.speed:
            speed_rows += measure_speed(spec, args, Path(folder), gemm_gmacs)
            _io.write_text(args.output, render(rows, args, argv, load_before, speed_rows, gemm_gmacs), parents=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
