"""Whole handwritten numbers: strips of MNIST (or USPS) digits written side by side, the data of
the sequence model (introduced in the chapter "Reading whole numbers").

A strip is a grayscale image of fixed height (:data:`STRIP_HEIGHT`) and variable width, white
ink on black like MNIST, holding 1 to 8 digits. Each digit keeps its MNIST framing (the 20x20
box centred in 28x28, so the writers' own sizes survive), is scaled by a random factor, moved up
or down a little, and placed after the previous one with a random gap that is sometimes
negative: digits then touch or overlap, the case that defeats cutting a number into digits.
The whole strip is then slanted by a random shear. Every draw comes from one seeded generator,
so ``make_number_strips(split, count, seed)`` makes the same strips on any machine.

Train strips take digits of the training split only, validation strips the validation split's,
and test strips MNIST's test digits (other writers): :data:`TEST_SEED` and :data:`TEST_COUNT`
fix the published test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .data import MNISTSplit
from .errors import ConfigError
from .preprocess import center_by_mass, fit_in_box

#: Height of every strip, in pixels.
STRIP_HEIGHT = 32
#: Width strips are padded to for training (wider strips are squeezed to it; see the chapter).
STRIP_WIDTH = 192
#: Longest number, in digits.
MAX_DIGITS = 8
#: The seed of the test strips (from MNIST's test digits) every result is reported on ...
TEST_SEED = 2026
#: ... and their number.
TEST_COUNT = 10_000
#: Validation strips, made from the validation split's digits.
VAL_COUNT = 2_000


@dataclass
class NumberStrips:
    """Strips of handwritten numbers: ``images`` uint8 (N, H, W), white ink on black, padded on
    the right with background; ``labels`` int64 (N, MAX_DIGITS), the digits, padded with -1."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> torch.Tensor:
        """Digits per strip, (N,)."""
        return (self.labels >= 0).sum(1)

    def texts(self) -> list[str]:
        """Each strip's number as a string."""
        return ["".join(str(int(d)) for d in row if d >= 0) for row in self.labels]


