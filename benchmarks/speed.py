"""Inference speed, as ratios measured in one process: timm vs our eager vs our deployment paths.

    python -m benchmarks.speed                       # the default run (a few minutes on 2 cores)
    python -m benchmarks.speed --repeats 30 --backends eager,torchscript,compile,onnxruntime,onnxruntime-int8

Sections of the Markdown it writes (``--output``, default results/speed.md):

1. **Paths**: each model through timm's implementation (where timm has the same architecture),
   our eager model and each backend of :func:`lightnets.optimize_for_inference`; median ms per
   batch at every batch size, ratios to timm's eager time and to ours, GMAC/s and its share of
   this CPU's fp32 GEMM rate (a large matmul, measured in the same run).
2. **Separable vs regular**: for each (regular, separable) pair, the MAC reduction, the measured
   speedup on each path and speedup ÷ MAC reduction (1.0 = time falls exactly as MACs do).
3. **Channel shuffle**: its share of ShuffleNet's eager time (the model vs its no-shuffle
   ablation, same MACs) and torch.profiler's top operators.
4. **int8 accuracy** (``--accuracy``, on by default): Fashion-MNIST top-1 of shipped weights in fp32
   vs onnxruntime int8, calibrated on 512 training images.

Timing: lightnets.evaluation.measure.measure_latency — warm-up, then repeats that each time a block of
back-to-back passes lasting >= 20 ms; paths take turns repeat by repeat so drift hits all alike.
int8 latency uses ranges calibrated on random inputs: speed does not depend on them. onnxruntime
sessions run without spin-waiting: idle spinning threads took the cores from the path timed next
(timm's eager model measured up to 2.6× slower right after an onnxruntime path on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

import lightnets
from lightnets import deploy
from lightnets.evaluation.candidate import Candidate
from lightnets.evaluation.cli import batch_size_list
from lightnets.evaluation.measure import measure_latency
from lightnets.inputs import resolve_input_config
from lightnets.layers import ConvBNAct, DepthwiseSeparableConv
from lightnets.machine import environment, gemm_rate, library_versions, simd_flags

DEFAULT_MODELS = ("mobilenet_v1_100", "shufflenet_g3")
# Issue #41's speed table: the phone-sized networks at 224 and 160 px, every runtime side by side.
ON_DEVICE_MODELS = ("mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_100", "shufflenet_g3", "shufflenet_g8")
# Our model name -> the timm model with the same architecture (ReLU6 in both: timm's MobileNet v1 uses it).
TIMM_TWINS = {"mobilenet_v1_100": ("mobilenetv1_100", {"act_layer": "relu6"})}
DEFAULT_PAIRS = (
    "layer3x3_256:layer3x3_256_dw",
    "sepcnn_regular:sepcnn_both",
    "sepcnn_regular:sepcnn_separable",
    "smallcnn_3x2:smallcnn_3x2_dw23",
    "smallcnn_3x2:smallcnn_3x2_dw123",
)
AUTO_PICKS: dict[int, str] = {}  # id(model) -> the backend "auto" picked for it in this run
DEFAULT_BACKENDS = ("eager", "torchscript", "compile", "onnxruntime", "openvino", "onnxruntime-int8", "executorch",
                    "executorch-int8", "litert", "litert-int8", "auto")
INT8_WEIGHTS = ("smallcnn_3x2.fmnist", "mobilenet_v1_025.fmnist", "mobilenet_v1_050.fmnist")


# --------------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------------


def single_layer(separable: bool) -> nn.Module:
    """The issue's reference layer: 3×3, 256 → 256 channels at 28×28, standard or depthwise-separable."""
    return DepthwiseSeparableConv(256, 256) if separable else ConvBNAct(256, 256, kernel_size=3)


LAYER_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "layer3x3_256": (lambda: single_layer(False), (256, 28, 28)),
    "layer3x3_256_dw": (lambda: single_layer(True), (256, 28, 28)),
}


