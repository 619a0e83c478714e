"""Your own images as a dataset: ``folder:PATH`` (introduced in the fine-tuning chapter).

Two layouts, told apart by what the folder holds:

* **classes** (torchvision's ``ImageFolder`` layout): ``PATH/<class name>/<image>``, one folder
  per class, any number of classes from 2, any names (``zéro``, ``un``, ...); the classes are
  the folder names in sorted order.
* **text** (numbers, words, lines): ``PATH/labels.csv`` with a header and the columns
  ``file,text`` (and optionally ``writer``), the images beside it; the alphabet is the set of
  characters of the training texts, in sorted order.

Either layout may instead sit in ``PATH/train``, ``PATH/val`` and ``PATH/test`` (``train``
required). Every image goes through exactly what ``hwr predict`` (classes) or ``hwr read``
(text) does to a file, so what a model trains on is what it later sees. Every problem is
reported, never skipped in silence: files that cannot be used (unreadable, empty, blank, a row
naming a missing file) stop the load with one line naming them; files that are not images by
their extension (a README or LICENSE aside) are counted in the provenance and named in a
warning.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ..data import MNISTSplit
from ..digit_strings import NumberStrips
from ..errors import HwrError
from ..lines import pad_lines
from ..preprocess import load_image, preprocess_number_photo, preprocess_photo
from . import Dataset, Split, _split_off_validation

LABELS_FILE = "labels.csv"
#: How many bad files one error names before it says how many more there are.
NAMED = 5


class FolderDataError(HwrError, ValueError):
    """A folder dataset that cannot be used as it is; the message names the files."""


def load_folder(
    path: str,
    val_size: int | None = None,
    seed: int = 0,
    alphabet: list[str] | None = None,
    lines: bool = False,
) -> Dataset:
    """Load ``folder:PATH`` (see the module's text): its splits, classes or alphabet, and its
    provenance (the folder, how many files, one MD5 over every file's name, label and bytes).
    ``alphabet``: the symbols texts may use (default: those of the training texts). ``lines``:
    a text folder holds lines of handwriting (Part V), read as ``hwr read`` reads a line with
    a line reader, rather than numbers."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FolderDataError(f"folder:{path}: {root} is not a folder")
    has_splits = (root / "train").is_dir()
    parts = {name: root / name for name in ("train", "val", "test")} if has_splits else {}
    train_root = parts.get("train", root)
    task = "ctc" if (train_root / LABELS_FILE).is_file() else "classification"
    if task == "ctc" and lines:
        task = "lines"
    reader = _read_texts if task != "classification" else _read_classes
    train_files, train_labels, names, train_writers = reader(
        train_root, alphabet if task != "classification" else None
    )
    digest, skipped = hashlib.md5(), []
    splits: dict[str, Split | None] = {}
    for name in ("train", "val", "test"):
        folder = parts.get(name)
        if name == "train":
            files, labels, writers = train_files, train_labels, train_writers
        elif folder is None or not folder.is_dir():
            splits[name] = None
            continue
        else:
            files, labels, _, writers = reader(folder, names)
        splits[name] = _images(files, labels, task, names, writers)
        for file, label in zip(files, labels, strict=True):
            digest.update(f"{file.relative_to(root)}\0{label}\0".encode())
            digest.update(file.read_bytes())
        skipped += _not_images(folder or root, task)
    if splits["val"] is None:
        splits["train"], splits["val"] = _split_off_validation(splits["train"], val_size, seed)
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:NAMED])
        more = f" and {len(skipped) - NAMED} more" if len(skipped) > NAMED else ""
        warnings.warn(f"folder:{path}: skipped {len(skipped)} files that are not images by "
                      f"their extension: {shown}{more}", stacklevel=3)  # fmt: skip
    provenance = {
        "found_in": str(root.resolve()),
        "files": sum(len(s) for s in splits.values() if s is not None),
        "md5": digest.hexdigest(),
        "skipped": [str(p) for p in skipped],
    }
    return Dataset(f"folder:{root.resolve()}", task, names, splits["train"], splits["val"],
                   splits["test"], provenance)  # fmt: skip


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS


#: Files a folder may hold beside its data without a warning: what it is, and its terms.
DOCUMENTATION = ("README", "LICENSE")


def _not_images(folder: Path, task: str) -> list[Path]:
    """Files a load passed over: not images by their extension, hidden files and the folder's
    README and LICENSE aside."""
    if task != "classification":
        candidates = folder.iterdir()
    else:
        candidates = (p for d in folder.iterdir() if d.is_dir() for p in d.iterdir())
    return sorted(
        p
        for p in candidates
        if p.is_file() and not p.name.startswith(".") and not _is_image(p)
        and p.name != LABELS_FILE and p.stem.upper() not in DOCUMENTATION
    )  # fmt: skip


