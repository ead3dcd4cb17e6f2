"""Offline metrics: AUC, GAUC, LogLoss and top-K ranking metrics, all vectorised NumPy.

Why not scikit-learn: GAUC (per-user AUC weighted by the user's rows) is the headline metric of
the cold-start papers, and a per-user ``roc_auc_score`` loop costs ~1 ms per user. Here every
metric is one or two sorts plus segment sums, exact with ties (Mann-Whitney with average ranks,
the same value ``roc_auc_score`` gives), so GAUC on 1M rows takes well under a second.

Conventions
- An AUC that is undefined (only one class present) is ``nan``, with a logged warning for
  :func:`auc`; :func:`gauc` skips such groups and counts them (:class:`GaucResult`).
- Bad input (NaN scores, non-binary labels, mismatched lengths) raises
  :class:`~thawrec.errors.DataError`, which names the 0-based row and the argument.
- Sampled top-K metrics (COUPLE protocol): column 0 of an ``(N, C)`` score matrix is the
  positive, the rest are sampled negatives; ties are pessimistic by default.
- List top-K metrics (DAUC replay): ``(N, K)`` recommended item ids against per-row relevant
  sets given as CSR ``(indptr, indices)``; rows without relevant items are skipped and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from thawrec.checks import positive_int, same_length
from thawrec.errors import DataError, ThawrecError

log = logging.getLogger(__name__)

__all__ = [
    "GaucResult",
    "TopKResult",
    "auc",
    "gauc",
    "logloss",
    "sampled_rank",
    "hr_at_k_sampled",
    "ndcg_at_k_sampled",
    "to_csr",
    "recall_at_k",
    "ndcg_at_k",
    "hr_at_k",
    "group_metrics",
    "binary_metrics",
]


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"expected a 1-D array, got shape {arr.shape}", column=name,
                        fix=f"pass `{name}` as a flat array (e.g. `.ravel()` a (N, 1) prediction)")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    return same_length("pass labels, scores (and groups) aligned row by row, one entry per prediction", **arrays)





def _check_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)
            or scores.dtype == bool):
        raise DataError(f"scores must be numeric, got dtype {scores.dtype}", column=name,
                        fix="pass model outputs as a float array")
    if np.issubdtype(scores.dtype, np.floating):
        bad = np.isnan(scores)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{int(bad.sum())} NaN score(s)", row=row, column=name,
                            fix="the model produced NaN (diverged training or NaN inputs); fix it before evaluating")
    return scores


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """Binary 0/1 labels of any numeric or bool dtype -> int64."""
    if labels.dtype == bool:
        return labels.astype(np.int64)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise DataError(f"labels must be numeric 0/1, got dtype {labels.dtype}", column="labels",
                        fix="encode the positive class as 1 and the negative class as 0")
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} label(s) not 0/1 (first: {labels[row]!r})", row=row, column="labels",
                        fix="binarise the labels first (e.g. rating >= 4 -> 1, else 0)")
    return labels.astype(np.int64)


def _group_codes(groups: np.ndarray) -> np.ndarray:
    """Integers that sort groups contiguously; ints are used as they are, anything else is coded."""
    if np.issubdtype(groups.dtype, np.integer) or groups.dtype == bool:
        return groups
    if np.issubdtype(groups.dtype, np.floating) and np.isnan(groups).any():
        row = int(np.flatnonzero(np.isnan(groups))[0])
        raise DataError("NaN group id", row=row, column="groups", fix="give every row a user/group id")
    return np.unique(groups, return_inverse=True)[1].ravel()


# --------------------------------------------------------------------------------------------
# AUC / GAUC
# --------------------------------------------------------------------------------------------
def _grouped_auc(labels: np.ndarray, scores: np.ndarray, codes: np.ndarray | None):
    """Per-group Mann-Whitney AUC with average ranks for ties, in integer arithmetic.

    One lexsort by (group, score); blocks of equal (group, score) share the average rank. We
    work with twice the rank, ``2r = first + last - 2*group_start + 2`` (0-based positions),
    so every rank sum is an exact int64 and only the final division is floating point.

    Returns (group_n, group_pos, group_auc) in order of sorted group code.
    """
    n = len(scores)
    if codes is None:
        order = np.argsort(scores, kind="stable")
        s = scores[order]
        new_group = np.zeros(n, dtype=bool)
    else:
        order = np.lexsort((scores, codes))
        g = codes[order]
        s = scores[order]
        new_group = np.empty(n, dtype=bool)
        new_group[0] = True
        np.not_equal(g[1:], g[:-1], out=new_group[1:])
    new_group[0] = True
    y = labels[order]

    new_block = new_group.copy()
    new_block[1:] |= s[1:] != s[:-1]
    block_start = np.flatnonzero(new_block)
    block_end = np.empty_like(block_start)              # exclusive
    block_end[:-1] = block_start[1:]
    block_end[-1] = n
    group_start = np.flatnonzero(new_group)
    block_group = np.cumsum(new_group)[block_start] - 1  # group index of each block
    twice_rank = block_start + block_end + 1 - 2 * group_start[block_group]  # 2 * 1-based average rank

    block_pos = np.add.reduceat(y, block_start)
    # Exact int64 segment sums over the blocks of each group (blocks never straddle groups).
    group_rank2 = np.add.reduceat(block_pos * twice_rank, np.flatnonzero(new_group[block_start]))

    group_n = np.diff(np.r_[group_start, n])
    group_pos = np.add.reduceat(y, group_start)
    group_neg = group_n - group_pos
    u2 = group_rank2 - group_pos * (group_pos + 1)      # 2 * Mann-Whitney U of the positives
    denom = 2.0 * group_pos * group_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        group_auc = np.where(denom > 0, u2 / np.where(denom > 0, denom, 1.0), np.nan)
    return group_n, group_pos, group_auc


def auc(labels: Any, scores: Any) -> float:
    """ROC AUC, equal to ``sklearn.metrics.roc_auc_score`` including ties (average ranks).

    Only one class present -> ``nan`` (and a logged warning) rather than an exception, so an
    evaluation over many slices does not die on one degenerate slice. Infinite scores are allowed
    (they rank like any other value); NaN scores raise :class:`DataError`.
    """
    y = _check_labels(_as_1d(labels, "labels"))
    s = _check_scores(_as_1d(scores, "scores"))
    n = _same_length(labels=y, scores=s)
    if n == 0 or y.min() == y.max():
        log.warning("AUC undefined: %d rows with only one class present; returning nan", n)
        return float("nan")
    return float(_grouped_auc(y, s, None)[2][0])


@dataclass(frozen=True)
class GaucResult:
    """GAUC with the bookkeeping a report needs: what was skipped and why it is defined.

    ``value``: sum over evaluated groups of n_g * AUC_g / sum of n_g (nan if none evaluated).
    ``n_groups``: distinct groups in the input; ``n_skipped_groups`` / ``n_skipped_samples``:
    groups with a single class (AUC undefined) and their rows. ``group_ids``, ``group_n`` and
    ``group_auc`` (nan where skipped) are per group, sorted by group id.
    """

    value: float
    n_groups: int
    n_skipped_groups: int
    n_skipped_samples: int
    group_ids: np.ndarray
    group_n: np.ndarray
    group_auc: np.ndarray

    @property
    def n_evaluated_groups(self) -> int:
        return self.n_groups - self.n_skipped_groups

    def __float__(self) -> float:
        return self.value


def gauc(labels: Any, scores: Any, groups: Any, return_details: bool = False) -> float | GaucResult:
    """Group AUC: per-group AUC weighted by the group's row count (the DIN/POSO/MAIL GAUC).

    Groups (usually users) with only one class are skipped and counted; equal to looping
    ``roc_auc_score`` over groups, to floating-point rounding, ties included. Every group
    skipped -> ``nan``.
    """
    y = _check_labels(_as_1d(labels, "labels"))
    s = _check_scores(_as_1d(scores, "scores"))
    g = _as_1d(groups, "groups")
    n = _same_length(labels=y, scores=s, groups=g)
    if n == 0:
        res = GaucResult(float("nan"), 0, 0, 0, g[:0], np.zeros(0, np.int64), np.zeros(0))
        return res if return_details else res.value
    codes = _group_codes(g)
    group_n, _, group_auc = _grouped_auc(y, s, codes)
    ok = ~np.isnan(group_auc)
    w = group_n[ok]
    value = float(np.dot(w, group_auc[ok]) / w.sum()) if ok.any() else float("nan")
    n_skipped = int((~ok).sum())
    skipped_rows = int(group_n[~ok].sum())
    if n_skipped:
        log.debug("GAUC skipped %d single-class groups (%d rows)", n_skipped, skipped_rows)
    if not return_details:
        return value
    group_ids = np.unique(g)
    return GaucResult(value, len(group_n), n_skipped, skipped_rows, group_ids, group_n, group_auc)


def logloss(labels: Any, probs: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy on probabilities clipped to ``[eps, 1 - eps]``.

    Equals ``sklearn.metrics.log_loss(labels, clip(probs, eps, 1 - eps), labels=[0, 1])``.
    Probabilities outside [0, 1] raise :class:`DataError` (they are usually logits passed by
    mistake). Empty input -> ``nan``.
    """
    y = _check_labels(_as_1d(labels, "labels"))
    p = _check_scores(_as_1d(probs, "probs"), "probs").astype(np.float64)
    _same_length(labels=y, probs=p)
    if len(p) == 0:
        return float("nan")
    bad = (p < 0) | (p > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} probabilit(ies) outside [0, 1] (first: {p[row]:.4g})", row=row,
                        column="probs", fix="apply a sigmoid to logits before computing logloss")
    if not 0 < eps < 0.5:
        raise ThawrecError(f"eps must lie in (0, 0.5), got {eps}. Fix: use a small value such as 1e-7")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


