"""DAUC's offline replay (KDD'22 Sec. 4.3): score a user clustering by the U2G2I recommendations
it would have made.

The protocol, as implemented here:
1. The test interactions are cut chronologically into ``n_slices`` subsets (default 10).
2. For each slice starting at ``start``, the CTR of every (cluster, item) is computed over the
   window ``start - window <= ts < start`` from *all* interactions (training period and earlier
   test slices). Nothing at or after ``start`` is used, so a slice never sees its own clicks.
3. Items are ranked per cluster by CTR (:mod:`thawrec.retrieval.u2g2i`, the same code the
   serving layer uses: ties by more clicks, then smaller item id; only items exposed in the
   cluster within the window are candidates).
4. Every user who clicked in the slice gets the top ``k`` of their cluster's ranking after
   removing the items they were exposed to before ``start`` (any time before, train included).
   Users with cluster ``-1`` (unassigned) or unknown to ``cluster_of_user`` get the global ranking
   (a cluster of everyone).
5. Relevant items are the distinct items the user clicked (label 1) in the slice. Recall@K and
   NDCG@K follow the paper's App. A.2: Recall = hits in the top K / |clicked items| (so it stays
   below 1 when a user clicked more than K items), NDCG = DCG / ideal DCG with gain
   ``2^rel - 1``, which for binary relevance is the 1/log2(rank + 1) sum that
   :func:`thawrec.eval.metrics.ndcg_at_k` computes; the ideal ranking puts min(|clicked|, K) hits
   first. A clicked item the user had been exposed to earlier stays relevant although the filter
   hides it: the paper's |I| is "all interacted items".
6. Each (user, slice) pair with at least one click is one sample; a metric is the mean over all
   such pairs, pooled across slices (a user active in three slices counts three times, as in a
   replay of the live system). Users without clicks in a slice are not scored (their recall is
   undefined). The cold-start numbers are the same mean over the pairs of ``cold_users``.

Slicing: ``slicing="rows"`` (default) gives slices of equal row counts, like the paper's own
70/10/20 split "of impression data sorted by time"; with day/night traffic, equal time ranges
would give slices of very unequal weight. Cut points move to timestamp boundaries, so all events
with one timestamp share a slice and "before the slice" is simply ``ts < start``.
``slicing="time"`` cuts the test time range into equal lengths instead. The window length is not
given in the paper; the default of one day is our choice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from thawrec.checks import int_ids, labels01, positive_int, same_length, timestamps
from thawrec.errors import ConfigError, DataError
from thawrec.eval.metrics import ndcg_at_k, recall_at_k
from thawrec.retrieval.u2g2i import (
    DAY,
    ExposureIndex,
    check_clusters,
    check_items,
    check_prior,
    cluster_item_stats,
    top_k_for_users,
)

log = logging.getLogger(__name__)

__all__ = ["SliceResult", "ReplayResult", "replay_evaluate", "slice_bounds", "cold_user_mask"]

COLUMNS = ("user_id", "item_id", "label", "ts")


@dataclass(frozen=True)
class SliceResult:
    """One test slice: ``start <= ts < end``; metrics over its (user, slice) pairs (nan if none)."""

    index: int
    start: float
    end: float
    n_rows: int
    n_pairs: int
    recall: float
    ndcg: float


@dataclass(frozen=True)
class ReplayResult:
    """Replay metrics pooled over (user, slice) pairs, overall and for cold-start users.

    ``n_pairs``: scored (user, slice) pairs (users with >= 1 click in the slice); ``seconds``: wall
    time of the whole evaluation; ``pair_*``: per-pair values (for paired tests or per-user means).
    """

    k: int
    recall: float
    ndcg: float
    cold_recall: float
    cold_ndcg: float
    n_pairs: int
    n_cold_pairs: int
    n_test_rows: int
    seconds: float
    slices: tuple[SliceResult, ...] = ()
    pair_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pair_slices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pair_recall: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    pair_ndcg: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    pair_cold: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def rows_per_second(self) -> float:
        """Test rows replayed per second of wall time."""
        return self.n_test_rows / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """Scalars and per-slice rows, JSON-ready (the per-pair arrays are left out)."""
        return {
            "k": self.k, "recall": self.recall, "ndcg": self.ndcg, "cold_recall": self.cold_recall,
            "cold_ndcg": self.cold_ndcg, "n_pairs": self.n_pairs, "n_cold_pairs": self.n_cold_pairs,
            "n_test_rows": self.n_test_rows, "seconds": self.seconds, "rows_per_second": self.rows_per_second,
            "slices": [asdict(s) for s in self.slices],
        }


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def _read_events(frame: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, labels, ts) from a polars/pandas frame or a mapping with the canonical
    interaction columns ``user_id, item_id, label, ts``."""
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=f"<{name}>",
                        fix=f"pass {name} with the canonical interaction columns {list(COLUMNS)}")
    u = int_ids(np.asarray(frame["user_id"]), "user_id")
    it = int_ids(np.asarray(frame["item_id"]), "item_id")
    y = labels01(np.asarray(frame["label"]))
    t = timestamps(np.asarray(frame["ts"]))
    same_length("pass the event columns aligned row by row, one entry per interaction",
                user_id=u, item_id=it, label=y, ts=t)
    return u, it, y, t


