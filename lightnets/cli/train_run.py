"""One ``lightnets-train`` run from its :class:`~lightnets.cli.train_config.TrainRunConfig`: the runtime (device,
processes, precision), the data (:mod:`lightnets.cli.train_data`: in memory or streamed), the model and its
teachers, optimizer and schedule, resume from ``<work-dir>/last.pth``, the epochs (each one
:func:`lightnets.training.fit` call and a validation pass — or a test pass when there is no validation split), the
checkpoint and log line after each (:mod:`lightnets.cli.train_checkpoint`), and the ``--output`` folder at the end:
the epoch of best validation top-1 (the last epoch without validation), with the test split evaluated once.

The command line (:mod:`lightnets.cli.train`) builds the config; nothing here reads argparse.
"""
from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..data import BadImageLog
from ..training import (FeatureDistillation, FeatureStudent, FileAugment, FitConfig, Runtime, autocast_dtype,
                        channel_stats, default_workers, evaluate, fit, lr_lambda, main_process_first, param_groups,
                        peak_rss_mb, prepare_for, setup_runtime)
from .train_checkpoint import (CHECKPOINT_NAME, LOG_NAME, append_log, check_same_run, read_checkpoint, reconcile_log,
                               restore, save_arguments, save_checkpoint, saved_settings)
from .train_config import TrainRunConfig
from .train_data import Feed, feeds_for, file_channel_stats, input_shape, load_run_data
from .train_model import build_model, build_teacher, feature_pairs, teacher_sources, weight_sha256

__all__ = ["run_training"]


