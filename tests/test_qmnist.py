"""MNIST's writers from QMNIST's label files (the evaluation chapter's per-writer scores)."""

import gzip
import shutil

import pytest

from hwr_utils.data import ChecksumError, DataNotFoundError
from hwr_utils.datasets.qmnist import find_qmnist, load_mnist_writers


@pytest.fixture(scope="module")
def qmnist_folder():
    try:
        return find_qmnist()
    except DataNotFoundError as error:
        pytest.skip(f"QMNIST's label files are not here: {error}")


@pytest.fixture(scope="module")
def writers(mnist, qmnist_folder):
    train, test = mnist
    return load_mnist_writers((train.labels, test.labels))


def test_every_digit_has_a_writer_of_a_known_series(mnist, writers):
    for split, who in zip(mnist, writers, strict=True):
        assert who.writer.shape == who.series.shape == split.labels.shape
        assert set(who.series.unique().tolist()) <= {0, 1, 4}
        # Students' writer ids (2100-2599) and employees' (0-610) never mix.
        assert (who.writer[who.is_student] >= 2100).all()
        assert (who.writer[~who.is_student] <= 610).all()


def test_mnist_training_and_test_writers_are_disjoint(writers):
    train, test = writers
    assert not set(train.writer.tolist()) & set(test.writer.tolist())
    # About half of each split was written by students, as MNIST's authors describe it.
    for split in writers:
        assert 0.45 < split.is_student.float().mean().item() < 0.55


def test_files_of_another_mnist_are_refused(mnist, qmnist_folder, tmp_path):
    train, test = mnist
    shifted = (train.labels.roll(1), test.labels)
    with pytest.raises(ChecksumError, match="does not match MNIST's labels"):
        load_mnist_writers(shifted)
    copy = tmp_path / "QMNIST"
    shutil.copytree(qmnist_folder, copy)
    name = "qmnist-test-labels.tsv.gz"
    (copy / name).chmod(0o644)
    with gzip.open(copy / name, "wt") as handle:
        handle.write("0\t0\t0\t0\t0\t0\t0\t0\n")
    with pytest.raises(ChecksumError, match=name):
        load_mnist_writers((train.labels, test.labels), tmp_path)


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="QMNIST") as info:
        find_qmnist(tmp_path)
    assert str(tmp_path / "QMNIST") in str(info.value) and "a download" not in str(info.value)


def test_missing_everywhere_names_the_places_and_offers_no_download(tmp_path, monkeypatch):
    from hwr_utils import data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo" / "data")
    with pytest.raises(DataNotFoundError) as info:
        find_qmnist()
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "QMNIST") in message
    assert "does not download it" in message and "qmnist" in message.lower()
