"""Data-parallel training: equal shards; batch normalization synchronized across two real gloo
processes, checked against ``nn.BatchNorm2d`` on the whole batch; ``fit`` in two processes
against ``fit`` in one; and ``hwr train`` under ``torchrun``, killed and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from hwr_utils.checkpoints import load_checkpoint
from hwr_utils.data import TensorBatches
from hwr_utils.distributed import (
    SyncBatchNorm2d,
    convert_sync_batchnorm,
    process_group,
    shard,
)
from hwr_utils.errors import ConfigError
from hwr_utils.models import build_model
from hwr_utils.train import fit

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out


def test_shards_are_disjoint_equal_and_drawn_from_the_order():
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    shards = [shard(order, rank, 4) for rank in range(4)]
    assert {len(s) for s in shards} == {103 // 4}
    joined = torch.cat(shards)
    assert len(set(joined.tolist())) == len(joined) and set(joined.tolist()) <= set(order.tolist())
    assert torch.equal(shards[1][:3], order[[1, 5, 9]])
    with pytest.raises(ValueError, match="outside"):
        shard(order, 4, 4)


def _synced_batchnorm_worker(rank: int, world: int, rendezvous: str) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same batch and layer on every process
        x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
        weights = torch.randn(8, 3, 5, 5, dtype=torch.float64)  # a loss that weighs every output
        reference, synced = nn.BatchNorm2d(3).double(), SyncBatchNorm2d(3).double()
        whole = x.clone().requires_grad_()
        expected = reference(whole)
        (expected * weights).sum().backward()
        part = x[rank::world].clone().requires_grad_()
        out = synced(part)
        (out * weights[rank::world]).sum().backward()  # this process's part of the loss
        torch.testing.assert_close(out, expected[rank::world])
        torch.testing.assert_close(part.grad, whole.grad[rank::world])
        weight_grad = synced.weight.grad.clone()
        dist.all_reduce(weight_grad)  # what data parallelism does with parameter gradients
        torch.testing.assert_close(weight_grad, reference.weight.grad)
        torch.testing.assert_close(synced.running_mean, reference.running_mean)
        torch.testing.assert_close(synced.running_var, reference.running_var)
    finally:
        dist.destroy_process_group()


def test_synchronized_batchnorm_in_two_processes_is_batchnorm_of_the_whole_batch(tmp_path):
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_synced_batchnorm_worker, args=(2, rendezvous), nprocs=2, join=True)


def test_converting_keeps_every_value_and_outside_a_group_changes_nothing():
    torch.manual_seed(0)
    model = build_model("hwrnet", width=4).train()
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(1)  # the same dropout in both passes
    expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model)
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.BatchNorm2d)]
    assert kinds and all(kind is SyncBatchNorm2d for kind in kinds)
    converted.load_state_dict(state)  # the same names: checkpoints load either way
    torch.manual_seed(1)
    torch.testing.assert_close(converted(x), expected)


def _fit_worker(rank: int, world: int, rendezvous: str, config, dtype) -> None:
    torch.set_num_threads(1)  # two processes on two cores
    torch.set_default_dtype(dtype)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        fit(config)
    finally:
        dist.destroy_process_group()


def fit_in_two_processes(config, folder: Path, dtype=torch.float32) -> dict:
    """``fit(config)`` in two gloo processes; the checkpoint rank 0 wrote."""
    rendezvous = f"file://{folder / 'rendezvous'}"
    mp.spawn(_fit_worker, args=(2, rendezvous, config, dtype), nprocs=2, join=True)
    return load_checkpoint(config.out)


def test_each_step_the_processes_share_the_batch_one_process_takes():
    images = torch.arange(103, dtype=torch.uint8).view(-1, 1, 1, 1)
    labels = torch.arange(103)
    one = TensorBatches(images, labels, 8, shuffle=True, seed=3, drop_last=True)
    parts = [
        TensorBatches(images, labels, 4, True, 3, drop_last=True, rank=r, world_size=2)
        for r in range(2)
    ]
    for part in parts:
        part.set_epoch(1)
    one.set_epoch(1)
    assert len(one) == len(parts[0]) == len(parts[1]) == 103 // 8
    for (_, whole), *shares in zip(one, *parts, strict=True):
        together = torch.cat([targets for _, targets in shares])
        assert sorted(together.tolist()) == sorted(whole.tolist())
    with pytest.raises(ValueError, match="outside"):
        TensorBatches(images, labels, 4, rank=2, world_size=2)


def test_two_processes_train_the_weights_one_process_trains(tmp_path, tiny_config):
    # Same seed, same global batch, batch norm synchronized, nothing random (no augmentation,
    # no dropout: each process would draw its own). In float64 the two runs differ only by the
    # order of additions (a gradient averaged over two halves, statistics summed in parts),
    # in the last of float64's digits; 1e-9 leaves those differences room to grow over 30 steps,
    # and a real mistake (a sample seen twice, a half-batch statistic, a sum instead of a mean)
    # is off by far more. In float32 the same rounding starts at 1e-7 and training carries it
    # to differences far above any useful tolerance.
    settings = dict(augment=0, model_config={"width": 8, "dropout": 0.0}, train_limit=1000)
    two = fit_in_two_processes(
        tiny_config(tmp_path / "two", sync_bn=True, **settings), tmp_path, torch.float64
    )
    torch.set_default_dtype(torch.float64)
    try:
        one = fit(tiny_config(tmp_path / "one", **settings))
    finally:
        torch.set_default_dtype(torch.float32)
    assert two["world_size"] == 2 and two["global_batch"] == one["global_batch"] == 64
    for name, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][name], value, rtol=0, atol=1e-9)
    assert abs(two["history"][-1]["train_loss"] - one["history"][-1]["train_loss"]) < 1e-9

    unsynced = fit_in_two_processes(
        tiny_config(tmp_path / "unsynced", **settings), tmp_path, torch.float64
    )
    weight = "features.0.0.weight"  # each process normalizes with its half: other weights
    assert (unsynced["state_dict"][weight] - one["state_dict"][weight]).abs().max() > 1e-4


def test_two_processes_without_synced_batchnorm_learn_as_well(tmp_path, tiny_config):
    # The book's recipe (augmentation, dropout, per-process batch norm) cannot match weight for
    # weight; it must match in accuracy. The margin leaves room for the spread of this run's
    # test accuracy over seeds, in one process and in two (benchmarks/RESULTS.md), no more.
    settings = dict(train_limit=4000, val_size=500)
    two = fit_in_two_processes(tiny_config(tmp_path / "two", **settings), tmp_path)
    one = fit(tiny_config(tmp_path / "one", **settings))
    accuracies = two["metrics"]["test"]["accuracy"], one["metrics"]["test"]["accuracy"]
    assert min(accuracies) > 0.9
    assert abs(accuracies[0] - accuracies[1]) <= 0.02, accuracies


def test_joining_without_torchrun_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT is not: start .* torchrun"):
        with process_group(torch.device("cpu")):
            pass
    assert not dist.is_initialized()


def test_a_port_in_use_is_named(monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")  # rank 0 serves the rendezvous on MASTER_PORT
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setenv("MASTER_PORT", str(port))
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*(in use|EADDRINUSE)"):
            with process_group(torch.device("cpu")):
                pass
    assert not dist.is_initialized()


def torchrun_train(folder: Path, mnist_root: Path, *options: str) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 -m hwr_utils train`` on a small run."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "hwr_utils", "train", "--epochs", "3", "--train-limit", "3000",
        "--val-size", "500", "--data-dir", str(mnist_root), "--device", "cpu",
        "--no-progress", *options,
    ]  # fmt: skip
    log = open(folder / f"log{len(list(folder.glob('log*')))}.txt", "w+")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    process.log = log  # read back by output()
    return process


def output(process: subprocess.Popen, timeout: float = 120) -> str:
    process.wait(timeout=timeout)  # a hang fails here
    process.log.seek(0)
    return process.log.read()


def worker_of_rank(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of ``launcher``'s child that torchrun started as ``rank`` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher.pid and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks in /proc")
def test_torchrun_killed_mid_epoch_fails_cleanly_and_resumes_exactly(tmp_path, mnist_root):
    whole = torchrun_train(tmp_path, mnist_root, "--out", "whole.pt")
    log = output(whole)
    assert whole.returncode == 0, log
    assert "2 processes (gloo): global batch 128, 64 per process" in log

    run = torchrun_train(tmp_path, mnist_root, "--out", "parts.pt")
    checkpoint = tmp_path / "parts.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = worker_of_rank(run, 1)
    assert checkpoint.exists() and victim is not None, output(run, 0)
    os.kill(victim, signal.SIGKILL)
    log = output(run)  # no hang: the survivor ends too
    assert run.returncode != 0
    assert "lost contact with the others" in log or "SIGKILL" in log, log
    saved = load_checkpoint(checkpoint)  # intact: written whole, or not at all
    assert 1 <= saved["epoch"] < 3

    resumed = torchrun_train(tmp_path, mnist_root, "--out", "parts.pt", "--resume")
    log = output(resumed)
    assert resumed.returncode == 0, log
    assert f"Resuming parts.pt after epoch {saved['epoch']}/3" in log
    expected, got = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(checkpoint)
    for name, value in expected["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value, rtol=0, atol=0)
    assert got["metrics"] == expected["metrics"]
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in got["history"]]
    assert drop_time == [
        {k: v for k, v in r.items() if k != "seconds"} for r in expected["history"]
    ]


def test_gradients_averaged_by_hand_are_those_of_ddp_and_of_one_process(tmp_path):
    # The appendix's from-scratch data parallelism (one all_reduce per parameter), under torchrun.
    from hwr_utils.teaching.data_parallel import torchrun

    out = tmp_path / "dp.json"
    torchrun("-m", "hwr_utils.teaching.data_parallel", "--steps", "3", "--out", out)
    report = json.loads(out.read_text())
    assert report["world_size"] == 2 and report["steps"] == 3
    float64 = report["float64"]
    assert float64["by_hand_vs_ddp"] <= 1e-12
    assert float64["by_hand_vs_one_process"] <= 1e-12
    assert float64["ddp_vs_one_process"] <= 1e-12


def test_without_synchronized_batch_norm_two_processes_drift_from_one(tmp_path):
    # The appendix's exercise 1: each process normalizes with its half's statistics.
    from hwr_utils.teaching.data_parallel import torchrun

    out = tmp_path / "dp.json"
    torchrun("-m", "hwr_utils.teaching.data_parallel", "--steps", "3", "--out", out,
             "--no-sync-bn")  # fmt: skip
    float64 = json.loads(out.read_text())["float64"]
    assert float64["by_hand_vs_ddp"] <= 1e-12  # the same arithmetic, by hand or by DDP
    assert float64["by_hand_vs_one_process"] > 1e-6


def test_a_failed_torchrun_quotes_what_the_processes_said(tmp_path):
    from hwr_utils.errors import HwrError
    from hwr_utils.teaching.data_parallel import torchrun

    with pytest.raises(HwrError, match=r"global batch \(129\) must split evenly over 2"):
        torchrun("-m", "hwr_utils", "train", "--epochs", "1", "--train-limit", "256",
                 "--batch-size", "129", "--out", tmp_path / "odd.pt")  # fmt: skip
