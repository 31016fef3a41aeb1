"""Processes and devices: torchrun's environment -> process group (NCCL on GPU, gloo on CPU), gradient
all-reduce, weight broadcast, and a DistributedSampler that can resume in the middle of an epoch.

Gradients are all-reduced explicitly after each phase's backward instead of wrapping networks in
DDP: GAN phases toggle requires_grad and reuse one forward across phases, which DDP's
one-forward-one-backward reducer does not model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_pref: str) -> DistInfo:
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT); a plain single process when they are absent."""
    from img2img.devices import launcher_env, resolve_device

    rank, world, local = launcher_env()
    device = resolve_device(device_pref, local_rank=local, allow_mps=False, key="train.device")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_networks(nets: dict[str, nn.Module], info: DistInfo) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not info.distributed:
        return
    for name in sorted(nets):
        for t in itertools.chain(nets[name].parameters(), nets[name].buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_buffers(nets: dict[str, nn.Module], info: DistInfo) -> None:
    """Rank 0's BatchNorm statistics to every rank after each iteration (as DDP's broadcast_buffers),
    so ranks that normalise with local batches still hold identical state."""
    if not info.distributed:
        return
    for name in sorted(nets):
        for t in nets[name].buffers():
            dist.broadcast(t.data, src=0)


def allreduce_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average gradients across ranks, one flat buffer per dtype to keep the message count low."""
    if not info.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= info.world_size
        offset = 0
        for g in group:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of small counters over ranks (e.g. samples seen / skipped)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_across(flag: bool, info: DistInfo) -> bool:
    """True on every rank when any rank says True (used to stop all ranks together)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def maybe_sync_batchnorm(net: nn.Module, info: DistInfo) -> nn.Module:
    """SyncBatchNorm needs GPU tensors, so only CUDA multi-process runs convert."""
    if info.distributed and info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose epoch can start after `skip` samples, so a resumed run sees the
    same remaining samples in the same order as an uninterrupted one."""

    def __init__(self, dataset: Any, info: DistInfo, seed: int, shuffle: bool = True) -> None:
        super().__init__(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
