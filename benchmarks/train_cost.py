"""What training the Fashion-MNIST zoo costs on this machine: timed training steps, per model of the recipe.

    python -m benchmarks.train_cost                          # every entry of scripts/train_fmnist_zoo.sh
    python -m benchmarks.train_cost --models mobilenet_v1_100 shufflenet_g3 --steps 10

For each model the recipe trains, one training step as ``lightnets.train`` runs it on the CPU (small-input
form at 1x28x28, 10 classes, batch 128, fp32, ``channels_last``, SGD with Nesterov momentum, label
smoothing, ``lightnets.training.param_groups``' weight decay) is timed ``--steps`` times after two warm-up
steps; the median gives the time of an epoch (60,000 images = 468 steps) and, with the recipe's epochs,
of the whole training: every cycle of a warm-restarted model, a distilled cycle's steps timed with its
teacher's forward pass in them. Shipped weights are marked with their recorded top-1. Run it on an
otherwise idle machine: a second busy process on the same cores slows a training step several-fold.
"""
from __future__ import annotations

import argparse
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

import lightnets
from lightnets.cli.train_model import teacher_sources
from lightnets.machine import environment
from lightnets.pretrained.manifest import WEIGHTS_DIR, read_index
from lightnets.profiler import count_macs
from lightnets.registry import split_model_name
from lightnets.training import distillation_loss, ensemble_logits, param_groups

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "scripts" / "train_fmnist_zoo.sh"
TRAIN_IMAGES = 60_000
BATCH = 128


@dataclass(frozen=True)
class Cycle:
    """One cosine cycle of a model's recipe: its epochs, and the architecture of its ``--teacher`` if it distils
    (an ensemble's architectures joined by ``+``)."""

    epochs: int
    teacher: Optional[str] = None


def teacher_architecture(source: str) -> str:
    """The architecture a recipe's ``--teacher`` names: a registered ``name.tag``, or the weight folder of one of
    the script's own runs (``runs/<model>-fmnist-cycle2/weight``), which holds that model."""
    own_run = re.fullmatch(r"runs/(\w+?)-fmnist(-\w+)?/weight", source)
    return own_run.group(1) if own_run else split_model_name(source)[0]


def recipe_cycles(path: Path = RECIPE, ablations: bool = True) -> dict[str, list[Cycle]]:
    """model -> the cosine cycles it trains, in the script's order: the ``cycle MODEL EPOCHS LR ...`` lines of a
    warm-restart recipe, then its ``train MODEL EPOCHS LR ...`` line (trials, ``retrain`` lines, are not the recipe).
    With ``ablations``, also the ``train_as TAG MODEL EPOCHS LR ...`` lines, as ``MODEL.TAG`` (``MODEL`` for the tag
    fmnist): weights of a recipe's architecture trained another way, which cost what it costs."""
    text = path.read_text().replace("\\\n", " ")  # a line continued with a backslash is one command
    entries = [
        (model, epochs, rest)
        for model, epochs, rest in re.findall(r"^(?:cycle|train)\s+(\S+)\s+(\d+)\s(.*)$", text, flags=re.M)
    ]
    if not entries:
        raise ValueError(f"{path} has no 'train MODEL EPOCHS LR' lines")
    if ablations:
        entries += [
            (model if tag == "fmnist" else f"{model}.{tag}", epochs, rest)
            for tag, model, epochs, rest in re.findall(r"^train_as\s+(\S+)\s+(\S+)\s+(\d+)\s(.*)$", text, flags=re.M)
        ]
    cycles: dict[str, list[Cycle]] = {}
    for model, epochs, rest in entries:
        teacher = re.search(r"--teacher\s+(\S+)", rest)
        architectures = "+".join(map(teacher_architecture, teacher_sources(teacher.group(1)))) if teacher else None
        cycles.setdefault(model, []).append(Cycle(int(epochs), architectures))
    return cycles


