"""U2G2I candidates: hand-computed statistics, rankings (plain and smoothed CTR) and top-K; window
boundaries; exposed-item filtering; backfill from the global ranking; bad input; vectorised top-K
against a per-user reference loop.

Default changed on purpose (tests updated): rankings now default to the CTR shrunk towards the
item's global CTR with ``min_exposures=2``; the hand computations of the plain CTR pass
``**PAPER_SMOOTHING`` (or ``ctr="plain"`` / ``ctr="beta"``) explicitly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from thawrec.errors import ConfigError, DataError
from thawrec.retrieval import u2g2i as C
from thawrec.retrieval.u2g2i import PAPER_SMOOTHING

# users 0, 1 -> cluster 0; user 2 -> cluster 1; user 3 unassigned.
CLUSTERS = np.array([0, 0, 1, -1])
# (user, item, label, ts); now = 100.
EVENTS = np.array([
    (0, 0, 1, 95),
    (1, 0, 0, 96),
    (0, 1, 0, 90),   # exactly now - 10: inside the 10 s window
    (1, 1, 1, 100),  # exactly now: outside every window
    (2, 1, 1, 60),
    (2, 2, 0, 50),   # exactly now - 50: inside the 50 s window
    (3, 2, 1, 99),   # unassigned user: global row only
    (0, 2, 1, 49),   # before the 50 s window
])


def _stats(**kw):
    u, i, y, t = EVENTS.T
    return C.cluster_item_stats(CLUSTERS, u, i, y, t, now=100, windows=(10, 50), **kw)


def test_window_counts_by_hand():
    st = _stats()
    assert st.n_clusters == 2 and st.n_items == 3 and st.global_row == 2
    # rows: cluster 0, cluster 1, global; columns: items 0, 1, 2
    np.testing.assert_array_equal(st[10].exposures.toarray(), [[2, 1, 0], [0, 0, 0], [2, 1, 1]])
    np.testing.assert_array_equal(st[10].clicks.toarray(), [[1, 0, 0], [0, 0, 0], [1, 0, 1]])
    np.testing.assert_array_equal(st[50].exposures.toarray(), [[2, 1, 0], [0, 1, 1], [2, 2, 2]])
    np.testing.assert_array_equal(st[50].clicks.toarray(), [[1, 0, 0], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(st[50].ctr(**PAPER_SMOOTHING).toarray(), [[0.5, 0, 0], [0, 1, 0], [0.5, 0.5, 0.5]])
    # exposed-but-unclicked pairs are stored (candidates with CTR 0), unexposed pairs are not
    assert st[50].ctr(**PAPER_SMOOTHING).nnz == 2 + 2 + 3
    with pytest.raises(ConfigError, match="3600"):
        st[3600]


def test_window_boundaries_are_half_open():
    u, i, y = np.zeros(3, int), np.array([0, 1, 2]), np.ones(3, int)
    st = C.cluster_item_stats([0], u, i, y, [40, 39, 50], now=50, windows=(10,))
    # 40 = now - 10 is in, 39 is out, 50 = now is out
    np.testing.assert_array_equal(st[10].exposures.toarray(), [[1, 0, 0], [1, 0, 0]])


def test_ranking_ctr_clicks_and_ties():
    st = _stats()
    rk = st[50].ranking("ctr", **PAPER_SMOOTHING)
    # cluster 0: item 0 (0.5) then item 1 (0.0); cluster 1: item 1 (1.0), item 2 (0.0);
    # global: three items at CTR 0.5 with one click each -> smaller id first
    np.testing.assert_array_equal(rk.top(4), [[0, 1, -1, -1], [1, 2, -1, -1], [0, 1, 2, -1]])
    # click-count channel keeps clicked items only
    np.testing.assert_array_equal(st[50].ranking("clicks", min_exposures=1).top(3), [[0, -1, -1], [1, -1, -1], [0, 1, 2]])
    with pytest.raises(ConfigError, match="by='ctr'"):
        st[50].ranking("views")


def test_ctr_smoothing_and_min_exposures():
    # item 0: 2 clicks / 4 exposures; item 1: 1/2 (same CTR, fewer clicks);
    # item 2: 1/1 (CTR 1.0 on one exposure); item 3: 30/100
    counts = {0: (4, 2), 1: (2, 1), 2: (1, 1), 3: (100, 30)}
    items = np.concatenate([np.full(e, it) for it, (e, _) in counts.items()])
    labels = np.concatenate([np.r_[np.ones(c), np.zeros(e - c)] for e, c in counts.values()]).astype(int)
    n = len(items)
    st = C.cluster_item_stats([0], np.zeros(n, int), items, labels, np.zeros(n), now=1, windows=(10,))
    # plain CTR: item 2 (1.0), then 0 and 1 tie at 0.5 -> more clicks (item 0) first, then 3 (0.3)
    np.testing.assert_array_equal(st[10].ranking(**PAPER_SMOOTHING).top(4)[0], [2, 0, 1, 3])
    # prior alpha=1, beta=9: item 2 -> 2/11 = 0.18, item 0 -> 3/14 = 0.214, item 1 -> 2/12 = 0.167,
    # item 3 -> 31/110 = 0.282
    rk = st[10].ranking(ctr="beta", alpha=1, beta=9, min_exposures=1)
    np.testing.assert_array_equal(rk.top(4)[0], [3, 0, 2, 1])
    np.testing.assert_allclose(rk.scores[:4], [31 / 110, 3 / 14, 2 / 11, 2 / 12])
    # min_exposures=2 drops item 2 altogether
    np.testing.assert_array_equal(st[10].ranking(ctr="plain", min_exposures=2).top(4)[0], [0, 1, 3, -1])


def _dense_ranking():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5],
                       [0.1, 0.2, np.nan, 0.4, 0.5]])   # NaN: not a candidate
    return C.ClusterRanking.from_scores(scores, global_scores=[0.0, 0.0, 3.0, 2.0, 1.0])


def test_top_k_filters_exposed_and_pads():
    rk = _dense_ranking()
    cluster_of_user = np.array([0, 1, -1, 0])              # user 4 is unknown -> global row
    exposed = sp.csr_matrix((np.ones(6), ([0, 0, 3, 3, 3, 3], [0, 2, 0, 1, 2, 3])), shape=(5, 5))
    users = np.array([0, 1, 2, 3, 4, 0])
    out = C.top_k_for_users(rk, cluster_of_user, users, exposed, 2)
    np.testing.assert_array_equal(out, [
        [1, 3],     # cluster 0 ranking 0,1,2,3,4 minus exposed {0, 2}
        [4, 3],     # cluster 1 ranking 4,3,1,0 (item 2 is NaN)
        [2, 3],     # global: 2, 3, 4, then the 0.0 ties 0, 1
        [4, -1],    # exposed to 0..3: one candidate left
        [2, 3],     # unknown user -> global
        [1, 3],     # duplicate request rows are fine
    ])
    # the same filter from (user, item) pairs
    pairs = (np.array([0, 0, 3, 3, 3, 3]), np.array([0, 2, 0, 1, 2, 3]))
    np.testing.assert_array_equal(C.top_k_for_users(rk, cluster_of_user, users, pairs, 2), out)
    # no filter; k above every list length
    np.testing.assert_array_equal(C.top_k_for_users(rk, cluster_of_user, [1], None, 6), [[4, 3, 1, 0, -1, -1]])


def test_exposure_before_cutoff():
    idx = C.ExposureIndex.from_pairs([0, 0, 0], [1, 1, 2], [50, 30, 40], n_items=3)
    # pair (0, 1) first seen at 30; (0, 2) at 40
    np.testing.assert_array_equal(idx.contains(0, [0, 1, 2, -1], before=40), [False, True, False, False])
    np.testing.assert_array_equal(idx.contains(0, [0, 1, 2], before=41), [False, True, True])
    rk = C.ClusterRanking.from_scores(np.array([[3.0, 2.0, 1.0]]))
    np.testing.assert_array_equal(C.top_k_for_users(rk, [0], [0], idx, 2, before=40), [[0, 2]])
    indptr, items = idx.items_of([0, 1, 0], before=41)
    np.testing.assert_array_equal(indptr, [0, 2, 2, 4])
    np.testing.assert_array_equal(items, [1, 2, 1, 2])
    with pytest.raises(ConfigError, match="from_pairs"):
        C.ExposureIndex.from_pairs([0], [1]).contains(0, 1, before=5)
    with pytest.raises(ConfigError, match="one time"):
        C.top_k_for_users(rk, [0], [0], idx, 2, before=[40])


def test_score_matrix_without_global_row_serves_unassigned_users_nothing():
    rk = C.ClusterRanking.from_scores(sp.csr_matrix(np.array([[0.0, 2.0, 1.0]])))
    # stored entries only: item 0 is not stored in the sparse matrix -> not a candidate
    np.testing.assert_array_equal(C.top_k_for_users(rk, [0, -1], [0, 1], None, 3), [[1, 2, -1], [-1, -1, -1]])


def test_merge_candidates_dedup_keeps_order():
    a = np.array([[1, 2, 3], [7, -1, -1]])
    b = np.array([[2, 4, -1], [7, 8, -1]])
    c = np.array([[5, 1, 6], [-1, -1, -1]])
    np.testing.assert_array_equal(C.merge_candidates([a, b, c]), [[1, 2, 3, 4, 5, 6], [7, 8, -1, -1, -1, -1]])
    np.testing.assert_array_equal(C.merge_candidates([a, b, c], mode="interleave"),
                                  [[1, 2, 5, 4, 3, 6], [7, 8, -1, -1, -1, -1]])
    np.testing.assert_array_equal(C.merge_candidates([a, b, c], k=4, mode="interleave"), [[1, 2, 5, 4], [7, 8, -1, -1]])
    np.testing.assert_array_equal(C.merge_candidates([a], k=5), [[1, 2, 3, -1, -1], [7, -1, -1, -1, -1]])


def test_multiway_candidates_by_hand():
    st = _stats()
    ways = (C.Way("ctr", 10, 2), C.Way("clicks", 50, 2))
    # user 0 (cluster 0) exposed to item 0; user 2 (cluster 1); user 3 (global)
    exposed = (np.array([0]), np.array([0]))
    out = C.multiway_candidates(st, CLUSTERS, [0, 2, 3], exposed, ways=ways, **PAPER_SMOOTHING)
    # user 0: ctr@10 cluster 0 = [0 (0.5), 1 (0)] -> [1]; clicks@50 = [0] -> [] => [1]
    # user 2: ctr@10 cluster 1 = [] ; clicks@50 cluster 1 = [1] => [1]
    # user 3: ctr@10 global = [0 (.5, 1 click), 2 (1.0)...] -> item 2 (1/1), item 0 (1/2), item 1 (0/1)
    #         clicks@50 global = [0, 1, 2] (one click each) => [2, 0] + [1] = [2, 0, 1]
    np.testing.assert_array_equal(out, [[1, -1, -1], [1, -1, -1], [2, 0, 1]])
    with pytest.raises(ConfigError, match="3600"):
        C.multiway_candidates(st, CLUSTERS, [0], None)  # PAPER_WAYS need 1 h / 1 d / 7 d windows


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_errors_say_how_to_fix():
    u, i, y, t = EVENTS.T
    with pytest.raises(DataError, match="differ in length"):
        C.cluster_item_stats(CLUSTERS, u[:-1], i, y, t, now=100)
    with pytest.raises(DataError, match="out of range.*n_clusters=2") as e:
        C.cluster_item_stats([0, 5, 1, 0], u, i, y, t, now=100, n_clusters=2)
    assert e.value.row == 1 and "Fix" in str(e.value)
    with pytest.raises(DataError, match="negative") as e:
        C.cluster_item_stats(CLUSTERS, np.r_[u[:-1], -3], i, y, t, now=100)
    assert e.value.column == "users"
    with pytest.raises(DataError, match="negative"):
        C.cluster_item_stats([0, -2, 1, 0], u, i, y, t, now=100)
    with pytest.raises(DataError, match="not 0/1"):
        C.cluster_item_stats(CLUSTERS, u, i, np.r_[y[:-1], 2], t, now=100)
    with pytest.raises(DataError, match="item id 2 out of range"):
        C.cluster_item_stats(CLUSTERS, u, i, y, t, now=100, n_items=2)
    with pytest.raises(ConfigError, match="windows"):
        C.cluster_item_stats(CLUSTERS, u, i, y, t, now=100, windows=(0,))
    with pytest.raises(ConfigError, match="prior"):
        _stats()[10].ranking(alpha=-1)
    rk = _dense_ranking()
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="positive integer"):
            C.top_k_for_users(rk, [0], [0], None, bad_k)
    with pytest.raises(DataError, match="out of range"):
        C.top_k_for_users(rk, [0, 2], [0], None, 1)   # the ranking has clusters 0 and 1 only
    with pytest.raises(DataError, match="exposed"):
        C.top_k_for_users(rk, [0], [0], [[0, 1]], 1)


# --------------------------------------------------------------------------------------------
# Vectorised top-K == a per-user loop
# --------------------------------------------------------------------------------------------
def _reference_top_k(rk, cluster_of_user, users, exposed_pairs, k):
    exposed: dict[int, set[int]] = {}
    for uu, ii in zip(*exposed_pairs):
        exposed.setdefault(int(uu), set()).add(int(ii))
    rows = []
    for uu in users:
        c = cluster_of_user[uu] if uu < len(cluster_of_user) else -1
        r = rk.n_clusters if c < 0 else c
        ranked = rk.items[rk.indptr[r]:rk.indptr[r + 1]]
        picked = [int(x) for x in ranked if int(x) not in exposed.get(int(uu), set())][:k]
        rows.append(picked + [-1] * (k - len(picked)))
    return np.array(rows, dtype=np.int64).reshape(len(users), k)


@pytest.mark.parametrize("seed", range(4))
def test_top_k_matches_reference_loop(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, n_clusters, n = 60, 40, 4, 3000
    cluster_of_user = rng.integers(-1, n_clusters, n_users - 5)           # 5 users unknown
    u = rng.integers(0, n_users, n)
    it = np.minimum(rng.zipf(1.5, n) - 1, n_items - 1)                     # popular items, many ties
    y = (rng.random(n) < 0.3).astype(int)
    t = rng.integers(0, 1000, n)
    st = C.cluster_item_stats(cluster_of_user, u, it, y, t, now=900, windows=(400,), n_clusters=n_clusters,
                              n_items=n_items)
    rk = st[400].ranking(ctr="beta", alpha=0.5, beta=2.0, min_exposures=1)
    # exposures: a heavy-tailed number per user (some users exposed to almost everything)
    m = rng.random(n) < 0.5
    exposed_pairs = (u[m], it[m])
    users = rng.integers(0, n_users, 200)
    for k in (1, 3, 10):
        expected = _reference_top_k(rk, cluster_of_user, users, exposed_pairs, k)
        got = C.top_k_for_users(rk, cluster_of_user, users, exposed_pairs, k, max_cells=64)  # tiny blocks
        np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------------------------
# CTR shrunk towards the item's global CTR (the default), backfill
# --------------------------------------------------------------------------------------------
def _toy_stats():
    """users 0, 1 -> cluster 0; user 2 -> cluster 1; user 3 unassigned; all events in the window.
    item 0: cluster 0 4 exposures / 3 clicks, cluster 1 4 / 0 -> global 8 / 3
    item 1: cluster 0 1 / 1 (shown once, clicked once)  -> global 1 / 1
    item 2: cluster 1 2 / 1, unassigned 2 / 2           -> global 4 / 3
    window: 13 exposures, 7 clicks -> p = 7/13"""
    ev = [(0, 0, 1), (0, 0, 1), (1, 0, 1), (1, 0, 0), (2, 0, 0), (2, 0, 0), (2, 0, 0), (2, 0, 0),
          (0, 1, 1), (2, 2, 1), (2, 2, 0), (3, 2, 1), (3, 2, 1)]
    u, i, y = (np.array(c) for c in zip(*ev))
    return C.cluster_item_stats(CLUSTERS, u, i, y, np.zeros(len(u)), now=1, windows=(10,))[10]


def test_global_smoothed_ctr_by_hand():
    st = _toy_stats()
    m, p = 4.0, 7 / 13
    g = [(3 + m * p) / (8 + m), (1 + m * p) / (1 + m), (3 + m * p) / (4 + m)]   # 67/156, 41/65, 67/104
    np.testing.assert_allclose(g, [67 / 156, 41 / 65, 67 / 104])
    np.testing.assert_allclose(st.global_ctr(m), g)
    expected = [[(3 + m * g[0]) / (4 + m), (1 + m * g[1]) / (1 + m), 0],       # 23/39, 229/325
                [(0 + m * g[0]) / (4 + m), 0, (1 + m * g[2]) / (2 + m)],       # 67/312, 31/52
                g]                                                              # the global row is gctr
    np.testing.assert_allclose(expected[0][:2], [23 / 39, 229 / 325])
    np.testing.assert_allclose(expected[1], [67 / 312, 0, 31 / 52])
    got = st.ctr(ctr="global", prior_strength=m, min_exposures=1)
    np.testing.assert_allclose(got.toarray(), expected)
    assert got.nnz == 2 + 2 + 3                              # unexposed pairs are never candidates
    rk = st.ranking(ctr="global", prior_strength=m, min_exposures=1)
    # cluster 0: item 1 (0.705) > item 0 (0.590); cluster 1: item 2 (0.596) > item 0 (0.215);
    # global: item 2 (0.644) > item 1 (0.631) > item 0 (0.429)
    np.testing.assert_array_equal(rk.top(3), [[1, 0, -1], [2, 0, -1], [2, 1, 0]])
    np.testing.assert_allclose(rk.scores, [229 / 325, 23 / 39, 31 / 52, 67 / 312, 67 / 104, 41 / 65, 67 / 156])
    # min_exposures=2 drops the once-shown item 1 from cluster 0 and from the global row
    np.testing.assert_array_equal(st.ranking(ctr="global", prior_strength=m, min_exposures=2).top(3),
                                  [[0, -1, -1], [2, 0, -1], [2, 0, -1]])
    # the plain CTR for comparison: 1/1 beats 3/4
    np.testing.assert_array_equal(st.ranking(**PAPER_SMOOTHING).top(3), [[1, 0, -1], [2, 0, -1], [1, 2, 0]])
    # prior_strength=0 is the plain CTR on every row
    np.testing.assert_allclose(st.ctr(ctr="global", prior_strength=0, min_exposures=1).toarray(),
                               st.ctr(**PAPER_SMOOTHING).toarray())
    # the defaults: m = 2, min_exposures = 1 (calibrated, see the module docstring)
    np.testing.assert_allclose(st.ctr().toarray(),
                               st.ctr(ctr="global", prior_strength=2, min_exposures=1).toarray())


def test_strong_shrinkage_keeps_a_shown_once_clicked_once_item_off_the_top():
    # A realistic window (overall CTR ~ 5%): in cluster 0 item 0 is shown once and clicked once,
    # item 1 is a real hit (60 exposures, 18 clicks), items 2..21 are background (50 exposures,
    # 1 click each); the rest of the world (cluster 1) sees the same items with few clicks.
    rows = [(0, 0, 1), *[(0, 1, int(j < 18)) for j in range(60)]]
    rows += [(1, it, int(j == 0)) for it in range(2, 22) for j in range(50)]
    rows += [(2, it, int(j < 2)) for it in range(1, 22) for j in range(100)]
    u, i, y = (np.array(c) for c in zip(*rows))
    cl = np.array([0, 0, 1])
    st = C.cluster_item_stats(cl, u, i, y, np.zeros(len(u)), now=1, windows=(10,))[10]
    assert st.ranking(**PAPER_SMOOTHING).top(1)[0, 0] == 0                     # plain CTR: 1/1 first
    strong = dict(ctr="global", prior_strength=20.0, min_exposures=2)
    assert st.ranking(**strong).top(1)[0, 0] == 1                              # strong shrinkage: the hit first
    assert 0 not in st.ranking(**strong).top(30)[0]                            # (and 1 exposure < 2)
    assert dict(C.DEFAULT_SMOOTHING) == {"ctr": "global", "prior_strength": 2.0, "alpha": 0.0, "beta": 0.0,
                                         "min_exposures": 1}                   # the calibrated default
    # the shrinkage alone (every exposed item a candidate, 20 pseudo-exposures) already puts the hit first
    rk = st.ranking(ctr="global", prior_strength=20.0, min_exposures=1)
    assert rk.top(1)[0, 0] == 1 and rk.scores[rk.indptr[0]] > rk.scores[rk.indptr[0] + 1]
    # the calibrated default's weak shrinkage does not: it trades this for a sharper cluster signal
    assert st.ranking().top(1)[0, 0] == 0


def test_fill_from_global_backfills_without_duplicates_or_exposed_items():
    # cluster 0 ranks [0, 1]; cluster 1 has no candidates; global ranks [4, 0, 3, 2, 1]
    scores = np.array([[2.0, 1.0, np.nan, np.nan, np.nan], [np.nan] * 5])
    rk = C.ClusterRanking.from_scores(scores, global_scores=[4.0, 1.0, 2.0, 3.0, 5.0])
    cl = np.array([0, 1, -1, 0])
    exposed = (np.array([0, 1, 3, 3]), np.array([4, 3, 0, 1]))
    users = np.array([0, 1, 2, 3])
    topk = C.top_k_for_users(rk, cl, users, exposed, 3)
    np.testing.assert_array_equal(topk, [[0, 1, -1], [-1, -1, -1], [4, 0, 3], [-1, -1, -1]])
    out = C.fill_from_global(topk, rk, users, exposed)
    np.testing.assert_array_equal(out, [
        [0, 1, 3],      # cluster list first, then global 4 (exposed), 0, 1 (duplicates) -> 3
        [4, 0, 2],      # empty cluster: global minus exposed item 3
        [4, 0, 3],      # a full list is untouched
        [4, 3, 2],      # cluster items 0, 1 both exposed: global minus them
    ])
    for row, uu in zip(out, users):
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept)
        assert not C.ExposureIndex.from_pairs(*exposed, n_items=5).contains(uu, kept).any()
    # too few global items: the list stays -1 padded; the input is not modified
    out5 = C.fill_from_global(C.top_k_for_users(rk, cl, [3], exposed, 5), rk, [3], exposed)
    np.testing.assert_array_equal(out5, [[4, 3, 2, -1, -1]])
    np.testing.assert_array_equal(topk[1], [-1, -1, -1])
    with pytest.raises(DataError, match="topk"):
        C.fill_from_global(topk, rk, users[:2], exposed)


def test_multiway_candidates_use_the_smoothing_options():
    st = _stats()
    ways = (C.Way("ctr", 10, 3), C.Way("ctr", 50, 3), C.Way("clicks", 50, 3))
    for opts in ({}, dict(PAPER_SMOOTHING), dict(ctr="beta", alpha=1.0, beta=5.0, min_exposures=1),
                 dict(ctr="global", prior_strength=3.0, min_exposures=1)):
        out = C.multiway_candidates(st, CLUSTERS, [0, 1, 2, 3], None, ways=ways, **opts)
        lists = [C.top_k_for_users(st[w.window].ranking(w.by, **opts), CLUSTERS, [0, 1, 2, 3], None, 3)
                 for w in ways]
        np.testing.assert_array_equal(out, C.merge_candidates(lists), err_msg=str(opts))
    # min_exposures=2 leaves only items exposed twice in a row's window
    out = C.multiway_candidates(st, CLUSTERS, [0], None, ways=ways, min_exposures=2)
    np.testing.assert_array_equal(out, [[0]])             # item 0: 2 exposures in cluster 0 in both windows


def test_smoothing_options_are_checked():
    st = _stats()[50]
    with pytest.raises(ConfigError, match="unknown CTR estimator"):
        st.ranking(ctr="bayes")
    with pytest.raises(ConfigError, match="only apply to ctr='beta'"):
        st.ranking(alpha=1.0, beta=2.0)                   # the default estimator ignores alpha / beta
    with pytest.raises(ConfigError, match="prior_strength"):
        st.ctr(prior_strength=-1)
    with pytest.raises(ConfigError, match="min_exposures"):
        C.multiway_candidates(_stats(), CLUSTERS, [0], None, ways=(C.Way("ctr", 10),), min_exposures=0)


@pytest.mark.parametrize("n_events, n_clusters, n_items", [(5000, 5, 30), (300, 100, 50_000), (0, 2, 5), (200, 0, 10)])
def test_window_counts_match_a_reference(n_events, n_clusters, n_items):
    # small grids are counted densely, large sparse ones (101 x 50,000 cells) by a key sort: same counts
    rng = np.random.default_rng(n_events)
    cl = rng.integers(-1, n_clusters, 50) if n_clusters else np.full(50, -1)
    u, i = rng.integers(0, 60, n_events), rng.integers(0, n_items, n_events)   # users 50..59 unknown
    y = rng.integers(0, 2, n_events)
    st = C.cluster_item_stats(cl, u, i, y, np.zeros(n_events), now=1, windows=(5,), n_clusters=n_clusters,
                              n_items=n_items)[5]
    expo: dict[tuple[int, int], int] = {}
    clk: dict[tuple[int, int], int] = {}
    for uu, ii, yy in zip(u.tolist(), i.tolist(), y.tolist()):
        c = cl[uu] if uu < len(cl) else -1
        for r in ({int(c), n_clusters} if c >= 0 else {n_clusters}):
            expo[r, ii] = expo.get((r, ii), 0) + 1
            clk[r, ii] = clk.get((r, ii), 0) + yy
    e, k = st.exposures.tocoo(), st.clicks.tocoo()
    assert dict(zip(zip(e.row.tolist(), e.col.tolist()), e.data.tolist())) == expo
    assert dict(zip(zip(k.row.tolist(), k.col.tolist()), k.data.tolist())) == clk   # explicit zeros included
    np.testing.assert_array_equal(st.exposures.indices, st.clicks.indices)
    np.testing.assert_array_equal(st.exposures.indptr, st.clicks.indptr)
