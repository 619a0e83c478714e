"""The book's real-numbers test set: handwritten numbers (years, dates, counts) cut out of the
*Copiste d'un jour* lines of the validation and test writers (Part V; BAnQ, 2024, CC BY 4.0).

A line's transcription says which numbers it holds, not where they are. The line reader says
where: the most probable alignment of the known text to the line's columns
(:func:`hwr_utils.ctc.forced_alignment`) puts each character in a few columns. A number is cut
between its neighbours, in the widest run of columns without ink between the previous
character and the number's first digit (and likewise after its last), so that the space
between two words, not a stroke, is where the cut falls. Every crop was then looked at:
:data:`REJECTED` lists the crops left out and why; each crop kept shows the number of its label
(the labels are the copied text, so a number written otherwise would have been left out too).

The crops are written as a text folder (:mod:`hwr_utils.datasets.folders`): dark ink on white,
PNG, with ``labels.csv`` (``file,text,writer``), so that any number reader scores on them with
``hwr evaluate --checkpoint PATH --data folder:book/real_numbers``. They are a test set only:
nothing in the book trains on them. To make them again::

    python -m hwr_utils.real_numbers --checkpoint checkpoints/line_reader.pt \\
        --out book/real_numbers

with the book's line reader (``hwr train --data copiste``, seed 0): another reader may place
some numbers otherwise, and :data:`REJECTED` was decided by looking at this one's crops.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoints import load_model
from .ctc import forced_alignment
from .datasets.copiste import LineSplit, load_copiste
from .errors import HwrError
from .lines import pad_lines
from .predict import predict_lines
from .preprocess import ImageError, preprocess_number_photo

#: A number: a run of digits standing alone (not in "1er" or "A4"), and not part of a decimal or
#: a number grouped with a point or comma ("3,5", "1.000"), whose pieces would be cut apart; a
#: number grouped with a space ("1 000") gives a crop per group.
NUMBER = re.compile(r"(?<![\w.,])\d+(?!\w)(?![.,]\d)")
#: White columns added at each side of a crop, as a scan's paper around the ink.
MARGIN = 4

NEIGHBOUR = "ink of a neighbouring character (a comma, a point, a letter) in the crop"
CUT = "a digit cut by the crop"
MISPLACED = "not the number: the alignment placed it elsewhere"
UNREADABLE = "overwritten or unreadable digits"
#: Crops left out after looking at each one, by id, and why.
REJECTED: dict[str, str] = {
    "imp_wikitexte_0024-03": NEIGHBOUR,
    "imp_wikitexte_0087-09": NEIGHBOUR,
    "imp_wikitexte_0141-04": CUT,
    "imp_wikitexte_0141-08": NEIGHBOUR,
    "imp_wikitexte_0141-09": NEIGHBOUR,
    "imp_wikitexte_0153-05": CUT,
    "imp_wikitexte_0160-02": NEIGHBOUR,
    "imp_wikitexte_0161-07": CUT,
    "imp_wikitexte_0161-09": NEIGHBOUR,
    "imp_wikitexte_0161-10": NEIGHBOUR,
    "imp_wikitexte_0161-11": CUT,
    "imp_wikitexte_0210-02": MISPLACED,
    "imp_wikitexte_0211-01": UNREADABLE,
    "imp_wikitexte_0211-02": UNREADABLE,
    "imp_wikitexte_0211-09": NEIGHBOUR,
    "imp_wikitexte_0220-06": UNREADABLE,
    "imp_wikitexte_0220-07": NEIGHBOUR,
    "imp_wikitexte_0220-10": UNREADABLE,
    "imp_wikitexte_0220-13": UNREADABLE,
    "imp_wikitexte_0220-17": UNREADABLE,
    "imp_wikitexte_0220-18": NEIGHBOUR,
    "imp_wikitexte_0283-07": NEIGHBOUR,
    "imp_wikitexte_0283-08": NEIGHBOUR,
    "imp_wikitexte_0283-09": NEIGHBOUR,
    "imp_wikitexte_0306-01": NEIGHBOUR,
    "oldbatch_wikitexte_0001-02": CUT,
    "wikitexte_0001_2-02": NEIGHBOUR,
    "wikitexte_0012-01": NEIGHBOUR,
    "wikitexte_0012-02": NEIGHBOUR,
    "wikitexte_0012-03": NEIGHBOUR,
    "wikitexte_0012-05": NEIGHBOUR,
    "wikitexte_0012-06": NEIGHBOUR,
    "wikitexte_0012-07": NEIGHBOUR,
    "wikitexte_0012-08": NEIGHBOUR,
    "wikitexte_0012-10": NEIGHBOUR,
    "wikitexte_0012-11": NEIGHBOUR,
    "wikitexte_0054_2-01": CUT,
    "wikitexte_0063-05": NEIGHBOUR,
    "wikitexte_0107-03": CUT,
    "wikitexte_0111-05": CUT,
    "wikitexte_0111-14": CUT,
    "wikitexte_0138-09": NEIGHBOUR,
    "wikitexte_0138-10": NEIGHBOUR,
    "wikitexte_0151_1-02": UNREADABLE,
    "wikitexte_0151_1-04": NEIGHBOUR,
    "wikitexte_0151_2-02": NEIGHBOUR,
    "wikitexte_0151_2-03": NEIGHBOUR,
    "wikitexte_0151_2-06": NEIGHBOUR,
    "wikitexte_0182-03": UNREADABLE,
    "wikitexte_0182-04": UNREADABLE,
    "wikitexte_0182-06": CUT,
    "wikitexte_0200_1-02": UNREADABLE,
    "wikitexte_0200_2-03": UNREADABLE,
    "wikitexte_0200_2-06": CUT,
    "wikitexte_0200_2-07": UNREADABLE,
    "wikitexte_0200_2-08": UNREADABLE,
    "wikitexte_0210-11": CUT,
    "wikitexte_0238-04": NEIGHBOUR,
    "wikitexte_0238-07": NEIGHBOUR,
    "wikitexte_0238-10": NEIGHBOUR,
    "wikitexte_0260-01": NEIGHBOUR,
    "wikitexte_0260-02": UNREADABLE,
    "wikitexte_0260-03": NEIGHBOUR,
    "wikitexte_0260-04": NEIGHBOUR,
    "wikitexte_0260-05": NEIGHBOUR,
    "wikitexte_0260-06": CUT,
    "wikitexte_0280-02": NEIGHBOUR,
}


@dataclass
class NumberCrop:
    """Where one number is in one line image: columns ``[left, right)`` of line ``line``."""

    id: str  # the page's name and the number's place among the page's numbers
    line: int
    text: str
    left: int
    right: int
    writer: str


def numbers_in(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of the numbers of ``text`` (:data:`NUMBER`)."""
    return [match.span() for match in NUMBER.finditer(text)]


