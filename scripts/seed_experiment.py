"""The seed experiment (issue #6): conversion to depthwise-separable convs and L1 filter pruning, measured.

Three parts, each runnable alone; a part whose weights are not trained yet is skipped with a message.

* ``conversion``: the 3+2 CNN trained on Fashion-MNIST (``smallcnn_3x2.fmnist``) with conv layer 1, 2, 3,
  1+2 or 2+3 made depthwise-separable (low-rank init, :func:`lightnets.compress.to_separable`), then
  fine-tuned (a) training only the new layers and (b) training everything. The same layers trained
  separable from scratch (``smallcnn_3x2_dw*.fmnist``) are listed where their weights exist.
* ``sepcnn``: ``sepcnn_regular.fmnist`` converted to the Both (layers 4–6) and Separable (all six) forms,
  against those forms trained from scratch.
* ``pruning``: L1 filter pruning (:func:`lightnets.compress.prune_l1`) of every conv at several ratios,
  fine-tuned with and without distillation from the unpruned model, plus a one-layer-at-a-time
  sensitivity scan and the pruning it guides (50% of every conv that loses at most GUIDED_MAX_DROP
  points alone, the rest whole), for the 3+2 CNN, MobileNet v1 0.25 / 0.5 and ShuffleNet g=3 (0.5x and 1x).

Each part has two stages: ``train`` (fine-tunes, cached under runs/seed_experiment/; CPU-heavy, not
timed) and ``measure`` (params, MACs and latency through lightnets.evaluation, the engine of
``python -m eval``; run it on a quiet machine), which also writes the Markdown. What it shares with
criteria_experiment.py (weights, data, the fine-tune cache, the cost columns) is
:mod:`lightnets.evaluation.experiments`; it needs an installed lightnets (``pip install -e .``):

    python scripts/seed_experiment.py --part conversion --stage train
    python scripts/seed_experiment.py --part conversion --stage measure   # → results/seed_conversion.md
    python scripts/seed_experiment.py --part pruning --epochs 1           # both stages → results/seed_pruning.md
    python scripts/seed_experiment.py --part pruning --model smallcnn_3x2 # one model only
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from lightnets import compress
from lightnets.data import load_dataset
from lightnets.evaluation import experiments
from lightnets.evaluation.experiments import CALIBRATION_IMAGES, COST_HEADER, Data, cost_cells, measure_against, weights

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "seed_experiment"
RESULTS = ROOT / "results"
CONVERSIONS = {"1": ["features.conv1"], "2": ["features.conv2"], "3": ["features.conv3"],
               "1+2": ["features.conv1", "features.conv2"], "2+3": ["features.conv2", "features.conv3"]}
SCRATCH = {"1": "smallcnn_3x2_dw1", "2": "smallcnn_3x2_dw2", "3": "smallcnn_3x2_dw3",
           "1+2": "smallcnn_3x2_dw12", "2+3": "smallcnn_3x2_dw23"}
# sepcnn's features: layers 1, 2, pool, 3, 4, pool, 5, 6, pool (SEPCNN_LAYERS); Both = layers 4–6.
SEPCNN_FORMS = {"4-6": [f"features.{i}" for i in (4, 6, 7)],
                "1-6": [f"features.{i}" for i in (0, 1, 3, 4, 6, 7)]}
PRUNE_MODELS = ("smallcnn_3x2", "mobilenet_v1_025", "mobilenet_v1_050", "shufflenet_g3_050", "shufflenet_g3")
PRUNE_RATIOS = (0.25, 0.5, 0.75)
SENSITIVITY_IMAGES = 2000
GUIDED_MAX_DROP = 2.0  # sensitivity-guided pruning: convs that lose at most this many points alone at 50%


# ---------------------------------------------------------------------------------------------
# Models, data, cached fine-tunes
# ---------------------------------------------------------------------------------------------


def cached(key: str, build: Callable[[], nn.Module], train: Optional[Callable[[nn.Module], dict[str, Any]]],
           stage: str, retrain: bool, cache: Optional[Path] = None) -> Optional[tuple[nn.Module, dict[str, Any]]]:
    """:func:`lightnets.evaluation.experiments.cached`, under runs/seed_experiment/ unless ``cache`` says otherwise."""
    return experiments.cached(key, build, train, stage, retrain, cache or CACHE)


# ---------------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------------


def conversion_variants(args: argparse.Namespace, data: Data, base: nn.Module, family: str,
                        forms: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every (layers, training mode) variant of ``base``: its model and what was recorded while fine-tuning."""
    variants = []
    for form, layers in forms.items():
        for mode, freeze in (("new layers", "untouched"), ("everything", "none")):
            def build(layers=layers, freeze=freeze) -> nn.Module:
                return compress.to_separable(base, layers, init="lowrank", freeze=freeze,
                                             calibration=data.calibration(base, CALIBRATION_IMAGES))

            def train(model: nn.Module) -> dict[str, Any]:
                record = {"top1_converted": compress.top1_accuracy(model, data.test)}
                record.update(
                    compress.finetune(model.to(args.device), data.train, epochs=args.epochs, lr=args.lr, seed=0)
                )
                record["top1"] = compress.top1_accuracy(model.cpu(), data.test)
                return record

            result = cached(f"{family}/{form.replace('+', '_')}-{mode.replace(' ', '_')}", build, train,
                            args.stage, args.retrain)
            if result is not None:
                variants.append({"layers": form, "training": mode, "model": result[0], **result[1]})
    return variants


