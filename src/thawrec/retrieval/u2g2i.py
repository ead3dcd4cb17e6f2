"""U2G2I candidate generation: user -> cluster -> the items that cluster clicks now.

DAUC (KDD'22) Sec. 2.4 serves its user clusters through a user-to-group-to-item channel: within
a cluster, items with a high CTR over a short window are emerging hot items, items with many
clicks over a long window are classics; after filtering duplicates and items the user was already
exposed to, the top items by CTR and clicks over one hour, one day and seven days become part of a
multi-way candidate generator. The same ranking with one window is the offline replay protocol of
Sec. 4.3 (:mod:`thawrec.eval.replay`), so serving and evaluation share this code.

Everything is vectorised NumPy: statistics are one count per window (dense over the cluster x
item grid when it is small next to the events, else one sort of ``row * n_items + item`` keys),
rankings one ``lexsort`` of the non-zero (cluster, item) pairs, and the exposed-item filter one
``searchsorted`` of ``user * n_items + item`` keys. No loop runs over users, rows or clusters.

Conventions
- Clusters are dense ids ``0..C-1``; ``-1`` (:data:`UNASSIGNED`) means "no cluster". Statistics and
  rankings have ``C + 1`` rows: row ``c`` is cluster ``c`` and row ``C`` (:attr:`ClusterItemStats.
  global_row`) is the global "cluster of everyone", counted over *all* events. Unassigned users,
  and users past the end of ``cluster_of_user`` (unknown when the clusters were fitted: the cold
  start, never a crash), are served from the global row.
- Windows: an event counts in the window ``w`` ending at ``now`` iff ``now - w <= ts < now``; an
  event at ``now`` belongs to the future.
- Every interaction row is an exposure; label 1 rows are also clicks.
- Candidates of a row are the items exposed in that row's window (at least ``min_exposures``
  times). An item never exposed in a cluster is never recommended to it, whatever the smoothing.
- Ties: CTR ties are broken by more clicks (more evidence), click-count ties by fewer exposures
  (higher CTR), and remaining ties by the smaller item id, so every ranking is deterministic.
- The click-count channel keeps only items with at least one click.
- Backfill (:func:`fill_from_global`, on by default in the replay): a user whose cluster has fewer
  than ``k`` unexposed candidates gets the rest of the list from the global row (everyone's
  ranking), without duplicates and exposure-filtered, so a thin or empty cluster window never
  serves an empty list. :func:`top_k_for_users` alone does not backfill (the paper-literal list).

CTR estimators (``ctr=``; :data:`DEFAULT_SMOOTHING` is the default of every function here and of
the replay)
- ``"global"`` (default): the cluster's CTR shrunk towards the item's CTR over everyone in the
  same window, ``ctr[c, i] = (clicks[c, i] + m * gctr[i]) / (exposures[c, i] + m)``, where
  ``gctr[i] = (clicks[g, i] + m * p) / (exposures[g, i] + m)`` is the item's global CTR (row ``g``
  counts every event) itself shrunk towards the window's overall CTR ``p = sum clicks / sum
  exposures``, and ``m = prior_strength`` (default 2) is the prior's weight in pseudo-exposures at
  both levels. The global row is ranked by ``gctr``; ``min_exposures`` (default 1) filters the
  candidates. Why: with the plain CTR over short
  windows most of a cluster's top 50 are items shown once and clicked once (CTR 1.0), so the list
  is noise whose length grows with the cluster's size, and an offline replay built on it ranks
  cluster *sizes* (balanced random clusters win), not how well a cluster captures a taste. An
  empirical-Bayes shrinkage towards the item's own global CTR (instead of a fixed Beta prior)
  keeps the item's overall appeal as the fallback, so a cluster's list only departs from the global
  list where the cluster's own clicks say so (a fixed prior, ``"beta"``, pulls every item towards
  the same CTR, so a once-clicked niche item and a once-clicked hit look alike).
  Calibration of ``m`` and ``min_exposures``: the replay is an instrument, so its settings were
  chosen for how well it tells good clusters from bad ones, on a development world (the ``dauc``
  scenario, world seed 101, never used for reported results): the planted interest groups as
  clusters against the same clusters with members permuted (size-matched random). Recall@50 gap
  (planted - random), overall / cold-start: m = 2, min 1: +0.140 / +0.188 (chosen); m = 2, min 2:
  +0.128 / +0.163; m = 5, min 1: +0.118 / +0.142; m = 20, min 2: +0.075 / +0.063; fixed prior
  alpha 1 / beta 20: +0.079 / +0.033; plain CTR over 7 days: +0.030 / +0.055 (over 1 day: +0.042 /
  +0.043). Stronger smoothing lifts every clustering towards the global ranking and shrinks the gap.
  Known weakness: an item clicked mostly by one cluster has a high global CTR, so another cluster
  that saw it only a couple of times inherits that CTR (its own few non-clicks barely move it);
  on strongly segmented logs a higher ``min_exposures`` or the fixed prior ranks clusters' own
  items better (``benchmarks/bench_replay.py`` prints both).
- ``"plain"``: ``clicks / exposures``, the paper's literal "CTR scores" (use with
  ``min_exposures=1`` to reproduce it exactly).
- ``"beta"``: a fixed Beta prior, ``(clicks + alpha) / (exposures + alpha + beta)`` (e.g.
  ``alpha=1, beta=20``), the same for every item. ``alpha`` / ``beta`` are refused with the other
  estimators.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from thawrec.checks import int_ids, labels01, positive_int, same_length, timestamps
from thawrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "UNASSIGNED",
    "DEFAULT_WINDOWS",
    "PAPER_WAYS",
    "WindowStats",
    "ClusterItemStats",
    "ClusterRanking",
    "ExposureIndex",
    "Way",
    "cluster_item_stats",
    "top_k_for_users",
    "merge_candidates",
    "multiway_candidates",
    "check_clusters",
    "check_items",
    "check_prior",
    "check_smoothing",
    "fill_from_global",
    "CTR_ESTIMATORS",
    "DEFAULT_SMOOTHING",
    "PAPER_SMOOTHING",
]

UNASSIGNED = -1
HOUR, DAY = 3600, 86400
DEFAULT_WINDOWS: tuple[int, ...] = (HOUR, DAY, 7 * DAY)
_MAX_CELLS = 1 << 22  # candidate-matrix cells per block in top_k_for_users (~100 MB of temporaries)
_INT64_MAX = np.iinfo(np.int64).max

CtrEstimator = Literal["global", "plain", "beta"]
CTR_ESTIMATORS: tuple[str, ...] = ("global", "plain", "beta")
# The defaults of every ranking here and of the replay (see the module docstring for why) ...
DEFAULT_SMOOTHING: Mapping[str, Any] = MappingProxyType(
    {"ctr": "global", "prior_strength": 2.0, "alpha": 0.0, "beta": 0.0, "min_exposures": 1})
# ... and the paper's literal plain CTR over every exposed item.
PAPER_SMOOTHING: Mapping[str, Any] = MappingProxyType(
    {"ctr": "plain", "prior_strength": 20.0, "alpha": 0.0, "beta": 0.0, "min_exposures": 1})


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _aligned(**arrays: np.ndarray) -> int:
    return same_length("pass the event columns aligned row by row, one entry per interaction", **arrays)


def _check_windows(windows: Sequence[Any]) -> tuple[int, ...]:
    ws = tuple(windows)
    if not ws or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w <= 0 for w in ws):
        raise ConfigError(f"windows must be positive integer seconds, got {ws!r}. "
                          "Fix: pass e.g. windows=(3600, 86400, 604800)")
    if len(set(ws)) != len(ws):
        raise ConfigError(f"duplicate window lengths in {ws!r}. Fix: list each window once")
    return tuple(int(w) for w in ws)


def check_prior(alpha: float, beta: float, min_exposures: int) -> None:
    if not (np.isfinite(alpha) and np.isfinite(beta) and alpha >= 0 and beta >= 0):
        raise ConfigError(f"CTR prior must be finite and >= 0, got alpha={alpha}, beta={beta}. "
                          "Fix: use alpha=beta=0 (plain CTR) or e.g. alpha=1, beta=20")
    if isinstance(min_exposures, bool) or not isinstance(min_exposures, (int, np.integer)) or min_exposures < 1:
        raise ConfigError(f"min_exposures must be an integer >= 1, got {min_exposures!r}. "
                          "Fix: pass 1 (every exposed item is a candidate) or more")


def check_smoothing(ctr: str, prior_strength: float, alpha: float, beta: float, min_exposures: int) -> None:
    """Refuse an unknown CTR estimator, a negative / non-finite prior, ``alpha`` / ``beta`` with an
    estimator that ignores them, and ``min_exposures < 1``."""
    if ctr not in CTR_ESTIMATORS:
        raise ConfigError(f"unknown CTR estimator ctr={ctr!r}. Fix: use 'global' (shrunk towards the item's "
                          "global CTR, the default), 'plain' (the paper's clicks / exposures) or 'beta' "
                          "(fixed prior alpha, beta)")
    check_prior(alpha, beta, min_exposures)
    if isinstance(prior_strength, bool) or not isinstance(prior_strength, (int, float, np.integer, np.floating)) \
            or not np.isfinite(prior_strength) or prior_strength < 0:
        raise ConfigError(f"prior_strength must be a finite number >= 0, got {prior_strength!r}. "
                          "Fix: pass e.g. prior_strength=20 (pseudo-exposures of the global CTR)")
    if ctr != "beta" and (alpha or beta):
        raise ConfigError(f"alpha={alpha}, beta={beta} only apply to ctr='beta' (a fixed Beta prior), "
                          f"not ctr={ctr!r}. Fix: pass ctr='beta' with them, or drop alpha and beta")


def check_clusters(cluster_of_user: Any, n_clusters: int | None) -> tuple[np.ndarray, int]:
    """``cluster_of_user`` as int64 in ``[-1, n_clusters)``; infers ``n_clusters`` as max + 1."""
    cl = int_ids(cluster_of_user, "cluster_of_user", allow_minus_one=True)
    top = int(cl.max(initial=-1)) + 1
    if n_clusters is None:
        return cl, top
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 0:
        raise ConfigError(f"n_clusters must be an integer >= 0, got {n_clusters!r}. Fix: pass the number of clusters")
    if top > n_clusters:
        row = int(np.flatnonzero(cl >= n_clusters)[0])
        raise DataError(f"cluster id {cl[row]} out of range for n_clusters={n_clusters}", row=row,
                        column="cluster_of_user",
                        fix=f"use cluster ids 0..{n_clusters - 1} (or -1 for unassigned), or pass n_clusters={top}")
    return cl, int(n_clusters)


def check_items(items: np.ndarray, n_items: int | None, name: str = "items") -> int:
    top = int(items.max(initial=-1)) + 1
    if n_items is None:
        return top
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 0:
        raise ConfigError(f"n_items must be an integer >= 0, got {n_items!r}. Fix: pass the item vocabulary size")
    if top > n_items:
        row = int(np.flatnonzero(items >= n_items)[0])
        raise DataError(f"item id {items[row]} out of range for n_items={n_items}", row=row, column=name,
                        fix=f"pass n_items >= {top} (the item vocabulary size)")
    return int(n_items)


def _rows_for_users(cluster_of_user: np.ndarray, users: np.ndarray, n_clusters: int) -> np.ndarray:
    """Statistics row of each user: their cluster, or the global row ``n_clusters`` when the user is
    unassigned (-1) or past the end of ``cluster_of_user`` (unknown when clusters were fitted)."""
    known = users < len(cluster_of_user)
    cl = np.full(len(users), UNASSIGNED, dtype=np.int64)
    cl[known] = cluster_of_user[users[known]]
    if (~known).any():
        log.debug("%d row(s) of users unknown to cluster_of_user served from the global row", int((~known).sum()))
    return np.where(cl < 0, n_clusters, cl)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowStats:
    """Exposure and click counts of one window, ``(n_clusters + 1) x n_items`` CSR matrices.

    Both matrices share one sparsity pattern: the (row, item) pairs with at least one exposure in
    the window. ``clicks`` stores explicit zeros for exposed-but-unclicked pairs (they are real
    candidates with CTR 0), so do not call ``eliminate_zeros`` on it. Row ``n_clusters`` is global.
    """

    window: int
    exposures: sp.csr_matrix
    clicks: sp.csr_matrix

    @property
    def n_clusters(self) -> int:
        return self.exposures.shape[0] - 1

    @property
    def global_row(self) -> int:
        return self.exposures.shape[0] - 1

    @classmethod
    def from_rows(cls, rows: np.ndarray, items: np.ndarray, labels: np.ndarray, window: int, n_clusters: int,
                  n_items: int) -> "WindowStats":
        """Counts of events already validated and cut to the window, each with its cluster in
        ``rows`` (``-1``: unassigned, counted in the global row only): the inner step of
        :func:`cluster_item_stats`, for callers that slide one validated log (the replay)."""
        return _window_stats(np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64),
                             np.asarray(labels, dtype=np.int64), int(window), int(n_clusters), int(n_items))

    def global_ctr(self, prior_strength: float = DEFAULT_SMOOTHING["prior_strength"]) -> np.ndarray:
        """``[n_items]`` CTR of each item over everyone in the window, shrunk towards the window's
        overall CTR ``p``: ``(clicks + m * p) / (exposures + m)``; items not exposed get ``p``
        (0 for an empty window)."""
        g = self.global_row
        lo, hi = self.exposures.indptr[g], self.exposures.indptr[g + 1]
        expo = self.exposures.data[lo:hi].astype(np.float64)
        clk = self.clicks.data[lo:hi].astype(np.float64)
        p = clk.sum() / expo.sum() if expo.sum() > 0 else 0.0
        out = np.full(self.exposures.shape[1], p)
        out[self.exposures.indices[lo:hi]] = (clk + prior_strength * p) / (expo + prior_strength)
        return out

    def _entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stored (row, item, exposures, clicks), int64, in CSR order."""
        rows = np.repeat(np.arange(self.exposures.shape[0], dtype=np.int64), np.diff(self.exposures.indptr))
        return (rows, self.exposures.indices.astype(np.int64), self.exposures.data.astype(np.int64),
                self.clicks.data.astype(np.int64))

    def _ctr_values(self, rows: np.ndarray, items: np.ndarray, expo: np.ndarray, clk: np.ndarray, ctr: str,
                    prior_strength: float, alpha: float, beta: float) -> np.ndarray:
        """The CTR estimate of each stored pair (see the module docstring for the estimators)."""
        if ctr == "plain":
            return clk / np.maximum(expo, 1)
        if ctr == "beta":
            return (clk + alpha) / np.maximum(expo + alpha + beta, 1e-300)
        gctr = self.global_ctr(prior_strength)[items]
        local = (clk + prior_strength * gctr) / np.maximum(expo + prior_strength, 1e-300)
        return np.where(rows == self.global_row, gctr, local)

    def ctr(self, *, ctr: CtrEstimator = DEFAULT_SMOOTHING["ctr"],
            prior_strength: float = DEFAULT_SMOOTHING["prior_strength"], alpha: float = 0.0, beta: float = 0.0,
            min_exposures: int = DEFAULT_SMOOTHING["min_exposures"]) -> sp.csr_matrix:
        """CTR estimate (``ctr``: ``"global"``, ``"plain"`` or ``"beta"``, see the module docstring)
        on the pairs exposed at least ``min_exposures`` times (others are not stored: they are not
        candidates; a stored 0 is an exposed item without clicks under the plain CTR)."""
        check_smoothing(ctr, prior_strength, alpha, beta, min_exposures)
        rows, items, expo, clk = self._entries()
        keep = expo >= min_exposures
        values = self._ctr_values(rows, items, expo, clk, ctr, prior_strength, alpha, beta)
        indptr = np.zeros(self.exposures.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=self.exposures.shape[0]), out=indptr[1:])
        return sp.csr_matrix((values[keep], items[keep], indptr), shape=self.exposures.shape)

    def ranking(self, by: Literal["ctr", "clicks"] = "ctr", *, ctr: CtrEstimator = DEFAULT_SMOOTHING["ctr"],
                prior_strength: float = DEFAULT_SMOOTHING["prior_strength"], alpha: float = 0.0,
                beta: float = 0.0, min_exposures: int = DEFAULT_SMOOTHING["min_exposures"]) -> "ClusterRanking":
        """Items of every row sorted best first by CTR (``by="ctr"``, estimated by ``ctr``) or click
        count (``"clicks"``; the CTR options other than ``min_exposures`` do not apply).

        See the module docstring for the estimators, the tie-breaking rules and which items are
        candidates.
        """
        check_smoothing(ctr, prior_strength, alpha, beta, min_exposures)
        rows, items, expo, clk = self._entries()
        keep = expo >= min_exposures
        if by == "ctr":
            score = self._ctr_values(rows, items, expo, clk, ctr, prior_strength, alpha, beta)
            secondary = clk
        elif by == "clicks":
            keep &= clk > 0
            score = clk.astype(np.float64)
            secondary = -expo
        else:
            raise ConfigError(f"unknown ranking {by!r}. Fix: use by='ctr' or by='clicks'")
        return ClusterRanking._from_entries(rows[keep], items[keep], score[keep], secondary[keep],
                                            self.n_clusters, self.exposures.shape[1])


