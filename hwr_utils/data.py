"""MNIST, held in memory as tensors (introduced in the preprocessing chapter).

Where the data comes from, in order: an explicit ``data_dir`` argument (and then only there),
the ``HWR_DATA`` environment variable, ``./data``, the ``data/`` folder of the repository
checkout this library runs from (so a chapter run from ``book/`` finds what ``hwr train`` run at
the repository's root downloaded), and finally a download through torchvision. Each of those is a
*root* folder laid out as torchvision lays it out: ``<root>/MNIST/raw/<idx files>``. Every file
is MD5-checked before it is read, once per process: a truncated or corrupted download is
reported instead of silently trained on, and later calls reuse the tensors already loaded.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from .distributed import shard
from .errors import ConfigError, HwrError

# MNIST's own normalization, computed from the 60,000 training images (the book recomputes it).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CLASS_NAMES = tuple(str(d) for d in range(10))

# Checksums of the four uncompressed IDX files of the official release.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class DataNotFoundError(HwrError, FileNotFoundError):
    """MNIST is in none of the places we look, and could not be downloaded."""


class ChecksumError(HwrError, ValueError):
    """A data file is present but its contents are not the official ones."""


def raw_dir(root: str | os.PathLike) -> Path:
    """Return the folder that holds the IDX files for a torchvision-style ``root``."""
    return Path(root) / "MNIST" / "raw"


def _has_all_files(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in MNIST_MD5)


def checkout_root() -> Path | None:
    """The repository checkout this library is imported from (an editable install), or None
    for an installed wheel."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "book").is_dir() else None


def default_root() -> Path:
    """Where a download goes: the checkout's ``data/`` when there is one, else ``./data``."""
    root = checkout_root()
    return root / "data" if root is not None else Path("data")


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched for MNIST, in order, each with a label saying where it came from.
    An explicit ``data_dir`` is the only place searched."""
    if data_dir is not None:
        return [("argument", Path(data_dir))]
    places: list[tuple[str, Path]] = []
    if os.environ.get("HWR_DATA"):
        places.append(("$HWR_DATA", Path(os.environ["HWR_DATA"])))
    places.append(("./data", Path("data")))
    if default_root().resolve() != Path("data").resolve():
        places.append(("the repository's data/", default_root()))
    return places


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(
    root: str | os.PathLike,
    folder: Callable[[str | os.PathLike], Path] = raw_dir,
    checksums: dict[str, str] = MNIST_MD5,
    dataset: str = "MNIST",
) -> None:
    """Raise :class:`ChecksumError` naming every file of ``dataset`` (MNIST unless told) under
    ``root`` that is not the official one."""
    bad = []
    for name, expected in checksums.items():
        path = folder(root) / name
        actual = md5sum(path)
        if actual != expected:
            bad.append(f"{path} (md5 {actual}, expected {expected})")
    if bad:
        raise ChecksumError(
            f"{dataset} file(s) are corrupted or not the official release: "
            + "; ".join(bad)
            + ". Delete them and copy or download them again."
        )


def _download(root: Path) -> None:
    """Download MNIST with torchvision into ``root`` (raises if offline)."""
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root=str(root), train=train, download=True)


def find_data(
    name: str,
    folder: Callable[[Path], Path],
    has_files: Callable[[Path], bool],
    wanted: str,
    fix: str,
    data_dir: str | os.PathLike | None = None,
    fetch: Callable[[Path], None] | None = None,
    source: str = "",
    downloadable: bool = True,
) -> Path:
    """Return the first data root of :func:`candidate_roots` where ``has_files`` holds: the one
    finder behind MNIST, USPS, QMNIST and COPISTE. ``folder(root)`` is where the dataset's
    files lie under a root, ``wanted`` names them, ``fix`` says how to put them there.

    Missing everywhere, ``fetch`` (when given) downloads them from ``source`` into
    :func:`default_root` (``downloadable=False``: the library has no download for it);
    otherwise :class:`DataNotFoundError` names every place searched. An
    explicit ``data_dir`` without the files is an error naming that folder: it is never
    replaced by another place.
    """
    places = candidate_roots(data_dir)
    for _, root in places:
        if has_files(Path(root)):
            return Path(root)
    if data_dir is not None:
        elsewhere = "HWR_DATA, ./data or a download" if fetch else "HWR_DATA or ./data"
        raise DataNotFoundError(
            f"{name} is not in {folder(Path(data_dir))} (given with --data-dir / data_dir): "
            f"put {wanted} there, or leave the option out to use {elsewhere}"
        )
    looked = "\n".join(f"  - {folder(root)}  (from {label})" for label, root in places)
    reason = "Downloading was disabled." if downloadable else "The library does not download it."
    if fetch is not None:
        target = default_root()
        try:
            fetch(target)
        except Exception as error:  # offline, a moved server, a file not the expected one
            reason = f"The download from {source} failed: {error}"
        else:
            if has_files(target):
                return target
            reason = f"The download from {source} did not produce the files."
    raise DataNotFoundError(
        f"{name} was not found. Looked for {wanted} in:\n{looked}\n{reason}\nFix: {fix}"
    )


def find_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the root folder holding MNIST, downloading it through torchvision into
    :func:`default_root` if needed (:func:`find_data`).

    Raises :class:`DataNotFoundError` with the places searched when the data is nowhere and the
    download is disabled or fails (no internet).
    """
    return find_data(
        "MNIST",
        raw_dir,
        _has_all_files,
        f"the four uncompressed IDX files ({', '.join(MNIST_MD5)})",
        "put the uncompressed files in <DIR>/MNIST/raw/ and pass --data-dir <DIR> or set "
        "HWR_DATA=<DIR>.",
        data_dir,
        fetch=_download if download else None,
        source="torchvision's MNIST mirrors",
    )