# --------------------------------------------------------------------------------------------
# Sampled top-K (COUPLE: 1 positive in column 0 + sampled negatives)
# --------------------------------------------------------------------------------------------
def _check_k(k: int, width: int, what: str) -> int:
    k = positive_int(k, "k", example=10)
    if k > width:
        raise ThawrecError(f"k={k} exceeds the {width} {what} per row. Fix: use k <= {width} or score more {what}")
    return int(k)


def sampled_rank(scores: Any, ties: str = "pessimistic") -> np.ndarray:
    """0-based rank of the positive (column 0) among its row's candidates.

    ``ties="pessimistic"`` (default): every negative scoring >= the positive ranks above it, so
    a constant model gets the worst rank and cannot look good by tying; conservative.
    ``ties="average"``: negatives strictly above plus half of the tied ones (the expected rank
    under random tie-breaking; may be fractional).
    """
    sc = np.asarray(scores)
    if sc.ndim != 2 or sc.shape[1] < 2:
        raise DataError(f"expected an (N, C>=2) score matrix, got shape {sc.shape}", column="scores",
                        fix="put the positive's score in column 0 and the sampled negatives' after it")
    _check_scores(sc)
    pos = sc[:, :1]
    neg = sc[:, 1:]
    greater = (neg > pos).sum(axis=1)
    if ties == "pessimistic":
        return greater + (neg == pos).sum(axis=1)
    if ties == "average":
        return greater + 0.5 * (neg == pos).sum(axis=1)
    raise ThawrecError(f"unknown ties rule {ties!r}. Fix: use 'pessimistic' or 'average'")