def scratch_variants(names: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for form, name in names.items():
        model = weights(name)
        if model is not None:
            rows.append({"layers": form, "training": "from scratch", "model": model,
                         "top1": model.pretrained_cfg["metrics"]["top1"], "top1_converted": None})
    return rows


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}"


def header(title: str, command: str, args: argparse.Namespace) -> list[str]:
    return experiments.header(title, f"python scripts/seed_experiment.py {command}", repeats=args.repeats,
                              threads=args.threads)


def conversion_table(base_row: dict[str, Any], rows: list[dict[str, Any]], base_top1: float) -> list[str]:
    lines = [
        "| conv layers made separable | trained after conversion | top-1 converted | top-1 | Δ top-1 " + COST_HEADER,
        "|:---|:---|---:|---:|---:" + "|---:" * 9 + "|",
        f"| none (original) | – | – | {base_top1:.2f} | – " + cost_cells(base_row),
    ]
    for row in rows:
        lines.append(f"| {row['layers']} | {row['training']} | {pct(row['top1_converted'])} | {row['top1']:.2f} "
                     f"| {row['top1'] - base_top1:+.2f} " + cost_cells(row))
    return lines


def conversion_conclusions(rows: list[dict[str, Any]], base_top1: float, one_channel_input: bool) -> list[str]:
    """Statements the numbers support, each computed from the rows."""
    out = []
    tuned = [r for r in rows if r["training"] != "from scratch"]
    by = {(r["layers"], r["training"]): r for r in tuned}
    forms = dict.fromkeys(r["layers"] for r in tuned)
    gaps = [by[f, "everything"]["top1"] - by[f, "new layers"]["top1"] for f in forms
            if (f, "everything") in by and (f, "new layers") in by]
    if gaps:
        out.append(f"* Training everything after the conversion beats training only the new layers by "
                   f"{statistics.mean(gaps):+.2f} points on average (range {min(gaps):+.2f} to {max(gaps):+.2f}).")
    if tuned:
        best = max(tuned, key=lambda r: r["top1"])
        worst = min(tuned, key=lambda r: r["top1"])
        out.append(
            f"* Closest to the original ({base_top1:.2f}%): layers {best['layers']} ({best['training']}), "
            f"{best['top1']:.2f}% at {1 / best['mac_ratio']:.2f}× fewer MACs; furthest: layers {worst['layers']} "
            f"({worst['training']}), {worst['top1']:.2f}%."
        )
        converted = [r for r in tuned if r["top1_converted"] is not None]
        if converted:
            out.append("* Before any fine-tuning, the low-rank initialisation alone keeps "
                       + ", ".join(f"layers {r['layers']}: {r['top1_converted']:.1f}%" for r in converted
                                   if r["training"] == "everything")
                       + (" (a layer with one input channel has a single depthwise filter: rank 1 in total)."
                          if one_channel_input else "."))
        for b in (1, 100):
            ratios = [r[f"speedup_per_mac_reduction_bs{b}"] for r in tuned]
            slower = [r for r in tuned if r[f"speedup_bs{b}"] < 1 and r["mac_ratio"] < 0.9]
            out.append(f"* Batch {b}: speedup ÷ MAC reduction is {min(ratios):.2f}–{max(ratios):.2f} "
                       f"(median {statistics.median(ratios):.2f}); "
                       + ("time falls far less than MACs do" if statistics.median(ratios) < 0.7
                          else "time falls roughly as MACs do" if statistics.median(ratios) < 1.1
                          else "time falls faster than MACs")
                       + (f"; {len(slower)} of the {sum(r['mac_ratio'] < 0.9 for r in tuned)} variants with ≥ 10% "
                          "fewer MACs run slower than the original (eager PyTorch, fp32)." if slower else "."))
    scratch = [r for r in rows if r["training"] == "from scratch"]
    for r in scratch:
        tuned_best = max((t["top1"] for t in tuned if t["layers"] == r["layers"]), default=None)
        if tuned_best is not None:
            out.append(f"* Layers {r['layers']}: converted and fine-tuned {tuned_best:.2f}% vs. trained separable from "
                       f"scratch {r['top1']:.2f}% ({tuned_best - r['top1']:+.2f}).")
    return out


