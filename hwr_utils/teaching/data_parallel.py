"""Data parallelism from scratch, for the appendix "Scaling out": every process computes the
gradient of its share of the batch, the processes average their gradients with one
``all_reduce`` per parameter, and every process takes the same step.

Run it under ``torchrun`` (a notebook cannot host the worker processes, so the chapter starts
it with :func:`torchrun` and reads the JSON it writes)::

    torchrun --standalone --nproc-per-node 2 -m hwr_utils.teaching.data_parallel --out dp.json

It trains the same small model three ways on the same batches and reports how far apart they
end: by hand (:func:`average_gradients`), with ``DistributedDataParallel``, and, on rank 0
alone, one process on each whole batch. Batch norm is synchronized
(:class:`~hwr_utils.distributed.SyncBatchNorm2d`) so that the three compute the same thing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..checkpoints import atomic_path
from ..data import load_mnist, to_float
from ..distributed import convert_sync_batchnorm, data_parallel, process_group
from ..errors import HwrError
from ..models import build_model


def average_gradients(model: nn.Module) -> None:
    """Replace each parameter's gradient by its mean over the processes: sum with
    ``all_reduce`` (every process receives the total), divide by the number of processes.
    Called between ``backward`` and the optimizer's step; once the backward pass has ended."""
    world_size = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)  # sum over the processes, in place
            parameter.grad /= world_size


def train_steps(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    lr: float,
    after_backward: Callable[[nn.Module], None] | None = None,
) -> None:
    """SGD with momentum over ``images`` (steps, batch, 1, 28, 28); ``after_backward`` (e.g.
    :func:`average_gradients`) runs between ``backward`` and each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for x, y in zip(images, labels, strict=True):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if after_backward is not None:
            after_backward(model)
        optimizer.step()


def max_difference(a: nn.Module, b: nn.Module) -> float:
    """The largest absolute difference between the parameters of ``a`` and ``b``."""
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max((p - q).abs().max().item() for p, q in pairs)


def compare(
    steps: int, batch_size: int, lr: float, dtype: torch.dtype, sync_bn: bool = True
) -> dict[str, float]:
    """Train by hand, with DDP and (rank 0) in one process; how far apart they end. Without
    ``sync_bn`` the two-process copies normalize each with its own share's statistics."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_default_dtype(dtype)
    try:
        train, _ = load_mnist()
        count = steps * batch_size
        images = to_float(train.images[:count]).view(steps, batch_size, 1, 28, 28)
        labels = train.labels[:count].view(steps, batch_size)
        torch.manual_seed(0)  # the same initial weights in every process
        model = build_model("hwrnet", width=8, dropout=0.0)
        synchronized = convert_sync_batchnorm if sync_bn else (lambda module: module)
        by_hand = synchronized(copy.deepcopy(model))
        ddp = data_parallel(synchronized(copy.deepcopy(model)), torch.device("cpu"))
        one = model  # plain batch norm: it runs in rank 0 alone
        mine = slice(rank, None, world_size)  # this process's share of every batch
        shares = images[:, mine], labels[:, mine]
        train_steps(by_hand, *shares, lr, average_gradients)
        train_steps(ddp, *shares, lr)
        result = {"by_hand_vs_ddp": max_difference(by_hand, ddp.module)}
        if rank == 0:  # the reference: one process, each whole batch
            train_steps(one, images, labels, lr)
            result["by_hand_vs_one_process"] = max_difference(by_hand, one)
            result["ddp_vs_one_process"] = max_difference(ddp.module, one)
        return result
    finally:
        torch.set_default_dtype(torch.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64, help="global: over all processes")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", required=True, help="JSON file rank 0 writes")
    parser.add_argument(
        "--no-sync-bn", dest="sync_bn", action="store_false", help="batch norm per process"
    )
    args = parser.parse_args(argv)
    with process_group(torch.device("cpu")) as world:
        if world.size < 2:
            raise SystemExit("run me under torchrun with 2 or more processes")
        results = {
            name: compare(args.steps, args.batch_size, args.lr, dtype, args.sync_bn)
            for name, dtype in (("float64", torch.float64), ("float32", torch.float32))
        }
        if world.is_main:
            report = {"world_size": world.size, "steps": args.steps, **vars(args), **results}
            with atomic_path(args.out) as tmp:
                Path(tmp).write_text(json.dumps(report, indent=2))
    return 0


def torchrun(
    *arguments: str | os.PathLike, processes: int = 2, threads: int = 1, timeout: float = 1800
) -> str:
    """Run ``torchrun --standalone --nproc-per-node processes *arguments`` in a subprocess
    with ``threads`` threads per process; its output, or an error that quotes its end."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(processes), *map(str, arguments)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).splitlines()
        # What the processes said of their failure (each says it once; torchrun's own report
        # of the failed processes follows and can bury it), else the end of the output.
        said = list(dict.fromkeys(line for line in lines if ": error: " in line))
        quoted = "\n".join(said or lines[-15:])
        raise HwrError(f"torchrun failed with status {done.returncode}:\n{quoted}")
    return done.stdout


if __name__ == "__main__":
    sys.exit(main())