@dataclass
class MNISTSplit:
    """One split of MNIST: ``images`` uint8 of shape (N, 28, 28), ``labels`` int64 of shape (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


# Loaded MNIST per resolved root folder: checksums and parsing cost about a second, once.
_LOADED: dict[Path, tuple[MNISTSplit, MNISTSplit]] = {}


def load_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True, verify: bool = True
) -> tuple[MNISTSplit, MNISTSplit]:
    """Load MNIST's training (60,000) and test (10,000) sets as uint8 tensors in memory.

    The files are read and checked once per process; every call returns fresh copies of the
    tensors, so a caller that changes them in place changes nobody else's.
    """
    root = find_mnist(data_dir, download=download).resolve()
    if root not in _LOADED:
        if verify:
            verify_checksums(root)
        folder = raw_dir(root)
        _LOADED[root] = (
            MNISTSplit(
                read_image_file(str(folder / "train-images-idx3-ubyte")),
                read_label_file(str(folder / "train-labels-idx1-ubyte")),
            ),
            MNISTSplit(
                read_image_file(str(folder / "t10k-images-idx3-ubyte")),
                read_label_file(str(folder / "t10k-labels-idx1-ubyte")),
            ),
        )
    train, test = _LOADED[root]
    return (
        MNISTSplit(train.images.clone(), train.labels.clone()),
        MNISTSplit(test.images.clone(), test.labels.clone()),
    )


# USPS: real scans of ZIP-code digits (7,291 training, 2,007 test), 16x16, gzipped text.
USPS_MD5 = {
    "zip.train.gz": "206835541ea704bcfb4b6eea872678bf",
    "zip.test.gz": "f9350e940232b89f1dc8f8eacac88625",
}


def usps_dir(root: str | os.PathLike) -> Path:
    """The folder that holds USPS's two files under a data ``root``: ``<root>/USPS``."""
    return Path(root) / "USPS"


# The data page of Hastie, Tibshirani and Friedman's "The Elements of Statistical Learning",
# which has served these two files (the ones USPS_MD5 names) since the book's first edition.
USPS_URL = "https://hastie.su.domains/ElemStatLearn/datasets/"


def _download_usps(root: Path) -> None:
    """Download USPS's two files into ``root/USPS``, each checked against its MD5 (raises if
    offline or if a file is not the one expected)."""
    from torchvision.datasets.utils import download_url

    for name, md5 in USPS_MD5.items():
        download_url(USPS_URL + name, str(usps_dir(root)), name, md5)


