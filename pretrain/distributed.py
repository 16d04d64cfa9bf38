"""Data parallelism with torch.distributed: process context, all-gather, shuffle-BN.

Legend: B per-process batch, P number of processes (world size), ... any trailing shape.

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); `init_distributed`
reads them and starts the process group (NCCL on CUDA, gloo on CPU). Without them, the
context describes a single process and every helper here is the identity, so objectives
call the helpers unconditionally.

Shuffle-BN (MoCo): the teacher's BatchNorm sees a batch made of samples from all
processes in a random order, so its batch statistics cannot tie a key to its query. On a
single process MoCo's answer is SplitBatchNorm (its single-GPU demo): the key batch is
shuffled and run in G groups, each normalised with its own statistics, then un-shuffled
(`split_forward`); without it a key is computed with the statistics of the very batch that
holds its query, which MoCo (section 3.3) calls cheating.
SyncBatchNorm is the CUDA alternative under DDP (`run.sync_batchnorm`, see `sync_batchnorm`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "all_gather_nograd", "all_reduce_mean",
           "shuffled_forward", "split_forward", "sync_batchnorm"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints and logs."""
        return self.rank == 0


def init_distributed(device_type: str) -> DistContext:
    """Start the process group if launched by torchrun (WORLD_SIZE > 1), else a 1-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(ctx: DistContext) -> None:
    """Barrier, then destroy the group (without the barrier a gloo rank can abort at exit)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """(B, ...) on each process -> (P * B, ...), rank order, same on every process. No gradient."""
    if not ctx.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of `x` over processes (a new tensor)."""
    if not ctx.enabled:
        return x.clone()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / ctx.world_size


@torch.no_grad()
def split_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """fn(x) with split BatchNorm on one process. x: (B, ...) -> fn's output (B, ...).

    The batch is shuffled, cut into `groups` sub-batches of B // groups or B // groups + 1
    clips, `fn` runs on each (so its BatchNorm uses that group's statistics), and the outputs
    are un-shuffled. groups = 1 is a plain forward. No gradient (keys only).
    """
    b = x.shape[0]
    if not 1 <= groups <= b:
        raise ValueError(f"split BatchNorm needs 1 <= groups <= batch size, got {groups} groups for a batch of {b}")
    if groups == 1:
        return fn(x)
    perm = torch.randperm(b, device=x.device, generator=generator)  # (B,)
    y = torch.cat([fn(part) for part in x[perm].tensor_split(groups)], dim=0)  # (B, ...) in shuffled order
    return y[torch.argsort(perm)]


@torch.no_grad()
def shuffled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, ctx: DistContext,
                     split_groups: int = 1) -> torch.Tensor:
    """fn(x) computed with shuffle-BN across processes. x: (B, ...) -> fn's output (B, ...).

    All inputs are gathered, permuted with one permutation drawn on rank 0 and broadcast,
    each process runs `fn` on its slice of the shuffled batch, and the outputs are
    gathered and un-shuffled. Requires the same B on every process. No gradient (keys only).
    On a single process: `split_forward(fn, x, split_groups)` (a plain forward for 1 group).
    """
    if not ctx.enabled:
        return split_forward(fn, x, split_groups)
    b = x.shape[0]
    x_all = all_gather_nograd(x, ctx)  # (P*B, ...)
    perm = torch.randperm(x_all.shape[0], device=x.device) if ctx.is_main else torch.empty(
        x_all.shape[0], dtype=torch.long, device=x.device)
    dist.broadcast(perm, src=0)
    unperm = torch.argsort(perm)
    mine = perm[ctx.rank * b:(ctx.rank + 1) * b]  # (B,)
    y_all = all_gather_nograd(fn(x_all[mine]), ctx)  # (P*B, ...) in shuffled order
    return y_all[unperm][ctx.rank * b:(ctx.rank + 1) * b]


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm replaced by torch's SyncBatchNorm (in place; CUDA only).

    Batch statistics are then computed over the batches of all processes (the teacher's too:
    with shuffle-BN its statistics are those of the whole shuffled global batch), and the
    running statistics are the same on every process. Parameter and buffer names are
    unchanged, so checkpoints load into the plain encoder.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
