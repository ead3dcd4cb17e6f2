"""Metrics against scikit-learn and hand-computed examples, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import log_loss, roc_auc_score

from thawrec.errors import DataError, ThawrecError
from thawrec.eval import metrics as M


def _tied_data(seed: int, n: int = 3000, n_groups: int = 300, decimals: int = 1):
    rng = np.random.default_rng(seed)
    groups = rng.zipf(1.6, n) % n_groups          # skewed: a few big groups, many tiny ones
    labels = (rng.random(n) < 0.3).astype(np.int8)
    scores = np.round(rng.random(n) * 0.6 + 0.3 * labels, decimals)  # heavy ties
    return labels, scores, groups


def _sk_gauc(labels, scores, groups):
    num = den = 0.0
    skipped = skipped_rows = 0
    for g in np.unique(groups):
        m = groups == g
        if labels[m].min() == labels[m].max():
            skipped += 1
            skipped_rows += int(m.sum())
            continue
        num += m.sum() * roc_auc_score(labels[m], scores[m])
        den += m.sum()
    return (num / den if den else float("nan")), skipped, skipped_rows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2])
def test_auc_matches_sklearn_with_ties(seed, decimals):
    y, s, _ = _tied_data(seed, decimals=decimals)
    assert M.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.auc(y.astype(bool), s.astype(np.float32)) == pytest.approx(
        roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_gauc_matches_per_group_sklearn_loop(seed):
    y, s, g = _tied_data(seed, decimals=1 + seed % 2)
    want, skipped, skipped_rows = _sk_gauc(y, s, g)
    res = M.gauc(y, s, g, return_details=True)
    assert res.value == pytest.approx(want, abs=1e-12)
    assert M.gauc(y, s, g) == res.value
    assert skipped > 0  # the data really contains single-class and single-sample groups
    assert (res.n_skipped_groups, res.n_skipped_samples) == (skipped, skipped_rows)
    assert res.n_groups == len(np.unique(g))
    assert res.group_n.sum() == len(y)
    # per-group details line up with the group ids
    gid = res.group_ids[np.nanargmax(res.group_n * ~np.isnan(res.group_auc))]
    m = g == gid
    assert res.group_auc[res.group_ids == gid][0] == pytest.approx(roc_auc_score(y[m], s[m]), abs=1e-12)


def test_gauc_string_groups_and_hand_example():
    y = np.array([1, 0, 0, 1, 1, 0, 1])
    s = np.array([0.9, 0.1, 0.5, 0.5, 0.3, 0.3, 0.7])
    g = np.array(["a", "a", "b", "b", "c", "c", "d"])
    # a: 1.0 (n=2); b: tie -> 0.5 (n=2); c: tie -> 0.5 (n=2); d: single sample, skipped
    res = M.gauc(y, s, g, return_details=True)
    assert res.value == pytest.approx((2 * 1.0 + 2 * 0.5 + 2 * 0.5) / 6)
    assert (res.n_groups, res.n_skipped_groups, res.n_skipped_samples) == (4, 1, 1)
    assert list(res.group_ids) == ["a", "b", "c", "d"]


def test_gauc_all_groups_single_class_is_nan():
    res = M.gauc([1, 1, 0], [0.1, 0.2, 0.3], [0, 0, 1], return_details=True)
    assert math.isnan(res.value) and res.n_skipped_groups == 2 and res.n_skipped_samples == 3


def test_auc_single_class_is_nan_with_warning(caplog):
    with caplog.at_level("WARNING"):
        assert math.isnan(M.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert "only one class" in caplog.text


def test_auc_hand_example_with_ties():
    # pos scores {0.8, 0.4}, neg {0.4, 0.2}: pairs (0.8>0.4) (0.8>0.2) (0.4=0.4 -> 0.5) (0.4>0.2) = 3.5/4
    assert M.auc([1, 0, 1, 0], [0.8, 0.4, 0.4, 0.2]) == pytest.approx(0.875)


@pytest.mark.parametrize(
    "args, column",
    [
        (([1, 0], [0.1]), None),                                   # length mismatch
        (([1, 0, 1], [0.1, np.nan, 0.3]), "scores"),              # NaN score
        (([1, 2, 0], [0.1, 0.2, 0.3]), "labels"),                 # non-binary label
        ((np.ones((2, 2)), np.ones((2, 2))), "labels"),           # 2-D input
    ],
)
def test_auc_errors(args, column):
    with pytest.raises(DataError) as ei:
        M.auc(*args)
    assert ei.value.column == column
    assert ei.value.fix
    assert isinstance(ei.value, ThawrecError)


def test_nan_score_error_names_row():
    with pytest.raises(DataError) as ei:
        M.gauc([1, 0, 1], [0.1, 0.2, np.nan], [0, 0, 1])
    assert ei.value.row == 2 and ei.value.column == "scores"
    with pytest.raises(DataError):
        M.gauc([1, 0, 1], [0.1, 0.2, 0.3], [0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_logloss_matches_sklearn_on_clipped_probs(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(500) < 0.4).astype(int)
    p = np.round(rng.random(500), 2)
    p[:5] = [0.0, 1.0, 0.0, 1.0, 1e-9]   # clipping matters
    eps = 1e-7
    want = log_loss(y, np.clip(p, eps, 1 - eps), labels=[0, 1])
    assert M.logloss(y, p, eps=eps) == pytest.approx(want, rel=1e-12)


def test_logloss_rejects_logits():
    with pytest.raises(DataError) as ei:
        M.logloss([1, 0], [2.3, -1.0])
    assert ei.value.row == 0 and "sigmoid" in str(ei.value)


# ---------------- sampled HR / NDCG (positive in column 0) ----------------
def test_sampled_hand_examples():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],   # rank 0
        [0.5, 0.6, 0.5, 0.1],   # 1 greater, 1 tie: pessimistic 2, average 1.5
        [0.1, 0.2, 0.3, 0.4],   # rank 3
    ])
    assert list(M.sampled_rank(scores)) == [0, 2, 3]
    assert list(M.sampled_rank(scores, ties="average")) == [0, 1.5, 3]
    assert M.hr_at_k_sampled(scores, 1) == pytest.approx(1 / 3)
    assert M.hr_at_k_sampled(scores, 3) == pytest.approx(2 / 3)
    assert M.hr_at_k_sampled(scores, 4) == pytest.approx(1.0)
    want = (1.0 + 1 / math.log2(4)) / 3
    assert M.ndcg_at_k_sampled(scores, 3) == pytest.approx(want)
    assert M.ndcg_at_k_sampled(scores, 3, ties="average") == pytest.approx((1.0 + 1 / math.log2(3.5)) / 3)
    # a constant model gets no credit under pessimistic ties
    assert M.hr_at_k_sampled(np.zeros((5, 101)), 10) == 0.0


def test_sampled_errors():
    with pytest.raises(ThawrecError):
        M.hr_at_k_sampled(np.zeros((3, 4)), 5)
    with pytest.raises(ThawrecError):
        M.hr_at_k_sampled(np.zeros((3, 4)), 0)
    with pytest.raises(DataError):
        M.ndcg_at_k_sampled(np.zeros(4), 2)
    with pytest.raises(ThawrecError):
        M.sampled_rank(np.zeros((2, 3)), ties="optimistic")
    bad = np.zeros((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(DataError) as ei:
        M.hr_at_k_sampled(bad, 2)
    assert ei.value.row == 2


# ---------------- top-K lists vs relevant sets ----------------
def test_topk_hand_examples():
    topk = np.array([[3, 1, 7], [5, 6, -1], [2, 4, 8], [9, 0, 1]])
    relevant = [[1, 7, 10], [6], [], [0, 3]]
    # row0 hits at pos 1, 2 of 3 relevant; row1 hit at pos 1; row2 skipped; row3 hit at pos 1
    rec = M.recall_at_k(topk, relevant, 3, return_details=True)
    assert rec.value == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert (rec.n_rows, rec.n_skipped_rows) == (4, 1) and math.isnan(rec.per_row[2])
    assert M.recall_at_k(topk, relevant, 1) == pytest.approx(0.0)
    d = 1 / np.log2(np.arange(3) + 2)
    want = [(d[1] + d[2]) / (d[0] + d[1] + d[2]), d[1] / d[0], d[1] / (d[0] + d[1])]
    assert M.ndcg_at_k(topk, relevant, 3) == pytest.approx(np.mean(want))
    assert M.hr_at_k(topk, relevant, 2) == pytest.approx(1.0)
    assert M.hr_at_k(topk, relevant, 1) == pytest.approx(0.0)
    # CSR tuple and scipy sparse give the same answer
    indptr = np.array([0, 3, 4, 4, 6])
    indices = np.array([1, 7, 10, 6, 0, 3])
    assert M.ndcg_at_k(topk, (indptr, indices), 3) == pytest.approx(np.mean(want))
    mat = sp.csr_matrix((np.ones(6), indices, indptr), shape=(4, 11))
    assert M.recall_at_k(topk, mat, 3) == pytest.approx(rec.value)


def _ref_topk(topk, relevant, k):
    rec, ndcg = [], []
    for row, rel in zip(topk, relevant):
        rel = set(int(x) for x in rel)
        if not rel:
            continue
        hits = [1.0 if int(i) in rel else 0.0 for i in row[:k]]
        rec.append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        ndcg.append(dcg / idcg)
    return np.mean(rec), np.mean(ndcg)


@pytest.mark.parametrize("seed", range(4))
def test_topk_vs_reference_loop(seed):
    rng = np.random.default_rng(seed)
    n, n_items, width = 400, 60, 20
    topk = np.argsort(rng.random((n, n_items)), axis=1)[:, :width]
    relevant = [rng.choice(n_items, size=rng.integers(0, 8), replace=False) for _ in range(n)]
    for k in (1, 5, 20):
        want_rec, want_ndcg = _ref_topk(topk, relevant, k)
        assert M.recall_at_k(topk, relevant, k) == pytest.approx(want_rec, abs=1e-12)
        assert M.ndcg_at_k(topk, relevant, k) == pytest.approx(want_ndcg, abs=1e-12)


def test_topk_errors():
    with pytest.raises(DataError) as ei:
        M.recall_at_k(np.array([[1, 2], [3, 3]]), [[1], [3]], 2)
    assert ei.value.row == 1
    with pytest.raises(DataError):
        M.recall_at_k(np.array([[1, 2]]), [[1], [3]], 2)       # row count mismatch
    with pytest.raises(ThawrecError):
        M.ndcg_at_k(np.array([[1, 2]]), [[1]], 3)              # k too large
    with pytest.raises(DataError):
        M.hr_at_k(np.array([[1.0, 2.0]]), [[1]], 1)            # float ids
    with pytest.raises(DataError):
        M.hr_at_k(np.array([[1, 2]]), [[-3]], 1)               # negative relevant id


def test_group_metrics():
    y, s, g = _tied_data(0)
    new = g % 2 == 0
    out = M.group_metrics(y, s, g, {"all": np.ones_like(new), "new": new, "regular": ~new,
                                    "none": np.zeros_like(new)})
    assert out["all"]["n"] == len(y) and out["new"]["n"] + out["regular"]["n"] == len(y)
    assert out["new"]["auc"] == pytest.approx(roc_auc_score(y[new], s[new]))
    assert out["regular"]["gauc"] == pytest.approx(_sk_gauc(y[~new], s[~new], g[~new])[0])
    assert out["all"]["logloss"] == pytest.approx(M.logloss(y, s))
    assert out["none"]["n"] == 0 and math.isnan(out["none"]["auc"])
    with pytest.raises(DataError):
        M.group_metrics(y, s, g, {"bad": np.ones(3, bool)})