def render_number(
    digits: list[np.ndarray],
    rng: np.random.Generator,
    height: int = STRIP_HEIGHT,
    scale: tuple[float, float] = (0.8, 1.05),
    gap: tuple[int, int] = (-4, 6),
    shift: int = 2,
    slant: float = 0.25,
) -> np.ndarray:
    """Write 28x28 uint8 ``digits`` (white on black) side by side as one strip of ``height``.

    Each digit's empty columns are cut off; it is scaled by a factor drawn from ``scale`` (1 makes
    the 28-pixel MNIST frame ``height`` tall), moved up or down by up to ``shift`` pixels, and
    placed ``gap`` pixels after the previous digit's ink (a negative gap overlaps them, by at
    most a third of the narrower digit; where strokes meet, the brighter pixel wins). The strip
    is then sheared by a factor drawn from ``[-slant, slant]`` and given a margin of 2 to 5
    pixels on each side.
    """
    if not digits:
        raise ConfigError("a number needs at least one digit")
    pieces, x = [], 0
    for digit in digits:
        columns = np.flatnonzero(digit.max(0) > 0)
        ink = digit[:, columns[0] : columns[-1] + 1] if len(columns) else digit[:, 12:16]
        factor = rng.uniform(*scale) * height / 28
        size = (max(1, round(ink.shape[1] * factor)), min(height, round(28 * factor)))
        piece = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
        top = (height - piece.shape[0]) // 2 + int(rng.integers(-shift, shift + 1))
        top = int(np.clip(top, 0, height - piece.shape[0]))
        if pieces:
            # Overlap at most a third of the narrower digit: touching, not swallowed (a 1
            # written inside the next digit cannot be read by anyone).
            narrower = min(piece.shape[1], pieces[-1][0].shape[1])
            low = min(max(gap[0], -(narrower // 3)), gap[1])
            x = max(0, x + int(rng.integers(low, gap[1] + 1)))
        pieces.append((piece, top, x))
        x += piece.shape[1]
    strip = np.zeros((height, x), np.uint8)
    for piece, top, left in pieces:
        window = strip[top : top + piece.shape[0], left : left + piece.shape[1]]
        np.maximum(window, piece, out=window)
    shear = rng.uniform(-slant, slant)
    extra = int(np.ceil(abs(shear) * height))
    # x' = x + shear * (centre_row - y): the middle row stays put, the top and bottom lean.
    matrix = np.float32([[1, -shear, extra / 2 + shear * height / 2], [0, 1, 0]])
    strip = cv2.warpAffine(strip, matrix, (x + extra, height), flags=cv2.INTER_LINEAR)
    left, right = (int(m) for m in rng.integers(2, 6, size=2))
    return np.pad(strip, ((0, 0), (left, right)))


def make_number_strips(
    split: MNISTSplit,
    count: int,
    seed: int | Sequence[int],
    lengths: tuple[int, int] = (1, MAX_DIGITS),
    width: int = STRIP_WIDTH,
    **render_options,
) -> NumberStrips:
    """``count`` strips of numbers whose digits are drawn from ``split`` (28x28 images; USPS
    goes through :func:`~hwr_utils.data.usps_as_mnist` first), with lengths uniform in
    ``lengths`` (inclusive), each padded to ``width`` (a wider strip is squeezed to fit it).
    ``render_options`` go to :func:`render_number`. Deterministic in ``seed``."""
    low, high = lengths
    if not 1 <= low <= high <= MAX_DIGITS:
        raise ConfigError(f"lengths must lie within 1..{MAX_DIGITS}, got {lengths}")
    if count < 1 or len(split) == 0:
        raise ConfigError(f"need a positive count and digits to draw from, got {count}")
    rng = np.random.default_rng(seed)
    images = np.zeros((count, STRIP_HEIGHT, width), np.uint8)
    labels = np.full((count, MAX_DIGITS), -1, np.int64)
    source = split.images.numpy()
    for i in range(count):
        picks = rng.integers(0, len(split), size=int(rng.integers(low, high + 1)))
        strip = render_number([source[k] for k in picks], rng, **render_options)
        if strip.shape[1] > width:
            strip = cv2.resize(strip, (width, STRIP_HEIGHT), interpolation=cv2.INTER_AREA)
        images[i, :, : strip.shape[1]] = strip
        labels[i, : len(picks)] = split.labels[picks].numpy()
    return NumberStrips(torch.from_numpy(images), torch.from_numpy(labels))


def epoch_strips(digits: MNISTSplit, count: int, seed: int, epoch: int) -> NumberStrips:
    """Epoch ``epoch``'s ``count`` training strips when every epoch writes its own (``hwr train
    --fresh-strips``): epoch 0 takes the strips of seed ``seed``, those a run without fresh
    strips trains on every epoch; epoch *k* draws with the seed ``(seed, k)``, so a resumed run
    writes exactly the strips an uninterrupted one had."""
    return make_number_strips(digits, count, seed if epoch == 0 else (seed, epoch))


def published_test_strips(test: MNISTSplit, count: int | None = None) -> NumberStrips:
    """The published test strips: :data:`TEST_COUNT` numbers (or the first ``count`` of them:
    strips are drawn one after another, so a shorter set is a prefix of the full one) from
    MNIST's *test* digits, seed :data:`TEST_SEED`. Every reported result uses these."""
    return make_number_strips(test, TEST_COUNT if count is None else count, TEST_SEED)


def number_strip_splits(
    train: MNISTSplit, val: MNISTSplit, test: MNISTSplit, train_count: int, seed: int
) -> tuple[NumberStrips, NumberStrips, NumberStrips]:
    """Training, validation and test strips, each from its own split's digits: ``train_count``
    training strips (seed ``seed``), :data:`VAL_COUNT` validation strips (seed ``seed + 1``;
    none when ``val`` is empty) and the published :func:`published_test_strips`."""
    if len(val):
        val_strips = make_number_strips(val, VAL_COUNT, seed + 1)
    else:
        val_strips = NumberStrips(
            torch.zeros(0, STRIP_HEIGHT, STRIP_WIDTH, dtype=torch.uint8),
            torch.zeros(0, MAX_DIGITS, dtype=torch.long),
        )
    return make_number_strips(train, train_count, seed), val_strips, published_test_strips(test)


def segment_strip(strip: np.ndarray, level: int = 60, min_area: int = 8) -> list[np.ndarray]:
    """The segmentation baseline's cutting: a strip -> one 28x28 MNIST-style image per piece of
    ink, left to right (chapter "Reading whole numbers").

    Pieces are the 8-connected components of the pixels above ``level``, without specks of
    fewer than ``min_area`` pixels; two pieces whose column ranges overlap by more than half the
    narrower one are one digit written in two strokes (a 4, a 5) and are merged. Each piece is
    cropped (with its grey edges), fitted in MNIST's 20x20 box and centred by mass in 28x28, as
    :func:`~hwr_utils.preprocess.preprocess_photo` does with a photo of one digit. Touching
    digits come out as one piece, and a broken stroke as two: the failures CTC avoids.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (strip > level).astype(np.uint8), connectivity=8
    )
    pieces = [
        [stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH], [i]]
        for i in range(1, count)
        if stats[i, cv2.CC_STAT_AREA] >= min_area
    ]
    pieces.sort(key=lambda piece: piece[0])
    merged: list[list] = []
    for left, right, ids in pieces:
        if merged:
            last = merged[-1]
            overlap = min(right, last[1]) - max(left, last[0])
            if overlap > 0.5 * min(right - left, last[1] - last[0]):
                last[1], last[2] = max(right, last[1]), last[2] + ids
                continue
        merged.append([left, right, ids])
    digits = []
    for _, _, ids in merged:
        mask = cv2.dilate(np.isin(labels, ids).astype(np.uint8), np.ones((3, 3), np.uint8))
        ink = np.where(mask > 0, strip, 0).astype(np.float32)
        ys, xs = np.nonzero(ink)
        boxed = fit_in_box(ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
        digits.append(np.clip(center_by_mass(boxed), 0, 255).astype(np.uint8))
    return digits