def cold_user_mask(train: Any, n_users: int | None = None, max_clicks: int = 3) -> np.ndarray:
    """Boolean mask over user ids: True for users with at most ``max_clicks`` clicks in ``train``
    (DAUC: active users have more than 3 clicks). Users absent from ``train`` have 0 clicks, so pass
    ``n_users`` (the user vocabulary size) to cover users who only appear later."""
    u, _, y, _ = _read_events(train, "train")
    top = int(u.max(initial=-1)) + 1
    n = top if n_users is None else int(n_users)
    if n < top:
        raise ConfigError(f"n_users={n_users} is below the largest user id + 1 ({top}). Fix: pass n_users >= {top}")
    return np.bincount(u, weights=y, minlength=n) <= max_clicks


def _cold_lookup(cold_users: Any, n_users: int) -> np.ndarray:
    """Cold flag per user id ``0..n_users-1`` from a boolean mask or a collection of ids."""
    if cold_users is None:
        return np.zeros(n_users, dtype=bool)
    arr = np.asarray(list(cold_users) if isinstance(cold_users, (set, frozenset)) else cold_users)
    if arr.dtype == bool:
        if arr.ndim != 1 or len(arr) < n_users:
            raise DataError(f"cold_users mask has shape {arr.shape} but user ids reach {n_users - 1}",
                            column="cold_users",
                            fix=f"pass a boolean mask of length >= {n_users} (cold_user_mask(train, n_users=...)) "
                                "or an array of cold user ids")
        return arr[:n_users]
    ids = int_ids(arr.ravel(), "cold_users")
    out = np.zeros(max(n_users, int(ids.max(initial=-1)) + 1), dtype=bool)
    out[ids] = True
    return out[:n_users]


def slice_bounds(ts: Any, n_slices: int = 10,
                 slicing: Literal["rows", "time"] = "rows") -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the chronological test slices: slice ``j`` is ``starts[j] <= ts <
    ends[j]``, the last end is +inf. ``"rows"``: equal row counts with cut points moved to timestamp
    boundaries (ties never straddle a cut; heavy ties can merge slices, so fewer may come back);
    ``"time"``: equal time ranges (empty slices possible)."""
    n_slices = positive_int(n_slices, "n_slices")
    t = np.sort(np.asarray(ts, dtype=np.float64))
    if not len(t):
        return np.zeros(0), np.zeros(0)
    if slicing == "rows":
        starts = np.unique(t[(np.arange(n_slices) * len(t)) // n_slices])
        if len(starts) < n_slices:
            log.warning("only %d distinct slices for n_slices=%d (few rows or tied timestamps)", len(starts), n_slices)
    elif slicing == "time":
        starts = t[0] + (t[-1] - t[0]) * np.arange(n_slices) / n_slices
        starts = np.unique(starts)
    else:
        raise ConfigError(f"unknown slicing {slicing!r}. Fix: use 'rows' (equal row counts) or 'time'")
    return starts, np.r_[starts[1:], np.inf]


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------
def _slice_relevant(users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                    n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users who clicked in the slice (sorted) and their distinct clicked items as CSR."""
    clicked = labels == 1
    keys = np.unique(users[clicked] * n_items + items[clicked])
    pair_users = keys // n_items
    click_users, first = np.unique(pair_users, return_index=True)
    indptr = np.r_[first, len(keys)].astype(np.int64)
    return click_users, indptr, keys % n_items


