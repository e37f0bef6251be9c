"""Pruning criteria compared at equal cost (issue #31): L1, APoZ, He et al.'s reconstruction and network slimming.

For each model (Fashion-MNIST weights) and each criterion of :func:`lightnets.prune`, the model is pruned to
each MAC budget (2× and 4× fewer MACs than the original: the ratio is found by bisection on the counted MACs,
per criterion, since slimming's global threshold spreads the ratio unevenly), then fine-tuned the same way
(a) alone, (b) with soft targets from the unpruned model, (c) with soft targets and FitNets hints from it,
(d) with soft targets and attention transfer from it. L1, APoZ and reconstruction prune the shipped weight
``NAME.fmnist``; slimming prunes ``NAME.fmnist_slim``, the same recipe trained with an L1 penalty on the
BatchNorm scales (``--bn-l1``, as Liu et al. prescribe). The teacher is the unpruned weight a model was
pruned from: a hint adapter fitted from a student to another network's maps leaves most of them unexplained
(mobilenet_v1_050 pruned from NAME.fmnist_slim: 0.41-0.67 of NAME.fmnist's map energy per pair, against
0.00-0.003 of NAME.fmnist_slim's), and those hint terms then took the fine-tune to 12-42% top-1.
Every row gives top-1 after pruning and after fine-tuning, params, MACs and latency at batch 1 and 100.

Two stages, as in seed_experiment.py: ``train`` (prunes and fine-tunes, cached under runs/criteria_experiment/;
CPU-heavy) and ``measure`` (latency through lightnets.evaluation on a quiet machine; writes the Markdown and
the plot). What it shares with seed_experiment.py is :mod:`lightnets.evaluation.experiments`; it needs an
installed lightnets (``pip install -e .``):

    python scripts/criteria_experiment.py --stage train --train-images 10000
    python scripts/criteria_experiment.py --stage measure --train-images 10000   # → results/criteria.md, .png
"""
from __future__ import annotations

import argparse
import copy
import statistics
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from lightnets import compress
from lightnets.evaluation.experiments import (CALIBRATION_IMAGES, COST_HEADER, Data, cached, cost_cells, header,
                                              measure_against, weights)
from lightnets.profiler import count_macs

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "criteria_experiment"
RESULTS = ROOT / "results"
MODELS = ("vgg11_bn", "mobilenet_v1_050", "shufflenet_g3_050")
CRITERIA = ("l1", "apoz", "reconstruction", "slimming")
BUDGETS = (2, 4)  # MAC reduction factors
TUNINGS = {"plain": "fine-tuned", "soft": "+ soft targets", "soft+hint": "+ soft targets + hints",
           "soft+attention": "+ soft targets + attention"}
FEATURE_LOSSES = {"soft+hint": "hint", "soft+attention": "attention"}
START_TAGS = {"slimming": "fmnist_slim"}  # the weight a criterion prunes, when it is not NAME.fmnist
BUDGET_TOLERANCE = 0.02  # a pruned model's MACs are within 2% of original / budget


def macs_of(model: nn.Module) -> int:
    return count_macs(model, (model.in_chans, model.img_size, model.img_size))


_RATIOS: dict[tuple[int, str, int], tuple[nn.Module, float]] = {}


def matched_ratio(base: nn.Module, criterion: str, budget: int) -> float:
    """The uniform (or, for slimming, global) ratio whose pruned model has ``1/budget`` of ``base``'s MACs,
    by bisection. L1, APoZ and reconstruction remove the same number of filters per conv at a ratio (only
    which ones differs), so L1 finds their ratio, once per model and budget; slimming's global threshold needs
    its own."""
    search = "slimming" if criterion == "slimming" else "l1"
    key = (id(base), search, budget)
    if key not in _RATIOS:  # the model is kept beside its ratio: its id names no other model meanwhile
        _RATIOS[key] = (base, _bisect(base, search, budget))
    return _RATIOS[key][1]


def _bisect(base: nn.Module, search: str, budget: int) -> float:
    target = macs_of(base) / budget
    low, high = 0.0, 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convs the pruner skips are listed once, by the real prune
        for _ in range(14):
            middle = (low + high) / 2
            if macs_of(compress.prune(base, middle, search)) > target:
                low = middle
            else:
                high = middle
    return round(high, 4)


