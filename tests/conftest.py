"""Shared fixtures. MNIST is found the way the library finds it (``HWR_DATA`` in CI)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from hwr_utils.config import TrainConfig
from hwr_utils.data import find_mnist, load_mnist
from hwr_utils.digit_strings import render_number
from hwr_utils.teaching.synthetic import make_photo

ROOT = Path(__file__).resolve().parents[1]


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist every worker shares the two cores with the others: one thread each
    # (inherited by the chapters' kernels and the commands tests start), so that no worker's
    # threads spin while waiting for a core.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _build_book() -> subprocess.CompletedProcess:
    shutil.rmtree(ROOT / "book" / "_build", ignore_errors=True)
    # The jupyter-book beside this Python (the virtual environment's), activated or not.
    beside = Path(sys.executable).parent / "jupyter-book"
    jupyter_book = beside if beside.exists() else Path(shutil.which("jupyter-book") or "")
    return subprocess.run(
        [str(jupyter_book), "build", "book/", "-W", "-n", "--keep-going"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> subprocess.CompletedProcess:
    """``jupyter-book build book/ -W -n --keep-going`` from scratch, exactly as readers type
    it, once per test run (the book's tests and its browser tests read the result). Under
    pytest-xdist the first worker that needs it builds it and the others wait for that build
    and read its result (session fixtures are per worker, and two builds of one folder would
    trample each other)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _build_book()
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker
    result_file = shared / "built_book.json"
    with FileLock(str(result_file) + ".lock"):
        if result_file.is_file():
            return subprocess.CompletedProcess(**json.loads(result_file.read_text()))
        result = _build_book()
        fields = ("args", "returncode", "stdout", "stderr")
        result_file.write_text(json.dumps({name: getattr(result, name) for name in fields}))
        return result


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    return find_mnist()


@pytest.fixture(scope="session")
def mnist(mnist_root):
    return load_mnist(mnist_root)


def _tiny_config(folder: Path, mnist_root: Path, **overrides) -> TrainConfig:
    values = dict(
        model="hwrnet",
        model_config={"width": 8},
        epochs=2,
        batch_size=64,
        lr=0.05,
        train_limit=2000,
        val_size=500,
        data_dir=str(mnist_root),
        out=str(folder / "tiny.pt"),
        progress=False,
        device="cpu",
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def tiny_config(mnist_root) -> Callable[..., TrainConfig]:
    """A factory of training runs of a few seconds: 2,000 images, a narrow hwrnet, no bars.
    Call it with the folder for the checkpoint and any :class:`TrainConfig` overrides."""
    return lambda folder, **overrides: _tiny_config(Path(folder), mnist_root, **overrides)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, mnist_root) -> Path:
    """A checkpoint trained once per session, shared by the CLI, export and prediction tests."""
    from hwr_utils.train import fit

    config = _tiny_config(tmp_path_factory.mktemp("tiny"), mnist_root, epochs=3, train_limit=4000)
    fit(config)
    return Path(config.out)


@pytest.fixture(scope="session")
def photos(tmp_path_factory, mnist):
    """Photos of five test digits with known labels, plus broken files of every kind."""
    folder = tmp_path_factory.mktemp("photos")
    test = mnist[1]
    good = []
    for i in range(5):
        path = folder / f"digit_{i}_label_{int(test.labels[i])}.png"
        Image.fromarray(make_photo(test.images[i].numpy(), seed=i)).save(path)
        good.append((path, str(int(test.labels[i]))))
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.png").write_bytes(good[0][0].read_bytes()[:1500])
    Image.new("L", (300, 200), 240).save(folder / "blank.png")
    (folder / "adir").mkdir()
    return folder, good


@pytest.fixture
def run_cli(capsys):
    """Run ``hwr`` in-process: returns (exit code, stdout, stderr)."""
    from hwr_utils.cli import main

    def run(args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _write_text_folder(root, mnist, texts, files=None):
    """A folder of number images and labels.csv, the images written like scans."""
    root.mkdir(parents=True)
    _, test = mnist
    rng = np.random.default_rng(0)
    by_digit = {d: torch.nonzero(test.labels == d).flatten().tolist() for d in range(10)}
    rows = []
    for i, text in enumerate(texts):
        strip = render_number([test.images[by_digit[int(c)][i]].numpy() for c in text], rng)
        name = f"n{i}.png"
        Image.fromarray(255 - strip).save(root / name)
        rows.append({"file": name, "text": text})
    for extra in files or []:
        rows.append(extra)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["file", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def write_text_folder():
    """``write_text_folder(root, mnist, texts, extra_rows=None)``: a folder of number images
    (MNIST test digits, dark on light) with a labels.csv, for the text datasets' tests."""
    return _write_text_folder


@pytest.fixture
def killed_and_resumed(monkeypatch):
    """``killed_and_resumed(config, epoch)``: run ``fit(config)``, interrupted (Ctrl-C) at the
    start of epoch ``epoch``; check the last finished epoch was saved; scramble the global
    random state; then ``--resume`` it and return the final checkpoint."""
    from hwr_utils import train as train_module
    from hwr_utils.checkpoints import load_checkpoint

    real = train_module.train_one_epoch

    def run(config, epoch: int) -> dict:
        calls = {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == epoch:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(train_module, "train_one_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_module.fit(config)
        assert load_checkpoint(config.out)["epoch"] == epoch - 1
        monkeypatch.setattr(train_module, "train_one_epoch", real)
        torch.manual_seed(999)  # whatever happened in between must not matter
        config.resume = True
        return train_module.fit(config)

    return run


def _assert_same_run(whole: dict, resumed: dict) -> None:
    """Two final checkpoints hold the same weights, metrics and history (seconds aside)."""
    for key, value in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0)
    assert resumed["metrics"] == whole["metrics"]
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole["history"]]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed["history"]] == strip


@pytest.fixture
def assert_same_run():
    """``assert_same_run(whole, resumed)``: the same weights, metrics and history."""
    return _assert_same_run