def run_conversion(args: argparse.Namespace, data: Data, part: str) -> Optional[list[str]]:
    name, forms, scratch = (("smallcnn_3x2", CONVERSIONS, SCRATCH) if part == "conversion"
                            else ("sepcnn_regular", SEPCNN_FORMS, {"4-6": "sepcnn_both", "1-6": "sepcnn_separable"}))
    base = weights(name)
    if base is None:
        return None
    variants = conversion_variants(args, data, base, name, forms) + scratch_variants(scratch)
    if args.stage == "train":
        return None
    base_top1 = base.pretrained_cfg["metrics"]["top1"]
    rows = measure_against(base, variants, repeats=args.repeats, threads=args.threads)
    title = (f"{name}.fmnist ({base_top1:.2f}% top-1): conv layers → depthwise-separable" if part == "conversion"
             else f"{name}.fmnist ({base_top1:.2f}% top-1) → Both (layers 4-6 separable) / Separable (1-6) forms")
    return [f"## {title}", "",
            f"Converted with `lightnets.compress.to_separable(init='lowrank')` (rank-1 depthwise factors, pointwise "
            f"refit by least squares on {CALIBRATION_IMAGES} training images), then fine-tuned {args.epochs:g} "
            f"epoch(s) on the 60,000 training images (SGD, lr {args.lr:g}, cosine, crop + flip, label smoothing 0.1): "
            "(a) only the new layers (`freeze='untouched'`), (b) everything. Top-1 on the 10,000 test images; "
            "\"top-1 converted\": before fine-tuning.", "",
            *conversion_table(rows[0], rows[1:], base_top1), "", "Conclusions from this table:", "",
            *conversion_conclusions(rows[1:], base_top1, part == "conversion"), ""]