def run_training(
    config: TrainRunConfig, train_set: Any = None, test_set: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train as ``config`` says; returns the model and the last epoch's record (test metrics included).

    ``train_set`` / ``test_set`` replace ``config.dataset`` with datasets in lightnets.data's in-memory form
    (``--val-split`` then carves its validation split from ``train_set``).
    The process-wide switches a run sets (deterministic kernels, cuDNN benchmark) are restored when it ends,
    as :func:`lightnets.cli.train.train` may be called from a larger program.
    """
    runtime = setup_runtime(config.device)
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        if config.batch_size % runtime.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} must be divisible by the number of processes ({runtime.world_size})"
            )
        torch.manual_seed(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not config.deterministic
        with main_process_first(runtime):  # one process downloads; the others then read its files
            data = load_run_data(config, train_set, test_set)
        return _fit(config, runtime, data)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if runtime.world_size > 1:
            dist.destroy_process_group()


def _freeze(model: nn.Module, config: TrainRunConfig) -> None:
    """--freeze-backbone: only the classifier trains; --freeze-bn: no BatchNorm parameter trains (their statistics
    stay as loaded too, through ``FitConfig.frozen_bn_eval``)."""
    if config.freeze_backbone:
        head = {id(p) for p in model.get_classifier().parameters()}
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in head)
    if config.freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.requires_grad_(False)


def _evaluate(model: nn.Module, feed: Feed, batch_size: int, runtime: Runtime, **kwargs: Any) -> dict[str, Any]:
    return evaluate(model, feed.images, feed.labels, batch_size=batch_size, runtime=runtime, **kwargs)


def _fit(config: TrainRunConfig, runtime: Runtime, data: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model, optimizer and schedule, resume, then train epoch by epoch; write --output."""
    from ..publish import check_output_folder, weight_name

    in_chans, img_size = input_shape(config, data)
    classes = data.classes
    model, model_args = build_model(config, len(classes), in_chans, img_size)
    cfg = model.pretrained_cfg
    if config.output:  # refused now rather than after the whole run (save_pretrained checks again)
        check_output_folder(Path(config.output), weight_name(cfg.get("architecture"), config.tag), config.overwrite)
    if config.finetune_from and len(cfg.get("mean", ())) == model.in_chans:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])  # the features were learnt on this normalisation
    elif data.streamed:
        mean, std = file_channel_stats(data.train, in_chans, img_size)
    else:
        mean, std = getattr(data.train, "mean", None), getattr(data.train, "std", None)
        if mean is None:
            mean, std = channel_stats(data.train.images)
    cfg.update(mean=tuple(mean), std=tuple(std))
    if data.streamed:  # timm's eval transform: the weights' own crop when fine-tuning, timm's default otherwise
        cfg.update(input_size=(in_chans, img_size, img_size), crop_pct=cfg.get("crop_pct") or 0.875,
                   interpolation=cfg.get("interpolation") or "bilinear")
    else:  # the evaluation images as they are in memory: whole (crop_pct 1.0)
        cfg.update(crop_pct=1.0, interpolation="bilinear")
    _freeze(model, config)
    augment = FileAugment("timm" if data.streamed and config.train_transform == "timm" else "small",
                          tuple(config.scale), tuple(config.ratio), not config.no_flip, config.color_jitter, config.aa)
    bad_images = BadImageLog(config.on_bad_image)
    workers = default_workers(runtime.device) if config.workers is None else config.workers
    feeds = feeds_for(data, config, runtime, in_chans, img_size, cfg["crop_pct"], cfg["interpolation"], augment,
                      bad_images, workers)
    validation_name = "validation" if "validation" in feeds else "test"
    if validation_name not in feeds:
        raise ValueError(f"{config.dataset} has no validation or test images; give --val-split FRACTION")

    memory_format = torch.preserve_format if config.no_channels_last else torch.channels_last
    model = model.to(runtime.device, memory_format=memory_format)
    if config.grad_checkpointing:
        model.set_grad_checkpointing()
    teacher_names = teacher_sources(config.teacher) if config.teacher else []
    teachers = []
    for source in teacher_names:
        teacher = build_teacher(source).to(runtime.device, memory_format=memory_format).eval()
        if teacher.num_classes != len(classes):
            raise ValueError(
                f"--teacher {source} predicts {teacher.num_classes} classes, the dataset has {len(classes)}"
            )
        teachers.append(teacher)

    features = None
    if config.distill_features:
        features = FeatureDistillation(model, teachers[0], config.distill_features,
                                       feature_pairs(config.feature_pairs) if config.feature_pairs else None,
                                       config.feature_weight).to(runtime.device, memory_format=memory_format)
        if config.finetune_from:  # a trained student's adapters start at their least-squares fit (a resume loads them)
            first = _first_images(feeds["train"], 256).to(runtime.device)
            features.fit_adapters(
                model, prepare_for(model, memory_format)(first), prepare_for(teachers[0], memory_format)(first)
            )

    amp_dtype = autocast_dtype(runtime.device, config.amp)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=amp_dtype == torch.float16)
    net = model if features is None else FeatureStudent(model, features)
    if runtime.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if config.compile:  # only the training forward/backward: `model` (saved, evaluated) stays the eager module
        net = torch.compile(net)
    groups = param_groups(model, config.weight_decay, config.lr, config.layer_decay)
    if features is not None:  # the 1×1 adapters of the hints train with the student, at the head's rate
        groups.append({"params": list(features.parameters()), "weight_decay": config.weight_decay, "lr": config.lr})
    if config.opt == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    train_feed = feeds["train"]
    local_batch = config.batch_size // runtime.world_size
    sampler = None
    if train_feed.labels is not None:
        sampler = torch.utils.data.DistributedSampler(range(train_feed.count), num_replicas=runtime.world_size,
                                                      rank=runtime.rank, shuffle=True, seed=config.seed,
                                                      drop_last=True)
        steps_per_epoch = max(1, len(sampler) // local_batch)
    else:
        steps_per_epoch = max(1, len(train_feed.images))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        config.sched, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)))
    small = augment.kind == "small"  # else the workers cropped and flipped (timm's transforms)
    fit_config = FitConfig(batch_size=local_batch, pad=config.pad if small else 0, flip=small and not config.no_flip,
                           erase_prob=config.reprob, frozen_bn_eval=config.freeze_backbone or config.freeze_bn,
                           mixup=config.mixup, cutmix=config.cutmix, mix_prob=config.mix_prob,
                           label_smoothing=config.label_smoothing, distill_alpha=config.distill_alpha,
                           temperature=config.distill_T, amp_dtype=amp_dtype, memory_format=memory_format,
                           progress=not config.no_progress, hint=f"lower --lr (now {config.lr})", bn_l1=config.bn_l1)

    work_dir = config.run_dir
    checkpoint_path = work_dir / CHECKPOINT_NAME
    start_epoch = 0
    best: Optional[dict[str, Any]] = None  # with validation: the epoch of best top-1 so far, and its weights
    # sha256 of the --finetune-from / --teacher weights when the run first started
    sources: Optional[dict[str, str]] = None
    if config.resume and checkpoint_path.is_file():
        # damaged, foreign or pickled: one line, file untouched
        state = read_checkpoint(checkpoint_path, runtime.device)
        check_same_run(config, saved_settings(state, work_dir), checkpoint_path)
        restore(state, checkpoint_path, {"model": model, "feature_adapters": features, "optimizer": optimizer,
                                         "scheduler": scheduler, "scaler": scaler})
        start_epoch, sources = state["epoch"], state.get("sources")
        best = state.get("best") or best
        if runtime.is_main:
            reconcile_log(work_dir / LOG_NAME, start_epoch, state.get("record"))
            print(f"resumed from {checkpoint_path} after epoch {start_epoch}")
    if sources is None:
        sources = {"finetuned_from": weight_sha256(config.finetune_from)} if config.finetune_from else {}
        if teacher_names:  # one sha256 per teacher, comma-separated in --teacher's order
            sources["teacher"] = ",".join(map(weight_sha256, teacher_names))
    if runtime.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)

    record: dict[str, Any] = {"epoch": start_epoch}
    prefix = "val" if validation_name == "validation" else "test"
    for epoch in range(start_epoch, config.epochs):
        # Every random choice of an epoch follows from (seed, epoch, rank): a resumed run replays it exactly
        # (in memory; streamed files replay their order and the workers' augmentation seeds).
        epoch_seed = config.seed * 100_003 + epoch * 1_009 + runtime.rank
        torch.manual_seed(epoch_seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
            batches, labels, order = train_feed.images, train_feed.labels, torch.tensor(list(sampler))
        else:
            train_feed.images.set_epoch(epoch, epoch_seed)
            batches, labels, order = train_feed.images, None, None
        stats = fit(model, batches, labels, optimizer, fit_config, order=order, steps=steps_per_epoch,
                    generator=torch.Generator().manual_seed(epoch_seed), scheduler=scheduler,
                    scaler=scaler, teachers=teachers, features=features, net=net, runtime=runtime,
                    desc=f"epoch {epoch + 1}/{config.epochs}", where=f"epoch {epoch + 1}")
        runtime.sync_buffers(model)
        scored = _evaluate(model, feeds[validation_name], local_batch * 2, runtime, amp_dtype=amp_dtype,
                           memory_format=memory_format)
        workers_mb = getattr(train_feed.images, "peak_workers_mb", 0.0)
        record = {"epoch": epoch + 1, "lr": round(max(scheduler.get_last_lr()), 6),  # the head's, with --layer-decay
                  "train_loss": round(stats.loss, 4), "train_top1": round(stats.top1, 2),
                  f"{prefix}_top1": scored["top1"], f"{prefix}_top5": scored["top5"], f"{prefix}_loss": scored["loss"],
                  "epoch_s": round(stats.seconds, 2), "img_per_s": round(stats.img_per_s, 1),
                  "data_wait": round(stats.data_wait, 3), "peak_rss_mb": round(peak_rss_mb() + workers_mb),
                  "eta_s": round(stats.seconds * (config.epochs - epoch - 1)),
                  **({"bad_images": bad_images.count} if bad_images.count else {})}
        if prefix == "val" and (best is None or scored["top1"] > best["top1"]):
            best = {"epoch": epoch + 1, "top1": scored["top1"],
                    "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        if runtime.is_main:
            print(json.dumps(record), flush=True)
            save_checkpoint(checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch + 1, "record": record, "settings": config.run_settings(),
                "sources": sources, **({"best": best} if best is not None else {}),
                **({"feature_adapters": features.state_dict()} if features is not None else {})})
            save_arguments(work_dir, config)
            append_log(work_dir / LOG_NAME, record)

    if best is not None:  # the published weights are the epoch of best validation top-1
        model.load_state_dict(best["model"])
        record.update(best_epoch=best["epoch"], val_top1=best["top1"])
    final_test = None
    if prefix == "val" and "test" in feeds:  # the test split, evaluated once, on the weights the run keeps
        final_test = _evaluate(model, feeds["test"], local_batch * 2, runtime, amp_dtype=amp_dtype,
                               memory_format=memory_format)
        record.update(test_top1=final_test["top1"], test_top5=final_test["top5"], test_loss=final_test["loss"])
        if runtime.is_main:
            print(json.dumps({"final": "test", "weights_of_epoch": record.get("best_epoch", record["epoch"]),
                              "test_top1": final_test["top1"], "test_top5": final_test["top5"]}), flush=True)

    if config.output:
        runtime.sync_buffers(model)
        model = model.to(memory_format=torch.contiguous_format)
        if config.fp16_weights:  # measure what is shipped: the weights rounded to float16
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        # The recorded metrics are the float32 model's, as a user runs it (training may have used bf16 autocast).
        measured = {name: _evaluate(model, feeds[name], local_batch * 2, runtime, memory_format=memory_format)
                    for name in ("test", "validation") if name in feeds}
        if "test" in measured:
            record.update(test_top1=measured["test"]["top1"], test_top5=measured["test"]["top5"],
                          test_loss=measured["test"]["loss"])
        if runtime.is_main:
            _publish(config, model, model_args, classes, measured, sources, runtime, amp_dtype, data, best,
                     bad_images)
    return model, record


def _first_images(feed: Feed, count: int) -> torch.Tensor:
    """Up to ``count`` training images as uint8, from memory or from the first streamed batches."""
    if feed.labels is not None:
        return feed.images[:count]
    images = []
    for batch, _ in feed.images:
        images.append(batch)
        if sum(len(b) for b in images) >= count:
            break
    return torch.cat(images)[:count]


def _publish(config: TrainRunConfig, model: nn.Module, model_args: dict[str, Any], classes: list[str],
             measured: dict[str, dict[str, Any]], sources: dict[str, str], runtime: Runtime, amp_dtype: Any,
             data: Any, best: Optional[dict[str, Any]], bad_images: BadImageLog) -> None:
    """Write --output: the weights, with the measured test (and validation) metrics and how they were trained in
    the card: the splits and how each was made, which epoch was kept, the images skipped as undecodable."""
    from ..publish import save_pretrained
    from ..weight_cfg import Metric, Metrics

    rows = []
    for split in ("test", "validation"):  # the first is the weight's headline row
        if split in measured:
            rows += [Metric(name, measured[split][name], config.dataset, split, measured[split]["count"])
                     for name in ("top1", "top5")]
    metrics = Metrics(tuple(rows))
    training = {"dataset": config.dataset, "command": "python -m lightnets.train " + shlex.join(config.command),
                "epochs": config.epochs, "seed": config.seed, "processes": runtime.world_size,
                "device": runtime.device.type,
                "precision": (f"{str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype is not None
                              else "float32"),
                "train_images": len(data.train),
                "splits": copy.deepcopy(data.records),
                "weights_of_epoch": (f"{best['epoch']} (best validation top-1)" if best is not None
                                     else f"{config.epochs} (the last)")}
    if data.streamed:
        training["bad_images"] = bad_images.summary()
    if config.finetune_from:
        training.update(finetuned_from=config.finetune_from, finetuned_from_sha256=sources["finetuned_from"])
    if config.teacher:
        training.update(teacher=config.teacher, teacher_sha256=sources["teacher"])
    if config.distill_features:
        training.update(distill_features=config.distill_features)
    folder = save_pretrained(model.cpu(), config.output, metrics=metrics, tag=config.tag, model_args=model_args,
                             label_names=classes, training=training, fp16=config.fp16_weights,
                             overwrite=config.overwrite)
    headline = "test" if "test" in measured else "validation"
    print(f"wrote {folder} ({headline} top-1 {measured[headline]['top1']}%)")

