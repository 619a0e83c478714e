"""Pieces of data-parallel training, in the manner of torchvision's ``references/.../utils.py``
(for the appendix "Scaling out", which is being written: :func:`hwr_utils.train.fit` does not
use them yet).

* :func:`shard`: each process's share of one epoch's shuffled order, all shares equally long;
* :class:`AllReduceSum`: a sum over processes that gradients flow back through;
* :class:`SyncBatchNorm2d`: batch normalization over the *global* batch on any device.
  PyTorch's ``nn.SyncBatchNorm`` refuses CPU tensors, and on a CPU under gloo each process would
  otherwise normalize with the statistics of its own part of the batch only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


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
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(module, name, synced.to(child.weight.device))
        else:
            convert_sync_batchnorm(child)
    return module


def _convertible(layer: nn.BatchNorm2d) -> bool:
    return layer.affine and layer.track_running_stats and layer.momentum is not None
