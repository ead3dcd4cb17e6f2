"""DAUC offline replay: a hand-computed two-slice world, no leakage of a slice's own clicks, window
boundaries, cold users, bad input, the smoothed CTR / window extension / backfill defaults, the
filter counts, and the vectorised replay against a plain per-user loop.

Defaults changed on purpose (tests updated to pass ``**PAPER_LITERAL``, the paper's plain protocol,
where they compute the plain CTR by hand): ``ctr="global"`` with ``min_exposures=2`` (was the plain
CTR over every exposed item), ``window`` 7 days (was 1 day; the tests pass their own window),
``min_window_events=1000`` (was a fixed window) and ``backfill=True`` (was off)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from thawrec.errors import ConfigError, DataError
from thawrec.eval.replay import PAPER_LITERAL, cold_user_mask, replay_evaluate, slice_bounds


def _frame(rows):
    u, i, y, t = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return {"user_id": u, "item_id": i, "label": y, "ts": t}


# users 0, 1, 5 -> cluster 0; users 2, 4 -> cluster 1; user 3 unassigned (global ranking)
CLUSTERS = np.array([0, 0, 1, -1, 1, 0])
TRAIN = [
    (0, 0, 0, 800),      # user 0 saw item 0 long ago: outside every window, but it is "exposed"
    (1, 0, 1, 950),
    (1, 1, 0, 960),
    (1, 2, 1, 970),
    (1, 2, 0, 980),
    (4, 3, 1, 950),
    (4, 4, 0, 960),
]
TEST = [
    # slice 1 (starts 1000; CTR window [900, 1000) = training rows from 950 on)
    (0, 2, 1, 1000),
    (0, 1, 1, 1001),
    (2, 4, 1, 1002),
    (3, 3, 0, 1003),
    (4, 0, 0, 1004),
    (4, 0, 0, 1005),
    (4, 0, 0, 1006),
    # slice 2 (starts 1100; window [1000, 1100) = slice 1 only)
    (3, 0, 1, 1100),
    (0, 0, 1, 1101),
    (1, 4, 1, 1102),
    (2, 3, 0, 1103),
    (5, 2, 1, 1104),
    (5, 3, 1, 1105),
    (5, 0, 1, 1106),
]
L3 = 1.0 / math.log2(3)   # discount of rank 2


def test_two_slices_by_hand():
    res = replay_evaluate(_frame(TRAIN), _frame(TEST), CLUSTERS, k=2, n_slices=2, window=100,
                          cold_users={2, 3, 5}, **PAPER_LITERAL)
    # 14 test rows -> equal-row cut at row 7 -> slice starts 1000 and 1100
    assert [s.start for s in res.slices] == [1000, 1100] and [s.n_rows for s in res.slices] == [7, 7]
    # Slice 1. Cluster 0 CTR: item 0 1/1, item 2 1/2, item 1 0/1 -> [0, 2, 1]; cluster 1: item 3 1/1,
    #   item 4 0/1 -> [3, 4].
    #   user 0: exposed to item 0 (ts 800) -> [2, 1]; clicked {2, 1}: recall 1, NDCG 1.
    #   user 2: [3, 4]; clicked {4} at rank 2: recall 1, NDCG = (1/log2 3) / 1.
    #   users 3 and 4 did not click: not scored.
    # Slice 2. Window = slice 1: cluster 0 items 1, 2 at 1/1 -> [1, 2]; global: 1, 2, 4 at 1/1,
    #   then 0 (0/3) and 3 (0/1) -> [1, 2, 4, 0, 3].
    #   user 3 (global): exposed to 3 -> [1, 2]; clicked {0}: 0 (item 0's clicks at 1100+ never leak).
    #   user 0: exposed to 0, 1, 2 -> nothing left; clicked {0}: 0.
    #   user 1: exposed to 0, 1, 2 in training -> nothing left; clicked {4}: 0.
    #   user 5: [1, 2]; clicked {2, 3, 0}: one hit at rank 2 -> recall 1/3, NDCG = L3 / (1 + L3).
    per_pair = {(0, 0): (1, 1), (2, 0): (1, L3), (3, 1): (0, 0), (0, 1): (0, 0), (1, 1): (0, 0),
                (5, 1): (1 / 3, L3 / (1 + L3))}
    assert res.n_pairs == 6 and res.n_test_rows == 14
    got = {(int(u), int(s)): (r, n) for u, s, r, n in zip(res.pair_users, res.pair_slices, res.pair_recall,
                                                           res.pair_ndcg)}
    assert got.keys() == per_pair.keys()
    for key, (r, n) in per_pair.items():
        assert got[key] == pytest.approx((r, n)), key
    assert res.recall == pytest.approx((1 + 1 + 1 / 3) / 6)
    assert res.ndcg == pytest.approx((1 + L3 + L3 / (1 + L3)) / 6)
    assert res.slices[0].recall == pytest.approx(1.0)
    assert res.slices[0].ndcg == pytest.approx((1 + L3) / 2)
    # cold users 2, 3, 5 -> pairs (2, s1), (3, s2), (5, s2)
    assert res.n_cold_pairs == 3
    assert res.cold_recall == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert res.cold_ndcg == pytest.approx((L3 + 0 + L3 / (1 + L3)) / 3)
    assert res.rows_per_second > 0
    assert res.as_dict()["n_pairs"] == 6


def test_polars_frames_and_boolean_cold_mask_give_the_same_result():
    a = replay_evaluate(_frame(TRAIN), _frame(TEST), CLUSTERS, k=2, n_slices=2, window=100, cold_users={2, 3, 5})
    mask = np.zeros(6, bool)
    mask[[2, 3, 5]] = True
    b = replay_evaluate(pl.DataFrame(_frame(TRAIN)), pl.DataFrame(_frame(TEST)), CLUSTERS, k=2, n_slices=2,
                        window=100, cold_users=mask)
    assert (a.recall, a.ndcg, a.cold_recall, a.cold_ndcg) == (b.recall, b.ndcg, b.cold_recall, b.cold_ndcg)


def test_a_slice_never_sees_its_own_clicks():
    # Training: item 1 is the only item clicked in cluster 0. In the (single) test slice everybody
    # clicks item 0; if the slice's rows leaked into its ranking, item 0 (3/3) would be recommended.
    train = _frame([(0, 1, 1, 90), (0, 1, 0, 91)])
    test = _frame([(1, 0, 1, 100), (2, 0, 1, 101), (3, 0, 1, 102)])
    res = replay_evaluate(train, test, [0, 0, 0, 0], k=1, n_slices=1, window=50)
    assert res.n_pairs == 3 and res.recall == 0.0 and res.ndcg == 0.0
    # However long the window, it ends at the slice start:
    res = replay_evaluate(train, test, [0, 0, 0, 0], k=1, n_slices=1, window=10_000)
    assert res.recall == 0.0


def test_window_is_half_open_before_the_slice():
    # slice starts at 1000, window 100: an event at 900 counts, one at 899 does not.
    test = _frame([(0, 0, 1, 1000), (0, 1, 1, 1000)])
    for ts, expected in ((900, 1.0), (899, 0.0)):
        train = _frame([(1, 0, 1, ts)])                  # another user of the cluster clicks item 0
        res = replay_evaluate(train, test, [0, 0], k=1, n_slices=1, window=100, **PAPER_LITERAL)
        # user 0 clicked {0, 1}; a hit on item 0 gives recall 1/2
        assert res.recall == pytest.approx(expected / 2), ts


def test_cold_user_mask_counts_training_clicks():
    train = _frame([(0, 0, 1, 1), (0, 1, 1, 2), (0, 2, 1, 3), (0, 3, 1, 4), (1, 0, 1, 5), (1, 1, 0, 6)])
    np.testing.assert_array_equal(cold_user_mask(train, n_users=3), [False, True, True])
    with pytest.raises(ConfigError, match="n_users"):
        cold_user_mask(train, n_users=1)


def test_slice_bounds_rows_and_time():
    ts = np.array([5, 1, 2, 2, 2, 3, 9, 10])
    starts, ends = slice_bounds(ts, 4, "rows")     # cut rows 0, 2, 4, 6 of 1 2 2 2 3 5 9 10 -> 1, 2, 3, 9
    np.testing.assert_array_equal(starts, [1, 2, 3, 9])
    np.testing.assert_array_equal(ends, [2, 3, 9, np.inf])
    starts, _ = slice_bounds(ts, 3, "time")        # range 1..10 cut in thirds
    np.testing.assert_allclose(starts, [1, 4, 7])
    with pytest.raises(ConfigError, match="slicing"):
        slice_bounds(ts, 3, "days")


def test_unassigned_users_get_the_global_ranking():
    # cluster 0 likes item 1, cluster 1 likes item 2 (2 clicks); user 3 is unassigned.
    train = _frame([(0, 1, 1, 50), (1, 2, 1, 51), (2, 2, 1, 52)])
    test = _frame([(3, 2, 1, 100)])
    res = replay_evaluate(train, test, [0, 1, 1, -1], k=1, n_slices=1, window=100, **PAPER_LITERAL)
    # global CTR: items 1 and 2 at 1.0, item 2 has more clicks -> recommended -> hit
    assert res.recall == 1.0


def test_replay_bad_input():
    train, test = _frame(TRAIN), _frame(TEST)
    with pytest.raises(DataError, match="missing column"):
        replay_evaluate({k: v for k, v in train.items() if k != "ts"}, test, CLUSTERS)
    with pytest.raises(DataError, match="differ in length"):
        replay_evaluate(train, {**test, "ts": test["ts"][:-1]}, CLUSTERS)
    with pytest.raises(DataError, match="out of range"):
        replay_evaluate(train, test, CLUSTERS, n_clusters=1)
    with pytest.raises(DataError, match="cold_users"):
        replay_evaluate(train, test, CLUSTERS, cold_users=np.zeros(3, bool))
    with pytest.raises(ConfigError, match="window"):
        replay_evaluate(train, test, CLUSTERS, window=0)
    with pytest.raises(ConfigError, match="positive integer"):
        replay_evaluate(train, test, CLUSTERS, k=0)
    with pytest.raises(ConfigError, match="n_slices"):
        replay_evaluate(train, test, CLUSTERS, n_slices=0)


# --------------------------------------------------------------------------------------------
# Vectorised replay == a plain per-user loop
# --------------------------------------------------------------------------------------------
def _reference_replay(train, test, clusters, k, n_slices, window, *, ctr="plain", m=20.0, min_exposures=1,
                      min_window_events=0, backfill=False):
    """The protocol written the obvious way: dicts, sets and per-user loops."""
    cols = ("user_id", "item_id", "label", "ts")
    train_events = [tuple(int(x) for x in e) for e in zip(*(train[c] for c in cols))]
    test_events = [tuple(int(x) for x in e) for e in zip(*(test[c] for c in cols))]
    test_ts = sorted(t for *_, t in test_events)
    starts = sorted({test_ts[(j * len(test_ts)) // n_slices] for j in range(n_slices)})
    ends = starts[1:] + [float("inf")]

    def row_of(u):
        return clusters[u] if u < len(clusters) and clusters[u] >= 0 else "global"

    out, windows = [], []
    for start, end in zip(starts, ends):
        past = sorted(t for *_, t in train_events + test_events if t < start)
        w = window
        if sum(start - window <= t for t in past) < min_window_events and past:
            w = max(window, math.ceil(start - past[max(len(past) - min_window_events, 0)]))
        windows.append(w)
        stats: dict[tuple, list[int]] = {}           # (row, item) -> [exposures, clicks]
        exposed: dict[int, set[int]] = {}
        for u, i, y, t in train_events + test_events:
            if start - w <= t < start:
                for row in {row_of(u), "global"}:
                    s = stats.setdefault((row, i), [0, 0])
                    s[0] += 1
                    s[1] += y
            if t < start:
                exposed.setdefault(u, set()).add(i)
        g_expo = sum(s[0] for (row, _), s in stats.items() if row == "global")
        p = sum(s[1] for (row, _), s in stats.items() if row == "global") / g_expo if g_expo else 0.0
        gctr = {i: (s[1] + m * p) / (s[0] + m) for (row, i), s in stats.items() if row == "global"}

        def score(row, i, s, gctr=gctr):
            if ctr == "plain":
                return s[1] / s[0]
            return gctr[i] if row == "global" else (s[1] + m * gctr[i]) / (s[0] + m)

        def ranked(row, stats=stats, score=score):
            return [i for _, _, i in sorted((-score(r, i, s), -s[1], i) for (r, i), s in stats.items()
                                            if r == row and s[0] >= min_exposures)]

        clicked: dict[int, set[int]] = {}
        for u, i, y, t in test_events:
            if start <= t < end and y == 1:
                clicked.setdefault(u, set()).add(i)
        for u in sorted(clicked):
            seen = exposed.get(u, set())
            top = [i for i in ranked(row_of(u)) if i not in seen][:k]
            if backfill:
                top += [i for i in ranked("global") if i not in seen and i not in top][:k - len(top)]
            hits = [i in clicked[u] for i in top]
            dcg = sum(1 / math.log2(p + 2) for p, h in enumerate(hits) if h)
            idcg = sum(1 / math.log2(p + 2) for p in range(min(len(clicked[u]), k)))
            out.append((u, sum(hits) / len(clicked[u]), dcg / idcg))
    return out, windows


def _random_log(seed, n_users=40, n_items=30, n=1500, t_max=2000):
    rng = np.random.default_rng(seed)
    clusters = rng.integers(-1, 4, n_users)
    u = rng.integers(0, n_users, n)
    it = np.minimum(rng.zipf(1.4, n) - 1, n_items - 1)
    y = (rng.random(n) < 0.25).astype(np.int64)
    t = np.sort(rng.integers(0, t_max, n))
    cut = int(0.7 * n)
    while t[cut] == t[cut - 1]:   # the train/test split of a temporal protocol never splits a timestamp
        cut += 1
    train = {"user_id": u[:cut], "item_id": it[:cut], "label": y[:cut], "ts": t[:cut]}
    test = {"user_id": u[cut:], "item_id": it[cut:], "label": y[cut:], "ts": t[cut:]}
    return train, test, clusters


SETTINGS = {
    "paper": (dict(PAPER_LITERAL), dict()),
    "default": (dict(), dict(ctr="global", m=2.0, min_exposures=1, min_window_events=1000, backfill=True)),
    "mixed": (dict(ctr="global", prior_strength=5.0, min_exposures=1, min_window_events=200, backfill=False),
              dict(ctr="global", m=5.0, min_exposures=1, min_window_events=200, backfill=False)),
    "plain+backfill": (dict(ctr="plain", min_exposures=3, min_window_events=0, backfill=True),
                       dict(ctr="plain", min_exposures=3, backfill=True)),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("seed", range(3))
def test_replay_matches_reference_loop(seed, name):
    opts, ref_opts = SETTINGS[name]
    train, test, clusters = _random_log(seed)
    res = replay_evaluate(train, test, clusters, k=5, n_slices=4, window=300, **opts)
    ref, windows = _reference_replay(train, test, clusters, 5, 4, 300, **ref_opts)
    assert res.n_pairs == len(ref) > 20
    np.testing.assert_allclose(res.pair_recall, [r for _, r, _ in ref])
    np.testing.assert_allclose(res.pair_ndcg, [g for _, _, g in ref])
    np.testing.assert_array_equal(res.pair_users, [u_ for u_, _, _ in ref])
    assert [s.window for s in res.slices] == windows


# --------------------------------------------------------------------------------------------
# Filter counts, backfill, window extension, smoothed CTR
# --------------------------------------------------------------------------------------------
def test_two_slices_counts_and_backfill_by_hand():
    res = replay_evaluate(_frame(TRAIN), _frame(TEST), CLUSTERS, k=2, n_slices=2, window=100, **PAPER_LITERAL)
    s1, s2 = (s.counts for s in res.slices)
    # slice 1: users 0 (2 click rows), 2 (1 click row) scored; 3 (1 row) and 4 (3 rows) never clicked
    assert (s1.test_rows, s1.rows_scored, s1.rows_no_click) == (7, 3, 4)
    assert (s1.pairs, s1.pairs_scored, s1.pairs_no_click) == (4, 2, 2)
    assert (s1.click_rows, s1.relevant, s1.relevant_exposed, s1.pairs_unassigned) == (3, 3, 0, 0)
    # slice 2: users 3, 0, 1, 5 clicked (6 rows), user 2 did not (1 row); user 3 is unassigned;
    # user 0's click on item 0 was exposed at ts 800 (hidden: recall 0 by design); users 0 and 1
    # have nothing left in cluster 0's list -> empty lists
    assert (s2.test_rows, s2.rows_scored, s2.rows_no_click, s2.pairs, s2.pairs_scored) == (7, 6, 1, 5, 4)
    assert (s2.relevant, s2.relevant_exposed, s2.pairs_all_exposed) == (6, 1, 1)
    assert (s2.pairs_unassigned, s2.rows_unassigned) == (1, 1)
    assert (s2.pairs_backfilled, s2.items_backfilled, s2.pairs_short, s2.pairs_empty) == (0, 0, 2, 2)
    c = res.counts
    assert (c.test_rows, c.rows_scored, c.rows_no_click, c.pairs, c.pairs_scored, c.pairs_no_click) == \
        (14, 9, 5, 9, 6, 3)
    assert c.pairs_scored == res.n_pairs and c.test_rows == res.n_test_rows
    # backfill on (still the plain CTR): users 0 and 1 get the global ranking [1, 2, 4, 0, 3] minus
    # items 0, 1, 2 -> [4, 3]; user 1 clicked item 4 -> a hit at rank 1
    bf = replay_evaluate(_frame(TRAIN), _frame(TEST), CLUSTERS, k=2, n_slices=2, window=100,
                         **{**PAPER_LITERAL, "backfill": True})
    s2 = bf.slices[1].counts
    assert (s2.pairs_backfilled, s2.items_backfilled, s2.pairs_short, s2.pairs_empty) == (2, 4, 0, 0)
    got = {(int(u), int(j)): r for u, j, r in zip(bf.pair_users, bf.pair_slices, bf.pair_recall)}
    assert got[(1, 1)] == 1.0 and got[(0, 1)] == 0.0
    assert bf.recall == pytest.approx(res.recall + 1 / 6)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_filter_counts_add_up(name):
    opts, _ = SETTINGS[name]
    for seed in range(3):
        train, test, clusters = _random_log(seed)
        res = replay_evaluate(train, test, clusters, k=5, n_slices=4, window=300, **opts)
        c = res.counts
        assert c.rows_scored + c.rows_no_click == c.test_rows == res.n_test_rows == len(test["ts"])
        assert c.pairs_scored + c.pairs_no_click == c.pairs and c.pairs_scored == res.n_pairs
        assert c.click_rows == int(test["label"].sum()) and c.relevant == c.click_rows - c.repeat_click_rows
        # independent recount: pairs and relevant items per slice from plain Python
        starts = [s.start for s in res.slices] + [math.inf]
        rows = list(zip(*(test[col].tolist() for col in ("user_id", "item_id", "label", "ts"))))
        slice_of = [next(j for j in range(len(starts) - 1) if starts[j] <= t < starts[j + 1]) for *_, t in rows]
        pairs = {(u, j) for (u, *_), j in zip(rows, slice_of)}
        clicked = {(u, j) for (u, _, y, _), j in zip(rows, slice_of) if y}
        assert c.pairs == len(pairs) and c.pairs_scored == len(clicked)
        assert c.rows_scored == sum((u, j) in clicked for (u, *_), j in zip(rows, slice_of))
        assert c.relevant == len({(u, i, j) for (u, i, y, _), j in zip(rows, slice_of) if y})
        unassigned = [(u >= len(clusters) or clusters[u] < 0) for u in res.pair_users]
        assert c.pairs_unassigned == sum(unassigned)
        # per-slice counts sum to the totals; the report is JSON-ready
        for f in c.as_dict():
            assert sum(getattr(s.counts, f) for s in res.slices) == getattr(c, f), f
        d = json.loads(json.dumps(res.as_dict()))
        assert d["counts"]["rows_no_click"] == c.rows_no_click and d["settings"]["backfill"] == res.settings["backfill"]
        assert d["slices"][0]["counts"]["test_rows"] == res.slices[0].n_rows
        if not opts.get("backfill", True):
            assert c.pairs_backfilled == c.items_backfilled == 0


def _sparse_log(days=60, per_day=10, seed=0):
    """A ratings-like log: 10 events a day for 60 days; the first 42 days train, the rest test."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    t = np.sort(rng.integers(0, days * 86400, n))
    u, it = rng.integers(0, 50, n), rng.integers(0, 40, n)
    y = (rng.random(n) < 0.5).astype(np.int64)
    cut = int(np.searchsorted(t, 42 * 86400))
    train = {"user_id": u[:cut], "item_id": it[:cut], "label": y[:cut], "ts": t[:cut]}
    test = {"user_id": u[cut:], "item_id": it[cut:], "label": y[cut:], "ts": t[cut:]}
    return train, test, rng.integers(-1, 3, 50), t


