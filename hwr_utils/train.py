"""The training engine, read top to bottom: the optimizer, one step, one epoch, then
:func:`fit`, which runs them with validation, checkpoints and exact ``--resume``, in one
process or, under ``torchrun``, in several (:mod:`hwr_utils.distributed`).

In the manner of torchvision's classification reference (``train_one_epoch``; its
``evaluate`` lives in :mod:`hwr_utils.evaluation`, shared with ``hwr evaluate``), with the task
seam of d2l: the engine asks a :class:`~hwr_utils.tasks.Task` for the loss and the metrics, so
it trains any model the task describes. Introduced in the training chapter.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm  # text bars: they also render in stored notebook outputs

from . import __version__
from .augment import augment_lines, augment_strips, random_affine
from .checkpoints import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    task_from_checkpoint,
)
from .config import TrainConfig
from .data import MNISTSplit, TensorBatches, pixels_to_float, to_float
from .datasets import Dataset, Split, load_dataset
from .distributed import (
    World,
    barrier,
    current_world,
    data_parallel,
    gather,
    rank_device,
    sum_over_processes,
    sync_batchnorm,
)
from .errors import ConfigError
from .evaluation import evaluate
from .lines import LineBatches
from .lm import CharNgram, LineDecoder, tune_fusion
from .models import build_model, reset_classifier
from .predict import predict_lines
from .runtime import bf16_supported, live_progress, maybe_compile, pick_device, set_seed
from .tasks import Classification, Task, build_task

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def make_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and per-batch learning-rate schedule that ``config`` asks for.

    Weight decay applies to convolution and linear weights only: biases and batch-norm scales
    get an explicit 0 (decaying those only fights the normalization, and AdamW would otherwise
    apply its own default of 0.01 to them). The one-cycle schedule warms up to ``config.lr``
    over the first ``config.warmup`` of the steps (30 % unless the model says otherwise), then
    anneals to almost zero.
    """
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=config.warmup,
        )
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return optimizer, scheduler


