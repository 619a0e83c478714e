"""Data-parallel pieces: equal shards, and batch normalization synchronized across two real
gloo processes, checked against ``nn.BatchNorm2d`` on the whole batch (values and gradients)."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from hwr_utils.distributed import SyncBatchNorm2d, convert_sync_batchnorm, shard
from hwr_utils.models import build_model


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