def _cut_between(ink: np.ndarray, start: int, stop: int) -> int:
    """The column to cut at between columns ``start`` and ``stop``: the middle of the widest
    run without ink there, or the middle of the span where every column has ink."""
    if stop <= start:
        return start
    empty = ~ink[start:stop]
    best, best_length, run_start = None, 0, None
    for i, blank in enumerate([*empty, False]):
        if blank and run_start is None:
            run_start = i
        elif not blank and run_start is not None:
            if i - run_start > best_length:
                best, best_length = run_start, i - run_start
            run_start = None
    middle = (start + stop) // 2 if best is None else start + best + best_length // 2
    return int(middle)


def locate_numbers(
    image: torch.Tensor, text: str, outputs: torch.Tensor, alphabet: list[str]
) -> list[tuple[str, int, int]]:
    """Each number of ``text`` in the line ``image`` (uint8 (H, W), ink bright on 0), as
    ``(number, left, right)`` columns, from the line reader's ``outputs`` (T, C) on it.
    Characters outside ``alphabet`` are left out of the alignment (they have no column)."""
    index = {symbol: i for i, symbol in enumerate(alphabet)}
    known = [k for k, symbol in enumerate(text) if symbol in index]
    alignment = forced_alignment(outputs, [index[text[k]] for k in known])
    columns: dict[int, list[int]] = {}  # character of text -> the output columns emitting it
    for column, position in enumerate(alignment):
        if position >= 0:
            columns.setdefault(known[position], []).append(column)
    width = image.shape[1]
    pixels = width / len(alignment)  # image columns per output column
    ink = (image > 0).any(0).numpy()
    placed = sorted(k for k in columns if not text[k].isspace())
    found = []
    for start, end in numbers_in(text):
        first = round(columns[start][0] * pixels)
        last = round((columns[end - 1][-1] + 1) * pixels)
        before = [k for k in placed if k < start]
        after = [k for k in placed if k >= end]
        left = (
            0
            if not before
            else _cut_between(ink, round((columns[before[-1]][-1] + 1) * pixels), first)
        )
        right = (
            width if not after else _cut_between(ink, last, round(columns[after[0]][0] * pixels))
        )
        found.append((text[start:end], left, right))
    return found