def step_seconds(
    model: torch.nn.Module, steps: int, warmup: int = 2, teachers: Sequence[torch.nn.Module] = ()
) -> list[float]:
    """Wall time of ``steps`` training steps of ``model`` (1x28x28 input, batch 128), after ``warmup``; with
    ``teachers``, a distillation step: every teacher's forward pass, their ensemble and the soft-target loss
    are in it."""
    model = model.to(memory_format=torch.channels_last).train()
    teachers = [teacher.to(memory_format=torch.channels_last).eval() for teacher in teachers]
    optimizer = torch.optim.SGD(param_groups(model, 5e-4), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(BATCH, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (BATCH,))
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        if not teachers:
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        else:
            with torch.no_grad():
                teacher_logits = ensemble_logits([teacher(images) for teacher in teachers])
            loss = distillation_loss(model(images), teacher_logits, labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return times


def _small(name: str) -> torch.nn.Module:
    return lightnets.create_model(name, small_input=True, in_chans=1, num_classes=10)


def kd_label(teacher: str) -> str:
    """How the table marks a distilled cycle: "KD" for one teacher, "KD×3" for an ensemble of three."""
    members = len(teacher.split("+"))
    return "KD" if members == 1 else f"KD×{members}"


def table(models: dict[str, list[Cycle]], steps: int) -> list[str]:
    shipped = read_index(WEIGHTS_DIR)
    lines = ["| model | MMACs | params | ms / step | min / epoch | recipe epochs | CPU hours | shipped top-1 % |",
             "|:---|---:|---:|---:|---:|---:|---:|---:|"]
    steps_per_epoch = TRAIN_IMAGES // BATCH
    for name, cycles in models.items():
        torch.manual_seed(0)
        model = _small(name)
        macs = count_macs(model, (1, 28, 28))
        params = sum(p.numel() for p in model.parameters())
        step = {None: statistics.median(step_seconds(model, steps))}  # teacher -> seconds a step
        for teacher in sorted({cycle.teacher for cycle in cycles if cycle.teacher}):
            teachers = [_small(architecture) for architecture in teacher.split("+")]
            step[teacher] = statistics.median(step_seconds(model, steps, teachers=teachers))
        epoch_min = {teacher: seconds * steps_per_epoch / 60 for teacher, seconds in step.items()}
        hours = sum(cycle.epochs * epoch_min[cycle.teacher] for cycle in cycles) / 60
        distilled = [teacher for teacher in step if teacher]
        step_ms = f"{1000 * step[None]:.0f}" + "".join(f" ({kd_label(t)} {1000 * step[t]:.0f})" for t in distilled)
        minutes = f"{epoch_min[None]:.1f}" + "".join(f" ({kd_label(t)} {epoch_min[t]:.1f})" for t in distilled)
        epochs = " + ".join(
            f"{cycle.epochs}" + (f" {kd_label(cycle.teacher)}" if cycle.teacher else "") for cycle in cycles
        )
        weight = shipped.get(f"{name}.fmnist")
        top1 = f"{weight['metrics']['top1']:.2f}" if weight else "–"
        lines.append(
            f"| {name} | {macs / 1e6:.2f} | {params:,} | {step_ms} | {minutes} | {epochs} | {hours:.1f} | {top1} |"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=lambda text: [m for m in text.split(",") if m], metavar="A,B",
                        help="comma-separated models of the recipe to time (default: all of them)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (median taken)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "train_cost.md")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    recipe = recipe_cycles(ablations=False)  # an ablation's weight costs what its architecture's does
    unknown = [m for m in args.models or () if m not in recipe]
    if unknown:
        parser.error(f"not in {RECIPE.relative_to(ROOT)}: {', '.join(unknown)}; it trains {', '.join(recipe)}")
    torch.set_num_threads(args.threads)
    models = {m: recipe[m] for m in args.models} if args.models else recipe
    command = "python -m benchmarks.train_cost" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    env = environment()
    text = ["# Training cost on this machine", "", f"Generated by `{command}`.", "",
            *table(models, args.steps), "",
            f"<sub>CPU: {env['cpu']}; threads: {args.threads}; torch {env['torch']}; one training step of the recipe "
            f"(batch {BATCH}, fp32, channels_last, SGD + Nesterov), median of {args.steps} after 2 warm-up steps; "
            f"an epoch = {TRAIN_IMAGES // BATCH} steps, data loading and the test pass not included; recipe epochs "
            f"from `{RECIPE.relative_to(ROOT)}` (a + b: a second cosine cycle, warm-restarted from the first; KD: a "
            f"distilled cycle, whose steps also run the teacher's forward pass, timed with it; KD×n: distilled from an "
            f"ensemble of n teachers, each one's forward pass run)</sub>", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
