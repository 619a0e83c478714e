import os
import shutil
from pathlib import Path

import pytest
import torch

from hwr_utils import data
from hwr_utils.data import (
    ChecksumError,
    DataNotFoundError,
    MNISTSplit,
    TensorBatches,
    find_mnist,
    load_mnist,
    train_val_split,
)


def fake_root(folder: Path) -> Path:
    """A root with four (wrong-content) files: enough for locating, not for verifying."""
    raw = data.raw_dir(folder)
    raw.mkdir(parents=True)
    for name in data.MNIST_MD5:
        (raw / name).write_bytes(b"x")
    return folder


def test_location_order(tmp_path, monkeypatch):
    arg, env, local = (fake_root(tmp_path / n) for n in ("arg", "env", "cwd"))
    shutil.move(str(local / "MNIST"), str(tmp_path / "cwd" / "data" / "MNIST"))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HWR_DATA", str(env))
    assert find_mnist(arg, download=False) == arg
    assert find_mnist(None, download=False) == env
    monkeypatch.delenv("HWR_DATA")
    assert find_mnist(None, download=False) == Path("data")


def test_offline_error_names_the_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))

    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        find_mnist(tmp_path / "given")
    message = str(info.value)
    assert str(tmp_path / "given" / "MNIST" / "raw") in message
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "network unreachable" in message
    assert "HWR_DATA" in message and "--data-dir" in message


def test_checksum_mismatch_is_reported(tmp_path, mnist_root):
    raw = data.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in data.MNIST_MD5:
        os.symlink(data.raw_dir(mnist_root) / name, raw / name)
    load_mnist(tmp_path)  # the genuine files pass
    corrupted = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(corrupted.read_bytes())
    corrupted.unlink()
    content[-1] ^= 1  # one flipped bit in one label
    corrupted.write_bytes(bytes(content))
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_mnist_shapes(mnist):
    train, test = mnist
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.shape == (10000,) and set(test.labels.tolist()) == set(range(10))


def test_split_is_deterministic_and_disjoint():
    split = MNISTSplit(torch.arange(100).reshape(100, 1, 1).expand(100, 28, 28), torch.arange(100))
    train_a, val_a = train_val_split(split, 20, seed=3)
    train_b, val_b = train_val_split(split, 20, seed=3)
    _, val_c = train_val_split(split, 20, seed=4)
    assert torch.equal(val_a.labels, val_b.labels) and torch.equal(train_a.labels, train_b.labels)
    assert not torch.equal(val_a.labels, val_c.labels)
    assert len(val_a) == 20 and len(train_a) == 80
    assert set(val_a.labels.tolist()).isdisjoint(train_a.labels.tolist())
    # the global RNG must not influence the split
    torch.manual_seed(123)
    assert torch.equal(train_val_split(split, 20, seed=3)[1].labels, val_a.labels)


def test_split_rejects_bad_size():
    split = MNISTSplit(
        torch.zeros(10, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.long)
    )
    with pytest.raises(ValueError):
        train_val_split(split, 10)


def test_batches_cover_everything_and_repeat_per_epoch():
    images, labels = torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10)
    batches = TensorBatches(images, labels, batch_size=4, shuffle=True, seed=7)
    assert len(batches) == 3
    first = torch.cat([y for _, y in batches])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, torch.cat([y for _, y in batches]))  # same epoch, same order
    batches.set_epoch(1)
    assert not torch.equal(first, torch.cat([y for _, y in batches]))
    for x, y in batches:
        assert torch.equal(x.flatten(), y.float())  # images stay paired with labels


def test_to_float_uses_mnist_statistics(mnist):
    x = data.to_float(mnist[0].images[:10000])
    assert x.shape == (10000, 1, 28, 28)
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02