def build_model(name: str, img_size: Optional[int]) -> tuple[nn.Module, tuple[int, int, int]]:
    """Our model ``name`` (or a reference layer), eval mode, random weights, and its (C, H, W) input."""
    if name in LAYER_MODELS:
        factory, input_size = LAYER_MODELS[name]
        return factory().eval(), input_size
    if "." in name:  # a bundled weight, e.g. mobilenet_v1_025.fmnist: its own input (28 px grey for Fashion-MNIST)
        model = lightnets.create_model(name, pretrained=True).eval()
        return model, tuple(resolve_input_config(model).input_size)
    kwargs = dict(TIMM_TWINS.get(name, (None, {}))[1])
    if img_size is not None:
        kwargs.update(img_size=img_size, small_input=img_size < 64)
    if name.startswith("smallcnn"):
        kwargs["in_chans"] = 1
    model = lightnets.create_model(name, **kwargs).eval()
    return model, (model.in_chans, model.img_size, model.img_size)


def build_paths(model: nn.Module, name: str, input_size: tuple[int, int, int], backends: Sequence[str],
                with_timm: bool = True) -> dict[str, nn.Module]:
    """label -> runnable: ``timm eager`` (where timm has the twin; our model takes its weights and the twin
    our stem stride, so both compute the same function), then ``eager`` and each available backend in ``backends``."""
    paths: dict[str, nn.Module] = {}
    if with_timm and name in TIMM_TWINS:
        import timm

        from lightnets.pretrained.convert import convert_timm_mobilenetv1

        twin = timm.create_model(TIMM_TWINS[name][0], num_classes=model.num_classes).eval()
        if model.small_input:
            # timm has no stem-stride option; its stem is a plain 3×3 conv with padding 1, so stride 1 makes it
            # our small-input stem exactly (tests/repository/test_benchmarks.py checks that the logits agree).
            twin.conv_stem.stride = (1, 1)
        model.load_state_dict(convert_timm_mobilenetv1(twin.state_dict()))
        paths["timm eager"] = twin
    paths["eager"] = model
    example = torch.randn(1, *input_size)
    for backend in backends:
        if backend == "eager":
            continue
        if backend != "auto" and backend not in deploy.available_backends():
            print(f"skipping backend {backend!r}: not available here", file=sys.stderr)
            continue
        if backend == "auto":  # what optimize_for_inference(backend="auto") would run: its measured choice
            choice = deploy.choose_backend(model, example, spin_wait=False)
            AUTO_PICKS[id(model)] = choice.backend
            paths[backend] = choice.runner or deploy.optimize_for_inference(model, choice.backend,
                                                                            example_input=example, spin_wait=False)
            continue
        calibration = torch.randn(8, *input_size) if backend in deploy.INT8_BACKENDS else None
        # No spin-waiting: idle onnxruntime threads would otherwise take the cores from the path timed next.
        paths[backend] = deploy.optimize_for_inference(
            model, backend, example_input=example, calibration_images=calibration, spin_wait=False
        )
    return paths


def file_kib(runner: nn.Module) -> Optional[float]:
    """The size of the on-device file a path runs, or None for the others."""
    path = getattr(runner, "path", None)
    return path.stat().st_size / 1024 if path is not None else None


def time_paths(paths: dict[str, nn.Module], input_size: tuple[int, int, int], batch_sizes: Sequence[int],
               repeats: int, warmup: int) -> dict[str, dict[int, float]]:
    """Median seconds per batch, ``{label: {batch size: s}}``, every path timed in turn on the same input."""
    candidates = [Candidate(label, "", module, input_size, (0.0,), (1.0,), 1.0) for label, module in paths.items()]
    times = measure_latency(candidates, batch_sizes, repeats, warmup, torch.device("cpu"), torch.contiguous_format,
                            progress=False)
    return {c.label: {b: statistics.median(times[i, b]) for b in batch_sizes} for i, c in enumerate(candidates)}


