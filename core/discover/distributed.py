"""torch.distributed for the pipeline: who this process is under ``torchrun``, and row shards.

Under ``torchrun --nproc-per-node N`` every process gets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_from_env` joins the process group (NCCL on GPUs, gloo on CPUs).
Shards are whole batches, so every image is in the same batch it would be in a single-process
run and per-batch results match it exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str = "auto") -> torch.device:
        """This rank's device: its own GPU (``cuda:LOCAL_RANK``) when GPUs are used, else the CPU."""
        if requested == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank % max(1, torch.cuda.device_count()))


def context_from_env() -> DistContext:
    """The rank layout ``torchrun`` put in the environment (one process when it is absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistContext(rank, world, local)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group when run under torchrun; a no-op for a single process."""
    ctx = context_from_env()
    if ctx.distributed and not dist.is_initialized():
        backend = "nccl" if ctx.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return ctx


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def batch_shard(n: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``: a contiguous run of whole batches.

    Batches are split as evenly as possible (the first ranks take one more when they do not
    divide); the last batch may be short, exactly as in a single-process run.
    """
    if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad shard request: batch {batch_size}, rank {rank} of {world_size}")
    n_batches = -(-n // batch_size)
    per, extra = divmod(n_batches, world_size)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    return min(n, first * batch_size), min(n, (first + count) * batch_size)
