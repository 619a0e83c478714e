"""The number reader scored on other hands than MNIST's: what ``benchmarks/real_numbers.py`` and
``benchmarks/number_reader_augment.py`` share (chapter "Reading whole numbers")."""

from __future__ import annotations

from pathlib import Path

from .. import ctc
from ..data import to_float
from ..datasets.copiste import load_copiste
from ..digit_strings import NumberStrips
from ..predict import predict_logits
from ..real_numbers import crop_image, cut_numbers, write_number_folder
from ..teaching.notebooks import load_or_train


def misreadings(readings: list[list[int]], truths: list[list[int]]) -> dict[str, int]:
    """The misread numbers by kind: as many digits as written, some of them wrong
    (``substituted``); more digits than written (``longer``: a stroke, or a piece of a digit
    written in two strokes, read as a digit of its own); fewer (``shorter``: two digits read as
    one, or one lost)."""
    kinds = {"substituted": 0, "longer": 0, "shorter": 0}
    for reading, truth in zip(readings, truths, strict=True):
        if reading != truth:
            longer, shorter = len(reading) > len(truth), len(reading) < len(truth)
            kinds["longer" if longer else "shorter" if shorter else "substituted"] += 1
    return kinds


def score_reader(model, strips: NumberStrips) -> dict[str, float]:
    """Sequence accuracy and CER of greedy readings, as ``hwr evaluate`` computes them, the
    accuracy on five-digit numbers where there are some (``accuracy_5``, the goal's figure), and
    the misread numbers by kind (:func:`misreadings`)."""
    outputs = predict_logits(model, to_float(strips.images), batch_size=500)
    readings = ctc.greedy_decode(outputs)
    metrics = ctc.sequence_metrics(ctc.sequence_sums(readings, strips.labels))
    scores = {key: metrics[key] for key in ("accuracy", "cer", "accuracy_5") if key in metrics}
    return scores | misreadings(readings, ctc.text_of(strips.labels))


def cut_training_writers_numbers(
    line_reader: str | Path, out: Path, smoke: bool = False
) -> tuple[int, int, int]:
    """Cut the numbers of Part V's *training* writers out of their lines, as the real-numbers
    test set is cut (:mod:`hwr_utils.real_numbers`, no crop looked at), into the text folder
    ``out``. The line reader is loaded from ``line_reader`` (trained first if missing; tiny and
    on 200 lines in ``smoke`` mode). Returns the numbers written, the lines read and the lines
    that could not be aligned."""
    tiny = {"train_limit": 48, "model_config": {"width": 8, "hidden": 32}} if smoke else {}
    model, checkpoint = load_or_train(
        line_reader, smoke=smoke, model="line_reader", data="copiste", **tiny
    )
    lines = load_copiste()[0]["train"]
    if smoke:
        lines = lines.subset(range(200))
    found, unaligned = cut_numbers(lines, model, checkpoint["class_names"])
    written = write_number_folder([(c, crop_image(lines, c)) for c in found], out)
    return written, len(lines), len(unaligned)
