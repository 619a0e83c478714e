"""The real-numbers test set: where numbers are found in a transcription and cut in a line, and
the published folder (every crop listed, labelled with digits only, none of the rejected)."""

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwr_utils import real_numbers
from hwr_utils.real_numbers import locate_numbers, numbers_in

PUBLISHED = Path(__file__).parents[1] / "book" / "real_numbers"


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("fondée en 1951. Elle", ["1951"]),
        ("(118) et 12 genres", ["118", "12"]),
        ("le 1er mai, 3,5 km, format A4", []),  # an ordinal, a decimal, a name
        ("1950", ["1950"]),
        ("1.000 habitants, 1 000 ans", ["1", "000"]),  # grouped by a point: none; by a space: two
    ],
)
def test_numbers_are_runs_of_digits_standing_alone(text, numbers):
    assert [text[a:b] for a, b in numbers_in(text)] == numbers


def test_a_cut_falls_in_the_widest_run_without_ink():
    ink = torch.tensor([1, 1, 0, 0, 0, 1, 0, 1], dtype=torch.bool).numpy()
    assert real_numbers._cut_between(ink, 0, 8) == 3  # the run 2..4, not the lone 6
    assert real_numbers._cut_between(ink[:2], 0, 2) == 1  # all ink: the middle


def test_a_number_is_cut_between_its_neighbours_in_the_gaps():
    alphabet = ["a", "b", " ", "1", "2", "c"]
    blank = len(alphabet)
    # Ten output columns, four pixels each; ink at pixels 0-7 (ab), 16-23 (12), 32-39 (c).
    image = torch.zeros(10, 40, dtype=torch.uint8)
    for start, stop in ((0, 8), (16, 24), (32, 40)):
        image[2:8, start:stop] = 255
    spikes = [0, 1, blank, 2, 3, 4, blank, 2, 5, blank]  # a b - space 1 2 - space c -
    outputs = 10 * F.one_hot(torch.tensor(spikes), blank + 1).float()
    assert locate_numbers(image, "ab 12 c", outputs, alphabet) == [("12", 12, 28)]
    # At the ends of a line, the cut is the line's own edge.
    assert locate_numbers(image[:, 16:24], "12", outputs[4:6], alphabet) == [("12", 0, 8)]


def test_a_blank_crop_is_not_written(tmp_path):
    from hwr_utils.real_numbers import NumberCrop, write_number_folder

    blank = np.full((40, 30), 255, np.uint8)
    written = np.full((40, 30), 255, np.uint8)
    written[10:30, 12:16] = 0  # a stroke: a 1
    crops = [(NumberCrop("page-01", 0, "7", 0, 30, "w"), blank),
             (NumberCrop("page-02", 0, "1", 0, 30, "w"), written)]  # fmt: skip
    assert write_number_folder(crops, tmp_path) == 1
    assert (tmp_path / "labels.csv").read_text().splitlines()[1:] == ["page-02.png,1,w"]


def test_the_published_folder_lists_every_crop_and_no_rejected_one():
    from hwr_utils.datasets import load_dataset

    with open(PUBLISHED / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    files = {row["file"] for row in rows}
    assert len(files) == len(rows) > 300
    assert files == {p.name for p in PUBLISHED.glob("*.png")}
    assert all(row["text"].isdigit() and row["writer"] for row in rows)
    assert not {Path(f).stem for f in files} & set(real_numbers.REJECTED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its README is no stray file
        dataset = load_dataset(f"folder:{PUBLISHED}", val_size=0)
    assert dataset.task == "ctc" and len(dataset.train) == len(rows)


def test_making_the_set_without_a_line_reader_says_so_in_one_line(tmp_path, capsys):
    missing = tmp_path / "line_reader.pt"
    assert real_numbers.main(["--checkpoint", str(missing), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error:" in error and str(missing) in error
    assert not (tmp_path / "out").exists()
