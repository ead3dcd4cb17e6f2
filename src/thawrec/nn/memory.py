"""Memory networks with stream clustering (UIE, Liu et al., KDD 2024, Sec. 3.2-3.4).

A memory holds ``N`` centroids of ``d``-dimensional vectors as a buffer: state that no gradient
touches, saved in ``state_dict`` (so checkpoints and ``--resume`` carry it). It is clustered
online from the vectors the model produces while it trains and read by the model as features:

- **update** (Eq. 1), called from a model's ``on_batch_end``: a sample of the batch's vectors
  (about 30% for UIE's user memory, 10% for its item memory, drawn by user active type) is
  assigned each to its most similar centroid by inner product, and each assigned centroid moves
  toward its vectors with the small rate ``rho``.
- **read** (Eq. 2): the ``k`` centroids with the largest inner product with a query; a centroid
  whose inner product is not positive is replaced by the zero vector (only positively correlated
  centroids may enhance a vector); the result is their attention-weighted sum
  ``sum_j softmax_j(mu_j . v) mu_j``.

Eq. 1 is written as ``mu_i <- argmin_mu rho * ||v - mu_i||^2`` "with a small update rate rho";
read as one gradient step of rate ``rho`` it is ``mu_i <- mu_i + rho (v - mu_i)`` (the constant
factor 2 of the squared norm's gradient is absorbed in ``rho``). A batch can assign ``c > 1``
vectors to one centroid; taking them one after the other would make the result depend on their
order, so the ``c`` steps are taken toward their mean ``m``:
``mu_i <- (1 - rho)^c mu_i + (1 - (1 - rho)^c) m``. For ``c = 1`` this is exactly the step above,
it does not depend on row order, and it never overshoots however many vectors one centroid gets
(a first-order ``mu + rho * sum (v - mu)`` would for ``rho c > 1``).

Under ``torch.distributed`` (when initialised) every rank assigns its own rows with the same
centroids, the per-centroid sums and counts are all-reduced, and every rank applies the same
step, so all ranks hold the same memory. ``update`` is then a collective: every rank must call it
the same number of times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from thawrec.errors import ConfigError

__all__ = ["MemoryRead", "StreamClusterMemory", "active_type_rates"]


@dataclass
class MemoryRead:
    """What :meth:`StreamClusterMemory.topk` / :meth:`StreamClusterMemory.read` found for each
    query row.

    ``index [..., k]``: the centroids chosen, most similar first; ``centroids [..., k, d]``: them,
    the non-positive ones replaced by zero vectors; ``scores [..., k]``: the inner products used
    for attention (zero for the replaced ones); ``kept [..., k]``: True where the centroid was kept;
    ``weighted [..., d]``: Eq. 2's attention-weighted sum (None from ``topk``).
    """

    index: torch.Tensor
    centroids: torch.Tensor
    scores: torch.Tensor
    kept: torch.Tensor
    weighted: torch.Tensor | None = None


def active_type_rates(active_type: torch.Tensor, rates: Sequence[float] | Mapping[int, float]) -> torch.Tensor:
    """Per-row sampling rates ``[B]`` from an integer active type per row (e.g. 0 = low-active,
    1 = high-active): UIE samples by active type so that heavy users do not dominate the clusters.
    A type without a rate is an error."""
    if isinstance(rates, Mapping):
        n = int(active_type.max().item()) + 1 if active_type.numel() else 0
        missing = sorted({int(t) for t in active_type.unique().tolist()} - set(rates))
        if missing:
            raise ConfigError(f"no sampling rate for active type(s) {missing}; rates are given for {sorted(rates)}")
        table = torch.tensor([float(rates.get(i, 0.0)) for i in range(n)])
    else:
        table = torch.tensor([float(r) for r in rates])
        if active_type.numel() and (int(active_type.min()) < 0 or int(active_type.max()) >= len(table)):
            raise ConfigError(f"active types range over [{int(active_type.min())}, {int(active_type.max())}] "
                              f"but {len(table)} rates were given")
    return table.to(active_type.device)[active_type.long()]


class StreamClusterMemory(nn.Module):
    """``n_centroids`` centroids of width ``dim``, clustered online (Eq. 1) and read (Eq. 2).

    ``rate``: Eq. 1's ``rho``; ``sample_rate``: the share of rows an ``update`` uses when it is
    not told otherwise (0.3 for UIE's user memory, 0.1 for its item memory); ``init_std``: the
    random initial centroids' standard deviation (default ``dim ** -0.5``: norms near 1).
    Buffers: ``centroids [N, d]`` and ``hits [N]`` (vectors assigned so far, int64; centroids that
    never win show up as zeros there).
    """

    centroids: torch.Tensor
    hits: torch.Tensor

    def __init__(self, n_centroids: int, dim: int, *, rate: float = 0.01, sample_rate: float = 1.0,
                 init_std: float | None = None) -> None:
        super().__init__()
        if n_centroids < 1 or dim < 1:
            raise ConfigError(f"a memory needs n_centroids >= 1 and dim >= 1, got {n_centroids} and {dim}")
        if not 0.0 < rate <= 1.0:
            raise ConfigError(f"memory update rate rho must lie in (0, 1], got {rate}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"memory sample_rate must lie in [0, 1], got {sample_rate}")
        self.n_centroids, self.dim = n_centroids, dim
        self.rate, self.sample_rate = float(rate), float(sample_rate)
        std = dim ** -0.5 if init_std is None else init_std
        self.register_buffer("centroids", torch.randn(n_centroids, dim) * std)
        self.register_buffer("hits", torch.zeros(n_centroids, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"n_centroids={self.n_centroids}, dim={self.dim}, rate={self.rate}, sample_rate={self.sample_rate}"

    # ------------------------------------------------------------------------------------------
    def similarity(self, query: torch.Tensor) -> torch.Tensor:
        """Inner products ``[..., N]`` of queries ``[..., d]`` with every centroid."""
        return query @ self.centroids.t()

    @torch.no_grad()
    def assign(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index ``[...]`` of each vector's most similar centroid (largest inner product)."""
        return self.similarity(vectors.detach().to(self.centroids.dtype)).argmax(dim=-1)

    def nearest(self, query: torch.Tensor) -> torch.Tensor:
        """Each query's most similar centroid ``[..., d]`` (UCSE replaces every behaviour of a
        sequence by it). No gradient flows: centroids are not parameters."""
        return self.centroids[self.assign(query)]

    def _sample(self, n: int, sample: torch.Tensor | float | None, device: torch.device) -> torch.Tensor:
        """Bool mask ``[n]`` of the rows an update uses."""
        if sample is None:
            sample = self.sample_rate
        if isinstance(sample, torch.Tensor):
            if sample.shape != (n,):
                raise ValueError(f"sample must have one entry per row ([{n}]), got shape {tuple(sample.shape)}")
            if sample.dtype == torch.bool:
                return sample.to(device)
            return torch.rand(n, device=device) < sample.to(device=device, dtype=torch.float32)
        rate = float(sample)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a sampling rate must lie in [0, 1], got {rate}")
        if rate >= 1.0:
            return torch.ones(n, dtype=torch.bool, device=device)
        return torch.rand(n, device=device) < rate

    @torch.no_grad()
    def update(self, vectors: torch.Tensor, sample: torch.Tensor | float | None = None) -> torch.Tensor:
        """One stream-clustering step (Eq. 1) on the sampled rows of ``vectors [B, d]``.

        ``sample``: a bool mask ``[B]`` of the rows to use, per-row sampling rates ``[B]`` (e.g.
        :func:`active_type_rates`), one rate for every row, or None for ``sample_rate``.
        Returns the centroid each row was assigned to, ``[B]`` (-1 for rows not sampled).
        Under ``torch.distributed`` the step uses every rank's rows (a collective call).
        """
        if vectors.dim() != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"update expects vectors [B, {self.dim}], got {tuple(vectors.shape)}")
        v = vectors.detach().to(self.centroids.dtype)
        used = self._sample(len(v), sample, v.device)
        assigned = torch.full((len(v),), -1, dtype=torch.long, device=v.device)
        idx = self.assign(v[used])
        assigned[used] = idx
        # Per-centroid sums and counts in one [N, d + 1] tensor: one all-reduce under DDP.
        acc = torch.zeros(self.n_centroids, self.dim + 1, dtype=v.dtype, device=v.device)
        acc.index_add_(0, idx, torch.cat([v[used], torch.ones(len(idx), 1, dtype=v.dtype, device=v.device)], 1))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(acc, op=dist.ReduceOp.SUM)
        sums, counts = acc[:, :-1], acc[:, -1]
        hit = counts > 0
        keep = torch.pow(1.0 - self.rate, counts).unsqueeze(1)  # (1 - rho)^c; 1 where c = 0
        means = sums / counts.clamp(min=1.0).unsqueeze(1)
        self.centroids.copy_(torch.where(hit.unsqueeze(1), keep * self.centroids + (1.0 - keep) * means,
                                         self.centroids))
        self.hits += counts.round().long()
        return assigned

    # ------------------------------------------------------------------------------------------
    def topk(self, query: torch.Tensor, k: int, positive_wrt: torch.Tensor | None = None) -> MemoryRead:
        """The ``k`` centroids most similar to ``query [..., d]``, those whose inner product with
        ``positive_wrt`` (default: the query itself) is not positive replaced by zero vectors.

        ``positive_wrt`` is UCBE's filter: centroids chosen by an item vector, kept only when
        positively correlated with the user's profile vector. ``scores`` are the query's inner
        products (zero for replaced centroids, whose vector is zero)."""
        if not 1 <= k <= self.n_centroids:
            raise ValueError(f"k must lie in [1, {self.n_centroids}], got {k}")
        if query.shape[-1] != self.dim:
            raise ValueError(f"queries must end in dim {self.dim}, got {tuple(query.shape)}")
        q = query.to(self.centroids.dtype)
        sims, index = self.similarity(q).topk(k, dim=-1)
        cents = self.centroids[index]  # [..., k, d]
        if positive_wrt is None:
            kept = sims > 0
        else:
            ref = positive_wrt.to(self.centroids.dtype).unsqueeze(-2)  # [..., 1, d]
            kept = (cents * ref).sum(-1) > 0
        cents = cents * kept.unsqueeze(-1).to(cents.dtype)
        scores = torch.where(kept, sims, torch.zeros_like(sims))
        return MemoryRead(index, cents, scores, kept)

    def read(self, query: torch.Tensor, k: int) -> MemoryRead:
        """Eq. 2: the attention-weighted sum of the query's top-``k`` centroids (non-positive
        ones replaced by zero vectors, which still take their ``e^0`` share of the softmax).
        Gradients reach ``query`` through the attention weights, never the centroids."""
        found = self.topk(query, k)
        w = torch.softmax(found.scores, dim=-1)
        found.weighted = (w.unsqueeze(-1) * found.centroids).sum(dim=-2)
        return found
