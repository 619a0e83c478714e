"""What defines a training run: :class:`TrainConfig`, checked when it is made, and the
command-line options that build one (``hwr train`` and the notebooks share them).

Choices come from the lists they choose from (:data:`~hwr_utils.models.MODELS`,
:data:`~hwr_utils.models.NORMALIZATIONS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`), so the parser,
the validation and the engine cannot disagree. Introduced in the training chapter.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .models import MODEL_TASKS, MODELS, NORMALIZATIONS

#: Optimizers ``--optimizer`` accepts: SGD with Nesterov momentum (0.9; one-cycle moves it between
#: 0.95 and 0.85); AdamW (decoupled weight decay).
OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules ``--schedule`` accepts.
SCHEDULES = ("onecycle", "constant")
DEVICES_HELP = "auto, cpu, cuda, cuda:1, mps"


#: Defaults of the settings that depend on the model; TrainConfig fills in those left as None.
#: Every model has the book's recipe (chosen on validation, benchmarks/RESULTS.md) but the number
#: reader, which learns with CTC (no label smoothing) from generated strips (no augmentation).
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 128,
    "lr": 0.1,
    "label_smoothing": 0.1,
    "augment": 1.0,
    "train_limit": None,
}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "crnn": {
        "epochs": 8,
        "batch_size": 64,
        "lr": 0.05,
        "label_smoothing": 0.0,
        "augment": 0.0,
        "train_limit": 40_000,  # training strips, made from the training split's digits
    },
}


def default_out(model: str) -> str:
    """Where a run of ``model`` saves its checkpoint unless told otherwise."""
    return f"checkpoints/{model}.pt"


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the book's ``hwrnet`` recipe.

    Invalid values raise :class:`~hwr_utils.errors.ConfigError` here, before any data is read.
    ``out`` defaults to ``checkpoints/<model>.pt``.
    """

    model: str = "hwrnet"
    epochs: int | None = None  # None: the model's (RECIPE_DEFAULTS, MODEL_DEFAULTS), as below
    batch_size: int | None = None
    lr: float | None = None  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # on convolution and linear weights only
    label_smoothing: float | None = None
    class_weights: list[float] | None = None  # per-class loss weights (class imbalance)
    augment: float | None = None  # strength of the random affine augmentation; 0: none
    optimizer: str = "sgd"  # a key of OPTIMIZERS
    schedule: str = "onecycle"  # "onecycle" or "constant" (the learning rate never changes)
    normalization: str = "mnist"  # pixel scaling inside the model, a key of NORMALIZATIONS
    bf16: bool = False  # bfloat16 autocast, used only where the hardware supports it
    # Under torchrun: batch norm over the global batch (each process's share otherwise).
    sync_bn: bool = False
    val_size: int = 5000
    # Use only the first N training images (smoke runs, tests); for crnn, N training strips.
    train_limit: int | None = None
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    data_dir: str | None = None
    out: str | None = None  # None: default_out(model)
    resume: bool = False
    progress: bool = True
    model_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in {**RECIPE_DEFAULTS, **MODEL_DEFAULTS.get(self.model, {})}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.optimizer == "adam":  # the name it had before it said what it builds
            self.optimizer = "adamw"
        self.augment = float(self.augment)  # True and False, as it once was, mean 1 and 0
        if self.out is None:
            self.out = default_out(self.model)
        choices = {
            "model": (self.model, MODELS),
            "optimizer": (self.optimizer, OPTIMIZERS),
            "schedule": (self.schedule, SCHEDULES),
            "normalization": (self.normalization, NORMALIZATIONS),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; use {', '.join(allowed)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        if self.train_limit is not None:
            positive["train_limit"] = self.train_limit
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not 0 <= self.augment <= 3:
            raise ConfigError(f"augment (a strength) must be in [0, 3], got {self.augment}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must not be negative, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.val_size < 0:
            raise ConfigError(f"val_size must not be negative, got {self.val_size}")
        if "normalization" in self.model_config:
            raise ConfigError("set normalization with its own option, not in model_config")
        if self.task == "ctc" and (self.label_smoothing or self.class_weights or self.augment):
            raise ConfigError(
                f"{self.model} learns with CTC: label smoothing, class weights and augmentation "
                "do not apply (the strips are generated with their own variety)"
            )

    @property
    def task(self) -> str:
        """What the model learns: ``"ctc"`` for the number reader, else ``"classification"``."""
        return MODEL_TASKS.get(self.model, "classification")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers (a resumed run must match them); progress
        bars, paths and devices do not."""
        ignore = {"resume", "progress", "out", "data_dir", "device", "compile"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ignore}


def by_model(name: str) -> str:
    """Help text giving a setting's default for each model that has its own."""
    others = ", ".join(f"{m} {d[name]}" for m, d in MODEL_DEFAULTS.items() if name in d)
    return f"default {RECIPE_DEFAULTS[name]} ({others})" if others else ""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options for :class:`TrainConfig` (shared by ``hwr train`` and notebooks)."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        description="Train a model on MNIST: a digit classifier, or (--model crnn) a reader of "
        "whole numbers written with MNIST digits.",
        add_help=add_help,
    )
    parser.add_argument("--model", default=defaults.model, choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None, help=by_model("epochs"))
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images (crnn: strips) per step, over all processes under torchrun; "
        + by_model("batch_size"),
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate; " + by_model("lr")
    )
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--label-smoothing", type=float, default=None, help=by_model("label_smoothing")
    )
    augment = parser.add_mutually_exclusive_group()
    augment.add_argument(
        "--augment",
        type=float,
        default=None,
        metavar="STRENGTH",
        help="augmentation strength: 1 is +-10 degrees, +-10%% shift and scale; 0 is none; "
        + by_model("augment"),
    )
    augment.add_argument(
        "--no-augment", dest="augment", action="store_const", const=0.0, help="no augmentation"
    )
    parser.add_argument(
        "--optimizer",
        default=defaults.optimizer,
        choices=[*OPTIMIZERS, "adam"],
        help="sgd (Nesterov momentum) or adamw; adam is accepted as another name for adamw",
    )
    parser.add_argument("--schedule", default=defaults.schedule, choices=list(SCHEDULES))
    parser.add_argument(
        "--normalization", default=defaults.normalization, choices=list(NORMALIZATIONS)
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast (only where supported)"
    )
    parser.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun, batch norm with the statistics of the global batch",
    )
    parser.add_argument("--val-size", type=int, default=defaults.val_size)
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use the first N images (crnn: N strips); " + by_model("train_limit"),
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help=DEVICES_HELP)
    parser.add_argument("--compile", action="store_true", help="use torch.compile")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--out", default=None, help="checkpoint path (default checkpoints/NAME.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed :func:`get_args_parser` arguments."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
