"""What defines a training run: :class:`TrainConfig`, checked when it is made, and the
command-line options that build one (``hwr train`` and the notebooks share them).

Choices come from the lists they choose from (:data:`~hwr_utils.models.MODELS`,
:data:`~hwr_utils.models.NORMALIZATIONS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`), so the parser,
the validation and the engine cannot disagree. Introduced in the training chapter.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from .datasets import MNIST_VAL_SIZE, default_data, parse_spec
from .errors import ConfigError
from .models import MODEL_TASKS, MODELS, NORMALIZATIONS, build_model, model_settings

#: Optimizers ``--optimizer`` accepts: SGD with Nesterov momentum (0.9; one-cycle moves it between
#: 0.95 and 0.85); AdamW (decoupled weight decay).
OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules ``--schedule`` accepts.
SCHEDULES = ("onecycle", "constant")
DEVICES_HELP = "auto, cpu, cuda, cuda:1, mps"


#: Defaults of the settings that depend on the model; TrainConfig fills in those left as None.
#: Every model has the book's recipe (chosen on validation, benchmarks/RESULTS.md) but the number
#: reader, which learns with CTC (no label smoothing) from generated strips, augmented towards
#: other hands (hwr_utils.augment.augment_strips, chosen on numbers of Part V's training writers).
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 128,
    "lr": 0.1,
    "label_smoothing": 0.1,
    "augment": 1.0,
    "train_limit": None,
    "warmup": 0.3,
}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "crnn": {
        "epochs": 8,
        "batch_size": 64,
        # AdamW at twice the line reader's peak: chosen over one-cycle SGD at 0.05 with three
        # seeds each (benchmarks/number_reader_augment.py, recipes strips and adamw_high).
        "optimizer": "adamw",
        "lr": 0.006,
        "label_smoothing": 0.0,
        "augment": 1.0,  # slant, stretch, smaller digits, pen width, underlines: augment_strips
        "train_limit": 40_000,  # training strips, made from the training split's digits
    },
    "line_reader": {
        # The hour of training the book allows it, on two CPU cores (two threads train more
        # lines a second with batches of 32: benchmarks/line_reader_threads.py).
        "epochs": 28,
        "batch_size": 32,
        "lr": 0.003,
        # A short warm-up: a CTC reader learns nothing but blanks until the rate is high enough.
        "warmup": 0.1,
        "optimizer": "adamw",
        "label_smoothing": 0.0,
        "augment": 1.0,  # slant, stretch, pen width: other hands (hwr_utils.augment.augment_lines)
        "train_limit": None,
    },
}


#: Fine-tuning (``init_from``): what gets trained. ``full``: every parameter; ``head``: the last
#: linear layer only (the rest frozen, batch norm's statistics too).
FINETUNE_METHODS = ("full", "head")
#: The recipe of ``hwr finetune``, where a run starts from a trained model (init_from) and
#: usually has few examples: AdamW at a small rate, small batches, no augmentation (chosen on
#: held-out USPS training digits with three seeds, benchmarks/RESULTS.md).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "lr": 0.0005,
    "label_smoothing": 0.0,
    "augment": 0.0,
    "train_limit": None,
    "optimizer": "adamw",
    "warmup": 0.3,
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
    # A dataset spec (hwr_utils.datasets): mnist, usps, strips, folder:PATH; None: the model's.
    data: str | None = None
    epochs: int | None = None  # None: the model's (RECIPE_DEFAULTS, MODEL_DEFAULTS), as below
    batch_size: int | None = None
    lr: float | None = None  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # on convolution and linear weights only
    label_smoothing: float | None = None
    class_weights: list[float] | None = None  # per-class loss weights (class imbalance)
    augment: float | None = None  # strength of the random affine augmentation; 0: none
    optimizer: str | None = None  # a key of OPTIMIZERS; None: sgd (fine-tuning: adamw)
    schedule: str = "onecycle"  # "onecycle" or "constant" (the learning rate never changes)
    warmup: float | None = None  # share of the steps one-cycle takes to reach lr; None: model's
    # Pixel scaling inside the model: a key of NORMALIZATIONS, or "data" (the training pixels'
    # own mean and standard deviation).
    normalization: str = "mnist"
    bf16: bool = False  # bfloat16 autocast, used only where the hardware supports it
    # Under torchrun: batch norm over the global batch (each process's share otherwise).
    sync_bn: bool = False
    val_size: int | None = None  # None: the data's rule (hwr_utils.datasets; MNIST: 5000)
    # Use only the first N training images (smoke runs, tests); for crnn, N training strips.
    train_limit: int | None = None
    # Number strips only: every epoch writes new training strips (the first epoch's are the
    # strips a run without this trains on), where otherwise the same strips return every epoch.
    fresh_strips: bool = False
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    data_dir: str | None = None
    out: str | None = None  # None: default_out(model)
    resume: bool = False
    progress: bool = True
    model_config: dict[str, Any] = field(default_factory=dict)
    # Fine-tuning: the checkpoint whose weights the run starts from, and what it trains.
    init_from: str | None = None
    method: str = "full"  # a key of FINETUNE_METHODS; only with init_from

    def __post_init__(self) -> None:
        defaults = {**RECIPE_DEFAULTS, "optimizer": "sgd", **MODEL_DEFAULTS.get(self.model, {})}
        if self.init_from is not None:
            defaults = FINETUNE_DEFAULTS
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.data is None:
            self.data = default_data(self.model)
        kind, _ = parse_spec(self.data)  # an unknown dataset fails here, before any loading
        if self.fresh_strips and kind != "strips":
            raise ConfigError(f"fresh strips are number strips: use --data strips, not {self.data}")
        if self.val_size is None and kind in ("mnist", "strips"):
            self.val_size = MNIST_VAL_SIZE
        if self.optimizer == "adam":  # the name it had before it said what it builds
            self.optimizer = "adamw"
        self.augment = float(self.augment)  # True and False, as it once was, mean 1 and 0
        if self.out is None:
            self.out = default_out(self.model)
        choices = {
            "model": (self.model, MODELS),
            "optimizer": (self.optimizer, OPTIMIZERS),
            "schedule": (self.schedule, SCHEDULES),
            "normalization": (self.normalization, [*NORMALIZATIONS, "data"]),
            "method": (self.method, FINETUNE_METHODS),
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
        if not 0 < self.warmup < 1:
            raise ConfigError(f"warmup (a share of the steps) must be in (0, 1), got {self.warmup}")
        if not 0 <= self.augment <= 3:
            raise ConfigError(f"augment (a strength) must be in [0, 3], got {self.augment}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must not be negative, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.val_size is not None and self.val_size < 0:
            raise ConfigError(f"val_size must not be negative, got {self.val_size}")
        if self.method != "full" and self.init_from is None:
            raise ConfigError(f"method {self.method!r} fine-tunes: it needs init_from")
        if "normalization" in self.model_config:
            raise ConfigError("set normalization with its own option, not in model_config")
        check_model_config(self.model, self.model_config)
        if self.task in ("ctc", "lines") and (self.label_smoothing or self.class_weights):
            raise ConfigError(
                f"{self.model} learns with CTC: label smoothing and class weights do not apply"
            )

    @property
    def task(self) -> str:
        """What the model learns: ``"ctc"`` for the number reader, ``"lines"`` for the line
        reader, else ``"classification"``."""
        return MODEL_TASKS.get(self.model, "classification")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers (a resumed run must match them); progress
        bars, paths and devices do not."""
        ignore = {"resume", "progress", "out", "data_dir", "device", "compile"}
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignore}
        # A setting added later is left out at its default: checkpoints from before it resume.
        for name, default in LATER_SETTINGS.items():
            if settings[name] == default:
                del settings[name]
        return settings


