"""Collectives for state that is not a gradient (memories, queues, per-user vectors): every rank
gathers every rank's rows, however many each has. One implementation for all the blocks that need
it; without an initialised process group everything is a no-op."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "gather_rows", "all_gather_rows"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows of ``x`` concatenated in rank order, and where this rank's rows start,
    under ``torch.distributed``; ``(x, 0)`` otherwise. A collective: every rank calls it, with
    any number of rows (even none)."""
    if not is_distributed() or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([len(x)], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)]), sum(counts[:rank])


def all_gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`gather_rows` for several tensors with the same rows (e.g. vectors and their keys)."""
    return tuple(gather_rows(t)[0] for t in tensors)