def run(args: argparse.Namespace, data: Any, name: str) -> Optional[list[dict[str, Any]]]:
    base = weights(name)
    if base is None:
        return None
    train_set = data.train if args.train_images >= len(data.train.labels) else _subset(data.train, args.train_images)
    calibration = data.calibration(base, CALIBRATION_IMAGES)
    rows: list[dict[str, Any]] = []
    start_weights = {"fmnist": base}
    for criterion in args.criterion or CRITERIA:
        tag = START_TAGS.get(criterion, "fmnist")
        if tag not in start_weights:
            start_weights[tag] = weights(name, tag)
        start = start_weights[tag]
        if start is None:
            continue
        teacher = copy.deepcopy(start).to(args.device)
        for budget in BUDGETS:
            ratio = matched_ratio(start, criterion, budget)
            structure = "slimming" if criterion == "slimming" else "l1"

            def build(ratio=ratio, structure=structure, start=start) -> nn.Module:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return compress.prune(start, ratio, structure)  # the shape; the weights come from the cache

            def prune(model: nn.Module, ratio=ratio, criterion=criterion, start=start) -> dict[str, Any]:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    pruned = compress.prune(start, ratio, criterion, calibration=calibration)
                model.load_state_dict(pruned.state_dict())
                return {"ratio": ratio,
                        "skipped": sorted({str(w.message).split(": skipped ")[-1].split(":")[0] for w in caught}),
                        "top1_pruned": compress.top1_accuracy(model, data.test)}

            key = f"{name}/{criterion}-{budget}x" + ("" if tag == "fmnist" else f"-from-{tag}")
            pruned = cached(f"{key}-pruned", build, prune, args.stage, args.retrain, cache=CACHE)
            if pruned is None:
                continue
            for tuning in args.tuning or TUNINGS:
                def finetune(model: nn.Module, tuning=tuning, teacher=teacher) -> dict[str, Any]:
                    distil = teacher if tuning != "plain" else None
                    feature_loss = FEATURE_LOSSES.get(tuning)
                    record = compress.finetune(model.to(args.device), train_set, epochs=args.epochs, lr=args.lr,
                                               teacher=distil, feature_teacher=teacher if feature_loss else None,
                                               feature_loss=feature_loss or "hint")
                    record["top1"] = compress.top1_accuracy(model.cpu(), data.test)
                    return record

                # another fine-tune, another entry (no dot: the cache adds its suffixes with Path.with_suffix)
                settings = f"e{args.epochs:g}-n{args.train_images}-lr{args.lr:g}".replace(".", "p")
                result = cached(f"{key}-{tuning}-{settings}", lambda: copy.deepcopy(pruned[0]), finetune, args.stage,
                                args.retrain, cache=CACHE)
                if result is not None:
                    rows.append({"model": result[0], "criterion": criterion, "start": tag,
                                 "start_top1": start.pretrained_cfg["metrics"]["top1"], "budget": budget,
                                 "tuning": tuning, **pruned[1],
                                 **{k: v for k, v in result[1].items() if k != "train_s"}})
    return [{"base": base}] + rows


def _subset(dataset: Any, count: int) -> Any:
    """The first ``count`` images of an in-memory dataset, in lightnets.data's form."""
    subset = copy.copy(dataset)
    subset.images, subset.labels = dataset.images[:count], dataset.labels[:count]
    return subset


def table(name: str, base: nn.Module, rows: list[dict[str, Any]]) -> list[str]:
    base_top1 = base.pretrained_cfg["metrics"]["top1"]
    others = sorted({(row["criterion"], row["start"], row["start_top1"]) for row in rows if row["start"] != "fmnist"})
    notes = "".join(f"; {criterion} prunes {name}.{tag} ({top1:.2f}%)" for criterion, tag, top1 in others)
    lines = [f"## {name}.fmnist ({base_top1:.2f}% top-1, {macs_of(base) / 1e6:.2f} MMACs{notes})", "",
             "| criterion | budget | ratio | fine-tune | top-1 pruned | top-1 | Δ top-1 " + COST_HEADER,
             "|:---|---:|---:|:---|---:|---:|---:" + "|---:" * 9 + "|"]
    for row in rows:
        lines.append(
            f"| {row['criterion']} | {row['budget']}× | {row['ratio']:.3f} | {TUNINGS[row['tuning']]} "
            f"| {row['top1_pruned']:.2f} | {row['top1']:.2f} | {row['top1'] - base_top1:+.2f} " + cost_cells(row)
        )
    return lines


def best_top1(rows: list[dict[str, Any]], budget: int) -> dict[str, float]:
    """criterion -> its best top-1 over the fine-tunes at ``budget``."""
    best: dict[str, float] = {}
    for row in rows:
        if row["budget"] == budget:
            best[row["criterion"]] = max(best.get(row["criterion"], -1.0), row["top1"])
    return best


