"""Data-parallel training under ``torchrun``, in the manner of torchvision's
``references/classification/utils.py``. Introduced in the appendix "Scaling out".

``torchrun --nproc-per-node N -m hwr_utils train ...`` starts N copies of ``hwr train``; each
finds its rank and the rendezvous in the environment. :func:`process_group` joins them (gloo on
CPUs, NCCL on CUDA GPUs); :func:`hwr_utils.train.fit` then asks :func:`current_world` who it is.
Without ``torchrun`` the world is one process and none of this does anything.

* :func:`shard`: each process's share of one epoch's shuffled order, all shares equally long;
* :func:`sum_over_processes`, :func:`gather`, :func:`broadcast_buffers`, :func:`barrier`: the
  few collective steps the engine needs besides the gradient all-reduce that
  ``DistributedDataParallel`` does;
* :class:`AllReduceSum`: a sum over processes that gradients flow back through;
* :class:`SyncBatchNorm2d`: batch normalization over the *global* batch on any device.
  PyTorch's ``nn.SyncBatchNorm`` refuses CPU tensors, and on a CPU under gloo each process would
  otherwise normalize with the statistics of its own part of the batch only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import ConfigError, ProcessLostError

#: How long a process waits for the others in one collective step before giving up. Every
#: training step has one, so this only has to cover the slowest step, an evaluation, or rank 0
#: writing a checkpoint; a process that hangs then ends the job instead of stalling it for
#: PyTorch's default of half an hour (a process that dies ends it at once: torchrun notices).
TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training run."""

    rank: int = 0  # 0 .. size - 1; rank 0 prints, shows progress and writes checkpoints
    size: int = 1
    local_rank: int = 0  # the rank on this machine: which GPU it uses
    backend: str = ""  # "gloo" or "nccl"; "" for a single process

    @property
    def is_main(self) -> bool:
        """Whether this process speaks for the run (prints and saves)."""
        return self.rank == 0


def current_world() -> World:
    """The process group this process belongs to, or a world of one outside any."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return World(rank, dist.get_world_size(), local_rank, dist.get_backend())


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the process group ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) for the duration of the block: gloo for a
    CPU, NCCL for a CUDA GPU (process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``). Outside
    ``torchrun``, with one process, or inside a group already joined, nothing happens."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield current_world()
        return
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"data-parallel training runs on CPUs or CUDA GPUs, not {device.type}")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start data-parallel training "
            "with torchrun (torchrun --standalone --nproc-per-node 2 -m hwr_utils train ...)"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as error:  # DistNetworkError, DistStoreError, ...
        raise ConfigError(
            f"could not join the process group at {address}: {_first_line(error)}"
        ) from None
    world = current_world()
    try:
        yield world
    except RuntimeError as error:
        if not _lost_contact(error):
            raise
        raise ProcessLostError(
            f"process {world.rank} of {world.size} lost contact with the others (one died, was "
            f"killed, or hung past the {TIMEOUT.total_seconds():.0f} s timeout): "
            f"{_first_line(error)}"
        ) from None
    finally:
        dist.destroy_process_group()


def _lost_contact(error: RuntimeError) -> bool:
    # gloo reports a dead peer or a timeout as a plain RuntimeError from its sources.
    text = str(error)
    return isinstance(error, dist.DistError) or "gloo" in text or "NCCL" in text


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device process ``world.rank`` trains on: its own GPU on a CUDA machine."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel``: the same initial weights on every
    process (rank 0's, broadcast), and gradients averaged over the processes during
    ``backward``, bucket by bucket, while the rest of the backward pass still runs."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch normalization over the global batch: PyTorch's ``nn.SyncBatchNorm`` on a GPU,
    :class:`SyncBatchNorm2d` elsewhere. Both keep the layers' parameters and buffers, under the
    same names (checkpoints load either way). Convert before :func:`data_parallel` wraps the
    model: DDP must see the layers it will run."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return convert_sync_batchnorm(model)


def gather(value: Any) -> list[Any]:
    """``value`` of every process, in rank order (a list of one outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def sum_over_processes(sums: Mapping[str, float]) -> Counter:
    """Totals (``task.sums`` of each process's share) added up over the processes. Every
    process gets the same totals; keys missing on one process count as 0 there."""
    total = Counter()
    for part in gather(dict(sums)):
        total.update(part)
    return total


def broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics). Without
    synchronized batch norm each process updates its own from its own share of the batch;
    ``DistributedDataParallel`` overwrites them with rank 0's before each training forward pass,
    and an evaluation must see the same ones too."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    """Wait until every process gets here (e.g. until rank 0 has written the checkpoint)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s share of ``order`` (one epoch's indices, the same on every process):
    every ``world_size``-th index from position ``rank``, cut to ``len(order) // world_size`` so
    that every process takes as many steps (a process with one batch more would wait forever
    for the others' gradients)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return order[rank::world_size][: len(order) // world_size]


class AllReduceSum(torch.autograd.Function):
    """``y = x_0 + ... + x_{W-1}`` over the processes, on every process. Each process's loss
    depends on ``y``, so the gradient of the summed loss with respect to ``x_r`` is the sum of
    every process's gradient with respect to ``y``: the backward pass is an all-reduce too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the processes."""
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        """The sum of ``grad`` over the processes."""
        total = grad.clone()
        dist.all_reduce(total)
        return total


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the batch of all processes.

    Each process sums its part per channel (values, squares, count); :class:`AllReduceSum`
    adds the sums up; mean and (biased) variance follow, and the running statistics are updated
    with the unbiased variance, as ``nn.BatchNorm2d`` does. Outside a process group, or in eval
    mode, it is ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        total = AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels : 2 * channels] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            unbiased = var * n / (n - 1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        shape = (1, channels, 1, 1)
        normalized = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return normalized * self.weight.view(shape) + self.bias.view(shape)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SyncBatchNorm2d` with the
    same parameters and running statistics (like ``nn.SyncBatchNorm.convert_sync_batchnorm``,
    which makes layers that run on GPUs only). Layers without a scale and shift, without running
    statistics or with a cumulative average (``momentum=None``) are left as they are."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d and _convertible(child):
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum)
            # The very same tensors: an optimizer built before the conversion still trains them.
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            convert_sync_batchnorm(child)
    return module


def _convertible(layer: nn.BatchNorm2d) -> bool:
    return layer.affine and layer.track_running_stats and layer.momentum is not None
