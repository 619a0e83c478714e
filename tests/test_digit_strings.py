"""Synthetic handwritten numbers: seeded, drawn from the split they are given, touching when
the gap is negative, and padded to one width."""

import numpy as np
import pytest
import torch

from hwr_utils.data import MNISTSplit
from hwr_utils.digit_strings import (
    MAX_DIGITS,
    STRIP_HEIGHT,
    STRIP_WIDTH,
    TEST_SEED,
    epoch_strips,
    make_number_strips,
    number_strip_splits,
    published_test_strips,
    render_number,
    segment_strip,
)
from hwr_utils.errors import ConfigError


def one_digit_split(mnist_split: MNISTSplit, digit: int) -> MNISTSplit:
    keep = mnist_split.labels == digit
    return MNISTSplit(mnist_split.images[keep][:50], mnist_split.labels[keep][:50])


def test_strips_are_seeded_and_well_formed(mnist):
    _, test = mnist
    a, b = make_number_strips(test, 64, seed=3), make_number_strips(test, 64, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, make_number_strips(test, 64, seed=4).images)
    assert a.images.shape == (64, STRIP_HEIGHT, STRIP_WIDTH) and a.images.dtype == torch.uint8
    assert a.labels.shape == (64, MAX_DIGITS)
    lengths = a.lengths
    assert lengths.min() >= 1 and lengths.max() <= MAX_DIGITS and len(set(lengths.tolist())) > 4
    for row, length in zip(a.labels, lengths, strict=True):  # digits first, then padding
        assert (row[:length] >= 0).all() and (row[length:] == -1).all()
    assert a.texts()[0] == "".join(str(d) for d in a.labels[0, : lengths[0]].tolist())
    short = make_number_strips(test, 40, seed=0, lengths=(5, 5))
    assert (short.lengths == 5).all()


def test_a_shorter_published_test_set_is_a_prefix_of_the_longer_one(mnist):
    _, test = mnist
    short, longer = published_test_strips(test, 30), published_test_strips(test, 90)
    assert torch.equal(short.images, longer.images[:30])
    assert torch.equal(short.labels, longer.labels[:30])
    assert torch.equal(longer.labels, make_number_strips(test, 90, TEST_SEED).labels)
    with pytest.raises(ConfigError, match="positive count"):
        published_test_strips(test, 0)  # zero means zero, not "all of them"


def test_each_split_writes_with_its_own_digits(mnist):
    train, test = mnist
    ones, threes, fives = (one_digit_split(train, 1), one_digit_split(train, 3),
                           one_digit_split(test, 5))  # fmt: skip
    train_strips, val_strips, test_strips = number_strip_splits(ones, threes, fives, 20, seed=0)
    for strips, digit in ((train_strips, 1), (val_strips, 3), (test_strips, 5)):
        digits = strips.labels[strips.labels >= 0]
        assert (digits == digit).all(), digit


def test_a_negative_gap_makes_digits_touch(mnist):
    _, test = mnist
    digits = [test.images[i].numpy() for i in range(4)]
    apart = render_number(digits, np.random.default_rng(0), gap=(8, 8), slant=0, shift=0)
    touching = render_number(digits, np.random.default_rng(0), gap=(-4, -4), slant=0, shift=0)
    assert touching.shape[1] < apart.shape[1] - 3 * 8
    empty_columns = (apart.max(0) == 0).sum() - (touching.max(0) == 0).sum()
    assert empty_columns > 3 * 8 - 4  # the gaps between digits are gone


def test_bad_requests_are_refused(mnist):
    _, test = mnist
    with pytest.raises(ConfigError, match="lengths"):
        make_number_strips(test, 10, seed=0, lengths=(0, 3))
    with pytest.raises(ConfigError, match="lengths"):
        make_number_strips(test, 10, seed=0, lengths=(3, MAX_DIGITS + 1))
    with pytest.raises(ConfigError, match="positive count"):
        make_number_strips(test, 0, seed=0)
    with pytest.raises(ConfigError, match="at least one digit"):
        render_number([], np.random.default_rng(0))


def test_segmentation_cuts_separated_digits_and_fails_on_touching_ones(mnist):
    _, test = mnist
    apart = make_number_strips(test, 60, seed=0, lengths=(3, 3), gap=(8, 10), slant=0.0)
    touching = make_number_strips(test, 60, seed=0, lengths=(3, 3), gap=(-4, -4), slant=0.0)
    cut_apart = [segment_strip(s) for s in apart.images.numpy()]
    cut_touching = [segment_strip(s) for s in touching.images.numpy()]
    assert all(d.shape == (28, 28) and d.dtype == np.uint8 for p in cut_apart for d in p)
    assert np.mean([len(p) == 3 for p in cut_apart]) > 0.85
    assert np.mean([len(p) == 3 for p in cut_touching]) < 0.5
    assert segment_strip(np.zeros((STRIP_HEIGHT, 50), np.uint8)) == []


def test_each_epoch_writes_its_own_strips_and_the_first_are_the_usual(mnist):
    _, test = mnist
    usual = make_number_strips(test, 32, seed=5)
    epochs = [epoch_strips(test, 32, seed=5, epoch=e) for e in range(3)]
    assert torch.equal(epochs[0].images, usual.images)
    assert torch.equal(epochs[0].labels, usual.labels)
    assert not torch.equal(epochs[1].labels, epochs[0].labels)
    assert not torch.equal(epochs[2].labels, epochs[1].labels)
    again = epoch_strips(test, 32, seed=5, epoch=2)  # what a resumed run writes
    assert torch.equal(again.images, epochs[2].images)
    other_seed = epoch_strips(test, 32, seed=6, epoch=1)
    assert not torch.equal(other_seed.labels, epochs[1].labels)
