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

**Dead centroids** (not in the paper). With inner-product assignment a centroid that starts
pointing away from the data never wins a vector and never moves, and one with a large norm can
win several clusters: on a small test world only 3-5 of UIE's 16 random user / tail centroids
ever won a vector. Two options, both off by default (the paper: "Before training, the centroids
of N clusters are randomly initialized"; it has no re-seeding step, so neither is UIE as
published):

- ``init="data"``: the centroids start empty (zero vectors, which Eq. 2 reads as "no
  enhancement": a zero centroid is never positive) and the first update(s) fill them from their
  sampled vectors, k-means++ style (Arthur and Vassilvitskii 2007): each new centroid is a
  sampled vector drawn with probability proportional to its squared Euclidean distance to the
  centroids filled so far, so the start is spread over the data; when an update samples no more
  vectors than there are empty centroids, every one becomes a centroid (UIE's user memory, 30% of
  a 512-row batch for 256 centroids, fills in two updates). A vector used as a seed is assigned to
  its own centroid (counted in ``hits``) and does not also move it; the update's other vectors
  take Eq. 1's step over the filled centroids only, and assignment (and ``nearest``) ignore the
  empty ones. The count of filled centroids is the buffer ``filled``, so a resumed run continues
  the fill exactly. The draws use a generator seeded by ``seed`` and ``filled``, not the global
  stream: every rank draws the same (from every rank's vectors, gathered) and resume is exact.
- ``reseed_after=T``: a (filled) centroid that has won no vector in the last ``T`` updates
  (buffer ``idle``, updates since its last win) is moved onto one of the current update's sampled
  vectors, drawn the same k-means++ way (far from the other centroids: where the data is least
  covered); ``reseeds`` counts them. ``T`` should stay well above the number of updates between
  two wins of a rare but real cluster's centroid.

What they do and do not fix (measured, tests/test_memory.py and a 3-epoch run of UIE on the test
world): on a stationary stream of 16 planted clusters in a cone, 4-7 of 16 random centroids stay
live, 13-15 with ``init="data"``, 15-16 with re-seeding. On a model's training stream the
vectors change scale as the embeddings grow from their small initial values, so centroids filled
at the first update can be left behind by the few that keep winning (UIE's item memory on the
test world ended with 3 of 16 centroids in use, against 7-13 from a random start; re-seeding
brought it to 7-10). And where the vectors lie in a narrow cone (UIE's ``user_vec`` there: mean
pairwise cosine 0.97) inner-product assignment gives nearly every vector to the one centroid
with the largest projection, whatever the start: a property of the paper's similarity, which
neither option changes.

Both add buffers only when enabled (``filled``; ``idle`` and ``reseeds``), so the default
memory's state and checkpoints are unchanged. The random start is drawn in every mode, so the
global random stream (and every later parameter's initial value) does not depend on ``init``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from thawrec.errors import ConfigError
from thawrec.nn.collectives import gather_rows, is_distributed

__all__ = ["MemoryRead", "StreamClusterMemory", "active_type_rates", "gather_rows", "INITS"]

INITS = ("random", "data")  # StreamClusterMemory(init=...): the paper's random start, or filled from data


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
    random initial centroids' standard deviation (default ``dim ** -0.5``: norms near 1);
    ``init``: ``"random"`` (the paper) or ``"data"`` (filled from the first sampled vectors);
    ``reseed_after``: None (the paper) or the number of updates without a win after which a
    centroid is re-seeded; ``seed``: the seed of the data fill's and re-seeding's draws (see the
    module docstring for both options).
    Buffers: ``centroids [N, d]`` and ``hits [N]`` (vectors assigned so far, int64; centroids that
    never win show up as zeros there); ``filled`` (scalar, ``init="data"`` only); ``idle [N]``
    and ``reseeds`` (scalar; ``reseed_after`` only).
    """

    centroids: torch.Tensor
    hits: torch.Tensor
    filled: torch.Tensor
    idle: torch.Tensor
    reseeds: torch.Tensor

    def __init__(self, n_centroids: int, dim: int, *, rate: float = 0.01, sample_rate: float = 1.0,
                 init_std: float | None = None, init: str = "random", reseed_after: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if n_centroids < 1 or dim < 1:
            raise ConfigError(f"a memory needs n_centroids >= 1 and dim >= 1, got {n_centroids} and {dim}")
        if not 0.0 < rate <= 1.0:
            raise ConfigError(f"memory update rate rho must lie in (0, 1], got {rate}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"memory sample_rate must lie in [0, 1], got {sample_rate}")
        if init not in INITS:
            raise ConfigError(f"memory init must be one of {list(INITS)}, got {init!r}")
        if reseed_after is not None and (isinstance(reseed_after, bool) or not isinstance(reseed_after, int)
                                         or reseed_after < 1):
            raise ConfigError(f"memory reseed_after must be None or an integer >= 1 (updates), got {reseed_after!r}")
        self.n_centroids, self.dim = n_centroids, dim
        self.rate, self.sample_rate = float(rate), float(sample_rate)
        self.init, self.reseed_after, self.seed = init, reseed_after, int(seed)
        std = dim ** -0.5 if init_std is None else init_std
        start = torch.randn(n_centroids, dim) * std  # drawn in every mode: the same global stream after it
        self.register_buffer("centroids", start.zero_() if init == "data" else start)
        self.register_buffer("hits", torch.zeros(n_centroids, dtype=torch.long))
        if init == "data":
            self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        if reseed_after is not None:
            self.register_buffer("idle", torch.zeros(n_centroids, dtype=torch.long))
            self.register_buffer("reseeds", torch.zeros((), dtype=torch.long))
        self._full: bool = init != "data"  # every centroid in use (a cache of filled == N)

    def extra_repr(self) -> str:
        extra = f", init={self.init!r}" if self.init != "random" else ""
        extra += f", reseed_after={self.reseed_after}" if self.reseed_after is not None else ""
        return (f"n_centroids={self.n_centroids}, dim={self.dim}, rate={self.rate}, "
                f"sample_rate={self.sample_rate}{extra}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._full = self.init != "data" or int(self.filled) >= self.n_centroids

    @property
    def n_filled(self) -> int:
        """Centroids in use: all of them, except while ``init="data"`` is still filling."""
        if not self._full:
            self._full = int(self.filled) >= self.n_centroids
            if not self._full:
                return int(self.filled)
        return self.n_centroids

    # ------------------------------------------------------------------------------------------
    def similarity(self, query: torch.Tensor) -> torch.Tensor:
        """Inner products ``[..., N]`` of queries ``[..., d]`` with every centroid."""
        return query @ self.centroids.t()

    @torch.no_grad()
    def assign(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index ``[...]`` of each vector's most similar centroid (largest inner product), among
        the filled ones while ``init="data"`` is filling (0 when none is filled yet)."""
        sims = self.similarity(vectors.detach().to(self.centroids.dtype))
        n = self.n_filled
        if 0 < n < self.n_centroids:
            sims[..., n:] = float("-inf")
        return sims.argmax(dim=-1)

    def nearest(self, query: torch.Tensor) -> torch.Tensor:
        """Each query's most similar centroid ``[..., d]`` (UCSE replaces every behaviour of a
        sequence by it). No gradient flows: centroids are not parameters."""
        return self.gather(self.assign(query))

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """The centroids ``[..., d]`` at ``index [...]`` (``index_select``: on CPU several times
        faster than advanced indexing of rows)."""
        return self.centroids.index_select(0, index.reshape(-1)).view(*index.shape, self.dim)

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
        picked = v[used]
        seeded = torch.zeros(self.n_centroids, dtype=torch.long, device=v.device)
        if self.n_filled < self.n_centroids:  # init="data", still filling
            pool, offset = gather_rows(picked)  # every rank fills from every rank's vectors
            slot = self._fill(pool)
            own = slot[offset:offset + len(picked)]  # the centroid each seed became, -1 for the others
            seeded = torch.bincount(slot[slot >= 0], minlength=self.n_centroids)
            self.hits += seeded
            idx = torch.where(own >= 0, own, self.assign(picked))
            assigned[used] = idx
            step = own < 0  # a seed is its centroid already: it does not also move it
            idx, picked = idx[step], picked[step]
        else:
            idx = self.assign(picked)
            assigned[used] = idx
        # Per-centroid sums and counts in one [N, d + 1] tensor: one all-reduce under DDP.
        acc = torch.zeros(self.n_centroids, self.dim + 1, dtype=v.dtype, device=v.device)
        acc.index_add_(0, idx, torch.cat([picked, torch.ones(len(idx), 1, dtype=v.dtype, device=v.device)], 1))
        if is_distributed():
            dist.all_reduce(acc, op=dist.ReduceOp.SUM)
        sums, counts = acc[:, :-1], acc[:, -1]
        hit = counts > 0
        keep = torch.pow(1.0 - self.rate, counts).unsqueeze(1)  # (1 - rho)^c; 1 where c = 0
        means = sums / counts.clamp(min=1.0).unsqueeze(1)
        self.centroids.copy_(torch.where(hit.unsqueeze(1), keep * self.centroids + (1.0 - keep) * means,
                                         self.centroids))
        self.hits += counts.round().long()
        if self.reseed_after is not None:
            self._reseed(hit | (seeded > 0), picked)  # picked: the vectors that were not seeds
        return assigned

    # ------------------------------------------------------------------------------------------
    def _generator(self, device: torch.device, salt: int) -> torch.Generator:
        """The fill's / re-seeding's draws: seeded by ``seed`` and the memory's own state, so every
        rank (holding the same state and pool) draws the same and a resumed run draws as the
        uninterrupted one."""
        return torch.Generator(device=device).manual_seed((self.seed * 1_000_003 + salt) % (2 ** 63))

    def _spread(self, pool: torch.Tensor, centers: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
        """Indices of ``m`` rows of ``pool`` drawn k-means++ style: each with probability
        proportional to its squared distance to ``centers`` and the rows already drawn (uniform
        among the rest when every distance is zero, e.g. identical vectors)."""
        n = len(pool)
        d2 = torch.full((n,), float("inf"), dtype=pool.dtype, device=pool.device)
        if len(centers):
            d2 = torch.cdist(pool, centers).square().min(dim=1).values
        taken = torch.zeros(n, dtype=torch.bool, device=pool.device)
        chosen = []
        for _ in range(m):  # m <= N draws, once at the start (or per re-seeding): not a loop over rows
            w = torch.where(taken, torch.zeros_like(d2), d2)
            if not bool(torch.isfinite(w).all()) or float(w.sum()) <= 0.0:
                w = (~taken).to(pool.dtype)  # no centroid yet, or all at distance 0: uniform
            i = int(torch.multinomial(w, 1, generator=gen))
            chosen.append(i)
            taken[i] = True
            d2 = torch.minimum(d2, (pool - pool[i]).square().sum(1))
        return torch.tensor(chosen, dtype=torch.long, device=pool.device)

    def _reseed(self, won: torch.Tensor, picked: torch.Tensor) -> None:
        """``reseed_after``: count the updates since each centroid's last win (``won``, the same
        on every rank) and move those idle for ``reseed_after`` updates onto sampled vectors of
        this update (every rank's, gathered), drawn far from the other centroids."""
        self.idle += 1
        self.idle.masked_fill_(won, 0)
        due = self.idle >= self.reseed_after
        due[self.n_filled:] = False  # still empty (init="data"): the fill comes first
        if not bool(due.any()):
            return
        pool, _ = gather_rows(picked)
        if not len(pool):
            return
        idx = due.nonzero().flatten()[:len(pool)]
        others = torch.ones_like(due)
        others[idx] = False
        others[self.n_filled:] = False
        gen = self._generator(pool.device, self.n_centroids + int(self.reseeds))
        rows = self._spread(pool, self.centroids[others], len(idx), gen)
        self.centroids[idx] = pool[rows]
        self.idle[idx] = 0
        self.reseeds += len(idx)

    def _fill(self, pool: torch.Tensor) -> torch.Tensor:
        """``init="data"``: fill empty centroids from ``pool`` (every rank's sampled vectors);
        returns, per pool row, the centroid it became (-1: not a seed)."""
        start = int(self.filled)
        free = self.n_centroids - start
        slot = torch.full((len(pool),), -1, dtype=torch.long, device=pool.device)
        if not len(pool):
            return slot
        if len(pool) <= free:  # every sampled vector becomes a centroid
            rows = torch.arange(len(pool), device=pool.device)
        else:
            rows = self._spread(pool, self.centroids[:start], free, self._generator(pool.device, start))
        new = torch.arange(start, start + len(rows), device=pool.device)
        self.centroids[new] = pool[rows]
        slot[rows] = new
        self.filled += len(rows)
        self._full = int(self.filled) >= self.n_centroids
        return slot

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
        cents = self.gather(index)  # [..., k, d]
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
