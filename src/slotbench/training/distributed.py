"""Data-parallel training (DDP) under ``torchrun``: process context, micro-batches, per-rank seeds.

A training step always consumes the same global batch of ``train.batch_size`` clips. It is cut
into ``world_size x grad_accum_steps`` equal micro-batches; micro-batch ``j`` of a step runs on
rank ``j // grad_accum_steps`` and draws its random numbers (dropout, sampled slots, diffusion
noise) from :func:`micro_batch_seed` ``(seed, step, j)``. So set-ups with the same number of
micro-batches (2 processes, or 1 process with 2 accumulation steps) compute the same update up to
floating-point summation order, and a run resumes exactly under any number of processes that keeps
that number; another split draws other random numbers (an equally valid run, not the same one).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    """This process's place among the training processes of one node (what ``torchrun`` sets)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes every file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> Context:
    """The context ``torchrun`` describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (single process otherwise)."""
    env = os.environ
    return Context(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def start(ctx: Context, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); return this process's device (``cuda:LOCAL_RANK``)."""
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process with LOCAL_RANK {ctx.local_rank} has no GPU: only "
                               f"{torch.cuda.device_count()} visible; lower resources.*.processes")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if ctx.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop(ctx: Context) -> None:
    """Leave the process group (after the last collective)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    """Wait for every process (e.g. until rank 0 has written a file the others read)."""
    if ctx.distributed:
        dist.barrier()


def all_sum(values: Tensor, ctx: Context) -> Tensor:
    """``values`` [N] summed over processes (returned as is with one process)."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def micro_batch_size(batch_size: int, world_size: int, accum_steps: int) -> int:
    """Clips per forward pass of one process: the global batch split evenly, or a clear error."""
    parts = world_size * accum_steps
    if batch_size % parts:
        raise ValueError(f"train.batch_size {batch_size} does not split into {world_size} processes x "
                         f"{accum_steps} train.grad_accum_steps; use a multiple of {parts}")
    return batch_size // parts


def micro_batch_seed(seed: int, step: int, index: int) -> int:
    """The RNG seed of micro-batch ``index`` (0 .. world_size x accum_steps - 1) of global ``step``.

    Index -1 seeds the validation pass that follows the step.
    """
    return (seed * 1_000_003 + step) * 1_009 + index


class LossStep(nn.Module):
    """``forward(video [B, T, 3, H, W]) -> {"loss", ...}``: a model's forward and loss as one call.

    DDP reduces the gradients of what its wrapped ``forward`` computes, so the loss must be part of it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        return self.model.loss(video, self.model(video))


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """:class:`LossStep` of ``model``, inside ``DistributedDataParallel`` when there are several processes."""
    step = LossStep(model)
    if not ctx.distributed:
        return step
    return nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(step: nn.Module, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce on every micro-batch but the last of a step."""
    if last_micro_batch or not isinstance(step, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return step.no_sync()