def conclusions(results: dict[str, tuple[nn.Module, list[dict[str, Any]]]]) -> list[str]:
    """What the rows support, each statement computed from them."""
    out = []
    for name, (base, rows) in results.items():
        for budget in BUDGETS:
            best = best_top1(rows, budget)
            if not best:
                continue
            ranking = sorted(best, key=best.get, reverse=True)
            out.append(f"* {name}, {budget}× fewer MACs (best fine-tune of each): "
                       + ", ".join(f"{c} {best[c]:.2f}%" for c in ranking)
                       + (f"; L1 is {best[ranking[0]] - best['l1']:.2f} points behind {ranking[0]}"
                          if ranking[0] != "l1" and "l1" in best else "; L1 is best" if ranking[0] == "l1" else "")
                       + ".")
        out += start_lines(name, base, rows)
        for tuning in TUNINGS:
            for what, keep in (("", lambda row: row["start"] == "fmnist"), (" (slimming's sparsity-trained start)",
                                                                            lambda row: row["start"] != "fmnist")):
                gains = [r["top1"] - p["top1"] for r in rows for p in rows
                         if r["tuning"] == tuning and p["tuning"] == "plain"
                         and (r["criterion"], r["budget"]) == (p["criterion"], p["budget"]) and keep(r)]
                if tuning != "plain" and gains:
                    out.append(
                        f"* {name}{what}: {TUNINGS[tuning]} vs fine-tuned alone: {statistics.mean(gains):+.2f} points "
                        f"on average ({min(gains):+.2f} to {max(gains):+.2f})."
                    )
        for batch in (1, 100):
            ratios = [r[f"speedup_per_mac_reduction_bs{batch}"] for r in rows if r["tuning"] == "plain"]
            if ratios:
                out.append(f"* {name}, batch {batch}: speedup ÷ MAC reduction {statistics.median(ratios):.2f} (median; "
                           f"{min(ratios):.2f}–{max(ratios):.2f}).")
    out += claims(results)
    return out


def start_lines(name: str, base: nn.Module, rows: list[dict[str, Any]]) -> list[str]:
    """What a criterion that prunes another weight starts from, and what pruning alone costs it against L1."""
    out = []
    for criterion in dict.fromkeys(row["criterion"] for row in rows if row["start"] != "fmnist"):
        own = [row for row in rows if row["criterion"] == criterion and row["tuning"] == rows[0]["tuning"]]
        l1 = {
            row["budget"]: row["top1_pruned"]
            for row in rows
            if row["criterion"] == "l1" and row["tuning"] == rows[0]["tuning"]
        }
        start = own[0]["start_top1"]
        out.append(f"* {name}: {criterion} prunes {name}.{own[0]['start']}, {start:.2f}% before pruning "
                   f"({start - base.pretrained_cfg['metrics']['top1']:+.2f} against {name}.fmnist: the price of "
                   "training with --bn-l1); right after pruning, before any fine-tune: "
                   + ", ".join(f"{row['top1_pruned']:.2f}% at {row['budget']}×"
                               + (f" (L1 from {name}.fmnist: {l1[row['budget']]:.2f}%)" if row["budget"] in l1 else "")
                               for row in own) + ".")
    return out


def claims(results: dict[str, tuple[nn.Module, list[dict[str, Any]]]]) -> list[str]:
    """The write-up's two claims against the rows: L1 works on VGG-like networks and barely speeds up residual
    ones (ShuffleNet's units add a shortcut), and L1 may not be the best criterion."""
    out = []
    l1_ratios = {
        name: [r["speedup_per_mac_reduction_bs1"] for r in rows if r["criterion"] == "l1" and r["tuning"] == "plain"]
        for name, (_, rows) in results.items()
    }
    speed = {name: statistics.median(ratios) for name, ratios in l1_ratios.items() if ratios}
    if "vgg11_bn" in speed and "shufflenet_g3_050" in speed:
        vgg, residual = speed["vgg11_bn"], speed["shufflenet_g3_050"]
        verdict = (
            "supports" if residual < vgg - 0.2 else "does not support" if residual >= vgg - 0.05 else "barely supports"
        )
        out.append(
            f"* Claim 1, speed: L1-pruned, batch 1, speedup ÷ MAC reduction is {vgg:.2f} on VGG and {residual:.2f} on "
            f"the residual ShuffleNet (MobileNet: {speed.get('mobilenet_v1_050', float('nan')):.2f}); this {verdict} "
            "the claim that pruning speeds up residual networks less than VGG-like ones."
        )
    gaps = []
    for name, (_, rows) in results.items():
        for budget in BUDGETS:
            best = best_top1(rows, budget)
            others = {c: v for c, v in best.items() if c != "l1"}
            if "l1" in best and others:
                winner = max(others, key=others.get)
                gaps.append((name, budget, winner, round(others[winner] - best["l1"], 2)))  # as the tables print them
    if gaps:
        beaten = [g for g in gaps if g[3] > 0.1]
        out.append(f"* Claim 2, criterion: another criterion beats L1 by more than 0.1 point in {len(beaten)} of "
                   f"{len(gaps)} model × budget cells ("
                   + "; ".join(f"{n} {b}×: {w} {d:+.2f}" for n, b, w, d in gaps) + ")"
                   + (", so the data supports the suspicion that L1 is not the best criterion."
                      if len(beaten) > len(gaps) / 2
                      else ", so the data does not support the suspicion that L1 is not the best criterion."))
    return out


