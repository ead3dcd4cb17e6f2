"""DAUC's offline replay (KDD'22 Sec. 4.3): score a user clustering by the U2G2I recommendations
it would have made.

The protocol, as implemented here:
1. The test interactions are cut chronologically into ``n_slices`` subsets (default 10).
2. For each slice starting at ``start``, the CTR of every (cluster, item) is computed over the
   window ``start - window <= ts < start`` from *all* interactions (training period and earlier
   test slices). Nothing at or after ``start`` is used, so a slice never sees its own clicks.
   The window adapts to the data's density (``min_window_events``, below).
3. Items are ranked per cluster by CTR (:mod:`thawrec.retrieval.u2g2i`, the same code the
   serving layer uses: ties by more clicks, then smaller item id; only items exposed in the
   cluster within the window, at least ``min_exposures`` times, are candidates). The CTR is
   estimated by ``ctr`` (below).
4. Every user who clicked in the slice gets the top ``k`` of their cluster's ranking after
   removing the items they were exposed to before ``start`` (any time before, train included).
   Users with cluster ``-1`` (unassigned) or unknown to ``cluster_of_user`` get the global ranking
   (a cluster of everyone). With ``backfill`` (default), a list left with fewer than ``k`` items
   is completed from the global ranking, without duplicates and exposure-filtered.
5. Relevant items are the distinct items the user clicked (label 1) in the slice. Recall@K and
   NDCG@K follow the paper's App. A.2: Recall = hits in the top K / |clicked items| (so it stays
   below 1 when a user clicked more than K items), NDCG = DCG / ideal DCG with gain
   ``2^rel - 1``, which for binary relevance is the 1/log2(rank + 1) sum that
   :func:`thawrec.eval.metrics.ndcg_at_k` computes; the ideal ranking puts min(|clicked|, K) hits
   first. A clicked item the user had been exposed to earlier stays relevant although the filter
   hides it: the paper's |I| is "all interacted items" (:class:`ReplayCounts` counts them).
6. Each (user, slice) pair with at least one click is one sample; a metric is the mean over all
   such pairs, pooled across slices (a user active in three slices counts three times, as in a
   replay of the live system). Users without clicks in a slice are not scored (their recall is
   undefined). The cold-start numbers are the same mean over the pairs of ``cold_users``.

Defaults, and where they depart from the paper (which says only "CTR scores of articles within a
slicing window before the subset"); ``**PAPER_LITERAL`` restores the literal reading:
- ``ctr="global", prior_strength=2, min_exposures=1`` (paper-literal: ``ctr="plain"``). A
  cluster's CTR of an item is shrunk towards that item's CTR over everyone in the window, which is
  itself shrunk towards the window's overall CTR (2 pseudo-exposures at each level: calibrated on
  a development world, see :mod:`thawrec.retrieval.u2g2i`). Why: with the plain CTR over a short window about
  80% of a cluster's top 50 are items shown once and clicked once, so a list is mostly noise and
  its length grows with the cluster's size; the replay then ranks cluster *sizes* (balanced random
  clusters score best), not clustering quality. Formulas, the rationale and a known weakness
  (another cluster's niche favourite inherits its high global CTR after two exposures; a higher
  ``min_exposures`` or ``ctr="beta"`` avoids it) are in :mod:`thawrec.retrieval.u2g2i`;
  ``ctr="beta"`` with ``alpha, beta`` is the fixed-prior variant.
- ``window=7 days`` (the paper gives no length; was 1 day). Seven days is the paper's longest
  U2G2I window (Sec. 2.4) and gives each cluster enough exposures for a CTR to mean something.
- ``min_window_events=1000``: a window before a slice holding fewer events is extended back (to
  whole timestamps) until it holds that many, or to the start of the log; each slice reports its
  effective ``window`` and ``window_events``. Why: on a log spread over years (ML-100K: a few
  hundred ratings a day) a fixed window before a slice is nearly empty and every clustering
  scores 0. ``0`` keeps the fixed window.
- ``backfill=True``: lists with fewer than ``k`` unexposed candidates in the cluster's window are
  filled from the global ranking (the live system's fallback for a thin cluster: an empty list
  is never served). This raises every method and can narrow the gaps between them (the global
  list is the same for every clustering); the counts say how many lists and items it touched.
  ``False`` is the paper-literal protocol.

What is not scored or changed is counted (:class:`ReplayCounts`, overall and per slice): test
rows of (user, slice) pairs without a click, pairs served the global ranking (unassigned),
relevant items hidden because they were exposed before, lists backfilled and the items added, and
lists still short or empty. ``rows_scored + rows_no_click == test_rows`` and ``pairs_scored +
pairs_no_click == pairs``.

Slicing: ``slicing="rows"`` (default) gives slices of equal row counts, like the paper's own
70/10/20 split "of impression data sorted by time"; with day/night traffic, equal time ranges
would give slices of very unequal weight. Cut points move to timestamp boundaries, so all events
with one timestamp share a slice and "before the slice" is simply ``ts < start``.
``slicing="time"`` cuts the test time range into equal lengths instead.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from thawrec.checks import int_ids, labels01, positive_int, same_length, timestamps
from thawrec.errors import ConfigError, DataError
from thawrec.eval.metrics import ndcg_at_k, recall_at_k
from thawrec.retrieval.u2g2i import (
    DAY,
    DEFAULT_SMOOTHING,
    PAPER_SMOOTHING,
    CtrEstimator,
    ExposureIndex,
    WindowStats,
    check_clusters,
    check_items,
    check_smoothing,
    fill_from_global,
    top_k_for_users,
)

log = logging.getLogger(__name__)

__all__ = ["SliceResult", "ReplayCounts", "ReplayResult", "replay_evaluate", "slice_bounds", "cold_user_mask",
           "DEFAULT_WINDOW", "DEFAULT_MIN_WINDOW_EVENTS", "PAPER_LITERAL"]

COLUMNS = ("user_id", "item_id", "label", "ts")
DEFAULT_WINDOW = 7 * DAY
DEFAULT_MIN_WINDOW_EVENTS = 1000
# ``replay_evaluate(..., **PAPER_LITERAL)``: plain CTR over every exposed item, a fixed window and
# no backfill (the window length stays yours: the paper does not give one).
PAPER_LITERAL: Mapping[str, Any] = MappingProxyType(
    {"ctr": PAPER_SMOOTHING["ctr"], "min_exposures": PAPER_SMOOTHING["min_exposures"], "min_window_events": 0,
     "backfill": False})


@dataclass(frozen=True)
class ReplayCounts:
    """What each step of the replay left out or changed, counted over test rows, (user, slice) pairs
    and relevant items. ``rows_scored + rows_no_click == test_rows``; ``pairs_scored +
    pairs_no_click == pairs``.

    - ``test_rows``: test interactions replayed; ``pairs``: distinct (user, slice) pairs among them.
    - ``rows_no_click`` / ``pairs_no_click``: rows of pairs without any click in the slice: not
      scored (recall undefined). ``rows_scored`` / ``pairs_scored``: the rest, one sample per pair.
    - ``click_rows``: label-1 rows (all in scored pairs); ``repeat_click_rows``: clicks on an item
      the user already clicked in the same slice (one relevant item);
      ``relevant = click_rows - repeat_click_rows`` distinct (user, slice, item) clicks.
    - ``relevant_exposed``: relevant items the user was exposed to before the slice; the exposure
      filter hides them, so they can never be hit (they still count in the recall's denominator).
      ``pairs_all_exposed``: scored pairs whose every relevant item is such (recall 0 by design).
    - ``pairs_unassigned`` / ``rows_unassigned``: scored pairs (and their rows) of users with
      cluster -1 or unknown to the clustering: served the global ranking.
    - ``pairs_backfilled`` / ``items_backfilled``: lists completed from the global ranking, and the
      items added (0 without ``backfill``).
    - ``pairs_short`` / ``pairs_empty``: served lists with fewer than ``k`` items / with none.
    """

    test_rows: int = 0
    rows_scored: int = 0
    rows_no_click: int = 0
    pairs: int = 0
    pairs_scored: int = 0
    pairs_no_click: int = 0
    click_rows: int = 0
    repeat_click_rows: int = 0
    relevant: int = 0
    relevant_exposed: int = 0
    pairs_all_exposed: int = 0
    pairs_unassigned: int = 0
    rows_unassigned: int = 0
    pairs_backfilled: int = 0
    items_backfilled: int = 0
    pairs_short: int = 0
    pairs_empty: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):  # plain ints, so as_dict() is JSON-ready whatever NumPy handed in
            object.__setattr__(self, f.name, int(getattr(self, f.name)))

    @classmethod
    def total(cls, parts: Sequence["ReplayCounts"]) -> "ReplayCounts":
        return cls(**{f.name: sum(getattr(p, f.name) for p in parts) for f in fields(cls)})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SliceResult:
    """One test slice: ``start <= ts < end``; metrics over its (user, slice) pairs (nan if none).
    ``window``: the CTR window actually used (seconds; longer than asked when ``extended`` to reach
    ``min_window_events``), ``window_events``: interactions in it; ``counts``: its filter counts."""

    index: int
    start: float
    end: float
    n_rows: int
    n_pairs: int
    recall: float
    ndcg: float
    window: int = 0
    window_events: int = 0
    extended: bool = False
    counts: ReplayCounts = field(default_factory=ReplayCounts)


@dataclass(frozen=True)
class ReplayResult:
    """Replay metrics pooled over (user, slice) pairs, overall and for cold-start users.

    ``n_pairs``: scored (user, slice) pairs (users with >= 1 click in the slice); ``seconds``: wall
    time of the whole evaluation; ``counts``: what each filter removed or changed (summed over the
    slices, see :class:`ReplayCounts`); ``settings``: the options the replay ran with; ``pair_*``:
    per-pair values (for paired tests or per-user means).
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
    counts: ReplayCounts = field(default_factory=ReplayCounts)
    settings: dict[str, Any] = field(default_factory=dict)
    pair_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pair_slices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    pair_recall: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    pair_ndcg: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    pair_cold: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def rows_per_second(self) -> float:
        """Test rows replayed per second of wall time."""
        return self.n_test_rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def n_extended_windows(self) -> int:
        """Slices whose CTR window was extended back to reach ``min_window_events``."""
        return sum(s.extended for s in self.slices)

    def as_dict(self) -> dict[str, Any]:
        """Scalars, counts, settings and per-slice rows, JSON-ready (the per-pair arrays are left out)."""
        return {
            "k": self.k, "recall": self.recall, "ndcg": self.ndcg, "cold_recall": self.cold_recall,
            "cold_ndcg": self.cold_ndcg, "n_pairs": self.n_pairs, "n_cold_pairs": self.n_cold_pairs,
            "n_test_rows": self.n_test_rows, "seconds": self.seconds, "rows_per_second": self.rows_per_second,
            "n_extended_windows": self.n_extended_windows, "counts": self.counts.as_dict(),
            "settings": dict(self.settings), "slices": [asdict(s) for s in self.slices],
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


def _window_start(t: np.ndarray, start: float, window: int, min_events: int) -> tuple[int, int, int]:
    """``(lo, hi, window)``: the rows ``t[lo:hi]`` of the CTR window before ``start`` in the sorted
    times ``t``, the fixed ``window`` or, when it holds fewer than ``min_events`` rows, the
    shortest whole-second window back from ``start`` that holds that many (all of the past if it
    cannot). ``start - window <= t < start`` is exactly ``t[lo:hi]``."""
    lo, hi = (int(x) for x in np.searchsorted(t, [start - window, start], side="left"))
    if hi - lo >= min_events or lo == 0:
        return lo, hi, window
    first = t[max(hi - min_events, 0)]                       # the min_events-th event back from start
    window = max(window, math.ceil(start - first))
    return int(np.searchsorted(t, start - window, side="left")), hi, window


def _cluster_of(cl: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Each user's cluster, -1 for users unassigned or beyond ``cluster_of_user`` (served the
    global ranking)."""
    known = users < len(cl)
    out = np.full(len(users), -1, dtype=np.int64)
    out[known] = cl[users[known]]
    return out


def _check_window(window: Any, min_window_events: Any) -> tuple[int, int]:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
        raise ConfigError(f"window must be a positive integer number of seconds, got {window!r}. "
                          f"Fix: pass e.g. window={DEFAULT_WINDOW} (7 days)")
    if isinstance(min_window_events, bool) or not isinstance(min_window_events, (int, np.integer)) \
            or min_window_events < 0:
        raise ConfigError(f"min_window_events must be an integer >= 0, got {min_window_events!r}. "
                          f"Fix: pass e.g. {DEFAULT_MIN_WINDOW_EVENTS}, or 0 for a fixed window")
    return int(window), int(min_window_events)


def replay_evaluate(
    train: Any,
    test: Any,
    cluster_of_user: Any,
    *,
    k: int = 50,
    n_slices: int = 10,
    window: int = DEFAULT_WINDOW,
    slicing: Literal["rows", "time"] = "rows",
    cold_users: Any | None = None,
    ctr: CtrEstimator = DEFAULT_SMOOTHING["ctr"],
    prior_strength: float = DEFAULT_SMOOTHING["prior_strength"],
    alpha: float = 0.0,
    beta: float = 0.0,
    min_exposures: int = DEFAULT_SMOOTHING["min_exposures"],
    min_window_events: int = DEFAULT_MIN_WINDOW_EVENTS,
    backfill: bool = True,
    n_clusters: int | None = None,
) -> ReplayResult:
    """Offline replay of cluster-CTR recommendations over the test period (see module docstring).

    ``train`` / ``test``: interaction frames (polars, pandas or a dict of arrays) with columns
    ``user_id, item_id, label, ts``. ``cluster_of_user[u]``: user ``u``'s cluster, ``-1`` for
    unassigned. ``cold_users``: boolean mask over user ids or a collection of cold user ids
    (:func:`cold_user_mask` builds DAUC's "<= 3 training clicks").
    ``ctr, prior_strength, alpha, beta, min_exposures``: the CTR estimator (default: shrunk towards
    the item's global CTR with 2 pseudo-exposures, every exposed item a candidate).
    ``window``: CTR window in seconds (default 7 days), extended back for a slice whose window
    holds fewer than ``min_window_events`` interactions (0: never). ``backfill``: complete short
    lists from the global ranking. ``**PAPER_LITERAL`` gives the paper's plain protocol.
    """
    t_start = time.perf_counter()
    k = positive_int(k)
    window, min_window_events = _check_window(window, min_window_events)
    check_smoothing(ctr, prior_strength, alpha, beta, min_exposures)
    smoothing = dict(ctr=ctr, prior_strength=float(prior_strength), alpha=float(alpha), beta=float(beta),
                     min_exposures=int(min_exposures))
    tr, te = _read_events(train, "train"), _read_events(test, "test")
    cl, n_clusters = check_clusters(cluster_of_user, n_clusters)
    u, it, y, t = (np.concatenate([a, b]) for a, b in zip(tr, te))
    n_items = max(check_items(it, None, "item_id"), 1)
    n_users = max(int(u.max(initial=-1)) + 1, len(cl))
    cold = _cold_lookup(cold_users, n_users)

    order = np.argsort(t, kind="stable")
    u, it, y, t = u[order], it[order], y[order], t[order]
    exposure = ExposureIndex.from_pairs(u, it, t, n_items=n_items)
    event_cluster = _cluster_of(cl, u)
    te_order = np.argsort(te[3], kind="stable")
    te_u, te_it, te_y, te_t = (a[te_order] for a in te)
    starts, ends = slice_bounds(te_t, n_slices, slicing)

    slices, parts = [], []
    for j, (start, end) in enumerate(zip(starts, ends)):  # ten slices, each one vectorised
        lo, hi, w = _window_start(t, start, window, min_window_events)
        # = cluster_item_stats(cl, u[lo:hi], ..., now=start, windows=(w,))[w] without re-validating the log
        stats = WindowStats.from_rows(event_cluster[lo:hi], it[lo:hi], y[lo:hi], w, n_clusters, n_items)
        ranking = stats.ranking("ctr", **smoothing)
        a, b = (int(x) for x in np.searchsorted(te_t, [start, end], side="left"))
        su, sit, sy = te_u[a:b], te_it[a:b], te_y[a:b]
        users, indptr, rel = _slice_relevant(su, sit, sy, n_items)
        n_rel = np.diff(indptr)
        if len(users):
            topk = top_k_for_users(ranking, cl, users, exposure, k, before=start)
            served = fill_from_global(topk, ranking, users, exposure, before=start) if backfill else topk
            rec = recall_at_k(served, (indptr, rel), k, return_details=True).per_row
            ndcg = ndcg_at_k(served, (indptr, rel), k, return_details=True).per_row
            length, added = (served >= 0).sum(axis=1), (served >= 0).sum(axis=1) - (topk >= 0).sum(axis=1)
            hidden = exposure.contains(np.repeat(users, n_rel), rel, before=start)
            hidden_per_pair = np.bincount(np.repeat(np.arange(len(users)), n_rel), weights=hidden,
                                          minlength=len(users))
        else:
            rec = ndcg = np.zeros(0)
            length = added = hidden_per_pair = np.zeros(0, np.int64)
            hidden = np.zeros(0, bool)
        # rows per (user, slice) pair: all slice users, then those who clicked (a subset, both sorted)
        slice_users, rows_per_user = np.unique(su, return_counts=True)
        scored = np.zeros(len(slice_users), bool)
        scored[np.searchsorted(slice_users, users)] = True
        unassigned = _cluster_of(cl, users) < 0
        rows_scored = int(rows_per_user[scored].sum())
        counts = ReplayCounts(
            test_rows=b - a, rows_scored=rows_scored, rows_no_click=(b - a) - rows_scored,
            pairs=len(slice_users), pairs_scored=len(users), pairs_no_click=len(slice_users) - len(users),
            click_rows=int(sy.sum()), repeat_click_rows=int(sy.sum()) - len(rel), relevant=len(rel),
            relevant_exposed=int(hidden.sum()), pairs_all_exposed=int((hidden_per_pair == n_rel).sum()),
            pairs_unassigned=int(unassigned.sum()),
            rows_unassigned=int(rows_per_user[scored][unassigned].sum()),
            pairs_backfilled=int((added > 0).sum()), items_backfilled=int(added.sum()),
            pairs_short=int((length < k).sum()), pairs_empty=int((length == 0).sum()),
        )
        parts.append((users, np.full(len(users), j), rec, ndcg))
        slices.append(SliceResult(j, float(start), float(end), b - a, len(users), _mean(rec), _mean(ndcg),
                                  window=w, window_events=hi - lo, extended=w > window, counts=counts))
        log.debug("replay slice %d/%d: %d rows, %d users with clicks, window %d s with %d events, "
                  "%d lists backfilled, recall@%d %.4f", j + 1, len(starts), b - a, len(users), w, hi - lo,
                  counts.pairs_backfilled, k, slices[-1].recall)

    total = ReplayCounts.total([s.counts for s in slices])
    extended = [s for s in slices if s.extended]
    if extended:
        log.debug("replay: %d of %d CTR windows held fewer than %d events and were extended back (up to %.1f days)",
                 len(extended), len(slices), min_window_events, max(s.window for s in extended) / DAY)
    # debug, not info: training loops replay the validation period every epoch; the counts are in the result
    log.debug("replay: %d test rows; %d rows in %d (user, slice) pairs without a click not scored; %d scored pairs "
             "(%d unassigned -> global ranking); %d of %d relevant items exposed before (hidden); %d lists "
             "backfilled with %d items; %d lists still short of k=%d", total.test_rows, total.rows_no_click,
             total.pairs_no_click, total.pairs_scored, total.pairs_unassigned, total.relevant_exposed,
             total.relevant, total.pairs_backfilled, total.items_backfilled, total.pairs_short, k)
    pu, ps = (_concat([p[i] for p in parts], np.int64) for i in (0, 1))
    pr, pn = (_concat([p[i] for p in parts], np.float64) for i in (2, 3))
    pc = cold[pu]
    settings = dict(k=k, n_slices=int(n_slices), slicing=slicing, window=window,
                    min_window_events=min_window_events, backfill=bool(backfill), **smoothing)
    return ReplayResult(
        k=k, recall=_mean(pr), ndcg=_mean(pn), cold_recall=_mean(pr[pc]), cold_ndcg=_mean(pn[pc]),
        n_pairs=len(pu), n_cold_pairs=int(pc.sum()), n_test_rows=len(te_t),
        seconds=time.perf_counter() - t_start, slices=tuple(slices), counts=total, settings=settings,
        pair_users=pu, pair_slices=ps, pair_recall=pr, pair_ndcg=pn, pair_cold=pc,
    )
