"""The targets benchmarks/speed.py checks its run against (issues #7 and #41), and the settings and headline
numbers of that run they are read from: a section of Markdown saying, goal by goal, what was measured and
whether it met the target (only the goals this run measured).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lightnets import deploy

__all__ = ["Settings", "goals_section", "ms"]


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


def ms(seconds: float) -> str:
    """Milliseconds, three decimals below one."""
    return f"{seconds * 1e3:.3f}" if seconds < 1e-3 else f"{seconds * 1e3:.2f}"


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
    return (f"- {separable_name}, {path}, bs{batch}: {ms(separable_s)} ms per batch (regular: {ms(regular_s)} ms), "
            f"of which its {separable_macs * batch / 1e6:.1f} M MACs need {ms(macs_s)} ms at the GEMM rate: "
            f"{100 * (1 - macs_s / separable_s):.0f}% is per-operator cost (dispatch, memory traffic of depthwise and "
            f"pooling layers) that a MAC reduction does not remove.")