def hr_at_k_sampled(scores: Any, k: int, ties: str = "pessimistic") -> float:
    """Hit ratio@K: share of rows whose positive (column 0) ranks within the top K."""
    rank = sampled_rank(scores, ties)
    _check_k(k, np.asarray(scores).shape[1], "candidates")
    return float(np.mean(rank < k)) if len(rank) else float("nan")


def ndcg_at_k_sampled(scores: Any, k: int, ties: str = "pessimistic") -> float:
    """NDCG@K with one relevant item: ``1 / log2(rank + 2)`` if rank < K else 0, averaged."""
    rank = sampled_rank(scores, ties)
    _check_k(k, np.asarray(scores).shape[1], "candidates")
    if not len(rank):
        return float("nan")
    return float(np.mean(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)))


# --------------------------------------------------------------------------------------------
# Top-K lists against relevant sets (DAUC replay)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopKResult:
    """A top-K list metric with the rows it could not score: ``value`` is the mean over rows with
    at least one relevant item (nan if none); ``n_skipped_rows`` had an empty relevant set."""

    value: float
    n_rows: int
    n_skipped_rows: int
    per_row: np.ndarray  # nan for skipped rows

    def __float__(self) -> float:
        return self.value


def to_csr(relevant: Any, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Relevant sets as CSR ``(indptr, indices)``.

    Accepts a ``tuple`` of two NumPy arrays ``(indptr, indices)``, a ``scipy.sparse`` matrix
    (rows x items, the nonzero columns are the relevant items) or a *list* of per-row iterables of
    item ids (a tuple of two arrays is always read as CSR).
    """
    if hasattr(relevant, "tocsr"):
        m = relevant.tocsr()
        m.eliminate_zeros()
        indptr, indices = np.asarray(m.indptr, np.int64), np.asarray(m.indices, np.int64)
    elif isinstance(relevant, tuple) and len(relevant) == 2 and all(isinstance(a, np.ndarray) for a in relevant):
        indptr, indices = np.asarray(relevant[0], np.int64), np.asarray(relevant[1], np.int64)
    else:
        rows = [np.asarray(r, dtype=np.int64).ravel() for r in relevant]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any() \
            or indptr[-1] != len(indices):
        raise DataError("malformed CSR relevant sets", column="relevant",
                        fix="indptr must start at 0, never decrease, and end at len(indices)")
    if n_rows is not None and len(indptr) - 1 != n_rows:
        raise DataError(f"{len(indptr) - 1} relevant sets for {n_rows} recommendation rows", column="relevant",
                        fix="give one relevant set (possibly empty) per row of the top-K matrix")
    if (indices < 0).any():
        pos = int(np.flatnonzero(indices < 0)[0])
        row = int(np.searchsorted(indptr, pos, side="right") - 1)
        raise DataError("negative relevant item id", row=row, column="relevant",
                        fix="relevant item ids must be >= 0 (negative ids are reserved for padding)")
    return indptr, indices


def _topk_hits(topk: Any, relevant: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) boolean hit matrix and per-row count of distinct relevant items."""
    tk = np.asarray(topk)
    if tk.ndim != 2 or not np.issubdtype(tk.dtype, np.integer):
        raise DataError(f"expected an (N, K) integer array of item ids, got {tk.dtype} {tk.shape}", column="topk",
                        fix="pass the recommended item ids per row; pad short lists with -1")
    k = _check_k(k, tk.shape[1], "recommended items")
    n = tk.shape[0]
    tk = tk[:, :k].astype(np.int64)
    indptr, indices = to_csr(relevant, n)
    # Duplicates in a list would count one relevant item twice; refuse them.
    srt = np.sort(tk, axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if dup.any():
        row = int(np.flatnonzero(dup.any(axis=1))[0])
        raise DataError("an item appears twice in one top-K list", row=row, column="topk",
                        fix="deduplicate each recommendation list before scoring")
    rel_row = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    m = int(max(indices.max(initial=-1), tk.max(initial=-1))) + 1
    if n and m and n > (2**62) // m:  # keys would overflow int64: re-code the item ids first
        uniq, inv = np.unique(np.r_[indices, tk[tk >= 0]], return_inverse=True)
        indices, tk_codes = inv[: len(indices)], np.full(tk.shape, -1, np.int64)
        tk_codes[tk >= 0] = inv[len(indices):]
        tk, m = tk_codes, len(uniq)
    rel_keys = np.unique(rel_row * m + indices)          # dedupes repeated relevant items too
    n_rel = np.bincount(rel_keys // max(m, 1), minlength=n) if len(rel_keys) else np.zeros(n, np.int64)
    keys = np.arange(n, dtype=np.int64)[:, None] * m + tk
    if len(rel_keys):
        where = np.searchsorted(rel_keys, keys).clip(max=len(rel_keys) - 1)
        hits = (rel_keys[where] == keys) & (tk >= 0)
    else:
        hits = np.zeros(tk.shape, dtype=bool)
    return hits, n_rel


def _finish(per_row: np.ndarray, n_rel: np.ndarray, name: str, return_details: bool) -> float | TopKResult:
    ok = n_rel > 0
    per_row = np.where(ok, per_row, np.nan)
    value = float(per_row[ok].mean()) if ok.any() else float("nan")
    skipped = int((~ok).sum())
    if skipped:
        log.debug("%s skipped %d rows without relevant items", name, skipped)
    if return_details:
        return TopKResult(value, len(n_rel), skipped, per_row)
    return value


def recall_at_k(topk: Any, relevant: Any, k: int, return_details: bool = False) -> float | TopKResult:
    """Recall@K = |top-K ∩ relevant| / |relevant|, averaged over rows with relevant items.

    ``topk``: (N, >=K) int item ids, best first, -1 as padding; ``relevant``: CSR or list of sets
    (see :func:`to_csr`). Rows with no relevant item are skipped and counted.
    """
    hits, n_rel = _topk_hits(topk, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = hits.sum(axis=1) / n_rel
    return _finish(per_row, n_rel, "recall@k", return_details)


def hr_at_k(topk: Any, relevant: Any, k: int, return_details: bool = False) -> float | TopKResult:
    """Hit rate@K: share of rows (with relevant items) where any relevant item is in the top K."""
    hits, n_rel = _topk_hits(topk, relevant, k)
    return _finish(hits.any(axis=1).astype(np.float64), n_rel, "hr@k", return_details)


def ndcg_at_k(topk: Any, relevant: Any, k: int, return_details: bool = False) -> float | TopKResult:
    """NDCG@K with binary relevance: DCG = sum of 1/log2(pos+2) over hits; IDCG over
    min(|relevant|, K) leading positions. Rows with no relevant item are skipped and counted."""
    hits, n_rel = _topk_hits(topk, relevant, k)
    k = hits.shape[1]
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits @ disc
    idcg_table = np.r_[0.0, np.cumsum(disc)]
    idcg = idcg_table[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = dcg / idcg
    return _finish(per_row, n_rel, "ndcg@k", return_details)


# --------------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------------
def group_metrics(
    labels: Any,
    scores: Any,
    users: Any,
    mask_by_group: Mapping[str, Any],
    *,
    with_logloss: bool = True,
) -> dict[str, dict[str, float]]:
    """AUC, GAUC (by ``users``), LogLoss and n for each named boolean row mask
    (e.g. ``{"all": ..., "new": is_new, "regular": ~is_new}``).

    ``with_logloss=False`` when scores are not probabilities (LogLoss would raise). An empty
    mask gives n=0 and nan metrics.
    """
    y = _as_1d(labels, "labels")
    s = _as_1d(scores, "scores")
    u = _as_1d(users, "users")
    n = _same_length(labels=y, scores=s, users=u)
    out: dict[str, dict[str, float]] = {}
    for name, mask in mask_by_group.items():  # a handful of named groups, not rows
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (n,):
            raise DataError(f"mask '{name}' must be a boolean array of length {n}, got {m.dtype} {m.shape}",
                            column=name, fix="build masks as boolean arrays aligned with the labels")
        cnt = int(m.sum())
        if cnt == 0:
            out[name] = {"auc": float("nan"), "gauc": float("nan"), "logloss": float("nan"), "n": 0}
            continue
        out[name] = {
            "auc": auc(y[m], s[m]),
            "gauc": gauc(y[m], s[m], u[m]),
            "logloss": logloss(y[m], s[m]) if with_logloss else float("nan"),
            "n": cnt,
        }
    return out


def binary_metrics(labels: Any, scores: Any, users: Any) -> dict[str, float]:
    """AUC, GAUC (users as groups) and LogLoss of one set of binary predictions: what every
    ranking suite reports per user group."""
    return {"auc": auc(labels, scores), "gauc": gauc(labels, scores, users), "logloss": logloss(labels, scores)}