def find_usps(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the root folder holding ``USPS/zip.train.gz`` and ``USPS/zip.test.gz``, searched
    like MNIST (explicit folder, ``HWR_DATA``, ``./data``, the checkout's ``data/``) and
    downloaded like it from ``USPS_URL`` into :func:`default_root` when missing (introduced
    in the fine-tuning chapter). Offline and missing, :class:`DataNotFoundError` says where to
    put the files."""
    return find_data(
        "USPS",
        usps_dir,
        lambda root: all((usps_dir(root) / name).is_file() for name in USPS_MD5),
        " and ".join(USPS_MD5),
        f"copy the two files (the ZIP-code digits of {USPS_URL}) into <DIR>/USPS/ and pass "
        "--data-dir <DIR> or set HWR_DATA=<DIR>.",
        data_dir,
        fetch=_download_usps if download else None,
        source=USPS_URL,
    )


def _read_usps(path: Path) -> MNISTSplit:
    # One digit per line: the label, then 256 values in [-1, 1] (-1 background, 1 ink).
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, dtype=np.float32)
    pixels = np.rint((table[:, 1:] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return MNISTSplit(
        torch.from_numpy(pixels.reshape(-1, 16, 16)), torch.from_numpy(table[:, 0].astype(np.int64))
    )


def load_usps(
    data_dir: str | os.PathLike | None = None, verify: bool = True
) -> tuple[MNISTSplit, MNISTSplit]:
    """USPS's training (7,291) and test (2,007) digits as uint8 images (N, 16, 16), white ink on
    black like MNIST, and int64 labels; checked against their MD5 and read once per process."""
    root = find_usps(data_dir).resolve()
    key = root / "USPS"
    if key not in _LOADED:
        if verify:
            verify_checksums(root, usps_dir, USPS_MD5, "USPS")
        _LOADED[key] = (
            _read_usps(usps_dir(root) / "zip.train.gz"),
            _read_usps(usps_dir(root) / "zip.test.gz"),
        )
    train, test = _LOADED[key]
    return (
        MNISTSplit(train.images.clone(), train.labels.clone()),
        MNISTSplit(test.images.clone(), test.labels.clone()),
    )


def usps_as_mnist(split: MNISTSplit, convention: str = "mnist") -> MNISTSplit:
    """USPS's 16x16 digits as 28x28 images. ``"mnist"``: MNIST's own conventions, as
    :func:`hwr_utils.preprocess.mnist_convention` applies them (ink box fitted into 20x20 with
    its aspect kept, centre of mass at the centre); ``"resize"``: the plain bilinear resize to
    28x28 behind the domain-adaptation literature's "source only" numbers."""
    from .preprocess import mnist_convention

    if convention == "mnist":
        images = [mnist_convention(image) for image in split.images.numpy()]
    elif convention == "resize":
        images = [
            cv2.resize(image, (28, 28), interpolation=cv2.INTER_LINEAR)
            for image in split.images.numpy()
        ]
    else:
        raise ConfigError(f"unknown convention {convention!r}; use mnist or resize")
    return MNISTSplit(torch.from_numpy(np.stack(images)), split.labels.clone())


def train_val_indices(
    count: int, val_size: int = 5000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions :func:`train_val_split` keeps for training and for validation, in that
    order: a fixed, seeded permutation of ``range(count)``, its first ``val_size`` for validation.

    The permutation depends only on ``seed`` and ``count``, never on the global RNG, so every
    run, chapter and CLI call sees the same validation set.
    """
    if not 0 <= val_size < count:
        raise ValueError(f"val_size must be in [0, {count}), got {val_size}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def train_val_split(
    split: MNISTSplit, val_size: int = 5000, seed: int = 0
) -> tuple[MNISTSplit, MNISTSplit]:
    """Split off ``val_size`` examples for validation (:func:`train_val_indices` says which)."""
    train_idx, val_idx = train_val_indices(len(split), val_size, seed)
    return (
        MNISTSplit(split.images[train_idx], split.labels[train_idx]),
        MNISTSplit(split.images[val_idx], split.labels[val_idx]),
    )


def make_rare(split: MNISTSplit, digit: int, share: float, seed: int = 0) -> MNISTSplit:
    """Keep only ``share`` of the examples of ``digit`` (drawn with ``seed``), all the others."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    generator = torch.Generator().manual_seed(seed)
    of_digit = torch.nonzero(split.labels == digit).flatten()
    count = max(1, round(share * len(of_digit)))
    kept = of_digit[torch.randperm(len(of_digit), generator=generator)[:count]]
    index = torch.cat([torch.nonzero(split.labels != digit).flatten(), kept]).sort().values
    return MNISTSplit(split.images[index], split.labels[index])


def oversample(split: MNISTSplit, seed: int = 0) -> MNISTSplit:
    """Repeat the examples of every class, drawn with replacement, until each class has as many
    as the largest one: the rare classes are seen as often as the common ones."""
    generator = torch.Generator().manual_seed(seed)
    target = int(split.labels.bincount().max())
    index = []
    for label in split.labels.unique():
        members = torch.nonzero(split.labels == label).flatten()
        extra = members[torch.randint(len(members), (target - len(members),), generator=generator)]
        index += [members, extra]
    index = torch.cat(index).sort().values
    return MNISTSplit(split.images[index], split.labels[index])


def to_float(images: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> floats (N, 1, 28, 28), pixels in [0, 1]: what every model
    of the book takes (each normalizes inside, see :class:`hwr_utils.models.Normalize`). The
    floats are PyTorch's default dtype: float32, unless ``torch.set_default_dtype`` says otherwise.

    ``mean`` and ``std``, when given, normalize here too: for the chapters that show what
    normalization does, and for pipelines such as the article's that normalize outside the model.
    """
    scaled = (images.to(torch.get_default_dtype()) / 255.0).unsqueeze(1)
    return scaled if (mean, std) == (0.0, 1.0) else (scaled - mean) / std


def pixels_to_float(images: torch.Tensor) -> torch.Tensor:
    """A uint8 batch in any shape -> floats (the default dtype) in [0, 1]; float batches pass
    unchanged."""
    if images.dtype != torch.uint8:
        return images
    return images.to(torch.get_default_dtype()) / 255.0


class TensorBatches:
    """Mini-batches served straight from in-memory tensors (no per-sample PIL round trip).

    ``images`` are raw pixels, (N, 1, H, W): uint8 (a quarter of float32's memory) or floats in
    [0, 1]. Each batch is augmented in that pixel space, where the black background is 0, and
    only then turned into floats in [0, 1]; the model normalizes. ``targets`` can be any tensor
    whose first dimension is N (class labels, or encoded strings). With ``shuffle`` the order
    is drawn from a private generator seeded by ``seed + epoch``, so epoch *k* always sees the
    same batches: this is what lets ``--resume`` reproduce an uninterrupted run exactly.
    ``augment`` (a function of a batch) is applied to each batch, e.g.
    :func:`hwr_utils.augment.random_affine`. In data-parallel training process ``rank`` of
    ``world_size`` serves only its :func:`~hwr_utils.distributed.shard` of each epoch's order
    (the same order on every process), ``batch_size`` images per step. ``draw`` (a function of
    the epoch) gives an epoch images and targets of its own, replacing the others when that
    epoch is iterated (number strips written anew every epoch); epoch 0 keeps those given.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.images, self.targets = images, targets
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augment, self.drop_last = augment, drop_last
        self.rank, self.world_size = rank, world_size
        self.draw, self.drawn = draw, 0  # the epoch whose images these are
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's shuffle the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.targets) // self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.draw is not None and self.drawn != self.epoch:  # inside the timed epoch
            self.images, self.targets = self.draw(self.epoch)
            self.drawn = self.epoch
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.targets)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = shard(order, self.rank, self.world_size)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size].to(self.images.device)
            x, y = self.images[idx], self.targets[idx]
            if self.augment is not None:
                x = self.augment(x)
            yield pixels_to_float(x), y