def plot(results: dict[str, tuple[nn.Module, list[dict[str, Any]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for axis, (name, (base, rows)) in zip(axes[0], results.items()):
        for criterion in CRITERIA:
            for tuning, style in (("plain", "-"), ("soft+hint", "--"), ("soft+attention", ":")):
                points = sorted(
                    (r["macs"], r["top1"]) for r in rows if r["criterion"] == criterion and r["tuning"] == tuning
                )
                if points:
                    axis.plot([p[0] / 1e6 for p in points], [p[1] for p in points], style, marker="o",
                              label=f"{criterion}, {TUNINGS[tuning]}")
        axis.axhline(base.pretrained_cfg["metrics"]["top1"], color="grey", linewidth=0.8)
        axis.set(title=f"{name}.fmnist", xlabel="MMACs", ylabel="top-1 (%)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("train", "measure", "all"), default="all")
    parser.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs per variant")
    parser.add_argument("--train-images", type=int, default=60000, help="fine-tune on the first N training images")
    parser.add_argument("--lr", type=float, default=0.01, help="peak fine-tuning learning rate")
    parser.add_argument("--device", default="cpu", help="where the train stage fine-tunes; measuring is on the CPU")
    parser.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per model and batch size")
    parser.add_argument("--retrain", action="store_true", help="prune and fine-tune again even if cached")
    parser.add_argument("--model", action="append", choices=MODELS, help="only this model (repeatable)")
    parser.add_argument("--criterion", action="append", choices=CRITERIA, help="only this criterion (repeatable)")
    parser.add_argument("--tuning", action="append", choices=tuple(TUNINGS), help="only this fine-tune (repeatable)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = Data()
    results = {}
    for name in args.model or MODELS:
        found = run(args, data, name)
        if found is None or args.stage == "train" or len(found) == 1:
            continue
        base, rows = found[0]["base"], found[1:]
        measured = measure_against(base, rows, repeats=args.repeats, threads=args.threads)
        results[name] = (base, [{**row, **m} for row, m in zip(rows, measured[1:])])
    if not results:
        return 0
    command = " ".join([f"--epochs {args.epochs:g}", f"--train-images {args.train_images}"]
                       + [f"--model {m}" for m in args.model or ()] + [f"--criterion {c}" for c in args.criterion or ()]
                       + [f"--tuning {t}" for t in args.tuning or ()])
    lines = header("Pruning criteria at equal MAC budgets", f"python scripts/criteria_experiment.py {command}",
                   repeats=args.repeats, threads=args.threads)
    lines += [
        f"Each model pruned by each criterion of `lightnets.prune` to 2× and 4× fewer MACs (per-criterion ratio "
        f"found by bisection), calibration: the first {CALIBRATION_IMAGES} training images; then "
        f"{args.epochs:g} epoch(s) on the first {args.train_images:,} training images (SGD, lr {args.lr:g}, cosine, "
        "crop + flip, label smoothing 0.1), alone, with soft targets from the unpruned model (α 0.5, T 4), with "
        "soft targets plus FitNets hints (1×1 adapters, weight 1) and with soft targets plus attention transfer "
        "(weight 50). Top-1 on the 10,000 test images; Δ top-1 against NAME.fmnist. L1, APoZ and reconstruction "
        "prune the shipped NAME.fmnist; slimming prunes NAME.fmnist_slim, the same recipe trained with "
        "`--bn-l1 1e-3` (scripts/train_fmnist_zoo.sh), by its smallest |γ| globally. The teacher is the "
        "unpruned weight each model was pruned from.",
        "",
    ]
    for name, (base, rows) in results.items():
        lines += table(name, base, rows) + [""]
    lines += ["Conclusions from these tables:", "", *conclusions(results), ""]  # the plot: criteria.png beside it
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "criteria.md").write_text("\n".join(lines))
    plot(results, RESULTS / "criteria.png")
    print(f"wrote {RESULTS / 'criteria.md'} and criteria.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