def macs_of(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    return lightnets.count_macs(model, input_size)


# --------------------------------------------------------------------------------------------------
# Sections: each returns Markdown lines and a dict of the headline numbers the goals are checked on
# --------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    batch_sizes: tuple[int, ...]
    repeats: int
    warmup: int
    backends: tuple[str, ...]
    gemm_gmacs: float
    img_size: Optional[int] = None
    headline: dict[str, float] = field(default_factory=dict)
    # (pair, path, batch) -> (regular s, separable s, separable MACs per image): explains unmet pair goals
    pair_times: dict[tuple[str, str, int], tuple[float, float, int]] = field(default_factory=dict)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 1e-3 else f"{seconds * 1e3:.2f}"


def paths_section(names: Sequence[str], settings: Settings) -> list[str]:
    """Section 1: every model through every path; ratios to timm's eager time and to our eager time."""
    head = ["model", "path", "file KiB"]
    for b in settings.batch_sizes:
        head += [f"bs{b} ms", f"bs{b} × timm", f"bs{b} × eager", f"bs{b} GMAC/s", f"bs{b} % GEMM"]
    lines = ["| " + " | ".join(head) + " |", "|:---|:---|" + "---:|" * (len(head) - 2)]
    for name in names:
        model, input_size = build_model(name, settings.img_size)
        macs = macs_of(model, input_size)
        paths = build_paths(model, name, input_size, settings.backends)
        times = time_paths(paths, input_size, settings.batch_sizes, settings.repeats, settings.warmup)
        size = f"@{input_size[-1]}"
        auto_choice = AUTO_PICKS.get(id(model))
        for label, by_bs in times.items():
            kib = file_kib(paths[label]) if label in paths else None
            shown = f"auto (picked {auto_choice})" if label == "auto" and auto_choice else label
            cells = [f"{name} {size}", shown, f"{kib:,.0f}" if kib else "–"]
            for b, seconds in by_bs.items():
                timm_s = times.get("timm eager", {}).get(b)
                gmacs = macs * b / seconds / 1e9
                cells += [_ms(seconds), f"{seconds / timm_s:.2f}" if timm_s else "–",
                          f"{seconds / times['eager'][b]:.2f}", f"{gmacs:.1f}",
                          f"{100 * gmacs / settings.gemm_gmacs:.0f}"]
                if timm_s:
                    settings.headline[f"{name} {label} bs{b} × timm"] = seconds / timm_s
                settings.headline[f"{name}{size} {label} bs{b} s"] = seconds
                settings.headline[f"{name}{size} {label} bs{b} × ceiling"] = settings.gemm_gmacs / gmacs
            lines.append("| " + " | ".join(cells) + " |")
        print(f"paths: {name} done", file=sys.stderr)
    return lines


def pairs_section(pairs: Sequence[str], settings: Settings) -> list[str]:
    """Section 2: speedup of the separable form over the regular one, against the MAC reduction."""
    fp32 = tuple(b for b in settings.backends if b != "onnxruntime-int8")
    head = ["regular → separable", "MAC reduction", "path"]
    for b in settings.batch_sizes:
        head += [f"bs{b} ms regular / separable", f"bs{b} speedup", f"bs{b} speedup ÷ MAC red."]
    lines = ["| " + " | ".join(head) + " |", "|:---|---:|:---|" + "---:|" * (len(head) - 3)]
    for pair in pairs:
        regular_name, separable_name = pair.split(":")
        built = {
            n: build_model(n, settings.img_size if n not in LAYER_MODELS else None)
            for n in (regular_name, separable_name)
        }
        separable_macs = macs_of(*built[separable_name])
        reduction = macs_of(*built[regular_name]) / separable_macs
        paths = {}
        for n, (model, input_size) in built.items():
            paths.update(
                {(n, label): m for label, m in build_paths(model, n, input_size, fp32, with_timm=False).items()}
            )
        # Both forms share the input size (parse_args checks it), so one interleaved run times all of them.
        input_size = built[regular_name][1]
        labelled = {f"{n}|{label}": m for (n, label), m in paths.items()}
        times = time_paths(labelled, input_size, settings.batch_sizes, settings.repeats, settings.warmup)
        for label in dict.fromkeys(label for _, label in paths):
            cells = [f"{regular_name} → {separable_name}", f"{reduction:.2f}×", label]
            for b in settings.batch_sizes:
                regular_s, separable_s = times[f"{regular_name}|{label}"][b], times[f"{separable_name}|{label}"][b]
                speedup = regular_s / separable_s
                # Absolute times show when a model is too small for its MACs to dominate (fixed per-op cost).
                cells += [f"{_ms(regular_s)} / {_ms(separable_s)}", f"{speedup:.2f}×", f"{speedup / reduction:.2f}"]
                settings.headline[f"{pair} {label} bs{b} speedup/MAC"] = speedup / reduction
                settings.pair_times[pair, label, b] = (regular_s, separable_s, separable_macs)
            lines.append("| " + " | ".join(cells) + " |")
        print(f"pairs: {pair} done", file=sys.stderr)
    return lines


def _annotate_shuffles(model: nn.Module) -> list:
    """Wrap every ChannelShuffle's forward in a profiler range named ``channel_shuffle`` (hooks, removable)."""
    handles, open_ranges = [], []

    def enter(module, args):
        open_ranges.append(torch.autograd.profiler.record_function("channel_shuffle").__enter__())

    def leave(module, args, output):
        open_ranges.pop().__exit__(None, None, None)

    for module in model.modules():
        if isinstance(module, lightnets.layers.ChannelShuffle):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def shuffle_section(name: str, settings: Settings, top: int = 8) -> list[str]:
    """Section 3: channel shuffle's share of ShuffleNet's eager time, two ways, and the profile."""
    from torch.profiler import ProfilerActivity, profile

    model, input_size = build_model(name, settings.img_size)
    ablation = lightnets.create_model(name, shuffle=False,
                                      **({"img_size": settings.img_size, "small_input": settings.img_size < 64}
                                         if settings.img_size else {})).eval()
    times = time_paths({"shuffle": model, "no shuffle": ablation}, input_size, settings.batch_sizes,
                       settings.repeats, settings.warmup)
    lines = [
        f"{name}, eager, same MACs with and without shuffle (Table 3's ablation):",
        "",
        "| batch | with shuffle ms | without ms | shuffle share (1 − without ÷ with) "
        "| profiler: channel_shuffle share |",
        "|---:|---:|---:|---:|---:|",
    ]
    profiles = {}
    for b in settings.batch_sizes:
        x = torch.randn(b, *input_size)
        handles = _annotate_shuffles(model)
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(x)
        for handle in handles:
            handle.remove()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        shuffle_us = sum(e.cpu_time_total for e in events if e.key == "channel_shuffle")
        profiles[b] = events
        with_s, without_s = times["shuffle"][b], times["no shuffle"][b]
        share = 1 - without_s / with_s
        settings.headline[f"{name} shuffle share bs{b}"] = max(share, shuffle_us / total)
        lines.append(
            f"| {b} | {_ms(with_s)} | {_ms(without_s)} | {100 * share:.1f}% | {100 * shuffle_us / total:.1f}% |"
        )
    b = settings.batch_sizes[0]
    events = sorted((e for e in profiles[b] if e.key != "channel_shuffle"), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    lines += ["", f"torch.profiler, bs{b}, top operators by self CPU time (3 passes):", "",
              "| operator | self CPU % | calls per pass |", "|:---|---:|---:|"]
    lines += [f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f} | {e.count // 3} |" for e in events[:top]]
    print("shuffle: done", file=sys.stderr)
    return lines


def int8_section(weights: Sequence[str], settings: Settings, calibration_size: int = 512) -> list[str]:
    """Section 4: Fashion-MNIST test top-1 of shipped weights, fp32 eager vs onnxruntime int8."""
    from lightnets.data import load_dataset

    available = [w for w in weights if w in lightnets.list_pretrained()]
    if not available:
        return [f"No shipped Fashion-MNIST weight among {', '.join(weights)} yet."]
    try:
        train = load_dataset("fashion_mnist", split="train")
    except (OSError, ValueError) as error:
        return [f"Skipped: the Fashion-MNIST train split (calibration images) is not available here ({error})."]
    test = load_dataset("fashion_mnist", split="test")
    pick = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:calibration_size]
    lines = [
        f"Calibration: {calibration_size} random Fashion-MNIST train images; "
        f"evaluation: the {len(test.images)} test images.",
        "",
        "| weight | fp32 top-1 % | int8 top-1 % | Δ points | argmax agreement % |",
        "|:---|---:|---:|---:|---:|",
    ]
    for name in available:
        model = lightnets.create_model(name, pretrained=True).eval()
        prepare = resolve_input_config(model).normalize
        int8 = deploy.optimize_for_inference(model, "onnxruntime-int8", calibration_images=prepare(train.images[pick]))
        with torch.inference_mode():
            batches = [prepare(images) for images in test.images.split(500)]
            fp32_pred = torch.cat([model(x).argmax(1) for x in batches])
            int8_pred = torch.cat([int8(x).argmax(1) for x in batches])
        fp32_top1 = 100 * (fp32_pred == test.labels).float().mean().item()
        int8_top1 = 100 * (int8_pred == test.labels).float().mean().item()
        agreement = 100 * (fp32_pred == int8_pred).float().mean().item()
        settings.headline[f"{name} int8 top-1 loss"] = fp32_top1 - int8_top1
        lines.append(f"| {name} | {fp32_top1:.2f} | {int8_top1:.2f} | {int8_top1 - fp32_top1:+.2f} | {agreement:.2f} |")
    print("int8 accuracy: done", file=sys.stderr)
    return lines


def op_breakdown_section(specs: Sequence[str], settings: Settings, folder: Path) -> list[str]:
    """Section 5: ExecuTorch's own per-operator times (ETDump) of the float and int8 files of NAME@SIDE, and of
    the float file as torch exports it, before lightnets' delegate rewrites, where they change the network."""
    from lightnets.deploy.delegate_rewrites import FixedAverageConv, average_pools_as_convs
    from lightnets.deploy.executorch_file import lower_to_executorch
    from lightnets.deploy.executorch_profile import operator_times

    lines = ["Milliseconds per batch-1 pass, median of the passes, each operator kind summed over its instances, "
             "from ExecuTorch's event trace (XNNPACK's per-operator profiling); `total` is the whole `forward`, the "
             "kinds' sum falls short of it by the runtime's own work. int8 calibrated on random images.", ""]
    for spec in specs:
        name, _, side = spec.partition("@")
        model, input_size = build_model(name, int(side) if side else None)
        example = torch.randn(1, *input_size)
        files = {}
        if any(isinstance(m, FixedAverageConv) for m in average_pools_as_convs(model, example).modules()):
            before = folder / f"{name}-as-exported.pte"
            folded = deploy.fold_batchnorm(model)
            before.write_bytes(lower_to_executorch(folded, example).buffer)
            files["float, pools as torch exports them"] = before
        for label, quantize in (("float", None), ("int8", "int8")):
            calibration = torch.randn(16, *input_size) if quantize else None
            files[label] = lightnets.export(model, folder / f"{name}-{label}.pte", format="executorch",
                                            quantize=quantize, calibration=calibration, overwrite=True).path
        times = {label: operator_times(path, example, runs=settings.repeats * 5, warmup=settings.warmup,
                                       num_threads=torch.get_num_threads()) for label, path in files.items()}
        kinds = sorted({kind for by_kind in times.values() for kind in by_kind if kind != "total"},
                       key=lambda kind: -max(by_kind.get(kind, 0.0) for by_kind in times.values()))
        lines += [f"**{name} @{input_size[-1]}**", "", "| operator | " + " | ".join(times) + " |",
                  "|:---|" + "---:|" * len(times)]
        for kind in [*kinds, "total"]:
            cells = [f"{by_kind[kind]:.3f}" if kind in by_kind else "–" for by_kind in times.values()]
            lines.append(f"| {'**total**' if kind == 'total' else kind} | " + " | ".join(cells) + " |")
        settings.headline[f"{name}@{input_size[-1]} executorch int8 ÷ float, op trace"] = (
            times["int8"]["total"] / times["float"]["total"])
        lines.append("")
        print(f"operator breakdown: {spec} done", file=sys.stderr)
    return lines


# --------------------------------------------------------------------------------------------------
# Goals, environment, Markdown
# --------------------------------------------------------------------------------------------------


def goals_section(settings: Settings) -> list[str]:
    """Issue #7's targets against what this run measured (only those this run measured)."""
    h = settings.headline
    bs = settings.batch_sizes
    fp32_backends = [b for b in settings.backends if b not in ("eager", "auto", *deploy.INT8_BACKENDS)]
    rows, gaps = [], []
    for b in bs:
        if (value := h.get(f"mobilenet_v1_100 eager bs{b} × timm")) is not None:
            rows.append((f"eager mobilenet_v1_100 ÷ timm eager, bs{b}", value, "≤ 1.00", value <= 1.0))
    best = [(h[key], backend) for backend in fp32_backends if (key := f"mobilenet_v1_100 {backend} bs1 × timm") in h]
    if best:
        value, backend = min(best)
        rows.append((f"best fp32 path ({backend}) ÷ timm eager, bs1", value, "≤ 0.45", value <= 0.45))
    if (value := h.get("mobilenet_v1_100 onnxruntime-int8 bs1 × timm")) is not None:
        rows.append(("int8 (onnxruntime) ÷ timm eager, bs1", value, "≤ 0.30", value <= 0.30))
    for key, value in h.items():
        if key.endswith("int8 top-1 loss"):
            rows.append((f"{key.split()[0]}: top-1 points lost in int8", value, "≤ 0.5", value <= 0.5))
    for key, value in h.items():
        if " shuffle share " in key:
            rows.append(
                (f"channel shuffle share of {key.split()[0]} eager, {key.split()[-1]}", value, "≤ 10%", value <= 0.10)
            )
    for b in bs:
        per_pair = {}
        for key, value in h.items():
            if key.endswith(f"bs{b} speedup/MAC"):
                pair, path = key.split()[0], key.split()[1]
                if path != "eager":
                    per_pair[pair] = max(per_pair.get(pair, (0.0, "")), (value, path))
        for pair, (value, path) in per_pair.items():
            rows.append((f"{pair.replace(':', ' → ')}: speedup ÷ MAC reduction, best non-eager path ({path}), bs{b}",
                         value, "≥ 0.60", value >= 0.6))
            if value < 0.6:
                gaps.append(_pair_gap(pair, path, b, settings))
    rows += _on_device_goals(settings)
    lines = ["| goal | measured | target | met |", "|:---|---:|---:|:---:|"]
    for label, value, target, met in rows:
        shown = f"{100 * value:.1f}%" if target.endswith("%") else f"{value:.2f}"
        lines.append(f"| {label} | {shown} | {target} | {'yes' if met else '**no**'} |")
    if gaps:
        lines += ["", "Why the unmet separable goals fall short, from this run's numbers:", "", *gaps]
    return lines


def _on_device_goals(settings: Settings) -> list[tuple[str, float, str, bool]]:
    """Issue #41's targets: ExecuTorch int8 ÷ float for MobileNet v1 1.0, ShuffleNet g = 3's fastest float path
    against the GEMM-bound ceiling, and auto against the fastest path it could have picked (bs1, 224 px)."""
    h, rows = settings.headline, []
    float_paths = ("eager", "torchscript", "compile", "onnxruntime", "openvino", "executorch", "litert")
    et_float = h.get("mobilenet_v1_100@224 executorch bs1 s")
    et_int8 = h.get("mobilenet_v1_100@224 executorch-int8 bs1 s")
    if et_float and et_int8:
        rows.append(("ExecuTorch int8 ÷ float, mobilenet_v1_100 @224, bs1", et_int8 / et_float, "≤ 0.55",
                     et_int8 / et_float <= 0.55))
    ceilings = [(h[key], path) for path in float_paths if (key := f"shufflenet_g3@224 {path} bs1 × ceiling") in h]
    if ceilings:
        value, path = min(ceilings)
        rows.append((f"shufflenet_g3 @224 fastest float path ({path}) ÷ GEMM-bound ceiling, bs1", value, "≤ 1.5",
                     value <= 1.5))
    for key, auto_s in h.items():
        if key.endswith(" auto bs1 s"):
            network = key.split()[0]
            fastest = min((h[k], k.split()[1]) for k in h if k.startswith(network + " ") and k.endswith(" bs1 s")
                          and k.split()[1] in float_paths)
            rows.append((f"auto ÷ fastest float path ({fastest[1]}), {network}, bs1", auto_s / fastest[0], "≤ 1.10",
                         auto_s / fastest[0] <= 1.1))
    return rows


def _pair_gap(pair: str, path: str, batch: int, settings: Settings) -> str:
    """One sentence: how much of the separable model's time its MACs explain at this CPU's GEMM rate."""
    regular_s, separable_s, separable_macs = settings.pair_times[pair, path, batch]
    macs_s = separable_macs * batch / (settings.gemm_gmacs * 1e9)
    regular_name, separable_name = pair.split(":")
    return (f"- {separable_name}, {path}, bs{batch}: {_ms(separable_s)} ms per batch (regular: {_ms(regular_s)} ms), "
            f"of which its {separable_macs * batch / 1e6:.1f} M MACs need {_ms(macs_s)} ms at the GEMM rate: "
            f"{100 * (1 - macs_s / separable_s):.0f}% is per-operator cost (dispatch, memory traffic of depthwise and "
            f"pooling layers) that a MAC reduction does not remove.")


def machine_lines(settings: Settings) -> list[str]:
    env = environment("cpu")
    versions = [f"torch {env['torch']}"] + [f"{package} {version or 'not installed'}"
                                           for package, version in library_versions(("onnxruntime", "timm")).items()]
    simd = ", ".join(simd_flags()) or "unknown"
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"<sub>CPU: {env['cpu']}, SIMD: {simd}; threads: {env['threads']}; {', '.join(versions)}; "
        f"python {env['python']}; C++ compiler for torch.compile: {deploy.cpp_compiler() or 'none'}</sub>  ",
        f"<sub>fp32 GEMM rate (2048² matmul, same run): {settings.gemm_gmacs:.1f} GMAC/s; "
        f"load average at the end (1/5/15 min): {load}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</sub>  ",
        f"<sub>latency: median of {settings.repeats} repeats after {settings.warmup} warm-up passes, each repeat a "
        "block of back-to-back passes lasting >= 20 ms, paths interleaved; ms per batch; "
        "× = time ratio (lower is faster)</sub>",
    ]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated lightnets models for section 1"
    )
    parser.add_argument(
        "--pairs", default=",".join(DEFAULT_PAIRS), help="comma-separated regular:separable pairs ('' to skip)"
    )
    parser.add_argument(
        "--backends", default=",".join(DEFAULT_BACKENDS), help=f"comma-separated, from {', '.join(deploy.BACKENDS)}"
    )
    parser.add_argument("--latency-batch-sizes", type=batch_size_list, default=[1, 32], metavar="B,B",
                        help="batch sizes to time, comma-separated (default 1,32)")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch and onnxruntime intra-op threads"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--img-size", type=batch_size_list, default=None, metavar="PX,PX",
                        help="input side(s) for every model, comma-separated: section 1 repeats per side "
                             "(default: each model's own)")
    parser.add_argument("--weights", default="", metavar="NAME.TAG,...",
                        help="comma-separated bundled weights timed through every path at their own input size "
                             "(e.g. mobilenet_v1_025.fmnist at 28 px), a section of their own")
    parser.add_argument("--op-breakdown", default="", metavar="NAME@SIDE,...",
                        help="comma-separated networks whose ExecuTorch float and int8 files get a per-operator "
                             "time table from the runtime's own trace (e.g. mobilenet_v1_100@224,shufflenet_g3@224)")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--no-accuracy", action="store_true", help="skip section 4 (int8 accuracy on Fashion-MNIST)")
    parser.add_argument("--output", type=Path, default=Path("results/speed.md"))
    args = parser.parse_args(argv)
    for option in ("threads", "repeats", "warmup", "gemm_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    # distinct and >= 1 (batch_size_list): a repeat would count samples twice
    args.batch_sizes = args.latency_batch_sizes
    args.backends = tuple(b for b in args.backends.split(",") if b)
    unknown = [b for b in args.backends if b not in deploy.BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(deploy.BACKENDS)}")
    args.pairs = tuple(p for p in args.pairs.split(",") if p)
    if any(p.count(":") != 1 for p in args.pairs):
        parser.error(f"--pairs must be regular:separable names, got {args.pairs}")
    for pair in args.pairs:
        sizes = {n: build_model(n, (args.img_size or [None])[0])[1] for n in pair.split(":")}
        if len(set(sizes.values())) > 1:
            parser.error(f"--pairs {pair}: both models must take the same input to be timed together, got "
                         + " and ".join(f"{n} {'x'.join(map(str, size))}" for n, size in sizes.items()))
    args.models = tuple(m for m in args.models.split(",") if m)
    args.weights = tuple(w for w in args.weights.split(",") if w)
    args.op_breakdown = tuple(spec for spec in args.op_breakdown.split(",") if spec)
    if args.op_breakdown and "executorch" not in deploy.available_backends():
        parser.error("--op-breakdown needs ExecuTorch: pip install 'lightnets[mobile]'")
    unknown = [w for w in args.weights if w not in lightnets.list_pretrained()]
    if unknown:
        parser.error(f"--weights {', '.join(unknown)}: not a bundled weight (lightnets.list_pretrained())")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings(tuple(args.batch_sizes), args.repeats, args.warmup, args.backends, gemm_rate(args.gemm_size))
    command = "python -m benchmarks.speed" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    sides = args.img_size or [None]
    sections = []
    for side in sides:
        settings.img_size = side
        title = "Paths: timm vs our eager vs our deployment paths" + (f", {side} px" if side else "")
        sections.append((title, paths_section(args.models, settings)))
    if args.weights:
        settings.img_size = None
        sections.append(("Paths: bundled weights at their own input size", paths_section(args.weights, settings)))
    settings.img_size = sides[0]
    if args.pairs:
        sections.append(("Separable vs regular: speedup against MAC reduction", pairs_section(args.pairs, settings)))
    shufflenets = [m for m in args.models if m.startswith("shufflenet")]
    if shufflenets:
        sections.append(("Channel shuffle's share of ShuffleNet's time", shuffle_section(shufflenets[0], settings)))
    if args.op_breakdown:
        with tempfile.TemporaryDirectory(prefix="lightnets-speed-") as folder:
            sections.append(("ExecuTorch per-operator time: float and int8",
                             op_breakdown_section(args.op_breakdown, settings, Path(folder))))
    if not args.no_accuracy and "onnxruntime-int8" in deploy.available_backends():
        sections.append(("int8 accuracy on Fashion-MNIST", int8_section(INT8_WEIGHTS, settings)))
    sections.insert(0, ("Goals (issues #7 and #41), from this run", goals_section(settings)))
    text = ["# Inference speed", "", f"Generated by `{command}`.", "", *machine_lines(settings), ""]
    for title, lines in sections:
        text += [f"## {title}", "", *lines, ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