def test_sparse_log_windows_are_extended():
    train, test, clusters, t = _sparse_log()
    day = 86400
    paper = replay_evaluate(train, test, clusters, k=5, window=day, **PAPER_LITERAL)
    # paper-literal: a fixed 1-day window holding about 10 events, as before
    assert all(s.window == day and not s.extended and s.window_events < 30 for s in paper.slices)
    ref, _ = _reference_replay(train, test, clusters, 5, 10, day)
    np.testing.assert_allclose(paper.pair_recall, [r for _, r, _ in ref])
    # min_window_events=100: each window reaches back to the 100th event before its slice, no further
    res = replay_evaluate(train, test, clusters, k=5, window=day, **{**PAPER_LITERAL, "min_window_events": 100})
    assert all(s.extended and s.window > day and s.window_events >= 100 for s in res.slices)
    for s in res.slices:
        assert ((t >= s.start - s.window) & (t < s.start)).sum() == s.window_events
        assert ((t >= s.start - (s.window - 1)) & (t < s.start)).sum() < 100      # the shortest such window
    assert res.n_extended_windows == 10 and res.as_dict()["n_extended_windows"] == 10
    # the default (1,000 events) is more than the whole log: every window covers all of the past
    full = replay_evaluate(train, test, clusters, k=5, window=day)
    assert all(s.window_events == (t < s.start).sum() for s in full.slices)
    assert full.recall > paper.recall
    # the paper-literal settings give the pre-change defaults' numbers (fixed window, plain CTR, no backfill)
    assert paper.counts.pairs_backfilled == 0 and paper.settings["min_window_events"] == 0