def _concat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def replay_evaluate(
    train: Any,
    test: Any,
    cluster_of_user: Any,
    *,
    k: int = 50,
    n_slices: int = 10,
    window: int = DAY,
    slicing: Literal["rows", "time"] = "rows",
    cold_users: Any | None = None,
    alpha: float = 0.0,
    beta: float = 0.0,
    min_exposures: int = 1,
    n_clusters: int | None = None,
) -> ReplayResult:
    """Offline replay of cluster-CTR recommendations over the test period (see module docstring).

    ``train`` / ``test``: interaction frames (polars, pandas or a dict of arrays) with columns
    ``user_id, item_id, label, ts``. ``cluster_of_user[u]``: user ``u``'s cluster, ``-1`` for
    unassigned. ``cold_users``: boolean mask over user ids or a collection of cold user ids
    (:func:`cold_user_mask` builds DAUC's "<= 3 training clicks"). ``alpha, beta, min_exposures``:
    CTR smoothing, default the plain CTR of the paper.
    """
    t_start = time.perf_counter()
    k = positive_int(k)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
        raise ConfigError(f"window must be a positive integer number of seconds, got {window!r}. "
                          "Fix: pass e.g. window=86400")
    check_prior(alpha, beta, min_exposures)
    tr, te = _read_events(train, "train"), _read_events(test, "test")
    cl, n_clusters = check_clusters(cluster_of_user, n_clusters)
    u, it, y, t = (np.concatenate([a, b]) for a, b in zip(tr, te))
    n_items = max(check_items(it, None, "item_id"), 1)
    n_users = max(int(u.max(initial=-1)) + 1, len(cl))
    cold = _cold_lookup(cold_users, n_users)

    order = np.argsort(t, kind="stable")
    u, it, y, t = u[order], it[order], y[order], t[order]
    exposure = ExposureIndex.from_pairs(u, it, t, n_items=n_items)
    te_order = np.argsort(te[3], kind="stable")
    te_u, te_it, te_y, te_t = (a[te_order] for a in te)
    starts, ends = slice_bounds(te_t, n_slices, slicing)

    slices, parts = [], []
    for j, (start, end) in enumerate(zip(starts, ends)):  # ten slices, each one vectorised
        lo, hi = np.searchsorted(t, [start - window, start], side="left")
        stats = cluster_item_stats(cl, u[lo:hi], it[lo:hi], y[lo:hi], t[lo:hi], now=start, windows=(window,),
                                   n_clusters=n_clusters, n_items=n_items)
        ranking = stats[window].ranking("ctr", alpha=alpha, beta=beta, min_exposures=min_exposures)
        a, b = np.searchsorted(te_t, [start, end], side="left")
        users, indptr, rel = _slice_relevant(te_u[a:b], te_it[a:b], te_y[a:b], n_items)
        if len(users):
            topk = top_k_for_users(ranking, cl, users, exposure, k, before=start)
            rec = recall_at_k(topk, (indptr, rel), k, return_details=True).per_row
            ndcg = ndcg_at_k(topk, (indptr, rel), k, return_details=True).per_row
        else:
            rec = ndcg = np.zeros(0)
        parts.append((users, np.full(len(users), j), rec, ndcg))
        slices.append(SliceResult(j, float(start), float(end), int(b - a), len(users), _mean(rec), _mean(ndcg)))
        log.debug("replay slice %d/%d: %d rows, %d users with clicks, window %d events, recall@%d %.4f",
                 j + 1, len(starts), b - a, len(users), hi - lo, k, slices[-1].recall)

    pu, ps = (_concat([p[i] for p in parts], np.int64) for i in (0, 1))
    pr, pn = (_concat([p[i] for p in parts], np.float64) for i in (2, 3))
    pc = cold[pu]
    return ReplayResult(
        k=k, recall=_mean(pr), ndcg=_mean(pn), cold_recall=_mean(pr[pc]), cold_ndcg=_mean(pn[pc]),
        n_pairs=len(pu), n_cold_pairs=int(pc.sum()), n_test_rows=len(te_t),
        seconds=time.perf_counter() - t_start, slices=tuple(slices),
        pair_users=pu, pair_slices=ps, pair_recall=pr, pair_ndcg=pn, pair_cold=pc,
    )
