"""One ``lightnets-train`` run from its :class:`~lightnets.cli.train_config.TrainRunConfig`: the runtime (device,
processes, precision), the data, the model and its teachers, optimizer and schedule, resume from
``<work-dir>/last.pth``, the epochs (each one :func:`lightnets.training.fit` call and a test pass), the checkpoint
and log line after each (:mod:`lightnets.cli.train_checkpoint`), and the ``--output`` folder at the end.

The command line (:mod:`lightnets.cli.train`) builds the config; nothing here reads argparse.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..data import load_dataset
from ..training import (FeatureDistillation, FeatureStudent, FitConfig, Runtime, autocast_dtype, channel_stats,
                        evaluate, fit, in_memory, lr_lambda, main_process_first, param_groups, prepare_for,
                        setup_runtime)
from .train_checkpoint import (CHECKPOINT_NAME, LOG_NAME, append_log, check_same_run, read_checkpoint, reconcile_log,
                               restore, save_arguments, save_checkpoint, saved_settings)
from .train_config import TrainRunConfig
from .train_model import build_model, build_teacher, feature_pairs, teacher_sources, weight_sha256

__all__ = ["run_training"]


def run_training(
    config: TrainRunConfig, train_set: Any = None, test_set: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train as ``config`` says; returns the model and the last epoch's record (test metrics included).

    ``train_set`` / ``test_set`` replace ``config.dataset`` with datasets in lightnets.data's in-memory form.
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
        if train_set is None:
            with main_process_first(runtime):  # one process downloads; the others then read its files
                train_set = load_dataset(config.dataset, split="train", data_dir=config.data_dir,
                                         download=config.download, limit=config.limit)
                test_set = load_dataset(config.dataset, split="test", data_dir=config.data_dir,
                                        download=config.download,
                                        limit=config.limit_test if config.limit_test is not None else config.limit)
        return _fit(config, runtime, train_set, test_set)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if runtime.world_size > 1:
            dist.destroy_process_group()


def _fit(config: TrainRunConfig, runtime: Runtime, train_set: Any, test_set: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model, optimizer and schedule, resume, then train epoch by epoch; write --output."""
    from ..publish import check_output_folder, weight_name

    train_images, train_labels = in_memory(train_set)
    test_images, test_labels = in_memory(test_set)
    _, in_chans, img_size, _ = train_images.shape
    classes = list(train_set.classes)
    model, model_args = build_model(config, len(classes), in_chans, img_size)
    cfg = model.pretrained_cfg
    if config.output:  # refused now rather than after the whole run (save_pretrained checks again)
        check_output_folder(Path(config.output), weight_name(cfg.get("architecture"), config.tag), config.overwrite)
    if config.finetune_from and len(cfg.get("mean", ())) == model.in_chans:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])  # the features were learnt on this normalisation
    else:
        mean, std = getattr(train_set, "mean", None), getattr(train_set, "std", None)
        if mean is None:
            mean, std = channel_stats(train_images)
    cfg.update(mean=tuple(mean), std=tuple(std))
    # The eval transform the weights are tested with: the test images as they are in memory, i.e. whole
    # (crop_pct 1.0) for Fashion-MNIST / CIFAR-10, or as an image folder was decoded (its crop and filter).
    cfg.update(
        crop_pct=getattr(test_set, "crop_pct", 1.0), interpolation=getattr(test_set, "interpolation", "bilinear")
    )

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
            first = train_images[:256].to(runtime.device)
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
    sampler = torch.utils.data.DistributedSampler(range(len(train_labels)), num_replicas=runtime.world_size,
                                                  rank=runtime.rank, shuffle=True, seed=config.seed, drop_last=True)
    local_batch = config.batch_size // runtime.world_size
    steps_per_epoch = max(1, len(sampler) // local_batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        config.sched, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)))
    fit_config = FitConfig(batch_size=local_batch, pad=config.pad, flip=not config.no_flip, erase_prob=config.reprob,
                           mixup=config.mixup, cutmix=config.cutmix, mix_prob=config.mix_prob,
                           label_smoothing=config.label_smoothing, distill_alpha=config.distill_alpha,
                           temperature=config.distill_T, amp_dtype=amp_dtype, memory_format=memory_format,
                           progress=not config.no_progress, hint=f"lower --lr (now {config.lr})", bn_l1=config.bn_l1)

    work_dir = config.run_dir
    checkpoint_path = work_dir / CHECKPOINT_NAME
    start_epoch = 0
    # sha256 of the --finetune-from / --teacher weights when the run first started
    sources: Optional[dict[str, str]] = None
    if config.resume and checkpoint_path.is_file():
        # damaged, foreign or pickled: one line, file untouched
        state = read_checkpoint(checkpoint_path, runtime.device)
        check_same_run(config, saved_settings(state, work_dir), checkpoint_path)
        restore(state, checkpoint_path, {"model": model, "feature_adapters": features, "optimizer": optimizer,
                                         "scheduler": scheduler, "scaler": scaler})
        start_epoch, sources = state["epoch"], state.get("sources")
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
    for epoch in range(start_epoch, config.epochs):
        # Every random choice of an epoch follows from (seed, epoch, rank): a resumed run replays it exactly.
        epoch_seed = config.seed * 100_003 + epoch * 1_009 + runtime.rank
        torch.manual_seed(epoch_seed)
        sampler.set_epoch(epoch)
        stats = fit(model, train_images, train_labels, optimizer, fit_config, order=torch.tensor(list(sampler)),
                    steps=steps_per_epoch, generator=torch.Generator().manual_seed(epoch_seed), scheduler=scheduler,
                    scaler=scaler, teachers=teachers, features=features, net=net, runtime=runtime,
                    desc=f"epoch {epoch + 1}/{config.epochs}", where=f"epoch {epoch + 1}")
        runtime.sync_buffers(model)
        test = evaluate(model, test_images, test_labels, batch_size=local_batch * 2, runtime=runtime,
                        amp_dtype=amp_dtype, memory_format=memory_format)
        record = {"epoch": epoch + 1, "lr": round(max(scheduler.get_last_lr()), 6),  # the head's, with --layer-decay
                  "train_loss": round(stats.loss, 4), "train_top1": round(stats.top1, 2),
                  "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                  "epoch_s": round(stats.seconds, 2), "img_per_s": round(stats.img_per_s, 1)}
        if runtime.is_main:
            print(json.dumps(record), flush=True)
            save_checkpoint(checkpoint_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch + 1, "record": record, "settings": config.run_settings(),
                "sources": sources, **({"feature_adapters": features.state_dict()} if features is not None else {})})
            save_arguments(work_dir, config)
            append_log(work_dir / LOG_NAME, record)

    if config.output:
        runtime.sync_buffers(model)
        model = model.to(memory_format=torch.contiguous_format)
        if config.fp16_weights:  # measure what is shipped: the weights rounded to float16
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.copy_(tensor.half().float())
        # The recorded metrics are the float32 model's, as a user runs it (training may have used bf16 autocast).
        test = evaluate(
            model, test_images, test_labels, batch_size=local_batch * 2, runtime=runtime, memory_format=memory_format
        )
        record.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"])
        if runtime.is_main:
            _publish(config, model, model_args, classes, test, sources, runtime, amp_dtype, len(train_labels))
    return model, record


def _publish(config: TrainRunConfig, model: nn.Module, model_args: dict[str, Any], classes: list[str],
             test: dict[str, Any], sources: dict[str, str], runtime: Runtime, amp_dtype: Any,
             train_images: int) -> None:
    """Write --output: the weights, with the measured test metrics and how they were trained in the card."""
    from ..publish import save_pretrained

    metrics = {"top1": test["top1"], "top5": test["top5"], "dataset": config.dataset, "split": "test",
               "images": test["count"]}
    training = {"dataset": config.dataset, "command": "python -m lightnets.train " + shlex.join(config.command),
                "epochs": config.epochs, "seed": config.seed, "processes": runtime.world_size,
                "device": runtime.device.type,
                "precision": (f"{str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype is not None
                              else "float32"),
                "train_images": train_images}
    if config.finetune_from:
        training.update(finetuned_from=config.finetune_from, finetuned_from_sha256=sources["finetuned_from"])
    if config.teacher:
        training.update(teacher=config.teacher, teacher_sha256=sources["teacher"])
    if config.distill_features:
        training.update(distill_features=config.distill_features)
    folder = save_pretrained(model.cpu(), config.output, metrics=metrics, tag=config.tag, model_args=model_args,
                             label_names=classes, training=training, fp16=config.fp16_weights,
                             overwrite=config.overwrite)
    print(f"wrote {folder} (test top-1 {test['top1']}%)")