def test_smoothed_replay_prefers_items_with_evidence():
    # cluster 0 = users 0..19. Before the test, user 0 was shown item 0 once and clicked it; users
    # 1..9 were shown item 1 40 times and clicked it 20 times; cluster 1 (users 20..24) sees
    # background items 2..11 at a 5% CTR. In the test, users 10..19 (cluster 0, never exposed to
    # items 0 or 1) click item 1.
    day = 86400
    rows = [(0, 0, 1, 0)] + [(1 + j % 9, 1, int(j % 2 == 0), 10 + j) for j in range(40)]
    rows += [(20 + j % 5, 2 + j % 10, int(j % 20 == 0), 100 + j) for j in range(1000)]
    test = [(u, 1, 1, 2 * day + u) for u in range(10, 20)]
    clusters = np.r_[np.zeros(20, int), np.ones(5, int)]
    # the plain CTR puts item 0 (1/1) above item 1 (20/40): every top-1 misses
    plain = replay_evaluate(_frame(rows), _frame(test), clusters, k=1, n_slices=1, **PAPER_LITERAL)
    assert plain.recall == 0.0
    # 2 exposures needed and 20 pseudo-exposures of shrinkage towards the global CTR: item 1 first
    strong = dict(prior_strength=20.0)
    assert replay_evaluate(_frame(rows), _frame(test), clusters, k=1, n_slices=1, min_exposures=2, **strong).recall == 1.0
    # the shrinkage alone (every exposed item a candidate) also ranks item 1 first
    assert replay_evaluate(_frame(rows), _frame(test), clusters, k=1, n_slices=1, min_exposures=1, **strong).recall == 1.0


def test_replay_bad_smoothing_and_window_options():
    train, test = _frame(TRAIN), _frame(TEST)
    with pytest.raises(ConfigError, match="unknown CTR estimator"):
        replay_evaluate(train, test, CLUSTERS, ctr="bayes")
    with pytest.raises(ConfigError, match="only apply to ctr='beta'"):
        replay_evaluate(train, test, CLUSTERS, alpha=1.0, beta=20.0)
    with pytest.raises(ConfigError, match="prior_strength"):
        replay_evaluate(train, test, CLUSTERS, prior_strength=float("nan"))
    with pytest.raises(ConfigError, match="min_window_events"):
        replay_evaluate(train, test, CLUSTERS, min_window_events=-1)
    # the fixed prior is still selectable
    res = replay_evaluate(train, test, CLUSTERS, k=2, n_slices=2, window=100, ctr="beta", alpha=1.0, beta=20.0)
    assert res.settings["ctr"] == "beta" and res.settings["alpha"] == 1.0
