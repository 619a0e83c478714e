"""Training engine: ``train_one_epoch``, ``evaluate`` and ``fit``, in the manner of torchvision's
classification reference, plus checkpoints that carry everything ``predict`` needs.

A run is described by a :class:`TrainConfig`; :func:`get_args_parser` turns the same fields into
command-line options, so the CLI and the notebooks configure training the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # text bars: they also render in stored notebook outputs

from . import __version__
from .augment import random_affine
from .data import (
    CLASS_NAMES,
    MNIST_MEAN,
    MNIST_STD,
    MNISTSplit,
    TensorBatches,
    load_mnist,
    to_float,
    train_val_split,
)
from .models import MODELS, build_model

CHECKPOINT_FORMAT = 1

# (mean, std) subtracted from and divided into pixels scaled to [0, 1].
NORMALIZATIONS = {
    "mnist": (MNIST_MEAN, MNIST_STD),  # MNIST's statistics: zero mean, unit variance
    "article": (0.5, 0.5),  # the article's Normalize((0.5,), (0.5,)): pixels in [-1, 1]
    "none": (0.0, 1.0),  # pixels left in [0, 1]
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the book's ``hwrnet`` recipe."""

    model: str = "hwrnet"
    epochs: int = 6  # validation accuracy 0.9940 at 6 epochs, 0.9948 at 20: not worth 3x the time
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate of the one-cycle schedule (chosen on validation)
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    class_weights: list[float] | None = None  # per-class loss weights (class imbalance)
    augment: bool = True
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adam"
    schedule: str = "onecycle"  # "onecycle" or "constant" (the learning rate never changes)
    normalization: str = "mnist"  # pixel scaling, a key of NORMALIZATIONS
    bf16: bool = False  # bfloat16 autocast, used only where the hardware supports it
    val_size: int = 5000
    train_limit: int | None = None  # use only the first N training images (smoke runs, tests)
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    data_dir: str | None = None
    out: str = "checkpoints/hwrnet.pt"
    resume: bool = False
    progress: bool = True
    model_config: dict[str, Any] = field(default_factory=dict)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options for :class:`TrainConfig` (shared by ``hwr train`` and notebooks)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        description="Train a handwritten-digit classifier on MNIST.", add_help=add_help
    )
    parser.add_argument("--model", default=defaults.model, choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train without augmentation"
    )
    parser.add_argument("--optimizer", default=defaults.optimizer, choices=["sgd", "adam"])
    parser.add_argument("--schedule", default=defaults.schedule, choices=["onecycle", "constant"])
    parser.add_argument(
        "--normalization", default=defaults.normalization, choices=list(NORMALIZATIONS)
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast (only where supported)"
    )
    parser.add_argument("--val-size", type=int, default=defaults.val_size)
    parser.add_argument("--train-limit", type=int, default=None, help="use the first N images")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--compile", action="store_true", help="use torch.compile")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--out", default=None, help="checkpoint path (default checkpoints/NAME.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed :func:`get_args_parser` arguments."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    if values.get("out") is None:
        values["out"] = f"checkpoints/{values['model']}.pt"
    return TrainConfig(**values)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeds the legacy global RNG that user code may use
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` means CUDA if present, else Apple's MPS, else the CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(
                f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs natively here: a GPU with bf16, or a CPU with AVX512-BF16
    or AMX. Elsewhere PyTorch emulates bf16 with conversions, which is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch._C, "_cpu", None)  # private, but the only probe PyTorch offers
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(cpu, name, lambda: False)() for name in probes)
    return False


def maybe_compile(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.compile`` the model; fall back to eager, with a warning, if compiling fails.

    Compilation is lazy, so one forward pass on ``example`` (a batch of the training shape, so
    the first real batch does not compile again) forces it here, where a failure can be caught.
    That pass leaves no trace: batch-norm statistics and random-number state are put back, so
    the compiled run starts exactly where an eager one would. (Its fused kernels still round
    differently, so its numbers are close to, not identical with, an eager run's.)
    """
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    devices = [example.device] if example.device.type == "cuda" else []
    try:
        compiled = torch.compile(model)
        with torch.random.fork_rng(devices=devices):
            compiled(example)
        return compiled
    except Exception as error:  # the failure modes of inductor are many (no compiler, ...)
        warnings.warn(f"torch.compile failed, training eagerly instead: {error}", stacklevel=2)
        return model
    finally:
        model.load_state_dict(saved)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: TensorBatches,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    description: str = "train",
    bf16: bool = False,
) -> dict[str, float]:
    """One pass over ``batches``; returns the mean training loss and accuracy.

    ``bf16`` runs the forward pass under bfloat16 autocast (check :func:`bf16_supported`).
    """
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=description, leave=False, disable=not progress)
    for images, labels in bar:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        # .item() syncs with the device; once per batch is cheap next to the step itself.
        batch_loss = loss.item()
        total_loss += batch_loss * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        bar.set_postfix(loss=f"{batch_loss:.3f}")
    return {"loss": total_loss / seen, "accuracy": correct / seen}


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 1000
) -> torch.Tensor:
    """Logits for normalized ``images`` (N, 1, 28, 28), computed in eval mode, on the CPU."""
    model.eval()
    outputs = [
        model(images[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outputs) if outputs else torch.empty(0, 10)


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on normalized ``images``."""
    logits = predict_logits(model, images, device)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (logits.argmax(1) == labels).float().mean().item(),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` atomically: to a temporary file in the same folder, then rename.

    A run killed mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(checkpoint, file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable hwr checkpoint: {error}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an hwr checkpoint (format {CHECKPOINT_FORMAT})")
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights, in eval mode."""
    model = build_model(checkpoint["model"], **checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_or_train(
    path: str | os.PathLike, smoke: bool = False, **overrides: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """The model saved at ``path`` if there is one; otherwise train it first (with ``overrides``
    of :class:`TrainConfig`). In smoke mode a missing model is trained small (one epoch on
    2,000 images) and saved beside ``path`` as ``NAME.smoke.pt``, never in its place.
    Returns the model (eval mode) and its checkpoint, whose ``"path"`` says which file it is.
    """
    path = Path(path)
    smoke_path = path.with_name(f"{path.stem}.smoke.pt")
    for candidate in [path, smoke_path] if smoke else [path]:
        if candidate.is_file():
            checkpoint = load_checkpoint(candidate)
            checkpoint["path"] = str(candidate)  # which file it was, for the caller
            return model_from_checkpoint(checkpoint), checkpoint
    config = TrainConfig(out=str(path), **overrides)
    if smoke:
        config = dataclasses.replace(
            config, epochs=1, train_limit=2000, out=str(smoke_path), progress=False
        )
    checkpoint = fit(config)
    checkpoint["path"] = config.out
    return model_from_checkpoint(checkpoint), checkpoint


def make_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and per-batch learning-rate schedule that ``config`` asks for.

    Weight decay applies to convolution and linear weights only, not to biases or batch-norm
    scales (decaying those only fights the normalization). The one-cycle schedule warms up to
    ``config.lr`` over the first 30 % of the steps, then anneals to almost zero.
    """
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    elif config.optimizer == "adam":
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use sgd or adam")
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
        )
    elif config.schedule == "constant":
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}; use onecycle or constant")
    return optimizer, scheduler