def run_pruning(args: argparse.Namespace, data: Data) -> Optional[list[str]]:
    sections = []
    for name in args.model or PRUNE_MODELS:
        base = weights(name)
        if base is None:
            continue
        variants, notes = [], {}
        teacher = copy.deepcopy(base).to(args.device)  # the distillation fine-tunes' teacher, on their device

        def partial_train(distill: bool) -> Callable[[nn.Module], dict[str, Any]]:
            def train(model: nn.Module) -> dict[str, Any]:
                record = {"top1_pruned": compress.top1_accuracy(model, data.test)}
                record.update(compress.finetune(model.to(args.device), data.train, epochs=args.epochs, lr=args.lr,
                                               teacher=teacher if distill else None))
                record["top1"] = compress.top1_accuracy(model.cpu(), data.test)
                return record
            return train

        for ratio in PRUNE_RATIOS:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    pruned = compress.prune_l1(base, ratio)
            except ValueError as error:  # e.g. narrow ShuffleNet groups left empty at 75%
                print(f"skip {name} at {ratio:.0%}: {error}")
                notes[ratio] = f"not possible here ({error})."
                continue
            left_whole = sum("prune_l1: skipped" in str(w.message) for w in caught)
            if left_whole:
                notes[ratio] = (
                    f"{left_whole} of {len(compress.prunable_layers(base))} prunable convs left unpruned: a "
                    "grouped conv each feeds would keep unequal channels per group (`prune_l1` warns and "
                    "keeps them whole)."
                )
            for recipe in ("fine-tune", "fine-tune + distillation"):
                distill = recipe.endswith("distillation")
                result = cached(f"{name}/prune{int(100 * ratio)}-{'kd' if distill else 'ft'}",
                                lambda pruned=pruned: copy.deepcopy(pruned), partial_train(distill), args.stage,
                                args.retrain)
                if result is not None:
                    variants.append({"ratio": ratio, "recipe": recipe, "model": result[0], **result[1]})
        sensitivity = CACHE / name / "sensitivity.json"
        if args.stage != "measure" and (args.retrain or not sensitivity.is_file()):
            subset = load_dataset("fashion_mnist", "test", limit=SENSITIVITY_IMAGES)
            scan = compress.sensitivity_scan(base, subset, ratios=PRUNE_RATIOS, verbose=False,
                                            plot=str(RESULTS / f"seed_sensitivity_{name}.png"))
            sensitivity.parent.mkdir(parents=True, exist_ok=True)
            sensitivity.write_text(json.dumps(scan, indent=1) + "\n")
        if sensitivity.is_file():  # Li et al. Sec. 3.3: prune the insensitive layers, leave the sensitive ones whole
            scan = json.loads(sensitivity.read_text())
            chosen = {
                r["layer"]: 0.5
                for r in scan
                if r["ratio"] == 0.5 and r["drop"] is not None and r["drop"] <= GUIDED_MAX_DROP
            }
            try:
                guided = compress.prune_l1(base, chosen)
            except ValueError as error:  # each conv could lose 50% alone, but not all of them together
                print(f"skip {name} sensitivity-guided: {error}")
                chosen = {}
            if not chosen:
                notes["guided"] = (f"no conv (or joined set) loses at most {GUIDED_MAX_DROP:g} points alone at 50%, "
                                   "so there is nothing to prune by sensitivity.")
            result = cached(f"{name}/guided50-kd", lambda: copy.deepcopy(guided), partial_train(True),
                            args.stage, args.retrain) if chosen else None
            if result is not None:
                variants.append({"ratio": "guided", "recipe": "fine-tune + distillation", "model": result[0],
                                 "layers": sorted(chosen), "scanned": len({r["layer"] for r in scan}), **result[1]})
        if args.stage == "train":
            continue
        base_top1 = base.pretrained_cfg["metrics"]["top1"]
        rows = measure_against(base, variants, repeats=args.repeats, threads=args.threads)
        sections += pruning_section(
            name, base_top1, rows, json.loads(sensitivity.read_text()) if sensitivity.is_file() else [], args, notes
        )
    return sections or None