def check_model_config(model: str, model_config: dict[str, Any]) -> None:
    """Refuse a ``model_config`` that ``model`` cannot be built with: a setting it does not have,
    a value of another type than the setting's default, or one its constructor rejects (the
    model is built on PyTorch's ``meta`` device to find out: no memory, no random draws)."""
    settings = model_settings(model)
    unknown = sorted(set(model_config) - set(settings))
    if unknown:
        has = f"its settings: {', '.join(settings)}" if settings else "it has none"
        raise ConfigError(f"{model} has no setting {', '.join(unknown)}; {has}")
    defaults = {n: p.default for n, p in inspect.signature(MODELS[model]).parameters.items()}
    for name, value in model_config.items():
        kind = type(defaults[name])
        # An int where a float is expected is fine (dropout=0); True is not an int here.
        fits = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not (fits or (kind is float and type(value) is int)):
            raise ConfigError(f"{model}'s {name} must be {kind.__name__}, got {value!r}")
    if not model_config:  # every model builds with its own defaults
        return
    try:
        with torch.device("meta"):
            build_model(model, **model_config)
    except (ValueError, TypeError, RuntimeError) as error:  # what a bad size raises
        raise ConfigError(f"{model} cannot be built with {model_config}: {error}") from None


#: Settings added after checkpoints were first written, with their defaults (see fingerprint).
LATER_SETTINGS: dict[str, Any] = {"fresh_strips": False}


