"""One run of ``lightnets-train`` once its arguments are checked: the model, optimizer and schedule, resume
from ``<work-dir>/last.pth``, the epochs (each one :func:`lightnets.training.fit` call and a test pass), the
checkpoint and log line after each, and the ``--output`` folder at the end.

A checkpoint carries the run's settings (:data:`_RUN_SETTINGS`): ``--resume`` refuses one made with other
settings, and the log is reconciled with it (:func:`_reconcile_log`), so a run killed at any point resumes
to the same weights as a run never stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..training import FeatureDistillation, FeatureStudent, FitConfig, Runtime, autocast_dtype, prepare_for, channel_stats, evaluate, fit, in_memory, lr_lambda, param_groups
from . import train as cli

__all__ = ["fit_run"]

# Settings that define a run: resuming with another value would silently train something else.
_RUN_SETTINGS = ("model", "model_arg", "dataset", "limit", "epochs", "batch_size", "opt", "lr", "momentum", "weight_decay",
                 "layer_decay", "sched", "warmup_epochs", "label_smoothing", "pad", "no_flip", "reprob", "seed", "finetune_from",
                 "teacher", "distill_alpha", "distill_T", "mixup", "cutmix", "mix_prob", "bn_l1", "distill_features",
                 "feature_weight", "feature_pairs")


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in _RUN_SETTINGS}


def _check_same_run(args: argparse.Namespace, saved: dict[str, Any], work_dir: Path) -> None:
    """Refuse to resume a checkpoint made with other settings (another --epochs would change the schedule)."""
    changed = [key for key in _RUN_SETTINGS if key in saved and saved[key] != getattr(args, key)]
    if changed:
        differences = ", ".join(f"--{key.replace('_', '-')} {saved[key]!r} then, {getattr(args, key)!r} now" for key in changed)
        raise ValueError(f"--resume: {work_dir} holds a run with other settings ({differences}); "
                         f"resume it with the same settings or start this one in another --work-dir")


def _reconcile_log(log_path: Path, epoch: int, record: Optional[dict[str, Any]]) -> None:
    """Make the log end at the checkpoint's epoch: a run killed between writing its checkpoint and its
    log line (or in the middle of that line) gets the line back, as the checkpoint carries it; lines past
    the checkpoint are dropped."""
    before = log_path.read_text() if log_path.is_file() else ""
    lines = []
    for text in before.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # cut off by a kill
            continue
        if isinstance(line, dict) and line.get("epoch", epoch + 1) <= epoch:
            lines.append(line)
    if record is not None and (not lines or lines[-1]["epoch"] < epoch):
        lines.append(record)
    after = "".join(json.dumps(line) + "\n" for line in lines)
    if after != before:
        log_path.write_text(after)


def fit_run(args: argparse.Namespace, argv: list[str], runtime: Runtime, train_set: Any, test_set: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model, optimizer and schedule, resume, then train epoch by epoch; write --output."""
    from ..publish import check_output_folder, weight_name

    train_images, train_labels = in_memory(train_set)
    test_images, test_labels = in_memory(test_set)
    _, in_chans, img_size, _ = train_images.shape
    classes = list(train_set.classes)
    model, model_args = cli.build_model(args, len(classes), in_chans, img_size)
    cfg = model.pretrained_cfg
    if args.output:  # refused now rather than after the whole run (save_pretrained checks again)
        check_output_folder(Path(args.output), weight_name(cfg.get("architecture"), args.tag), args.overwrite)
    if args.finetune_from and len(cfg.get("mean", ())) == model.in_chans:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])  # the features were learnt on this normalisation
    else:
        mean, std = getattr(train_set, "mean", None), getattr(train_set, "std", None)
        if mean is None:
            mean, std = channel_stats(train_images)
    cfg.update(mean=tuple(mean), std=tuple(std))
    # The eval transform the weights are tested with: the test images as they are in memory, i.e. whole
    # (crop_pct 1.0) for Fashion-MNIST / CIFAR-10, or as an image folder was decoded (its crop and filter).
    cfg.update(crop_pct=getattr(test_set, "crop_pct", 1.0), interpolation=getattr(test_set, "interpolation", "bilinear"))

    memory_format = torch.preserve_format if args.no_channels_last else torch.channels_last
    model = model.to(runtime.device, memory_format=memory_format)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()
    teacher_names = cli.teacher_sources(args.teacher) if args.teacher else []
    teachers = []
    for source in teacher_names:
        teacher = cli.build_teacher(source).to(runtime.device, memory_format=memory_format).eval()
        if teacher.num_classes != len(classes):
            raise ValueError(f"--teacher {source} predicts {teacher.num_classes} classes, the dataset has {len(classes)}")
        teachers.append(teacher)

    features = None
    if args.distill_features:
        features = FeatureDistillation(model, teachers[0], args.distill_features,
                                       cli.feature_pairs(args.feature_pairs) if args.feature_pairs else None,
                                       args.feature_weight).to(runtime.device, memory_format=memory_format)
        if args.finetune_from:  # a trained student's adapters start at their least-squares fit (a resume loads them)
            first = train_images[:256].to(runtime.device)
            features.fit_adapters(model, prepare_for(model, memory_format)(first), prepare_for(teachers[0], memory_format)(first))

    amp_dtype = autocast_dtype(runtime.device, args.amp)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=amp_dtype == torch.float16)
    net = model if features is None else FeatureStudent(model, features)
    if runtime.world_size > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if args.compile:  # only the training forward/backward: `model` (saved, evaluated) stays the eager module
        net = torch.compile(net)
    groups = param_groups(model, args.weight_decay, args.lr, args.layer_decay)
    if features is not None:  # the 1×1 adapters of the hints train with the student, at the head's rate
        groups.append({"params": list(features.parameters()), "weight_decay": args.weight_decay, "lr": args.lr})
    if args.opt == "sgd":
        optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr)
    sampler = torch.utils.data.DistributedSampler(range(len(train_labels)), num_replicas=runtime.world_size, rank=runtime.rank,
                                                  shuffle=True, seed=args.seed, drop_last=True)
    local_batch = args.batch_size // runtime.world_size
    steps_per_epoch = max(1, len(sampler) // local_batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        args.sched, args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch)))
    config = FitConfig(batch_size=local_batch, pad=args.pad, flip=not args.no_flip, erase_prob=args.reprob, mixup=args.mixup,
                       cutmix=args.cutmix, mix_prob=args.mix_prob, label_smoothing=args.label_smoothing,
                       distill_alpha=args.distill_alpha, temperature=args.distill_T, amp_dtype=amp_dtype,
                       memory_format=memory_format, progress=not args.no_progress, hint=f"lower --lr (now {args.lr})",
                       bn_l1=args.bn_l1)

    work_dir = Path(args.work_dir or f"runs/{(args.model or args.finetune_from).replace('/', '_')}-{args.dataset}-s{args.seed}")
    checkpoint_path = work_dir / "last.pth"
    start_epoch = 0
    sources: Optional[dict[str, str]] = None  # sha256 of the --finetune-from / --teacher weights when the run first started
    if args.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=runtime.device, weights_only=True)
        # The checkpoint carries its settings; older ones only have the args.json their run began with.
        saved_args = work_dir / "args.json"
        _check_same_run(args, state.get("settings") or (json.loads(saved_args.read_text()) if saved_args.is_file() else {}), work_dir)
        model.load_state_dict(state["model"])
        if features is not None:
            features.load_state_dict(state["feature_adapters"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, sources = state["epoch"], state.get("sources")
        if runtime.is_main:
            _reconcile_log(work_dir / "log.jsonl", start_epoch, state.get("record"))
            print(f"resumed from {checkpoint_path} after epoch {start_epoch}")
    if sources is None:
        sources = {"finetuned_from": cli._weight_sha256(args.finetune_from)} if args.finetune_from else {}
        if teacher_names:  # one sha256 per teacher, comma-separated in --teacher's order
            sources["teacher"] = ",".join(map(cli._weight_sha256, teacher_names))
    if runtime.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")

    record: dict[str, Any] = {"epoch": start_epoch}
    for epoch in range(start_epoch, args.epochs):
        # Every random choice of an epoch follows from (seed, epoch, rank): a resumed run replays it exactly.
        epoch_seed = args.seed * 100_003 + epoch * 1_009 + runtime.rank
        torch.manual_seed(epoch_seed)
        sampler.set_epoch(epoch)
        stats = fit(model, train_images, train_labels, optimizer, config, order=torch.tensor(list(sampler)),
                    steps=steps_per_epoch, generator=torch.Generator().manual_seed(epoch_seed), scheduler=scheduler,
                    scaler=scaler, teachers=teachers, features=features, net=net, runtime=runtime,
                    desc=f"epoch {epoch + 1}/{args.epochs}", where=f"epoch {epoch + 1}")
        runtime.sync_buffers(model)
        test = evaluate(model, test_images, test_labels, batch_size=local_batch * 2, runtime=runtime,
                        amp_dtype=amp_dtype, memory_format=memory_format)
        record = {"epoch": epoch + 1, "lr": round(max(scheduler.get_last_lr()), 6),  # the head's, with --layer-decay
                  "train_loss": round(stats.loss, 4), "train_top1": round(stats.top1, 2),
                  "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                  "epoch_s": round(stats.seconds, 2), "img_per_s": round(stats.img_per_s, 1)}
        if runtime.is_main:
            print(json.dumps(record), flush=True)
            # Written to a temporary file and renamed: a run killed mid-write keeps the previous epoch's checkpoint.
            partial = checkpoint_path.with_name(checkpoint_path.name + ".part")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(), "epoch": epoch + 1, "record": record,
                        "settings": _run_settings(args), "sources": sources,
                        **({"feature_adapters": features.state_dict()} if features is not None else {})}, partial)
            os.replace(partial, checkpoint_path)
            with open(work_dir / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")

    if args.output:
        runtime.sync_buffers(model)
        model = model.to(memory_format=torch.contiguous_format)
        if args.fp16_weights:  # measure what is shipped: the weights rounded to float16
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        # The recorded metrics are the float32 model's, as a user runs it (training may have used bf16 autocast).
        test = evaluate(model, test_images, test_labels, batch_size=local_batch * 2, runtime=runtime, memory_format=memory_format)
        record.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"])
        if runtime.is_main:
            _publish(args, argv, model, model_args, classes, test, sources, runtime, amp_dtype, len(train_labels))
    return model, record


def _publish(args: argparse.Namespace, argv: list[str], model: nn.Module, model_args: dict[str, Any], classes: list[str],
             test: dict[str, Any], sources: dict[str, str], runtime: Runtime, amp_dtype: Any, train_images: int) -> None:
    """Write --output: the weights, with the measured test metrics and how they were trained in the card."""
    from ..publish import save_pretrained

    metrics = {"top1": test["top1"], "top5": test["top5"], "dataset": args.dataset, "split": "test", "images": test["count"]}
    training = {"dataset": args.dataset, "command": "python -m lightnets.train " + shlex.join(argv),
                "epochs": args.epochs, "seed": args.seed, "processes": runtime.world_size, "device": runtime.device.type,
                "precision": f"{str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype is not None else "float32",
                "train_images": train_images}
    if args.finetune_from:
        training.update(finetuned_from=args.finetune_from, finetuned_from_sha256=sources["finetuned_from"])
    if args.teacher:
        training.update(teacher=args.teacher, teacher_sha256=sources["teacher"])
    if args.distill_features:
        training.update(distill_features=args.distill_features)
    folder = save_pretrained(model.cpu(), args.output, metrics=metrics, tag=args.tag, model_args=model_args,
                             label_names=classes, training=training, fp16=args.fp16_weights, overwrite=args.overwrite)
    print(f"wrote {folder} (test top-1 {test['top1']}%)")

