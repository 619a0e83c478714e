"""Every dataset the library trains, fine-tunes and evaluates on, behind one call:
:func:`load_dataset` (introduced in the fine-tuning chapter).

A dataset is named by a *spec*: ``mnist``, ``usps``, ``strips`` (whole numbers written with
MNIST digits, chapter "Reading whole numbers"), ``copiste`` (lines of handwritten French, Part
V: :mod:`hwr_utils.datasets.copiste`) or ``folder:PATH`` (your own images, see
:mod:`hwr_utils.datasets.folders`). The data decides what is learnt: the class names (or, for
text, the alphabet) come from it, and a model is sized by them. Splits are defined here once:

* ``mnist`` and ``strips``: MNIST's own test set; validation is ``val_size`` (default 5,000)
  training digits drawn with ``seed`` (:func:`hwr_utils.data.train_val_split`); strips are
  written with the digits of each split (:func:`hwr_utils.digit_strings.number_strip_splits`);
  ``draw_train`` writes any epoch's new training strips (``hwr train --fresh-strips``).
* ``copiste``: the published split by writer (every writer's lines in one split only).
* ``usps``: USPS's own training and test sets, brought to MNIST's conventions
  (:func:`hwr_utils.data.usps_as_mnist`); validation as for a folder.
* ``folder:PATH``: the folder's ``train/``, ``val/`` and ``test/`` subfolders when it has them;
  otherwise the whole folder is training data. Without a ``val/``, validation is ``val_size``
  examples, or one in ten, drawn with ``seed`` (by class, for classes).

Each dataset also says where its files were found and their checksums (``provenance``), which
checkpoints record in their model card.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ..data import (
    CLASS_NAMES,
    MNIST_MD5,
    USPS_MD5,
    MNISTSplit,
    find_mnist,
    find_usps,
    load_mnist,
    load_usps,
    train_val_split,
    usps_as_mnist,
)
from ..digit_strings import NumberStrips, epoch_strips, number_strip_splits
from ..errors import ConfigError
from ..lines import PaddedLines, pad_lines
from ..models import MODEL_TASKS

#: The named datasets; ``folder:PATH`` is the others.
BUILTIN = ("mnist", "usps", "strips", "copiste")
#: Validation examples split off MNIST's training set unless told otherwise.
MNIST_VAL_SIZE = 5000
#: Share of the training examples kept for validation where the data has no validation split.
VAL_FRACTION = 0.1

# images uint8 (N, H, W); labels (N,) classes or (N, L) text; lines also carry their widths
Split = MNISTSplit | NumberStrips | PaddedLines


@dataclass
class Dataset:
    """A dataset ready to train on: its splits, what its labels mean, and where it came from.

    ``task`` is ``"classification"`` (``labels`` are class indices into ``class_names``) or
    ``"ctc"`` (``labels`` are rows of symbol indices into ``class_names``, the alphabet, padded
    with -1). ``test`` is None when the data has no test split.
    """

    spec: str
    task: str
    class_names: list[str]
    train: Split
    val: Split
    test: Split | None
    provenance: dict[str, Any] = field(default_factory=dict)
    # Generated training data (number strips): epoch -> that epoch's training split, for runs
    # that write new examples every epoch; None where the data is what it is.
    draw_train: Callable[[int], Split] | None = field(default=None, repr=False, compare=False)

    def pixel_stats(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels, scaled to [0, 1]: what a model
        trained from scratch on this data normalizes with (``--normalization data``)."""
        # From the count of each of the 256 grey levels: no float copy of the whole set.
        counts = torch.bincount(self.train.images.flatten().long(), minlength=256).double()
        levels = torch.arange(256, dtype=torch.float64) / 255.0
        n = counts.sum()
        mean = (counts * levels).sum() / n
        variance = (counts * (levels - mean) ** 2).sum() / (n - 1)  # the sample variance
        return mean.item(), variance.sqrt().item()

    def card(self) -> dict[str, Any]:
        """What a model card says of its training data."""
        mean, std = self.pixel_stats()
        sizes = {name: len(split) for name, split in self.splits().items()}
        return {"spec": self.spec, "sizes": sizes, "pixel_mean": mean, "pixel_std": std,
                **self.provenance}  # fmt: skip

    def splits(self) -> dict[str, Split]:
        """The splits that exist, by name."""
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {name: split for name, split in named.items() if split is not None}