def train_step(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimization step on one batch: forward, the task's loss, backward, update.

    ``bf16`` runs the forward pass under bfloat16 autocast (check
    :func:`~hwr_utils.runtime.bf16_supported`). Returns the loss and the outputs, detached.
    """
    device_type = images.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(images)
        loss = task.loss(outputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if isinstance(outputs, tuple):  # extra training outputs (a shortcut) feed the loss only
        outputs = outputs[0]
    return loss.detach(), outputs.detach()


def train_one_epoch(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    batches: Batches,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    description: str = "train",
    bf16: bool = False,
) -> dict[str, float]:
    """One pass over ``batches``: the mean training loss (the task's objective) and the task's
    other metrics (e.g. accuracy) on the training batches (of every process, in data-parallel
    training)."""
    model.train()
    total_loss, sums = 0.0, Counter()
    bar = tqdm(batches, desc=description, leave=False, disable=not progress)
    for images, targets in bar:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss, outputs = train_step(model, task, optimizer, images, targets, scheduler, bf16)
        # .item() syncs with the device; once per batch is cheap next to the step itself.
        batch_loss = loss.item()
        batch_sums = task.sums(outputs, targets)
        total_loss += batch_loss * batch_sums["count"]
        sums.update(batch_sums)
        bar.set_postfix(loss=f"{batch_loss:.3f}")
    sums = sum_over_processes({**sums, "objective": total_loss})
    return {**task.metrics(sums), "loss": sums["objective"] / max(sums["count"], 1)}


@dataclass
class TrainingSetup:
    """What :func:`prepare_training` builds from a :class:`TrainConfig`, ready to train."""

    device: torch.device
    model: nn.Module
    task: Task
    batches: TensorBatches  # the training split, uint8 pixels on the device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    val: Split
    test: Split | None  # None: the data has no test split
    val_x: torch.Tensor  # pixels in [0, 1], on the CPU
    test_x: torch.Tensor | None
    bf16: bool  # autocast to bfloat16 (asked for, and native here)
    world: World  # this process among those of the run (one, without torchrun)
    dataset: Dataset  # what was loaded: class names, splits, provenance
    data_card: dict[str, Any]  # what the checkpoints say of it (made once, not every epoch)
    model_config: dict[str, Any]  # what rebuilds the model (build_model), saved with it
    init_from: dict[str, Any] | None  # what a fine-tuned model started from
    decoder: dict[str, Any] | None = None  # a line reader's language model (LineDecoder state)


def prepare_training(config: TrainConfig, train: MNISTSplit | None = None) -> TrainingSetup:
    """Seed, load the data (:func:`~hwr_utils.datasets.load_dataset`: its splits and class
    names), and build the batches, model, task and optimizer of ``config``: everything
    :func:`fit` (and the recipe race) needs before the first step. ``train`` replaces the
    training split, as in :func:`fit`. With ``config.init_from`` the model starts from that
    checkpoint (:func:`model_from_base`).

    Under ``torchrun``, ``config.batch_size`` is the global batch: each process takes
    ``batch_size / world size`` images of it per step, so a step averages the gradients of the
    same images one process would see, and the learning rate stays as it is. Every process
    builds the same model (same seed); then process ``r > 0`` reseeds with ``seed + r`` for
    its own augmentation and dropout, while rank 0 draws exactly what a single process draws.
    """
    world = current_world()
    if config.batch_size % world.size:
        raise ConfigError(
            f"the global batch ({config.batch_size}) must split evenly over {world.size} processes"
        )
    set_seed(config.seed)
    device = rank_device(pick_device(config.device), world)
    base = load_checkpoint(config.init_from) if config.init_from else None
    alphabet = None
    if base is not None and base["task"] in ("ctc", "lines"):
        alphabet = task_from_checkpoint(base).class_names  # a reader keeps its alphabet
    dataset = load_dataset(config.data, config.data_dir, config.val_size, config.seed,
                           config.train_limit, alphabet, config.task)  # fmt: skip
    if dataset.task != config.task:
        raise ConfigError(
            f"{config.model} learns {config.task} but {config.data} holds "
            + ("classes" if dataset.task == "classification" else f"{dataset.task}: use a reader")
        )
    if train is not None and config.fresh_strips:
        raise ConfigError("fresh strips are written from the data's digits, not from a given split")
    if train is None:
        train = dataset.train
    elif config.train_limit is not None:  # a split of the caller's own, cut like the data's
        train = MNISTSplit(train.images[: config.train_limit], train.labels[: config.train_limit])
    bf16 = config.bf16 and bf16_supported(device)
    if config.bf16 and not bf16:
        warnings.warn(f"bfloat16 is not native on {device}; training in float32", stacklevel=2)
    if config.task == "lines":  # lines of many widths: batches of similar ones
        batches = LineBatches(
            train.images.unsqueeze(1).to(device),
            train.labels.to(device),
            train.widths,
            config.batch_size // world.size,
            seed=config.seed,
            augment=partial(augment_lines, strength=config.augment) if config.augment else None,
            rank=world.rank,
            world_size=world.size,
        )
    else:
        augment_batch = augment_strips if config.task == "ctc" else random_affine
        draw = None
        if config.fresh_strips:  # each epoch's own strips, written when the epoch starts

            def draw(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
                strips = dataset.draw_train(epoch)
                return strips.images.unsqueeze(1).to(device), strips.labels.to(device)

        batches = TensorBatches(
            train.images.unsqueeze(1).to(device),  # uint8 pixels: augmented before any scaling
            train.labels.to(device),
            config.batch_size // world.size,
            shuffle=True,
            seed=config.seed,
            augment=partial(augment_batch, strength=config.augment) if config.augment else None,
            drop_last=len(train) >= config.batch_size,
            rank=world.rank,
            world_size=world.size,
            draw=draw,
        )
    if base is None:
        model = build_model(
            config.model,
            num_classes=len(dataset.class_names),
            normalization="none" if config.normalization == "data" else config.normalization,
            **config.model_config,
        )
        if config.normalization == "data":
            mean, std = dataset.pixel_stats()
            model.normalize.mean.fill_(mean), model.normalize.std.fill_(std)
        model_config = {**config.model_config, "normalization": config.normalization}
        if config.normalization == "data":  # the buffers hold it; the name rebuilds the layer
            model_config["normalization"] = "none"
        init_from = None
    else:
        model = model_from_base(base, dataset.class_names, config.method)
        model_config = dict(base["model_config"])  # the base model's architecture
        init_from = {
            "checkpoint": str(Path(config.init_from).resolve()),
            "model": base["model"],
            "data": base.get("data", {"spec": "mnist"}),  # older checkpoints: MNIST
            "method": config.method,
        }
    model_config["num_classes"] = len(dataset.class_names)
    model = model.to(device)
    if config.sync_bn and world.size > 1:
        model = sync_batchnorm(model, device)
    if world.rank > 0:
        torch.manual_seed(config.seed + world.rank)
    if getattr(model, "channels_last", False):
        # NHWC lets oneDNN pick faster convolution kernels on CPU.
        model = model.to(memory_format=torch.channels_last)
    if config.task in ("ctc", "lines"):
        task = build_task(config.task, class_names=dataset.class_names)
    else:
        task = Classification(
            class_names=dataset.class_names,
            label_smoothing=config.label_smoothing,
            class_weights=config.class_weights,
        )
    optimizer, scheduler = make_optimizer(model, config, len(batches))
    test = dataset.test
    decoder = None
    if config.task == "lines":  # the reader's language model, from its training texts only
        decoder = base.get("decoder") if base is not None else None
        if decoder is None:
            lm = CharNgram.fit(train.texts, alphabet=dataset.class_names)
            decoder = LineDecoder(lm, dataset.class_names).to_state()
    return TrainingSetup(
        device, model, task, batches, optimizer, scheduler, dataset.val, test,
        to_float(dataset.val.images), None if test is None else to_float(test.images), bf16,
        world, dataset, dataset.card(), model_config, init_from, decoder,
    )  # fmt: skip


def model_from_base(base: dict[str, Any], class_names: list[str], method: str) -> nn.Module:
    """The model of checkpoint ``base``, with its weights, ready to fine-tune on
    ``class_names`` (the way nanoGPT's ``init_from`` and timm's ``--initial-checkpoint`` start
    from a trained model).

    The head follows the names: classes the base model knows keep their trained row of the last
    layer (in the new order); any new class gets a freshly initialized head
    (:func:`~hwr_utils.models.reset_classifier`), as does a set of classes it shares nothing
    with. With ``method="head"`` everything but that last layer is frozen, batch norm included:
    its statistics stay the base model's (a hook keeps those layers in eval mode).
    """
    model = model_from_checkpoint(base).train()
    known = task_from_checkpoint(base).class_names
    if list(class_names) != list(known):
        head = model.get_submodule(model.head)
        if set(class_names) <= set(known):
            rows = [known.index(name) for name in class_names]
            rows += list(range(len(known), head.out_features))  # a reader's blank stays last
            kept = nn.Linear(head.in_features, len(rows))
            with torch.no_grad():
                kept.weight.copy_(head.weight[rows]), kept.bias.copy_(head.bias[rows])
            reset_classifier(model, len(class_names))
            model.get_submodule(model.head).load_state_dict(kept.state_dict())
        else:
            reset_classifier(model, len(class_names))
    if method == "head":
        head_parameters = set(model.get_submodule(model.head).parameters())
        for parameter in model.parameters():
            parameter.requires_grad_(parameter in head_parameters)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.register_forward_pre_hook(_stay_in_eval)
    return model


def _stay_in_eval(module: nn.Module, inputs: tuple) -> None:
    module.training = False  # a frozen batch norm normalizes with, and keeps, its statistics


def fit(config: TrainConfig, train: MNISTSplit | None = None) -> dict[str, Any]:
    """Train, validating after every epoch, then test once; return the final checkpoint dict.

    After each epoch the whole training state (weights, optimizer, schedule, RNG, history) is
    saved atomically to ``config.out``. With ``config.resume`` a run restarts from that file
    and finishes with exactly the numbers an uninterrupted run with the same seed gives.
    ``train`` replaces the training split (the validation split stays MNIST's), for experiments
    such as class imbalance; a run given one is not resumable. Under ``torchrun`` every process
    runs this function; rank 0 prints and saves (see :func:`prepare_training`).
    """
    if train is not None and config.resume:
        raise ConfigError("a run on a training split of its own cannot be resumed")
    setup = prepare_training(config, train)
    device, model, task, batches = setup.device, setup.model, setup.task, setup.batches
    optimizer, scheduler, world = setup.optimizer, setup.scheduler, setup.world

    history: list[dict[str, float]] = []
    start_epoch, elapsed, checkpoint = 0, 0.0, {}
    if config.resume and Path(config.out).is_file():
        checkpoint = load_checkpoint(config.out, map_location=device)
        if checkpoint["train_config"] != config.fingerprint():
            raise ConfigError(
                f"{config.out} was written by a run with other settings; "
                "resume with the same options or choose another --out"
            )
        if checkpoint.get("world_size", 1) != world.size:
            raise ConfigError(
                f"{config.out} was written by {checkpoint.get('world_size', 1)} process(es); "
                f"resume it with as many, not {world.size}"
            )
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng(checkpoint, world.rank, device)
        history, start_epoch = checkpoint["history"], checkpoint["epoch"]
        elapsed = checkpoint["train_seconds"]
        if world.is_main:
            print(f"Resuming {config.out} after epoch {start_epoch}/{config.epochs}")
    if world.size > 1 and world.is_main:
        print(
            f"{world.size} processes ({world.backend}): global batch {config.batch_size}, "
            f"{batches.batch_size} per process",
            flush=True,
        )

    example = pixels_to_float(batches.images[: batches.batch_size])
    run_model = data_parallel(model, device) if world.size > 1 else model
    run_model = maybe_compile(run_model, example) if config.compile else run_model
    bars = config.progress and live_progress() and world.is_main
    for epoch in range(start_epoch, config.epochs):
        batches.set_epoch(epoch)
        tic = time.perf_counter()
        train_stats = train_one_epoch(
            run_model,
            task,
            optimizer,
            batches,
            device,
            scheduler,
            progress=bars,
            description=f"epoch {epoch + 1}/{config.epochs}",
            bf16=setup.bf16,
        )
        elapsed += time.perf_counter() - tic
        val_stats = {}
        if len(setup.val):
            val_stats = evaluate(model, setup.val_x, setup.val.labels, device, task,
                                 task.eval_batch_size)  # fmt: skip
        row = {
            "epoch": epoch + 1,
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val_stats.items()},
            "seconds": elapsed,
        }
        history.append(row)
        if config.progress and world.is_main:
            score = f"val acc {row.get('val_accuracy', math.nan):.4f}"
            if task.name == "lines":  # a line is rarely read exactly: its errors say more
                score = f"val CER {row.get('val_cer', math.nan):.4f}"
            print(
                f"epoch {epoch + 1:>2}/{config.epochs}  loss {row['train_loss']:.4f}  "
                f"{score}  ({elapsed:.0f} s)",
                flush=True,  # a log file gets each epoch as it ends
            )
        checkpoint = _checkpoint(setup, config, history, elapsed)
        checkpoint.update(_rng_states(device), world_size=world.size)
        if epoch + 1 == config.epochs:
            if setup.decoder is not None and setup.init_from is None and len(setup.val):
                # A run on a slice of the data (a test, a smoke run) tunes on a few lines.
                lines = 120 if config.train_limit is None else 4
                setup.decoder = tune_decoder(model, setup.val, setup.decoder, device, lines)
                checkpoint["decoder"] = setup.decoder
            checkpoint["metrics"] = {"val": val_stats}
            if setup.test is not None:
                test_stats = evaluate(model, setup.test_x, setup.test.labels, device, task,
                                      task.eval_batch_size)  # fmt: skip
                checkpoint["metrics"]["test"] = test_stats
        if world.is_main:
            save_checkpoint(checkpoint, config.out)
        barrier()  # no process goes on (or ends) before the checkpoint is on disk
    return checkpoint


#: The fusion weights tried when a line reader's decoder is tuned on validation lines (betas up
#: to 4: readers of the default recipe often chose 2, the edge of a grid that stopped there).
FUSION_ALPHAS = (0.25, 0.5, 0.75, 1.0)
FUSION_BETAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)


def tune_decoder(
    model: nn.Module, val: Split, decoder: dict[str, Any], device: torch.device, lines: int = 120
) -> dict[str, Any]:
    """A line reader's decoder with its language-model weights (``alpha``, ``beta``) chosen
    on ``lines`` validation lines spread evenly over the split (so over its writers), by
    :func:`~hwr_utils.lm.tune_fusion`; the grid and its CERs are kept under ``"tuned_on"``.
    Called at the end of training; validation lines only, never the test lines."""
    index = torch.linspace(0, len(val) - 1, min(lines, len(val))).round().long().unique()
    chosen = val.subset(index)
    outputs = predict_lines(model, chosen.images, None, device)
    base = LineDecoder.from_state(decoder)
    alpha, beta, table = tune_fusion([o.unsqueeze(0) for o in outputs], chosen.texts,
                                     base.alphabet, base.lm, FUSION_ALPHAS, FUSION_BETAS,
                                     base.beam)  # fmt: skip
    tuned = LineDecoder(base.lm, base.alphabet, alpha, beta, base.beam).to_state()
    return {**tuned, "tuned_on": {"val_lines": len(chosen), "alpha_beta_cer": table}}


def _checkpoint(setup: TrainingSetup, config: TrainConfig, history, elapsed) -> dict[str, Any]:
    model, task = setup.model, setup.task
    mean, std = model.normalize.mean.item(), model.normalize.std.item()
    return {
        "format": CHECKPOINT_FORMAT,
        "model": config.model,
        "model_config": setup.model_config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "task": task.name,
        "task_config": task.config(),
        "class_names": list(task.class_names),
        "input_shape": list(task.input_shape),
        "normalization": {"name": config.normalization, "mean": mean, "std": std},
        "data": setup.data_card,
        "init_from": setup.init_from,
        "train_config": config.fingerprint(),
        "history": history,
        "epoch": len(history),
        "train_seconds": elapsed,
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(),
        "global_batch": config.batch_size,  # over all processes, in data-parallel training
        "metrics": {},
        "versions": {"hwr_utils": __version__, "torch": str(torch.__version__)},
        **({"decoder": setup.decoder} if setup.decoder is not None else {}),
    }


def _rng_states(device: torch.device) -> dict[str, Any]:
    # Every process's generators, in rank order: each draws its own augmentation and dropout.
    states = {"rng_states": gather(torch.get_rng_state())}
    if device.type == "cuda":  # dropout on a GPU draws from the GPU's generator
        states["cuda_rng_states"] = gather(torch.cuda.get_rng_state(device))
    states["rng_state"] = states["rng_states"][0]  # what checkpoints before rng_states held
    return states


def _restore_rng(checkpoint: dict[str, Any], rank: int, device: torch.device) -> None:
    torch.set_rng_state(checkpoint.get("rng_states", [checkpoint["rng_state"]])[rank])
    cuda_states = checkpoint.get("cuda_rng_states", [checkpoint.get("cuda_rng_state")])
    if device.type == "cuda" and cuda_states[rank] is not None:
        torch.cuda.set_rng_state(cuda_states[rank].cpu(), device)