def pruning_section(name: str, base_top1: float, rows: list[dict[str, Any]], scan: list[dict[str, Any]],
                    args: argparse.Namespace, notes: dict[Any, str]) -> list[str]:
    lines = [f"## {name}.fmnist ({base_top1:.2f}% top-1)", "",
             f"`lightnets.compress.prune_l1(model, ratio)` on every prunable conv, then {args.epochs:g} epoch(s) of "
             f"fine-tuning on the 60,000 training images (SGD, lr {args.lr:g}, cosine), with or without distillation "
             "from the unpruned model (α 0.5, T 4). Top-1 on the 10,000 test images.", "",
             "| filters removed | recipe | top-1 pruned | top-1 | Δ top-1 " + COST_HEADER,
             "|---:|:---|---:|---:|---:" + "|---:" * 9 + "|",
             f"| 0 (original) | – | – | {base_top1:.2f} | – " + cost_cells(rows[0])]
    for row in rows[1:]:
        removed = (
            f"{row['ratio']:.0%}" if row["ratio"] != "guided" else f"50% of {len(row['layers'])} insensitive convs"
        )
        lines.append(f"| {removed} | {row['recipe']} | {row['top1_pruned']:.2f} | {row['top1']:.2f} "
                     f"| {row['top1'] - base_top1:+.2f} " + cost_cells(row))
    lines += ["", "Conclusions from this table:", ""]
    pruned = [row for row in rows[1:] if row["ratio"] != "guided"]
    guided = next((row for row in rows[1:] if row["ratio"] == "guided"), None)
    for ratio in PRUNE_RATIOS:
        if ratio in notes:
            lines.append(f"* {ratio:.0%} of filters removed: {notes[ratio]}")
        pair = {r["recipe"]: r for r in pruned if r["ratio"] == ratio}
        if len(pair) == 2:
            gain = pair["fine-tune + distillation"]["top1"] - pair["fine-tune"]["top1"]
            lines.append(
                f"* {ratio:.0%} of filters removed: {1 / pair['fine-tune']['mac_ratio']:.2f}× fewer MACs, "
                f"{pair['fine-tune']['top1_pruned']:.2f}% right after pruning, "
                f"{max(pair['fine-tune']['top1'], pair['fine-tune + distillation']['top1']) - base_top1:+.2f} points "
                f"after the best fine-tune; distillation {gain:+.2f} points vs. plain fine-tuning."
            )
    if "guided" in notes:
        lines.append(f"* Sensitivity-guided (Li et al. Sec. 3.3): {notes['guided']}")
    if guided:
        uniform = min((r for r in pruned if r["recipe"] == guided["recipe"]), default=None,
                      key=lambda r: abs(r["mac_ratio"] - guided["mac_ratio"]))
        versus = (
            f"; uniform {uniform['ratio']:.0%} with the same recipe: {1 / uniform['mac_ratio']:.2f}× fewer MACs at "
            f"{uniform['top1'] - base_top1:+.2f} points"
            if uniform
            else ""
        )
        lines.append(
            f"* Sensitivity-guided (Li et al. Sec. 3.3): 50% of the filters of the {len(guided['layers'])} of "
            f"{guided['scanned']} scanned convs (or joined sets) that lose at most {GUIDED_MAX_DROP:g} points alone "
            f"at 50%, the rest kept whole: {1 / guided['mac_ratio']:.2f}× fewer MACs at "
            f"{guided['top1'] - base_top1:+.2f} points{versus}."
        )
    for b in (1, 100):
        ratios = [r[f"speedup_per_mac_reduction_bs{b}"] for r in pruned]
        if ratios:
            by_ratio = ", ".join(
                f"{ratio:.0%}: "
                f"{statistics.mean(r[f'speedup_per_mac_reduction_bs{b}'] for r in pruned if r['ratio'] == ratio):.2f}"
                for ratio in PRUNE_RATIOS
                if any(r["ratio"] == ratio for r in pruned)
            )
            lines.append(f"* Batch {b}: speedup ÷ MAC reduction {min(ratios):.2f}–{max(ratios):.2f} "
                         f"(mean by ratio, {by_ratio}): "
                         + ("time falls less than MACs do." if statistics.median(ratios) < 0.85
                            else "time falls about as MACs do." if statistics.median(ratios) <= 1.15
                            else "time falls faster than MACs do."))
    if scan:
        worst = max((r for r in scan if r["ratio"] == 0.5 and r["drop"] is not None), key=lambda r: r["drop"])
        safest = min((r for r in scan if r["ratio"] == 0.5 and r["drop"] is not None), key=lambda r: r["drop"])
        alone = len({r["layer"] for r in scan if r["drop"] is None})
        lines += ["",
                  "Sensitivity (Li et al. Sec. 3.3; one layer pruned alone, no fine-tuning, first "
                  f"{SENSITIVITY_IMAGES:,} test images; plot: `results/seed_sensitivity_{name}.png`): at 50% the most "
                  f"sensitive layer is `{worst['layer']}` ({worst['drop']:.2f} points lost), the least "
                  f"`{safest['layer']}` ({safest['drop']:.2f}).", "",
                  "| layer | " + " | ".join(f"drop at {r:.0%}" for r in PRUNE_RATIOS) + " |",
                  "|:---|" + "---:|" * len(PRUNE_RATIOS)]
        for layer in dict.fromkeys(r["layer"] for r in scan):
            mine = [r for r in scan if r["layer"] == layer]
            drops = {r["ratio"]: r["drop"] for r in mine}
            joined = mine[0].get("joined", [])
            label = f"`{layer}` + {len(joined)} convs joined by residual adds" if joined else f"`{layer}`"
            lines.append(f"| {label} | " + " | ".join(pct(drops[r]) for r in PRUNE_RATIOS) + " |")
        for joined in (r for r in scan if r.get("joined") and r["ratio"] == 0.25):
            others = [
                r["drop"] for r in scan if r["ratio"] == 0.5 and r["layer"] != joined["layer"] and r["drop"] is not None
            ]
            lines += [
                "",
                f"Residual adds tie `{joined['layer']}` and {len(joined['joined'])} "
                f"other convs into one set of channels, pruned together: alone it costs {pct(joined['drop'])} points "
                f"at 25%, while no other conv alone costs more than {max(others):.2f} points at 50%: the set is where "
                "this model is sensitive.",
            ]
        if alone:
            lines += [
                "",
                f"–: the layer cannot lose that fraction alone (a grouped conv it feeds would keep zero or "
                f"unequal channels per group); {alone} layer(s) affected. Pruning the whole model at one ratio, "
                "`prune_l1` keeps uneven-group layers whole (with a warning) "
                "and refuses a ratio that would empty a group.",
            ]
    return lines + [""]


