"""U2G2I candidates: hand-computed statistics, rankings and top-K; window boundaries; exposed-item
filtering; bad input; vectorised top-K against a per-user reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from thawrec.errors import ConfigError, DataError
from thawrec.retrieval import u2g2i as C

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
    np.testing.assert_allclose(st[50].ctr().toarray(), [[0.5, 0, 0], [0, 1, 0], [0.5, 0.5, 0.5]])
    # exposed-but-unclicked pairs are stored (candidates with CTR 0), unexposed pairs are not
    assert st[50].ctr().nnz == 2 + 2 + 3
    with pytest.raises(ConfigError, match="3600"):
        st[3600]


def test_window_boundaries_are_half_open():
    u, i, y = np.zeros(3, int), np.array([0, 1, 2]), np.ones(3, int)
    st = C.cluster_item_stats([0], u, i, y, [40, 39, 50], now=50, windows=(10,))
    # 40 = now - 10 is in, 39 is out, 50 = now is out
    np.testing.assert_array_equal(st[10].exposures.toarray(), [[1, 0, 0], [1, 0, 0]])


def test_ranking_ctr_clicks_and_ties():
    st = _stats()
    rk = st[50].ranking("ctr")
    # cluster 0: item 0 (0.5) then item 1 (0.0); cluster 1: item 1 (1.0), item 2 (0.0);
    # global: three items at CTR 0.5 with one click each -> smaller id first
    np.testing.assert_array_equal(rk.top(4), [[0, 1, -1, -1], [1, 2, -1, -1], [0, 1, 2, -1]])
    # click-count channel keeps clicked items only
    np.testing.assert_array_equal(st[50].ranking("clicks").top(3), [[0, -1, -1], [1, -1, -1], [0, 1, 2]])
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
    np.testing.assert_array_equal(st[10].ranking().top(4)[0], [2, 0, 1, 3])
    # prior alpha=1, beta=9: item 2 -> 2/11 = 0.18, item 0 -> 3/14 = 0.214, item 1 -> 2/12 = 0.167,
    # item 3 -> 31/110 = 0.282
    rk = st[10].ranking(alpha=1, beta=9)
    np.testing.assert_array_equal(rk.top(4)[0], [3, 0, 2, 1])
    np.testing.assert_allclose(rk.scores[:4], [31 / 110, 3 / 14, 2 / 11, 2 / 12])
    # min_exposures=2 drops item 2 altogether
    np.testing.assert_array_equal(st[10].ranking(min_exposures=2).top(4)[0], [0, 1, 3, -1])


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
    out = C.multiway_candidates(st, CLUSTERS, [0, 2, 3], exposed, ways=ways)
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
    rk = st[400].ranking(alpha=0.5, beta=2.0)
    # exposures: a heavy-tailed number per user (some users exposed to almost everything)
    m = rng.random(n) < 0.5
    exposed_pairs = (u[m], it[m])
    users = rng.integers(0, n_users, 200)
    for k in (1, 3, 10):
        expected = _reference_top_k(rk, cluster_of_user, users, exposed_pairs, k)
        got = C.top_k_for_users(rk, cluster_of_user, users, exposed_pairs, k, max_cells=64)  # tiny blocks
        np.testing.assert_array_equal(got, expected)