@dataclass
class TrainingSetup:
    """What :func:`prepare_training` builds from a :class:`TrainConfig`, ready to train."""

    device: torch.device
    model: nn.Module
    batches: TensorBatches  # the training split, normalized, on the device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    val: MNISTSplit
    test: MNISTSplit
    val_x: torch.Tensor  # normalized, on the CPU
    test_x: torch.Tensor
    bf16: bool  # autocast to bfloat16 (asked for, and native here)


def prepare_training(config: TrainConfig, train: MNISTSplit | None = None) -> TrainingSetup:
    """Seed, load and split MNIST, and build the batches, model, optimizer and loss of
    ``config``: everything :func:`fit` (and the recipe race) needs before the first step.
    ``train`` replaces the training split, as in :func:`fit`."""
    set_seed(config.seed)
    device = pick_device(config.device)
    train_full, test = load_mnist(config.data_dir)
    default_train, val = train_val_split(train_full, config.val_size, seed=config.seed)
    train = default_train if train is None else train
    if config.train_limit is not None:
        train = MNISTSplit(train.images[: config.train_limit], train.labels[: config.train_limit])
    if config.normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {config.normalization!r}; use {', '.join(NORMALIZATIONS)}"
        )
    mean, std = NORMALIZATIONS[config.normalization]
    bf16 = config.bf16 and bf16_supported(device)
    if config.bf16 and not bf16:
        warnings.warn(f"bfloat16 is not native on {device}; training in float32", stacklevel=2)
    # The whole training set lives on the device (188 MB as float32): no copy per batch.
    train_x, train_y = to_float(train.images, mean, std).to(device), train.labels.to(device)
    val_x, test_x = to_float(val.images, mean, std), to_float(test.images, mean, std)

    augment = random_affine if config.augment else None
    batches = TensorBatches(
        train_x,
        train_y,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        drop_last=len(train) >= config.batch_size,
    )
    model = build_model(config.model, **config.model_config).to(device)
    if getattr(model, "channels_last", False):
        # NHWC lets oneDNN pick faster convolution kernels on CPU (about 1.5x for hwrnet).
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(model, config, len(batches))
    weight = None if config.class_weights is None else torch.tensor(config.class_weights)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing).to(
        device
    )

    return TrainingSetup(
        device, model, batches, optimizer, scheduler, criterion, val, test, val_x, test_x, bf16
    )