# ---------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("conversion", "sepcnn", "pruning"), required=True)
    parser.add_argument("--stage", choices=("train", "measure", "all"), default="all")
    parser.add_argument("--epochs", type=float, default=2.0, help="fine-tuning epochs per variant")
    parser.add_argument("--lr", type=float, default=0.01, help="peak fine-tuning learning rate")
    parser.add_argument(
        "--device", default="cpu", help="where the train stage fine-tunes (e.g. cuda); measuring is on the CPU"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per model and batch size")
    parser.add_argument("--retrain", action="store_true", help="fine-tune again even if runs/seed_experiment has it")
    parser.add_argument("--model", action="append", choices=PRUNE_MODELS,
                        help="pruning part: only this model (repeatable; default: every one with weights)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = Data()
    command = (f"--part {args.part}" + (f" --epochs {args.epochs:g}" if args.epochs != 2.0 else "")
               + "".join(f" --model {name}" for name in args.model or ()))
    if args.part == "pruning":
        body = run_pruning(args, data)
        output, title = RESULTS / "seed_pruning.md", "Seed experiment: L1 filter pruning"
    else:
        body = run_conversion(args, data, args.part)
        output = RESULTS / f"seed_{args.part}.md"
        title = "Seed experiment: conversion to depthwise-separable convs"
    if body is None:
        return 0
    output.write_text("\n".join(header(title, command, args) + body))
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
