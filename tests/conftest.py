"""Shared fixtures. MNIST is found the way the library finds it (``HWR_DATA`` in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwr_utils.data import find_mnist, load_mnist
from hwr_utils.train import TrainConfig, fit


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return find_mnist()


@pytest.fixture(scope="session")
def mnist(mnist_root):
    return load_mnist(mnist_root)


def tiny_config(tmp_path: Path, mnist_root: Path, **overrides) -> TrainConfig:
    """A training run of a few seconds: 2,000 images, a narrow hwrnet, no progress bars."""
    values = dict(
        model="hwrnet",
        model_config={"width": 8},
        epochs=2,
        batch_size=64,
        lr=0.05,
        train_limit=2000,
        val_size=500,
        data_dir=str(mnist_root),
        out=str(tmp_path / "tiny.pt"),
        progress=False,
        device="cpu",
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, mnist_root) -> Path:
    """A checkpoint trained once per session, shared by the CLI and prediction tests."""
    folder = tmp_path_factory.mktemp("tiny")
    config = tiny_config(folder, mnist_root, epochs=3, train_limit=4000)
    torch.set_num_threads(torch.get_num_threads())
    fit(config)
    return Path(config.out)