def fit(config: TrainConfig, train: MNISTSplit | None = None) -> dict[str, Any]:
    """Train, validating after every epoch, then test once; return the final checkpoint dict.

    After each epoch the whole training state (weights, optimizer, schedule, RNG, history) is
    saved atomically to ``config.out``. With ``config.resume`` a run restarts from that file
    and finishes with exactly the numbers an uninterrupted run with the same seed gives.
    ``train`` replaces the training split (the validation split stays MNIST's), for experiments
    such as class imbalance; a run given one is not resumable.
    """
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {config.epochs}")
    if config.train_limit is not None and config.train_limit < 1:
        raise ValueError(f"train_limit must be at least 1, got {config.train_limit}")
    if train is not None and config.resume:
        raise ValueError("a run on a training split of its own cannot be resumed")
    setup = prepare_training(config, train)
    device, model, batches = setup.device, setup.model, setup.batches
    optimizer, scheduler, criterion = setup.optimizer, setup.scheduler, setup.criterion
    val, test = setup.val, setup.test
    val_x, test_x, bf16 = setup.val_x, setup.test_x, setup.bf16

    history: list[dict[str, float]] = []
    start_epoch, elapsed = 0, 0.0
    if config.resume and Path(config.out).is_file():
        state = load_checkpoint(config.out, map_location=device)
        if state["train_config"] != _config_fingerprint(config):
            raise ValueError(
                f"{config.out} was written by a run with other settings; "
                "resume with the same options or choose another --out"
            )
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_state"])
        if device.type == "cuda" and "cuda_rng_state" in state:
            torch.cuda.set_rng_state(state["cuda_rng_state"].cpu(), device)
        history, start_epoch, elapsed = state["history"], state["epoch"], state["train_seconds"]
        print(f"Resuming {config.out} after epoch {start_epoch}/{config.epochs}")

    example = batches.images[: batches.batch_size]
    run_model = maybe_compile(model, example) if config.compile else model
    if start_epoch >= config.epochs:
        checkpoint = state
    for epoch in range(start_epoch, config.epochs):
        batches.set_epoch(epoch)
        tic = time.perf_counter()
        train_stats = train_one_epoch(
            run_model,
            criterion,
            optimizer,
            batches,
            device,
            scheduler,
            progress=config.progress,
            description=f"epoch {epoch + 1}/{config.epochs}",
            bf16=bf16,
        )
        elapsed += time.perf_counter() - tic
        val_stats = evaluate(model, val_x, val.labels, device) if len(val) else {}
        row = {
            "epoch": epoch + 1,
            "train_loss": train_stats["loss"],
            "train_accuracy": train_stats["accuracy"],
            **{f"val_{k}": v for k, v in val_stats.items()},
            "seconds": elapsed,
        }
        history.append(row)
        if config.progress:
            print(
                f"epoch {epoch + 1:>2}/{config.epochs}  loss {row['train_loss']:.4f}  "
                f"val acc {row.get('val_accuracy', math.nan):.4f}  ({elapsed:.0f} s)"
            )
        checkpoint = _checkpoint(model, config, optimizer, scheduler, history, epoch + 1, elapsed)
        if device.type == "cuda":  # dropout on a GPU draws from the GPU's generator
            checkpoint["cuda_rng_state"] = torch.cuda.get_rng_state(device)
        if epoch + 1 == config.epochs:
            checkpoint["metrics"] = {"test": evaluate(model, test_x, test.labels, device)}
        save_checkpoint(checkpoint, config.out)
    return checkpoint


def _config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    # The options that change the numbers; progress bars, paths and devices do not.
    ignore = {"resume", "progress", "out", "data_dir", "device", "compile"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}


def _checkpoint(model, config, optimizer, scheduler, history, epoch, elapsed) -> dict[str, Any]:
    mean, std = NORMALIZATIONS[config.normalization]
    return {
        "format": CHECKPOINT_FORMAT,
        "model": config.model,
        "model_config": dict(config.model_config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalization": {"mean": mean, "std": std},
        "input_size": 28,
        "class_names": list(CLASS_NAMES),
        "train_config": _config_fingerprint(config),
        "history": history,
        "epoch": epoch,
        "train_seconds": elapsed,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_state": torch.get_rng_state(),
        "metrics": {},
        "versions": {"hwr_utils": __version__, "torch": str(torch.__version__)},
    }