def cut_numbers(
    lines: LineSplit, model: torch.nn.Module, alphabet: list[str]
) -> tuple[list[NumberCrop], list[int]]:
    """Every number of every line of ``lines``, located with the line reader ``model``, and the
    lines holding numbers that could not be aligned (a text too long for the line's columns)."""
    holding = [i for i, text in enumerate(lines.texts) if numbers_in(text)]
    padded = pad_lines(
        [lines.images[i] for i in holding], [lines.texts[i] for i in holding], alphabet
    )
    # Read flush with each line's own width: the alignment spans the image's columns exactly.
    outputs = predict_lines(model, padded.images, padded.widths, margin=0)
    crops, counts, unaligned = [], {}, []
    for i, line_outputs in zip(holding, outputs, strict=True):
        try:
            found = locate_numbers(lines.images[i], lines.texts[i], line_outputs, alphabet)
        except ValueError:
            unaligned.append(i)
            continue
        for number, left, right in found:
            page = lines.pages[i]
            counts[page] = counts.get(page, 0) + 1
            crops.append(
                NumberCrop(f"{page}-{counts[page]:02d}", i, number, left, right, lines.writers[i])
            )
    return crops, unaligned


def crop_image(lines: LineSplit, crop: NumberCrop) -> np.ndarray:
    """The crop as a scan shows it: dark ink on white, :data:`MARGIN` white columns each side."""
    ink = lines.images[crop.line][:, crop.left : crop.right].numpy()
    return np.pad(255 - ink, ((0, 0), (MARGIN, MARGIN)), constant_values=255)


def write_number_folder(crops: list[tuple[NumberCrop, np.ndarray]], out: str | Path) -> int:
    """Write the crops (each with its :func:`crop_image`) not in :data:`REJECTED` to ``out`` as a
    text folder labelled with their transcription; returns how many were written. A crop that
    ``hwr read`` would refuse as blank (a number misplaced by a poor reader) is left out."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for crop, image in crops:
        if crop.id in REJECTED or not _has_ink(image):
            continue
        file = f"{crop.id}.png"
        Image.fromarray(image).save(folder / file)
        rows.append({"file": file, "text": crop.text, "writer": crop.writer})
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        table = csv.DictWriter(handle, ["file", "text", "writer"])
        table.writeheader()
        table.writerows(rows)
    return len(rows)


def _has_ink(image: np.ndarray) -> bool:
    try:
        preprocess_number_photo(image)
    except ImageError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cut the real-numbers test set out of the lines.")
    parser.add_argument("--checkpoint", default="checkpoints/line_reader.pt")
    parser.add_argument("--out", default="book/real_numbers")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        splits, _ = load_copiste(args.data_dir)
        model, checkpoint = load_model(args.checkpoint)
    except HwrError as error:  # a missing checkpoint or data set: one line, as hwr says it
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    crops = []
    for split in ("val", "test"):
        found, unaligned = cut_numbers(splits[split], model, checkpoint["class_names"])
        crops += [(crop, crop_image(splits[split], crop)) for crop in found]
        for i in unaligned:
            print(f"{split} line {i} ({splits[split].pages[i]}) could not be aligned: left out")
    written = write_number_folder(crops, args.out)
    print(f"{written} of {len(crops)} numbers written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