def by_model(name: str) -> str:
    """Help text giving a setting's default for each model that has its own."""
    others = ", ".join(f"{m} {d[name]}" for m, d in MODEL_DEFAULTS.items() if name in d)
    return f"default {RECIPE_DEFAULTS[name]} ({others})" if others else ""


DATA_HELP = (
    "mnist, usps, strips (numbers written with MNIST digits), copiste (lines of handwritten "
    "French) or folder:PATH (class folders, or images with a labels.csv of file,text)"
)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options for :class:`TrainConfig` (shared by ``hwr train`` and notebooks).
    Options are never abbreviated: ``--data`` is never taken for ``--data-dir``."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        description="Train a model from scratch: a classifier of digits (MNIST by default) or "
        "of the classes of any folder, or (--model crnn) a reader of whole numbers.",
        add_help=add_help,
        allow_abbrev=False,
    )
    model_help = f"default {defaults.model} (with --data copiste: line_reader)"
    parser.add_argument("--model", default=None, choices=list(MODELS), help=model_help)
    data_help = f"{DATA_HELP}; default mnist (crnn: strips; line_reader: copiste)"
    parser.add_argument("--data", default=None, help=data_help)
    add_recipe_options(parser, by_model)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--label-smoothing", type=float, default=None, help=by_model("label_smoothing")
    )
    parser.add_argument(
        "--optimizer",
        default=None,
        choices=[*OPTIMIZERS, "adam"],
        help="sgd (Nesterov momentum, the default) or adamw; adam is another name for adamw",
    )
    parser.add_argument("--schedule", default=defaults.schedule, choices=list(SCHEDULES))
    parser.add_argument(
        "--normalization",
        default=defaults.normalization,
        choices=[*NORMALIZATIONS, "data"],
        help="data: the training pixels' own mean and standard deviation",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast (only where supported)"
    )
    parser.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun, batch norm with the statistics of the global batch",
    )
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use the first N images (crnn: N strips); " + by_model("train_limit"),
    )
    parser.add_argument(
        "--model-kwargs",
        dest="model_config",
        nargs="+",
        action="extend",
        type=parse_model_kwarg,
        default=[],
        metavar="NAME=VALUE",
        help="the model's own settings, e.g. line_reader: cell=lstm hidden=320 (a setting the "
        "model has by default is part of the run's settings once given: resume with the same)",
    )
    parser.add_argument("--compile", action="store_true", help="use torch.compile")
    parser.add_argument("--out", default=None, help="checkpoint path (default checkpoints/NAME.pt)")
    return parser


def parse_model_kwarg(text: str) -> tuple[str, Any]:
    """One ``NAME=VALUE`` of ``--model-kwargs``: the value as a Python literal (``16``,
    ``0.2``, ``True``; ``true`` and ``false`` too), or else as the text it is (``lstm``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def add_recipe_options(parser: argparse.ArgumentParser, default_of) -> None:
    """The options ``hwr train`` and ``hwr finetune`` share; ``default_of(name)`` writes the
    help text's default."""
    parser.add_argument("--epochs", type=int, default=None, help=default_of("epochs"))
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images (crnn: strips) per step, over all processes under torchrun; "
        + default_of("batch_size"),
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate; " + default_of("lr")
    )
    augment = parser.add_mutually_exclusive_group()
    augment.add_argument(
        "--augment",
        type=float,
        default=None,
        metavar="STRENGTH",
        help="augmentation strength: 1 is +-10 degrees, +-10%% shift and scale for digits (crnn: "
        "slant, stretch, smaller digits, pen width; line_reader: slant, stretch, pen width); "
        "0 is none; " + default_of("augment"),
    )
    augment.add_argument(
        "--no-augment", dest="augment", action="store_const", const=0.0, help="no augmentation"
    )
    parser.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="validation examples split off the training data (default: 5000 for MNIST, a "
        "tenth otherwise; a folder's own val/ when it has one)",
    )
    parser.add_argument(
        "--fresh-strips",
        action="store_true",
        help="crnn: write new training strips every epoch (the same number of them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help=DEVICES_HELP)
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/ and USPS/")
    parser.add_argument("--resume", action="store_true", help="continue from --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed :func:`get_args_parser` arguments."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in vars(args).items() if k in names}
    if "model_config" in settings:  # --model-kwargs: (name, value) pairs
        names = [name for name, _ in settings["model_config"]]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"--model-kwargs gives {', '.join(twice)} more than once")
        settings["model_config"] = dict(settings["model_config"])
    if settings.get("model", "") is None:  # not given: the data's reader, or the book's model
        settings["model"] = "line_reader" if args.data == "copiste" else TrainConfig.model
    return TrainConfig(**settings)
