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
    make_rare,
    oversample,
    to_float,
    train_val_indices,
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
    arg, env, local, checkout = (fake_root(tmp_path / n) for n in ("arg", "env", "cwd", "repo"))
    shutil.move(str(local / "MNIST"), str(tmp_path / "cwd" / "data" / "MNIST"))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(data, "default_root", lambda: checkout)
    monkeypatch.setenv("HWR_DATA", str(env))
    assert find_mnist(arg, download=False) == arg
    assert find_mnist(None, download=False) == env
    monkeypatch.delenv("HWR_DATA")
    assert find_mnist(None, download=False) == Path("data")
    shutil.rmtree(tmp_path / "cwd" / "data")
    # Run from another folder (a chapter from book/): the checkout's data/ is found.
    assert find_mnist(None, download=False) == checkout


def test_download_goes_to_the_checkout_not_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("HWR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    targets = []

    def fake_download(root):
        targets.append(root)
        fake_root(root)

    monkeypatch.setattr(data, "_download", fake_download)
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo" / "data")
    assert find_mnist() == tmp_path / "repo" / "data" and targets == [tmp_path / "repo" / "data"]
    assert data.checkout_root() == Path(data.__file__).resolve().parents[1]  # this checkout


def test_an_explicit_folder_is_the_only_place_looked(tmp_path, monkeypatch, mnist_root):
    monkeypatch.setenv("HWR_DATA", str(mnist_root))  # would be found, but was not asked for
    monkeypatch.setattr(data, "_download", lambda root: pytest.fail("no download"))
    with pytest.raises(DataNotFoundError) as info:
        find_mnist(tmp_path / "given")
    message = str(info.value)
    assert str(tmp_path / "given" / "MNIST" / "raw") in message and "\n" not in message


def test_offline_error_names_the_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo" / "data")

    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataNotFoundError) as info:
        find_mnist()
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert str(tmp_path / "repo" / "data" / "MNIST" / "raw") in message
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
    data._LOADED.clear()  # the genuine files were loaded and remembered: forget them
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_mnist_is_read_once_per_process_and_copied_out(mnist_root, monkeypatch):
    load_mnist(mnist_root)
    monkeypatch.setattr(data, "md5sum", lambda path: pytest.fail("checksummed twice"))
    train, _ = load_mnist(mnist_root)
    train.images[0] = 255  # a caller changing its copy changes nobody else's
    assert not torch.equal(load_mnist(mnist_root)[0].images[0], train.images[0])


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
    # the positions say the same (labels here are positions)
    train_index, val_index = train_val_indices(100, 20, seed=3)
    assert torch.equal(val_index, val_a.labels) and torch.equal(train_index, train_a.labels)


def test_split_rejects_bad_size():
    split = MNISTSplit(
        torch.zeros(10, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.long)
    )
    with pytest.raises(ValueError):
        train_val_split(split, 10)


def test_batches_scale_uint8_pixels_after_augmenting():
    images = torch.full((4, 1, 28, 28), 255, dtype=torch.uint8)
    seen = []

    def augment(x):
        seen.append(x.dtype)
        return x

    (x, _), *_ = TensorBatches(images, torch.zeros(4), batch_size=4, augment=augment)
    assert seen == [torch.uint8] and x.dtype == torch.float32 and x.max() == 1.0
    with pytest.raises(ValueError, match="targets"):
        TensorBatches(images, torch.zeros(3), batch_size=2)


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


def test_to_float_gives_pixels_and_normalizes_on_request(mnist):
    images = mnist[0].images[:10000]
    x = to_float(images)
    assert x.shape == (10000, 1, 28, 28) and x.min() == 0.0 and x.max() == 1.0
    normalized = to_float(images, 0.1307, 0.3081)
    assert abs(normalized.mean().item()) < 0.02 and abs(normalized.std().item() - 1) < 0.02


def test_make_rare_and_oversample():
    split = MNISTSplit(torch.zeros(100, 28, 28, dtype=torch.uint8), torch.arange(10).repeat(10))
    rare = make_rare(split, digit=3, share=0.2, seed=0)
    counts = rare.labels.bincount().tolist()
    assert counts[3] == 2 and counts[0] == 10 and len(rare) == 92
    balanced = oversample(rare, seed=0)
    assert balanced.labels.bincount().tolist() == [10] * 10
    with pytest.raises(ValueError):
        make_rare(split, 3, 0)


def test_usps_loads_with_its_published_counts(tmp_path):
    from hwr_utils.data import load_usps, usps_as_mnist

    train, test = load_usps()
    assert train.images.shape == (7291, 16, 16) and test.images.shape == (2007, 16, 16)
    assert train.images.dtype == torch.uint8 and test.labels.dtype == torch.int64
    assert test.labels.bincount().tolist() == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
    # white ink on black, as MNIST (the digits fill the frame, but its corners are background)
    corners = train.images[:, [0, -1]][:, :, [0, -1]].float()
    assert corners.mean() < 20 < train.images.float().mean()
    for convention in ("mnist", "resize"):
        as_mnist = usps_as_mnist(MNISTSplit(test.images[:20], test.labels[:20]), convention)
        assert as_mnist.images.shape == (20, 28, 28) and as_mnist.images.dtype == torch.uint8
    with pytest.raises(ValueError, match="convention"):
        usps_as_mnist(test, "stretch")


def test_usps_missing_is_downloaded_and_checked(tmp_path, monkeypatch):
    from hwr_utils.data import USPS_MD5, USPS_URL, find_usps, usps_dir

    shared = usps_dir(find_usps())
    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo" / "data")
    fetched = []

    def serve(url, root, filename, md5):  # torchvision's download_url, without the internet
        fetched.append((url, md5))
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / filename, Path(root) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", serve)
    assert find_usps() == tmp_path / "repo" / "data"
    assert fetched == [(USPS_URL + name, md5) for name, md5 in USPS_MD5.items()]
    assert find_usps() == tmp_path / "repo" / "data" and len(fetched) == 2  # found: no fetch


def test_usps_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    from hwr_utils.data import USPS_URL, find_usps

    monkeypatch.setenv("HWR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "repo")

    def offline(url, root, filename, md5):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(DataNotFoundError) as info:
        find_usps()
    message = str(info.value)
    assert f"download from {USPS_URL} failed" in message and "name resolution" in message
    assert str(tmp_path / "nowhere" / "USPS") in message and "<DIR>/USPS/" in message
    with pytest.raises(DataNotFoundError, match="given with --data-dir"):
        find_usps(tmp_path / "given")


def test_usps_checksums_are_checked(tmp_path):
    from hwr_utils.data import USPS_MD5, find_usps, load_usps, usps_dir

    folder = usps_dir(tmp_path)
    folder.mkdir()
    for name in USPS_MD5:
        os.symlink(usps_dir(find_usps()) / name, folder / name)
    (folder / "zip.test.gz").unlink()
    (folder / "zip.test.gz").write_bytes(b"\x1f\x8b not the real file")
    with pytest.raises(ChecksumError, match="USPS.*zip.test.gz"):
        load_usps(tmp_path)