def default_data(model: str) -> str:
    """The dataset a model trains on unless told: number strips for the number reader,
    Copiste d'un jour's lines for the line reader, MNIST for the rest."""
    return {"ctc": "strips", "lines": "copiste"}.get(MODEL_TASKS.get(model, ""), "mnist")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"mnist"`` -> ("mnist", None); ``"folder:PATH"`` -> ("folder", "PATH"). Anything else
    raises :class:`~hwr_utils.errors.ConfigError` naming what is accepted."""
    name, _, path = spec.partition(":")
    if name == "folder" and path:
        return "folder", path
    if name in BUILTIN and not path:
        return name, None
    raise ConfigError(
        f"unknown dataset {spec!r}; use {', '.join(BUILTIN)} or folder:PATH (a folder of "
        "class folders, or of images with a labels.csv)"
    )


def load_dataset(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    val_size: int | None = None,
    seed: int = 0,
    train_limit: int | None = None,
    alphabet: list[str] | None = None,
    task: str | None = None,
) -> Dataset:
    """Load the dataset ``spec`` names, with its splits (see the module's text for the rules).

    ``data_dir`` is where the built-in datasets are looked for first (then ``HWR_DATA``, ...,
    as :func:`hwr_utils.data.find_mnist` says). ``train_limit`` keeps the first N training
    examples (for ``strips``: writes N training strips). ``alphabet`` fixes the symbols a text
    folder may use (a reader being fine-tuned keeps its own); ``task="lines"`` reads a text
    folder as lines of handwriting (for the line reader) rather than numbers. Bad input raises
    one-line :class:`~hwr_utils.errors.HwrError` subclasses naming the file or the setting.
    """
    kind, path = parse_spec(spec)
    if val_size is not None and val_size < 0:
        raise ConfigError(f"val_size must not be negative, got {val_size}")
    if kind == "folder":
        from .folders import load_folder

        dataset = load_folder(path, val_size, seed, alphabet, lines=task == "lines")
    elif kind == "copiste":
        dataset = _copiste(data_dir, alphabet)
    elif kind == "usps":
        train, test = (usps_as_mnist(split) for split in load_usps(data_dir))
        root = find_usps(data_dir, download=False)
        train, val = _split_off_validation(train, val_size, seed)
        provenance = {"found_in": str(root.resolve()), "md5": dict(USPS_MD5)}
        dataset = Dataset(spec, "classification", list(CLASS_NAMES), train, val, test, provenance)
    else:
        train, test = load_mnist(data_dir)
        root = find_mnist(data_dir, download=False)
        val_count = MNIST_VAL_SIZE if val_size is None else val_size
        _check_val_size(val_count, len(train))
        train, val = train_val_split(train, val_count, seed=seed)
        provenance = {"found_in": str(root.resolve()), "md5": dict(MNIST_MD5)}
        task, draw_train = "classification", None
        if kind == "strips":
            count = train_limit if train_limit is not None else len(train)
            draw_train = partial(epoch_strips, train, count, seed)
            train, val, test = number_strip_splits(train, val, test, count, seed)
            provenance["strips"] = {"train_seed": seed, "val_seed": seed + 1}
            task, train_limit = "ctc", None
        dataset = Dataset(spec, task, list(CLASS_NAMES), train, val, test, provenance, draw_train)
    if train_limit is not None:
        if train_limit < 1:
            raise ConfigError(f"train_limit must be positive, got {train_limit}")
        keep = dataset.train
        if isinstance(keep, PaddedLines):
            dataset.train = keep.subset(range(min(train_limit, len(keep))))
        else:
            dataset.train = type(keep)(keep.images[:train_limit], keep.labels[:train_limit])
    return dataset


def _copiste(data_dir: str | os.PathLike | None, alphabet: list[str] | None) -> Dataset:
    """Copiste d'un jour's lines (:mod:`hwr_utils.datasets.copiste`), split by writer as
    published; the alphabet is the training texts' symbols unless a reader brings its own."""
    from .copiste import load_copiste

    splits, provenance = load_copiste(data_dir)
    symbols = list(alphabet) if alphabet is not None else provenance["alphabet"]
    padded = {name: pad_lines(split.images, split.texts, symbols, split.writers, split.consent)
              for name, split in splits.items()}  # fmt: skip
    return Dataset("copiste", "lines", symbols, padded["train"], padded["val"], padded["test"],
                   provenance)  # fmt: skip


def _check_val_size(val_size: int, available: int) -> None:
    if not 0 <= val_size < available:
        raise ConfigError(
            f"--val-size {val_size} leaves no training data: the training set has {available} "
            f"examples; choose 0 to {available - 1}"
        )


def _split_off_validation(train: Split, val_size: int | None, seed: int) -> tuple[Split, Split]:
    """Split ``val_size`` examples (default: :data:`VAL_FRACTION` of them) off ``train`` with
    ``seed``; for classes, as nearly the same share of every class as counts allow."""
    count = round(VAL_FRACTION * len(train)) if val_size is None else val_size
    _check_val_size(count, len(train))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    if train.labels.ndim == 1 and count:
        # Stratified: interleave the classes in the shuffled order, then take the first ones.
        rank = torch.empty(len(train), dtype=torch.float64)
        for label in train.labels.unique():
            members = order[train.labels[order] == label]
            rank[members] = torch.arange(len(members), dtype=torch.float64) / len(members)
        order = order[torch.sort(rank[order], stable=True).indices]
    val_index, train_index = order[:count].sort().values, order[count:].sort().values
    if isinstance(train, PaddedLines):
        return train.subset(train_index), train.subset(val_index)
    kind = type(train)
    return (
        kind(train.images[train_index], train.labels[train_index]),
        kind(train.images[val_index], train.labels[val_index]),
    )


def evaluation_split(
    spec: str, data_dir: str | os.PathLike | None, class_names: list[str], task: str
) -> tuple[Split, str]:
    """What ``hwr evaluate`` scores a model on, and its name: the test split of ``spec``, or,
    for a folder without ``test/``, all of it. Labels come in the model's ``class_names``
    order; a class (or symbol) the model does not know is an error naming it."""
    alphabet = class_names if task in ("ctc", "lines") else None
    # Only the test split is wanted: no training strips are written for it.
    limit = 1 if parse_spec(spec)[0] == "strips" else None
    dataset = load_dataset(spec, data_dir, val_size=0, train_limit=limit, alphabet=alphabet,
                           task=task)  # fmt: skip
    if dataset.task != task:
        raise ConfigError(f"{spec} holds {dataset.task} data; the model learnt {task}")
    split, name = (dataset.test, "test") if dataset.test is not None else (dataset.train, "all")
    if task == "classification" and dataset.class_names != list(class_names):
        unknown = [n for n in dataset.class_names if n not in class_names]
        if unknown:
            raise ConfigError(
                f"{spec} has classes the model does not know: {', '.join(unknown)} "
                f"(it knows {', '.join(class_names)})"
            )
        order = torch.tensor([list(class_names).index(n) for n in dataset.class_names])
        split = MNISTSplit(split.images, order[split.labels])
    return split, name
