"""A first-in-first-out queue of vectors held in buffers: extra negatives for contrastive losses.

MoCo (He et al., CVPR 2020) keeps the keys of recent mini-batches in a queue so a contrastive loss
sees many more negatives than one batch holds; COUPLE (Sec. 3.3, App. A.1.2) keeps 10 x 256
item vectors that way. :class:`FifoQueue` is a ring buffer of ``capacity`` vectors of width
``dim`` and one integer key per vector (the item id, so a loss can mask a queued copy of the
row's own positive item; -1 = no key):

- :meth:`push` enqueues a batch **detached and copied** (a queued vector never carries the graph
  or the gradient of the batch that produced it) and overwrites the oldest entries once full;
- :meth:`contents` returns the filled entries oldest first;
- everything is a buffer (``vectors``, ``keys``, ``ptr``, ``count``), so the queue is in the
  model's ``state_dict``: checkpoints and resumes carry it, and ``.to(device)`` moves it.

Under ``torch.distributed`` (when initialised) :meth:`push` all-gathers every rank's batch first
(ranks may hold different numbers of rows: they are padded to the largest and trimmed), so every
rank enqueues the same vectors in the same order (rank 0's rows first) and the queues stay
identical. ``push`` is then a collective call: every rank must make it.
"""

from __future__ import annotations

import torch
from torch import nn

from thawrec.errors import ConfigError
from thawrec.nn.collectives import all_gather_rows

__all__ = ["FifoQueue", "all_gather_rows"]


class FifoQueue(nn.Module):
    """Ring buffer of the ``capacity`` most recently pushed ``dim``-wide vectors and their keys."""

    def __init__(self, capacity: int, dim: int) -> None:
        super().__init__()
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"FIFO queue capacity must be a positive int, got {capacity!r}. Fix: e.g. 2560")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"FIFO queue dim must be a positive int, got {dim!r}. Fix: the vectors' width")
        self.capacity, self.dim = capacity, dim
        self.register_buffer("vectors", torch.zeros(capacity, dim))
        self.register_buffer("keys", torch.full((capacity,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # filled slots

    def extra_repr(self) -> str:
        return f"capacity={self.capacity}, dim={self.dim}"

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def push(self, vectors: torch.Tensor, keys: torch.Tensor | None = None) -> None:
        """Enqueue ``vectors [n, dim]`` (and ``keys [n]``; -1 when None) after the entries already
        queued, dequeuing the oldest beyond ``capacity``. Detached copies are stored."""
        if vectors.dim() != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"FifoQueue.push expects vectors [n, {self.dim}], got {tuple(vectors.shape)}")
        if keys is None:
            keys = torch.full((len(vectors),), -1, dtype=torch.long, device=vectors.device)
        if keys.shape != (len(vectors),):
            raise ConfigError(f"FifoQueue.push expects one key per vector, got keys {tuple(keys.shape)} "
                              f"for {len(vectors)} vectors")
        v, k = all_gather_rows(vectors.detach().to(self.vectors.dtype), keys.detach().long())
        if len(v) > self.capacity:  # only the newest capacity rows can survive this push
            v, k = v[-self.capacity:], k[-self.capacity:]
        n = len(v)
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.capacity
        self.vectors[slots] = v.to(self.vectors.device)
        self.keys[slots] = k.to(self.keys.device)
        self.ptr.copy_((self.ptr + n) % self.capacity)
        self.count.copy_(torch.clamp(self.count + n, max=self.capacity))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vectors [count, dim], keys [count])`` of the filled slots, oldest first. The tensors
        are copies of buffer rows (no graph): safe to use as negatives."""
        order = (self.ptr - self.count + torch.arange(int(self.count), device=self.ptr.device)) % self.capacity
        return self.vectors[order], self.keys[order]

    @torch.no_grad()
    def clear(self) -> None:
        self.vectors.zero_()
        self.keys.fill_(-1)
        self.ptr.zero_()
        self.count.zero_()