def _read_classes(
    folder: Path, known: list[str] | None
) -> tuple[list[Path], list[int], list[str], None]:
    """Image files and class indices of a folder of class folders, the classes, and no
    writers. ``known``: the classes of the training split, which every other split must use."""
    try:
        names, _ = find_classes(str(folder))
    except FileNotFoundError:
        raise FolderDataError(
            f"{folder} holds neither class folders (one per class, images inside) nor a "
            f"{LABELS_FILE} (file,text)"
        ) from None
    if known is None and len(names) < 2:
        raise FolderDataError(f"{folder} has {len(names)} class folder; at least 2 are needed")
    classes = names if known is None else known
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise FolderDataError(
            f"{folder} has class folders the training data does not: {', '.join(unknown)}"
        )
    files, labels, empty = [], [], []
    for name in names:
        images = sorted(p for p in (folder / name).iterdir() if _is_image(p))
        if not images:
            empty.append(name)
        files += images
        labels += [classes.index(name)] * len(images)
    if empty:
        raise FolderDataError(f"{folder}: class folder(s) with no image: {', '.join(empty)}")
    return files, labels, classes, None


def _read_texts(
    folder: Path, known: list[str] | None
) -> tuple[list[Path], list[str], list[str], list[str]]:
    """Image files and texts listed by ``folder/labels.csv``, the alphabet (the training
    texts' characters; ``known``, for the other splits), and each file's writer from the
    optional ``writer`` column (``""`` if none: the per-writer figures of ``hwr evaluate``
    group lines by it)."""
    table = folder / LABELS_FILE
    with open(table, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "text"} <= set(rows[0]):
        raise FolderDataError(f"{table} needs a header with the columns file,text and one row "
                              "per image")  # fmt: skip
    files, texts, writers, problems = [], [], [], []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        file, text = folder / (row["file"] or "").strip(), (row["text"] or "").strip()
        if not row["file"] or not file.is_file():
            problems.append(f"line {number}: no file {file.name or '(empty)'}")
        elif not text:
            problems.append(f"line {number}: {file.name} has no text")
        else:
            files.append(file)
            texts.append(text)
            writers.append((row.get("writer") or "").strip())
    _raise_if(problems, table)
    alphabet = sorted(set("".join(texts))) if known is None else known
    return files, texts, alphabet, writers


def _images(
    files: list[Path], labels: list, task: str, names: list[str], writers: list[str] | None = None
) -> Split:
    """Every file through what ``hwr predict`` / ``hwr read`` do; all problems in one error.
    Lines keep their ``writers``."""
    preprocess: Callable[[np.ndarray], Any] = (
        preprocess_number_photo if task == "ctc" else preprocess_photo
    )
    if task == "lines":
        from .copiste import preprocess_line_photo

        preprocess = preprocess_line_photo
    images, problems = [], []
    for file in files:
        try:
            images.append(preprocess(load_image(file)))
        except HwrError as error:
            problems.append(str(error) if str(file) in str(error) else f"{file}: {error}")
    _raise_if(problems, files[0].parent if files else None)
    if task == "classification":
        return MNISTSplit(torch.from_numpy(np.stack(images)), torch.tensor(labels))
    if task == "lines":
        _check_alphabet(labels, files, names)
        lines = [torch.as_tensor(image) for image in images]
        return pad_lines(lines, labels, names, writers=writers)
    return _strips(images, labels, files, names)


def _strips(images: list[np.ndarray], texts: list[str], files: list[Path], alphabet: list[str]):
    """Strips padded with background to the widest, and texts as padded symbol indices."""
    _check_alphabet(texts, files, alphabet)
    height, width = images[0].shape[0], max(image.shape[1] for image in images)
    strips = np.zeros((len(images), height, width), np.uint8)
    labels = torch.full((len(texts), max(len(t) for t in texts)), -1, dtype=torch.long)
    for i, (image, text) in enumerate(zip(images, texts, strict=True)):
        strips[i, :, : image.shape[1]] = image
        labels[i, : len(text)] = torch.tensor([alphabet.index(c) for c in text])
    return NumberStrips(torch.from_numpy(strips), labels)


def _check_alphabet(texts: list[str], files: list[Path], alphabet: list[str]) -> None:
    """A one-line error naming the files whose texts hold symbols outside ``alphabet``."""
    outside = [f"{f.name} ({''.join(sorted(set(t) - set(alphabet)))})"
               for f, t in zip(files, texts, strict=True) if set(t) - set(alphabet)]  # fmt: skip
    if outside:
        raise FolderDataError(
            f"{files[0].parent}: texts with symbols outside the alphabet "
            f"({''.join(alphabet)}): {', '.join(outside[:NAMED])}"
        )


def _raise_if(problems: list[str], where: Path | None) -> None:
    if problems:
        more = f"; and {len(problems) - NAMED} more" if len(problems) > NAMED else ""
        raise FolderDataError(
            f"{len(problems)} problem(s) in {where}: {'; '.join(problems[:NAMED])}{more}"
        )


def write_class_folder(
    images: torch.Tensor, labels: torch.Tensor, class_names: list[str], root: str | Path,
    size: int = 64,
) -> Path:  # fmt: skip
    """Write uint8 images (N, H, W), white ink on black, as a folder dataset of the classes
    layout: ``root/<class name>/<index>.png``, dark ink on white paper, enlarged to ``size``
    pixels (what a scan of written digits looks like; the fine-tuning chapter makes one from
    USPS). Returns ``root``."""
    from PIL import Image

    root = Path(root)
    for index, (image, label) in enumerate(zip(images.numpy(), labels.tolist(), strict=True)):
        (root / class_names[label]).mkdir(parents=True, exist_ok=True)
        enlarged = Image.fromarray(255 - image).resize((size, size), Image.Resampling.BICUBIC)
        enlarged.save(root / class_names[label] / f"{index:05d}.png")
    return root