@dataclass(frozen=True)
class ClusterItemStats:
    """Per (cluster, item) exposures and clicks over several windows ending at ``now``."""

    now: float
    n_clusters: int
    n_items: int
    windows: dict[int, WindowStats] = field(default_factory=dict)

    @property
    def global_row(self) -> int:
        """Row index of the global "cluster of everyone" (serves unassigned users)."""
        return self.n_clusters

    def __getitem__(self, window: int) -> WindowStats:
        try:
            return self.windows[int(window)]
        except KeyError:
            raise ConfigError(f"no statistics for a {window} s window; computed: {sorted(self.windows)}. "
                              f"Fix: add {window} to `windows` when calling cluster_item_stats") from None


def _count_pairs(rows: np.ndarray, items: np.ndarray, labels: np.ndarray, n_rows: int,
                 n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR (indptr, items, exposures, clicks) of the distinct (row, item) pairs: one key sort."""
    keys = rows * n_items + items
    uniq, inv = np.unique(keys, return_inverse=True)
    expo = np.bincount(inv, minlength=len(uniq))
    clk = np.bincount(inv, weights=labels, minlength=len(uniq)).astype(np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(uniq // n_items, minlength=n_rows), out=indptr[1:])
    return indptr, uniq % n_items, expo, clk


def _window_stats(rows: np.ndarray, items: np.ndarray, labels: np.ndarray, window: int,
                  n_clusters: int, n_items: int) -> WindowStats:
    """Counts of pre-filtered, validated events: clusters from rows >= 0 (``-1`` = unassigned),
    plus the global row from every event.

    Two ways to count, same result: when the ``(n_clusters + 1) x n_items`` grid is small next to
    the events (a long window: at most ``max(4 * events, 2^22)`` cells), a dense count of the grid
    (linear time; the global row is the column sum); otherwise one sort of the cluster events'
    keys plus an item count for the global row."""
    shape = (n_clusters + 1, n_items)
    cells = shape[0] * shape[1]
    if n_items and cells <= max(4 * len(rows), _MAX_CELLS):
        keys = np.where(rows >= 0, rows, n_clusters) * n_items + items   # unassigned: straight to the global row
        expo = np.bincount(keys, minlength=cells).reshape(shape)
        clk = np.bincount(keys[labels == 1], minlength=cells).reshape(shape)
        expo[n_clusters] = expo.sum(axis=0)
        clk[n_clusters] = clk.sum(axis=0)
        nz = np.flatnonzero(expo)
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(nz // n_items, minlength=shape[0]), out=indptr[1:])
        idx = nz % n_items
        return WindowStats(window, sp.csr_matrix((expo.ravel()[nz], idx, indptr), shape=shape),
                           sp.csr_matrix((clk.ravel()[nz], idx.copy(), indptr.copy()), shape=shape))
    assigned = rows >= 0
    indptr, idx, expo, clk = _count_pairs(rows[assigned], items[assigned], labels[assigned],
                                          n_clusters, max(n_items, 1))
    g_expo = np.bincount(items, minlength=n_items)
    g_clk = np.bincount(items, weights=labels, minlength=n_items).astype(np.int64)
    g_idx = np.flatnonzero(g_expo)
    indptr = np.r_[indptr, indptr[-1] + len(g_idx)]
    idx = np.r_[idx, g_idx]
    exposures = sp.csr_matrix((np.r_[expo, g_expo[g_idx]], idx, indptr), shape=shape)
    clicks = sp.csr_matrix((np.r_[clk, g_clk[g_idx]], idx, indptr), shape=shape)
    return WindowStats(window, exposures, clicks)


def cluster_item_stats(
    cluster_of_user: Any,
    users: Any,
    items: Any,
    labels: Any,
    ts: Any,
    *,
    now: float,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    n_clusters: int | None = None,
    n_items: int | None = None,
) -> ClusterItemStats:
    """Exposures and clicks per (cluster, item) over each window ending at ``now``.

    ``cluster_of_user[u]`` is user ``u``'s cluster (``-1`` unassigned); ``users, items, labels, ts``
    are the interaction columns (every row an exposure, label 1 a click). An event counts in window
    ``w`` iff ``now - w <= ts < now``. ``n_clusters`` / ``n_items`` default to max id + 1.
    Returns :class:`ClusterItemStats` whose per-window CSR matrices have ``n_clusters + 1`` rows,
    the last one global (all events).
    """
    cl, n_clusters = check_clusters(cluster_of_user, n_clusters)
    u = int_ids(users, "users")
    it = int_ids(items, "items")
    y = labels01(labels)
    t = timestamps(ts)
    _aligned(users=u, items=it, labels=y, ts=t)
    n_items = check_items(it, n_items)
    ws = _check_windows(windows)
    rows = _rows_for_users(cl, u, n_clusters)
    rows = np.where(rows == n_clusters, UNASSIGNED, rows)
    out = {}
    for w in ws:  # a handful of windows, each one vectorised
        m = (t >= now - w) & (t < now)
        out[w] = _window_stats(rows[m], it[m], y[m], w, n_clusters, n_items)
        log.debug("window %d s: %d events, %d (cluster, item) pairs", w, int(m.sum()), out[w].exposures.nnz)
    return ClusterItemStats(now, n_clusters, n_items, out)


# --------------------------------------------------------------------------------------------
# Rankings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterRanking:
    """Each row's candidate items, best first, in CSR layout: row ``r``'s ranking is
    ``items[indptr[r]:indptr[r + 1]]`` (scores alike). Rows ``0..n_clusters-1`` are clusters, row
    ``n_clusters`` is global (possibly empty)."""

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    n_clusters: int
    n_items: int

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def _from_entries(cls, rows: np.ndarray, items: np.ndarray, score: np.ndarray, secondary: np.ndarray,
                      n_clusters: int, n_items: int) -> "ClusterRanking":
        order = np.lexsort((items, -secondary, -score, rows))
        indptr = np.zeros(n_clusters + 2, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_clusters + 1), out=indptr[1:])
        return cls(indptr, items[order].astype(np.int64), score[order].astype(np.float64), n_clusters, n_items)

    @classmethod
    def from_scores(cls, scores: Any, global_scores: Any | None = None) -> "ClusterRanking":
        """Ranking from a score matrix ``[n_clusters, n_items]``: dense (every finite entry is a
        candidate; NaN / -inf are not) or ``scipy.sparse`` (stored entries are candidates). The
        global row comes from ``global_scores`` (1-D, same rules) or is empty: unassigned users then
        get no candidates. Ties: smaller item id first."""
        if sp.issparse(scores):
            m = sp.coo_matrix(scores)
            rows, items, vals = m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(np.float64)
        else:
            dense = np.asarray(scores, dtype=np.float64)
            if dense.ndim != 2:
                raise DataError(f"expected a [n_clusters, n_items] score matrix, got shape {dense.shape}",
                                column="scores", fix="pass one row of item scores per cluster")
            rows, items = np.nonzero(np.isfinite(dense) | (dense == np.inf))
            vals = dense[rows, items]
        n_clusters, n_items = scores.shape
        if global_scores is not None:
            g = np.asarray(global_scores, dtype=np.float64)
            if g.shape != (n_items,):
                raise DataError(f"global_scores has shape {g.shape}, expected ({n_items},)", column="global_scores",
                                fix="pass one score per item (the ranking for unassigned users)")
            g_items = np.flatnonzero(~np.isnan(g) & (g != -np.inf))
            rows = np.r_[rows, np.full(len(g_items), n_clusters)]
            items, vals = np.r_[items, g_items], np.r_[vals, g[g_items]]
        return cls._from_entries(rows, items, vals, np.zeros(len(vals)), n_clusters, n_items)

    def top(self, depth: int) -> np.ndarray:
        """``[n_clusters + 1, depth]`` item ids, best first, padded with -1."""
        col = np.arange(depth, dtype=np.int64)
        pos = self.indptr[:-1, None] + col
        valid = col < self.lengths[:, None]
        if not len(self.items):
            return np.full(valid.shape, -1, dtype=np.int64)
        return np.where(valid, self.items[np.minimum(pos, len(self.items) - 1)], -1)


def _as_ranking(ranking: Any) -> ClusterRanking:
    return ranking if isinstance(ranking, ClusterRanking) else ClusterRanking.from_scores(ranking)


# --------------------------------------------------------------------------------------------
# Exposed items
# --------------------------------------------------------------------------------------------
def _gather_segments(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the segments ``[lo[j], hi[j])`` concatenated, and the segment ``j`` of
    each position (the vectorised form of ``for j: range(lo[j], hi[j])``)."""
    lengths = hi - lo
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(lo)), lengths)
    starts = np.cumsum(lengths) - lengths
    return lo[owner] + np.arange(total) - starts[owner], owner


