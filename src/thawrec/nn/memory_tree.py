"""COUPLE's hierarchical memory tree (Sec. 3.2.3): user group preference from memory slots.

A fully connected tree (``layers`` = 1-32-512 in the paper: a root, 32 inner nodes, 512 leaves,
each inner node the parent of 16 leaves). Every node below the root holds a memory slot vector
``s_{i,k}``; a layer's slots are the rows of one bias-free fully connected layer, so
``e_h . s_{i,k}`` for a whole layer is that layer applied to the query ``e_h``. Node weights
(Eq. 6): the root has weight 1 and a child gets its parent's weight times the softmax of
``e_h . s`` over its siblings, so each layer's weights sum to 1 and children share their parent's
weight. Computed in log space, one layer at a time (a loop over the tree's depth, never over rows).

Leaf selection (Eq. 7-8):

- training: Gumbel-softmax over the leaf weights, ``y = softmax((log w + g) / tau)`` with
  ``g = -log(-log U)``, ``U ~ uniform(0, 1)``; the top ``K`` leaves by ``y`` are kept and
  ``e_g = sum_k y_k s_k``. The top K of ``log w + g`` is a draw of K leaves without replacement
  in proportion to ``w`` (the Gumbel-top-k trick), so early on, when ``w`` is flat, the tree
  visits random leaves (the dead-node cure) and later the real top K; ``tau`` sets how sharp the
  kept weights are.
- inference: the top ``K`` leaves by ``w`` and ``e_g = sum_k w_k s_k`` (Eq. 8), no noise. With
  ``tau = 1`` and no noise, ``y = w``: training and inference agree once the schedule ends.

``tau = max(tau_min, tau_start * exp(-rate * t))`` of the global training step ``t``, updated
every ``every`` steps (App. A.1.2: 20, 1, 1e-5, 1000), i.e. evaluated at
``t = every * floor(step / every)``. The step counter is a buffer (in the ``state_dict``, so a
resumed run continues the schedule exactly); :meth:`HierarchicalMemoryTree.advance` counts one
optimizer step.

``dropout`` (0.2 in the paper) is applied to the query before routing. The orthogonality penalty
of Eq. 9 (SRIP, :func:`thawrec.nn.losses.srip_penalty`) is summed over the tree's layers by
:meth:`HierarchicalMemoryTree.orthogonality`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from thawrec.errors import ConfigError
from thawrec.nn.losses import srip_penalty

__all__ = ["HierarchicalMemoryTree", "gumbel_temperature", "gumbel_noise"]


def gumbel_temperature(step: int, start: float = 20.0, minimum: float = 1.0, rate: float = 1e-5,
                       every: int = 1000) -> float:
    """``max(minimum, start * exp(-rate * t))`` with ``t = every * floor(step / every)``: the
    annealed Gumbel-softmax temperature, constant within each block of ``every`` steps."""
    t = every * (int(step) // every)
    return max(float(minimum), float(start) * math.exp(-float(rate) * t))


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """I.i.d. standard Gumbel samples ``-log(-log U)`` (inverse transform, ``U ~ uniform(0, 1)``)."""
    tiny = torch.finfo(dtype).tiny
    u = torch.rand(shape, device=device, dtype=dtype).clamp(tiny, 1.0 - torch.finfo(dtype).eps)
    return -torch.log(-torch.log(u))


class HierarchicalMemoryTree(nn.Module):
    """``forward(query [B, D]) -> e_g [B, D]`` (see the module docstring)."""

    def __init__(self, dim: int, layers: list[int] | tuple[int, ...] = (1, 32, 512), top_k: int = 8,
                 dropout: float = 0.2, tau_start: float = 20.0, tau_min: float = 1.0, rate: float = 1e-5,
                 every: int = 1000) -> None:
        super().__init__()
        sizes = [int(n) for n in layers]
        if len(sizes) < 2 or sizes[0] != 1 or any(n < 1 for n in sizes):
            raise ConfigError(f"memory tree layers must start with the root (1) and have at least one more "
                              f"layer of positive sizes, got {list(layers)}. Fix: e.g. [1, 32, 512]")
        bad = [(a, b) for a, b in zip(sizes, sizes[1:]) if b % a]
        if bad:
            raise ConfigError(f"memory tree layer of {bad[0][1]} nodes cannot split evenly under {bad[0][0]} "
                              f"parents ({list(layers)}). Fix: each layer a multiple of the one above")
        if not 1 <= int(top_k) <= sizes[-1]:
            raise ConfigError(f"top_k must be in [1, {sizes[-1]}] (the number of leaves), got {top_k!r}")
        if not tau_start >= tau_min > 0 or rate < 0 or int(every) < 1:
            raise ConfigError("Gumbel schedule needs tau_start >= tau_min > 0, rate >= 0, every >= 1; got "
                              f"{tau_start}, {tau_min}, {rate}, {every}. Fix: e.g. 20, 1, 1e-5, 1000")
        self.sizes, self.top_k = sizes, int(top_k)
        self.tau_start, self.tau_min, self.rate, self.every = float(tau_start), float(tau_min), float(rate), int(every)
        self.levels = nn.ModuleList(nn.Linear(dim, n, bias=False) for n in sizes[1:])  # rows = slot vectors
        for lin in self.levels:
            nn.init.xavier_uniform_(lin.weight)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"layers={self.sizes}, top_k={self.top_k}, tau=max({self.tau_min}, {self.tau_start} "
                f"exp(-{self.rate} t)) every {self.every} steps")

    @property
    def leaves(self) -> torch.Tensor:
        """The leaf slot vectors ``[n_leaves, D]``."""
        return self.levels[-1].weight

    def temperature(self) -> float:
        """The Gumbel-softmax temperature at the current step."""
        return gumbel_temperature(int(self.step), self.tau_start, self.tau_min, self.rate, self.every)

    @torch.no_grad()
    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` optimizer steps (the schedule's ``t``)."""
        self.step += int(steps)

    def leaf_log_weights(self, query: torch.Tensor) -> torch.Tensor:
        """``log w`` of every leaf ``[B, n_leaves]`` (Eq. 6 applied layer by layer)."""
        log_w = query.new_zeros(len(query), 1)
        for parents, lin in zip(self.sizes, self.levels):
            logits = lin(query).view(len(query), parents, -1)  # children of each parent, in order
            log_w = (log_w.unsqueeze(-1) + torch.log_softmax(logits, dim=-1)).reshape(len(query), -1)
        return log_w

    def route(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(leaf ids [B, K], weights [B, K])`` of the kept leaves (Gumbel top-K in training,
        top-K by ``w`` in eval)."""
        log_w = self.leaf_log_weights(self.dropout(query))
        if self.training:
            y = torch.softmax((log_w + gumbel_noise(log_w.shape, log_w.device, log_w.dtype)) / self.temperature(),
                              dim=-1)
            weights, idx = y.topk(self.top_k, dim=-1)
        else:
            top, idx = log_w.topk(self.top_k, dim=-1)
            weights = top.exp()
        return idx, weights

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        idx, weights = self.route(query)
        return torch.einsum("bk,bkd->bd", weights, self.leaves[idx])

    def orthogonality(self, iterations: int = 2) -> torch.Tensor:
        """Eq. 9 without lambda: the sum of every layer's SRIP penalty."""
        return sum(srip_penalty(lin.weight, iterations) for lin in self.levels)
