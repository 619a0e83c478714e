"""Who wrote each MNIST digit: the writer ids QMNIST recovered (Yadav and Bottou, 2019), used by
the evaluation chapter to score a model writer by writer.

MNIST was cut from NIST's Special Database 19, whose forms were filled in by two populations:
Census Bureau employees (NIST's "series" 0 and 1, hsf_0 and hsf_1) and high-school students
(series 4). QMNIST reconstructed MNIST's preprocessing and matched every MNIST digit to its NIST
original, which gives its writer. The label files are looked for under ``<root>/QMNIST/`` of the
usual data roots (:func:`hwr_utils.data.candidate_roots`).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import ChecksumError, find_data, md5sum

QMNIST_MD5 = {
    "qmnist-train-labels.tsv.gz": "dd6774ccdd27d78aba65dced61be5c76",
    "qmnist-test-labels.tsv.gz": "e2bec717a181a540da4a3a2023070284",
}
QMNIST_URL = "https://github.com/facebookresearch/qmnist"
#: NIST's series of forms filled in by high-school students; the others are employees'.
STUDENT_SERIES = 4


@dataclass
class Writers:
    """One MNIST split's writers: ``writer`` (N,) NIST writer ids, ``series`` (N,) NIST series
    (0 and 1: Census Bureau employees; 4: high-school students), both int64, in MNIST's order."""

    writer: torch.Tensor
    series: torch.Tensor

    @property
    def is_student(self) -> torch.Tensor:
        """True where the digit was written by a high-school student."""
        return self.series == STUDENT_SERIES


def find_qmnist(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding QMNIST's two label files, searched like MNIST
    (:func:`~hwr_utils.data.find_data`). Missing, it raises
    :class:`~hwr_utils.data.DataNotFoundError` saying where to put them."""
    root = find_data(
        "QMNIST",
        qmnist_dir,
        lambda root: all((qmnist_dir(root) / name).is_file() for name in QMNIST_MD5),
        f"its label files ({', '.join(QMNIST_MD5)})",
        f"copy them from {QMNIST_URL} into <DIR>/QMNIST/ and pass --data-dir <DIR> or set "
        "HWR_DATA=<DIR>.",
        data_dir,
        downloadable=False,
    )
    return qmnist_dir(root)


def qmnist_dir(root: str | os.PathLike) -> Path:
    """The folder that holds QMNIST's label files under a data ``root``: ``<root>/QMNIST``."""
    return Path(root) / "QMNIST"


def load_mnist_writers(
    mnist_labels: tuple[torch.Tensor, torch.Tensor], data_dir: str | os.PathLike | None = None
) -> tuple[Writers, Writers]:
    """The writers of MNIST's training (60,000) and test (10,000) digits.

    ``mnist_labels`` are MNIST's own training and test labels: QMNIST's rows must give the same
    digit at every position, or the files do not describe this MNIST (a one-line error).
    """
    folder = find_qmnist(data_dir)
    splits = []
    for name, labels in zip(QMNIST_MD5, mnist_labels, strict=True):
        path = folder / name
        if md5sum(path) != QMNIST_MD5[name]:
            raise ChecksumError(f"{path} is not QMNIST's file (md5 differs): copy it again")
        with gzip.open(path, "rt") as handle:
            # Columns: digit, NIST series, NIST writer id, then five the book does not use.
            table = torch.from_numpy(np.loadtxt(handle, dtype=np.int64, usecols=(0, 1, 2)))
        table = table[: len(labels)]  # QMNIST's test file goes on past MNIST's 10,000
        if len(table) != len(labels) or not torch.equal(table[:, 0], labels):
            raise ChecksumError(f"{path} does not match MNIST's labels row by row")
        splits.append(Writers(writer=table[:, 2].clone(), series=table[:, 1].clone()))
    return splits[0], splits[1]