@dataclass(frozen=True)
class ExposureIndex:
    """The (user, item) pairs already exposed, as sorted ``user * n_items + item`` keys, with the
    first exposure time of each pair when known (so one index answers "exposed before t" for any t).
    Items ``>= n_items`` are never exposed (they did not exist when the index was built)."""

    keys: np.ndarray
    n_items: int
    first_ts: np.ndarray | None = None

    @classmethod
    def from_pairs(cls, users: Any, items: Any, ts: Any | None = None, *,
                   n_items: int | None = None) -> "ExposureIndex":
        """Index of interaction rows (every row is an exposure). With ``ts`` it remembers each
        pair's earliest exposure, for :meth:`contains` with ``before``."""
        u = int_ids(users, "users")
        it = int_ids(items, "items")
        t = None if ts is None else timestamps(ts)
        if t is None:
            _aligned(users=u, items=it)
        else:
            _aligned(users=u, items=it, ts=t)
        n_items = max(check_items(it, n_items), 1)
        if len(u) and int(u.max()) >= _INT64_MAX // n_items:
            raise DataError(f"user id {int(u.max())} x n_items {n_items} overflows int64 keys", column="users",
                            fix="re-index users and items to dense ids")
        keys = u * n_items + it
        if t is None:
            return cls(np.unique(keys), n_items)
        order = np.lexsort((t, keys))
        ks = keys[order]
        first = np.r_[True, ks[1:] != ks[:-1]] if len(ks) else np.zeros(0, bool)
        return cls(ks[first], n_items, t[order][first])

    @classmethod
    def from_csr(cls, matrix: Any) -> "ExposureIndex":
        """Index of a ``[n_users, n_items]`` sparse matrix whose stored entries are exposures."""
        m = sp.csr_matrix(matrix)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        return cls(np.unique(rows * max(m.shape[1], 1) + m.indices.astype(np.int64)), max(m.shape[1], 1))

    def items_of(self, users: Any, before: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exposed items of each given user as CSR ``(indptr, items)``, one row per entry of
        ``users`` (items ascending); with ``before``, only pairs first exposed before it."""
        u = np.asarray(users, dtype=np.int64)
        lo = np.searchsorted(self.keys, u * self.n_items)
        hi = np.searchsorted(self.keys, (u + 1) * self.n_items)
        take, owner = _gather_segments(lo, hi)
        if before is not None:
            if self.first_ts is None:
                raise ConfigError("`before` needs first-exposure times. "
                                  "Fix: build the index with ExposureIndex.from_pairs(users, items, ts)")
            keep = self.first_ts[take] < before
            take, owner = take[keep], owner[keep]
        indptr = np.zeros(len(u) + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=len(u)), out=indptr[1:])
        return indptr, self.keys[take] % self.n_items

    def contains(self, users: Any, items: Any, before: Any | None = None) -> np.ndarray:
        """Boolean array (broadcast of ``users`` and ``items``): was the pair exposed (before
        ``before``, if given: first exposure ``< before``)? Items ``< 0`` (padding) are False."""
        u = np.asarray(users, dtype=np.int64)
        it = np.asarray(items, dtype=np.int64)
        ok = (it >= 0) & (it < self.n_items) & (u >= 0)
        keys = u * self.n_items + np.where(ok, it, 0)
        if not len(self.keys):
            return np.zeros(np.broadcast(u, it).shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        hit = ok & (self.keys[pos] == keys)
        if before is not None:
            if self.first_ts is None:
                raise ConfigError("`before` needs first-exposure times. "
                                  "Fix: build the index with ExposureIndex.from_pairs(users, items, ts)")
            hit &= self.first_ts[pos] < before
        return hit


def _as_exposure_index(exposed: Any, n_items: int) -> ExposureIndex | None:
    if exposed is None or isinstance(exposed, ExposureIndex):
        return exposed
    if sp.issparse(exposed):
        return ExposureIndex.from_csr(exposed)
    if isinstance(exposed, tuple) and len(exposed) in (2, 3):
        return ExposureIndex.from_pairs(*exposed, n_items=max(n_items, int(np.max(exposed[1], initial=-1)) + 1))
    raise DataError(f"cannot read exposed items from {type(exposed).__name__}", column="exposed",
                    fix="pass an ExposureIndex, a [n_users, n_items] sparse matrix, or a tuple (users, items[, ts])")


# --------------------------------------------------------------------------------------------
# Top-K per user
# --------------------------------------------------------------------------------------------
def _first_k_valid(cand: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` valid entries of ``cand`` in order, padded with -1: a running
    count of valid entries is each one's output column (cheaper than sorting every row). Rows
    whose first ``k`` entries are all valid, the usual case, are copied as they are."""
    out = np.full((cand.shape[0], k), -1, dtype=np.int64)
    head = valid[:, :k].all(axis=1) if cand.shape[1] >= k else np.zeros(cand.shape[0], dtype=bool)
    out[head] = cand[head, :k]
    rest = np.flatnonzero(~head)
    c, v = cand[rest], valid[rest]
    col = np.cumsum(v, axis=1) - 1
    take = v & (col < k)
    rows = np.broadcast_to(rest[:, None], c.shape)
    out[rows[take], col[take]] = c[take]
    return out


def _table_positions(table: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``row * n_items + item`` keys of a ``[rows, depth]`` candidate table and each key's
    column: where an (row, item) pair sits in the table."""
    r, c = np.nonzero(table >= 0)
    keys = r * n_items + table[r, c]
    order = np.argsort(keys)
    return keys[order], c[order]


def top_k_for_users(
    ranking: ClusterRanking | np.ndarray | sp.spmatrix,
    cluster_of_user: Any,
    users: Any,
    exposed: ExposureIndex | sp.spmatrix | tuple | None,
    k: int,
    *,
    before: float | None = None,
    max_cells: int = _MAX_CELLS,
) -> np.ndarray:
    """Top-``k`` items for each user from their cluster's ranking, after dropping the items that
    user was already exposed to (first exposed before ``before``, when given). Returns
    ``[len(users), k]`` int64 item ids, best first, padded with -1 when the cluster has fewer
    unexposed candidates.

    ``ranking``: a :class:`ClusterRanking` or a ``[n_clusters, n_items]`` score matrix.
    ``exposed``: an :class:`ExposureIndex`, a ``[n_users, n_items]`` sparse matrix, ``(users,
    items[, ts])`` pairs, or None (no filter). Unassigned and unknown users get the global row.

    How: a user needs at most ``k + |exposed_u|`` candidates, and ``|exposed_u|`` is heavy tailed,
    so reading ``k + max |exposed|`` candidates for everyone would be a huge matrix. Each round
    reads the top ``depth`` candidates of the pending users, keeps the users that found ``k`` or
    exhausted their cluster, and doubles ``depth`` for the rest. Exposed candidates are marked by
    looking each *exposure* up in the small table of the clusters' top ``depth`` items (one binary
    search per exposure in a cache-resident array, instead of one per candidate cell in the whole
    exposure log). Blocks keep ``users x depth`` under ``max_cells``.
    """
    rk = _as_ranking(ranking)
    k = positive_int(k)
    cl, _ = check_clusters(cluster_of_user, rk.n_clusters)
    u = int_ids(users, "users")
    if before is not None and np.ndim(before) != 0:
        raise ConfigError("`before` must be one time for all users. Fix: call once per cut-off time")
    ex = _as_exposure_index(exposed, rk.n_items)
    uniq, inv = np.unique(u, return_inverse=True)   # a user asked for twice gets the same list
    rows = _rows_for_users(cl, uniq, rk.n_clusters)
    lengths = rk.lengths[rows]
    if ex is None:
        ex_ptr, ex_items = np.zeros(len(uniq) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    else:
        ex_ptr, ex_items = ex.items_of(uniq, before)
    out = np.full((len(uniq), k), -1, dtype=np.int64)
    pending = np.arange(len(uniq))
    depth = min(2 * k, max(int(rk.lengths.max(initial=0)), k))
    while pending.size:
        table = rk.top(depth)
        t_keys, t_cols = _table_positions(table, rk.n_items)
        block = max(1, max_cells // depth)
        still = []
        for s in range(0, len(pending), block):  # blocks of users bound the memory, not a row loop
            idx = pending[s:s + block]
            cand = table[rows[idx]]
            blocked = np.zeros(cand.shape, dtype=bool)
            flat, owner = _gather_segments(ex_ptr[idx], ex_ptr[idx + 1])
            items = ex_items[flat]
            ok = items < rk.n_items
            q = rows[idx][owner[ok]] * rk.n_items + items[ok]
            if len(q) and len(t_keys):
                pos = np.minimum(np.searchsorted(t_keys, q), len(t_keys) - 1)
                hit = t_keys[pos] == q
                blocked[owner[ok][hit], t_cols[pos[hit]]] = True
            valid = (cand >= 0) & ~blocked
            done = (valid.sum(axis=1) >= k) | (lengths[idx] <= depth)
            out[idx[done]] = _first_k_valid(cand[done], valid[done], k)
            still.append(idx[~done])
        pending = np.concatenate(still)
        depth *= 2
    return out[inv]


def fill_from_global(
    topk: np.ndarray,
    ranking: ClusterRanking | np.ndarray | sp.spmatrix,
    users: Any,
    exposed: ExposureIndex | sp.spmatrix | tuple | None,
    *,
    before: float | None = None,
) -> np.ndarray:
    """Backfill: complete each short row of ``topk`` (``[len(users), k]`` from :func:`top_k_for_users`,
    -1 padded) with the best items of the global row of ``ranking`` that the user was not exposed to
    (before ``before``) and that are not in the row already. Full rows are left as they are; a
    row still short after the global ranking is -1 padded. Returns a new array; the number of items
    each row gained is ``(out >= 0).sum(1) - (topk >= 0).sum(1)``.

    The global row's top ``k`` unexposed items suffice: a short row holds fewer than ``k`` items,
    so at most that many of them are duplicates."""
    rk = _as_ranking(ranking)
    top = np.asarray(topk, dtype=np.int64)
    u = int_ids(users, "users")
    if top.ndim != 2 or top.shape[0] != len(u):
        raise DataError(f"topk has shape {top.shape} but there are {len(u)} users", column="topk",
                        fix="pass the [len(users), k] output of top_k_for_users for the same users")
    out = top.copy()
    k = top.shape[1]
    short = np.flatnonzero((top >= 0).sum(axis=1) < k) if k else np.zeros(0, np.int64)
    if not len(short):
        return out
    # an empty cluster table makes every user "unknown": all of them are served the global row
    glob = top_k_for_users(rk, np.zeros(0, dtype=np.int64), u[short], exposed, k, before=before)
    out[short] = merge_candidates([top[short], glob], k=k, mode="concat")
    return out


# --------------------------------------------------------------------------------------------
# Multi-way candidate generation
# --------------------------------------------------------------------------------------------
def merge_candidates(lists: Sequence[np.ndarray], k: int | None = None,
                     mode: Literal["concat", "interleave"] = "concat") -> np.ndarray:
    """Merge per-way candidate lists (each ``[n_users, k_i]``, -1 padded) into one list per user:
    duplicates dropped (first occurrence kept), order kept, padded with -1, cut to ``k`` if given.

    ``mode="concat"``: way 1's list, then way 2's new items, ... ``mode="interleave"``: round robin
    (rank 1 of every way, then rank 2, ...; ways need equal widths), so a cut at ``k`` keeps each
    way's best items.
    """
    mats = [np.asarray(m, dtype=np.int64) for m in lists]
    if not mats:
        raise ConfigError("no candidate lists to merge. Fix: pass at least one [n_users, k] array")
    if any(m.ndim != 2 for m in mats) or len({m.shape[0] for m in mats}) > 1:
        raise DataError(f"candidate lists must be 2-D with one row per user, got shapes {[m.shape for m in mats]}",
                        column="lists", fix="compute every way for the same users")
    if mode == "concat":
        cand = np.hstack(mats)
    elif mode == "interleave":
        if len({m.shape[1] for m in mats}) > 1:
            raise ConfigError("interleave needs lists of equal width. Fix: use the same k per way, or mode='concat'")
        cand = np.stack(mats, axis=2).reshape(mats[0].shape[0], -1)
    else:
        raise ConfigError(f"unknown merge mode {mode!r}. Fix: use 'concat' or 'interleave'")
    order = np.argsort(cand, axis=1, kind="stable")
    srt = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros(cand.shape, dtype=bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    keep = (cand >= 0) & ~dup
    width = int(keep.sum(axis=1).max(initial=0)) if k is None else positive_int(k)
    out = np.full((cand.shape[0], width), -1, dtype=np.int64)
    cols = min(width, cand.shape[1])
    out[:, :cols] = _first_k_valid(cand, keep, cols)
    return out


@dataclass(frozen=True)
class Way:
    """One channel of the multi-way generator: rank by ``by`` over ``window`` seconds, take ``k``
    (None: the generator's ``k_per_way``)."""

    by: Literal["ctr", "clicks"]
    window: int
    k: int | None = None


# DAUC Sec. 2.4: CTR over one hour, one day, seven days, and click counts over seven days.
PAPER_WAYS: tuple[Way, ...] = (Way("ctr", HOUR), Way("ctr", DAY), Way("ctr", 7 * DAY), Way("clicks", 7 * DAY))


def multiway_candidates(
    stats: ClusterItemStats,
    cluster_of_user: Any,
    users: Any,
    exposed: ExposureIndex | sp.spmatrix | tuple | None,
    *,
    ways: Sequence[Way] = PAPER_WAYS,
    k_per_way: int = 50,
    k: int | None = None,
    mode: Literal["concat", "interleave"] = "concat",
    ctr: CtrEstimator = DEFAULT_SMOOTHING["ctr"],
    prior_strength: float = DEFAULT_SMOOTHING["prior_strength"],
    alpha: float = 0.0,
    beta: float = 0.0,
    min_exposures: int = DEFAULT_SMOOTHING["min_exposures"],
    before: float | None = None,
) -> np.ndarray:
    """U2G2I multi-way candidates: each way's top items (exposed items filtered), merged without
    duplicates by :func:`merge_candidates`. ``stats`` must hold every way's window. ``ctr,
    prior_strength, alpha, beta, min_exposures``: the CTR estimator of the CTR ways and the
    exposure floor of every way, as in :meth:`WindowStats.ranking` (defaults: CTR shrunk towards
    the item's global CTR, ``min_exposures=1``; :data:`PAPER_SMOOTHING` for the plain CTR).
    Returns ``[len(users), k or the longest merged list]`` item ids, -1 padded."""
    if not ways:
        raise ConfigError("no ways given. Fix: pass e.g. ways=PAPER_WAYS")
    check_smoothing(ctr, prior_strength, alpha, beta, min_exposures)
    ex = _as_exposure_index(exposed, stats.n_items)
    lists = []
    for way in ways:  # a handful of channels
        rk = stats[way.window].ranking(way.by, ctr=ctr, prior_strength=prior_strength, alpha=alpha, beta=beta,
                                       min_exposures=min_exposures)
        lists.append(top_k_for_users(rk, cluster_of_user, users, ex, way.k or k_per_way, before=before))
    return merge_candidates(lists, k=k, mode=mode)
