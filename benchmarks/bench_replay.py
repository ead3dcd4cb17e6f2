"""DAUC offline replay and the clustering it evaluates, each against the obvious alternative.

    .venv/bin/python benchmarks/bench_replay.py [--test-rows 1000000] [--train-rows 1000000]
        [--users 200000] [--items 20000] [--clusters 100] [--loop-frac 0.05]
        [--kmeans-users 1000000] [--kmeans-dim 64] [--kmeans-k 100] [--seed 0] [--replay-only]

1. Replay (thawrec.eval.replay.replay_evaluate, K=50, 10 equal-row slices) on a generated log: 100
   latent groups, clusters = the group for 80% of users (random otherwise), power-law item
   popularity, users click their group's items more, two weeks of timestamps (first week train,
   second week test). Two settings, timed in the same run: the defaults (7-day window, CTR shrunk
   towards the item's global CTR, min_exposures 2, windows extended to 1,000 events, backfill from
   the global ranking) and the pre-change defaults (``window=DAY, **PAPER_LITERAL``: plain CTR,
   fixed 1-day window, no backfill), so rows/s before and after compare on one machine state.
   Each also replays balanced random clusters, the review's check that the replay ranks cluster
   quality rather than cluster sizes; a few other estimators (``ALTERNATIVES``) are replayed once
   for the same comparison. The alternative is the obvious per-user loop: the same
   vectorised per-slice cluster rankings (same window extension), then for each user with clicks
   in a slice a Python set of the items they saw before the slice, a walk down their cluster's
   ranking skipping those items (then down the global ranking when backfilling), and recall /
   NDCG in Python. It runs on a random subsample of users (``--loop-frac``); its per-user time is
   scaled by users / sampled users (the ranking time is added once, unscaled), and its per-pair
   numbers must equal the vectorised ones for the sampled users.
2. k-means on ``--kmeans-users`` x ``--kmeans-dim`` float32 points (a 100-centre Gaussian mixture),
   K=100: faiss.Kmeans (25 iterations; by default faiss trains on 256 points per centroid, and a
   second run uses every point) vs scikit-learn MiniBatchKMeans(batch_size=10000, max_iter=100),
   the DAUC paper's baseline setting (App. A.3). Inertia (SSE over all points) is reported for
   each, so speed is not bought with a worse clustering.
Prints readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from thawrec.eval.replay import (  # noqa: E402
    DEFAULT_MIN_WINDOW_EVENTS,
    DEFAULT_WINDOW,
    PAPER_LITERAL,
    replay_evaluate,
    slice_bounds,
)
from thawrec.retrieval.u2g2i import DEFAULT_SMOOTHING, cluster_item_stats  # noqa: E402

DAY = 86400


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------
def make_log(train_rows: int, test_rows: int, users: int, items: int, groups: int, seed: int):
    rng = np.random.default_rng(seed)
    n = train_rows + test_rows
    group = rng.integers(0, groups, users)
    clusters = np.where(rng.random(users) < 0.8, group, rng.integers(0, groups, users))
    activity = rng.lognormal(0.0, 1.2, users)
    u = rng.choice(users, size=n, p=activity / activity.sum())
    item_group = rng.integers(0, groups, items)
    pop = 1.0 / np.arange(1, items + 1) ** 0.9
    pop = rng.permutation(pop)
    # half of the exposures come from the user's group's items, half from the global popularity
    by_group = np.argsort(item_group, kind="stable")
    g_start = np.searchsorted(item_group[by_group], np.arange(groups))
    g_len = np.bincount(item_group, minlength=groups)
    own = rng.random(n) < 0.5
    g = group[u]
    pick = g_start[g] + np.minimum((rng.pareto(1.2, n) * 3).astype(np.int64), g_len[g] - 1)
    it = np.where(own, by_group[pick], rng.choice(items, size=n, p=pop / pop.sum()))
    p_click = np.where(item_group[it] == g, 0.25, 0.03)
    y = (rng.random(n) < p_click).astype(np.int8)
    t = np.sort(rng.integers(0, 14 * DAY, n))
    cut = train_rows
    while cut < n and t[cut] == t[cut - 1]:
        cut += 1
    cols = {"user_id": u, "item_id": it, "label": y, "ts": t}
    train = {c: v[:cut] for c, v in cols.items()}
    test = {c: v[cut:] for c, v in cols.items()}
    cold = np.bincount(train["user_id"], weights=train["label"], minlength=users) <= 3
    return train, test, clusters, cold


SETTINGS = {
    # name: replay_evaluate options
    "default": {},
    "paper_1day": {"window": DAY, **PAPER_LITERAL},      # the defaults before the smoothing change
}
# Other estimators, replayed once each (no timing, no loop check) for the good-vs-random comparison.
ALTERNATIVES = {
    "global_min_exposures_5": {"min_exposures": 5},
    "beta_1_20": {"ctr": "beta", "alpha": 1.0, "beta": 20.0},
    "paper_7day": {"window": 7 * DAY, **PAPER_LITERAL},
}


def _resolved(opts: dict) -> dict:
    """Every option the loop needs, defaults filled in."""
    smoothing = {key: opts.get(key, DEFAULT_SMOOTHING[key]) for key in DEFAULT_SMOOTHING}
    return {"window": opts.get("window", DEFAULT_WINDOW), "smoothing": smoothing,
            "min_window_events": opts.get("min_window_events", DEFAULT_MIN_WINDOW_EVENTS),
            "backfill": opts.get("backfill", True)}


def loop_replay(train, test, clusters, k, n_slices, opts, sample):
    """The obvious implementation for the sampled users: vectorised per-slice rankings (timed
    apart), per-user Python sets and loops for filtering, top-K, backfill and metrics."""
    o = _resolved(opts)
    all_u = np.r_[train["user_id"], test["user_id"]]
    all_i = np.r_[train["item_id"], test["item_id"]]
    all_y = np.r_[train["label"], test["label"]]
    all_t = np.r_[train["ts"], test["ts"]]
    sorted_t = np.sort(all_t)
    starts, ends = slice_bounds(test["ts"], n_slices)
    n_items = int(all_i.max()) + 1

    t0 = time.perf_counter()
    rankings = []
    for start in starts:
        window = o["window"]
        past = sorted_t[sorted_t < start]
        if len(past) and (past >= start - window).sum() < o["min_window_events"]:
            window = max(window, math.ceil(start - past[max(len(past) - o["min_window_events"], 0)]))
        m = (all_t >= start - window) & (all_t < start)
        st = cluster_item_stats(clusters, all_u[m], all_i[m], all_y[m], all_t[m], now=start, windows=(window,),
                                n_clusters=int(clusters.max()) + 1, n_items=n_items)
        rk = st[window].ranking("ctr", **o["smoothing"])
        rankings.append([rk.items[rk.indptr[r]:rk.indptr[r + 1]].tolist() for r in range(len(rk.indptr) - 1)])
    t_rank = time.perf_counter() - t0

    t0 = time.perf_counter()
    keep = np.isin(all_u, sample)
    history: dict[int, list[tuple[int, int, int]]] = {}
    for uu, ii, yy, tt in zip(all_u[keep].tolist(), all_i[keep].tolist(), all_y[keep].tolist(), all_t[keep].tolist()):
        history.setdefault(uu, []).append((tt, ii, yy))
    out = []
    for j, (start, end) in enumerate(zip(starts, ends)):
        for uu in sorted(history):
            events = history[uu]
            clicked = {i for t, i, y in events if start <= t < end and y == 1}
            if not clicked:
                continue
            seen = {i for t, i, _ in events if t < start}
            c = clusters[uu]
            ranked = []
            for i in rankings[j][c if c >= 0 else len(rankings[j]) - 1]:
                if i not in seen:
                    ranked.append(i)
                    if len(ranked) == k:
                        break
            if o["backfill"] and len(ranked) < k:
                chosen = set(ranked)
                for i in rankings[j][-1]:
                    if i not in seen and i not in chosen:
                        ranked.append(i)
                        if len(ranked) == k:
                            break
            hits = [i in clicked for i in ranked]
            dcg = sum(1.0 / math.log2(p + 2) for p, h in enumerate(hits) if h)
            idcg = sum(1.0 / math.log2(p + 2) for p in range(min(len(clicked), k)))
            out.append((uu, j, sum(hits) / len(clicked), dcg / idcg))
    t_users = time.perf_counter() - t0
    return out, t_rank, t_users


def _bench_setting(name, opts, train, test, clusters, random_clusters, cold, args) -> dict:
    kw = dict(k=50, n_slices=10, **opts)
    res = None

    def run():
        nonlocal res
        res = replay_evaluate(train, test, clusters, cold_users=cold, **kw)

    t_vec = best_of(run, 3)
    rnd = replay_evaluate(train, test, random_clusters, cold_users=cold, **kw)
    n_test = len(test["ts"])
    c = res.counts
    windows = sorted({s.window for s in res.slices})
    print(f"[{name}] {res.settings}")
    print(f"  recall@50 {res.recall:.4f}  ndcg@50 {res.ndcg:.4f}  (cold: {res.cold_recall:.4f} / {res.cold_ndcg:.4f}) "
          f"over {res.n_pairs:,} (user, slice) pairs, {res.n_cold_pairs:,} cold; balanced random clusters: "
          f"recall@50 {rnd.recall:.4f}  ndcg@50 {rnd.ndcg:.4f}")
    print(f"  windows {[round(w / DAY, 2) for w in windows]} days ({res.n_extended_windows} extended); "
          f"{c.rows_no_click:,} of {c.test_rows:,} test rows in pairs without a click (not scored); "
          f"{c.relevant_exposed:,} of {c.relevant:,} relevant items exposed before; "
          f"{c.pairs_backfilled:,} lists backfilled with {c.items_backfilled:,} items; {c.pairs_short:,} short")
    print(f"  vectorised: {t_vec:.2f} s  ->  {n_test / t_vec:,.0f} test rows/s")

    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(args.users, int(args.users * args.loop_frac), replace=False))
    ref, t_rank, t_users = loop_replay(train, test, clusters, kw["k"], kw["n_slices"], opts, sample)
    # agreement on the sampled users' pairs
    in_sample = np.isin(res.pair_users, sample)
    got = sorted(zip(res.pair_users[in_sample].tolist(), res.pair_slices[in_sample].tolist(),
                     res.pair_recall[in_sample].tolist(), res.pair_ndcg[in_sample].tolist()))
    ref = sorted(ref)
    if len(got) != len(ref) or any(a[:2] != b[:2] or abs(a[2] - b[2]) > 1e-12 or abs(a[3] - b[3]) > 1e-12
                                   for a, b in zip(got, ref)):
        raise SystemExit(f"MISMATCH between vectorised replay and the per-user loop ({len(got)} vs {len(ref)} pairs)")
    scale = args.users / len(sample)           # the loop's work is per user
    t_loop = t_rank + t_users * scale
    print(f"  per-user loop on {len(sample):,} users ({len(ref):,} pairs, identical values): rankings {t_rank:.2f} s "
          f"+ users {t_users:.2f} s, extrapolated x{scale:.0f} to all users -> {t_loop:.1f} s "
          f"({n_test / t_loop:,.0f} rows/s)  ->  vectorised {t_loop / t_vec:.1f}x faster")
    return {"settings": res.settings, "pairs": res.n_pairs, "recall": round(res.recall, 5),
            "ndcg": round(res.ndcg, 5), "random_clusters_recall": round(rnd.recall, 5),
            "random_clusters_ndcg": round(rnd.ndcg, 5), "windows_days": [round(w / DAY, 3) for w in windows],
            "counts": c.as_dict(), "vectorised_seconds": round(t_vec, 3), "rows_per_second": round(n_test / t_vec),
            "loop_sample_users": len(sample), "loop_sample_pairs": len(ref), "loop_rank_seconds": round(t_rank, 3),
            "loop_user_seconds": round(t_users, 3), "loop_extrapolated_seconds": round(t_loop, 2),
            "ratio": round(t_loop / t_vec, 1)}


def bench_replay(args) -> dict:
    train, test, clusters, cold = make_log(args.train_rows, args.test_rows, args.users, args.items,
                                           args.clusters, args.seed)
    random_clusters = np.random.default_rng(args.seed + 2).permutation(np.arange(args.users) % args.clusters)
    n_test = len(test["ts"])
    print(f"replay: {n_test:,} test rows ({len(train['ts']):,} train), {args.users:,} users, {args.items:,} items, "
          f"{args.clusters} clusters, K=50, 10 slices")
    out = {"test_rows": n_test, "train_rows": len(train["ts"]), "users": args.users, "items": args.items,
           "clusters": args.clusters, "k": 50}
    for name, opts in SETTINGS.items():
        out[name] = _bench_setting(name, opts, train, test, clusters, random_clusters, cold, args)
    out["alternatives"] = {}
    for name, opts in ALTERNATIVES.items():
        good = replay_evaluate(train, test, clusters, k=50, n_slices=10, **opts)
        rnd = replay_evaluate(train, test, random_clusters, k=50, n_slices=10, **opts)
        out["alternatives"][name] = {"options": opts, "recall": round(good.recall, 5),
                                     "random_clusters_recall": round(rnd.recall, 5)}
        print(f"[{name}] {opts}: recall@50 {good.recall:.4f}, balanced random clusters {rnd.recall:.4f}")
    out["rows_per_second"] = out["default"]["rows_per_second"]
    out["rows_per_second_paper_1day"] = out["paper_1day"]["rows_per_second"]
    print(f"  rows/s: defaults {out['rows_per_second']:,} vs pre-change defaults (1-day plain CTR) "
          f"{out['rows_per_second_paper_1day']:,}")
    return out


# --------------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------------
def bench_kmeans(args) -> dict:
    try:
        import faiss
    except ImportError:
        faiss = None
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:
        MiniBatchKMeans = None
    rng = np.random.default_rng(args.seed)
    n, d, k = args.kmeans_users, args.kmeans_dim, args.kmeans_k
    centres = rng.normal(0, 1, (k, d)).astype(np.float32)
    x = centres[rng.integers(0, k, n)] + rng.normal(0, 0.6, (n, d)).astype(np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)

    def inertia(c: np.ndarray) -> float:
        c = np.ascontiguousarray(c, dtype=np.float32)
        if faiss is not None:
            index = faiss.IndexFlatL2(d)
            index.add(c)
            dist, _ = index.search(x, 1)
            return float(dist.sum(dtype=np.float64))
        sq = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None]
        return float(np.maximum(sq.min(1), 0).sum(dtype=np.float64))

    out: dict = {"points": n, "dim": d, "k": k}
    print(f"k-means: {n:,} x {d} float32, K={k}")
    if faiss is not None:
        for name, mppc in (("faiss", 256), ("faiss_all_points", (n + k - 1) // k)):
            km = faiss.Kmeans(d, k, niter=25, seed=args.seed, max_points_per_centroid=mppc, verbose=False)
            t0 = time.perf_counter()
            km.train(x)
            out[f"{name}_seconds"] = round(time.perf_counter() - t0, 3)
            out[f"{name}_inertia"] = inertia(km.centroids)
            print(f"  {name:<17} {out[f'{name}_seconds']:7.2f} s  inertia {out[f'{name}_inertia']:.4e}  "
                  f"(25 iterations on {min(n, mppc * k):,} points)")
    else:
        print("  faiss not installed (it is the optional extra `retrieval` in pyproject.toml): skipped")
    if MiniBatchKMeans is not None:
        km = MiniBatchKMeans(n_clusters=k, batch_size=10000, max_iter=100, random_state=args.seed, n_init=1)
        t0 = time.perf_counter()
        km.fit(x)
        out["minibatch_seconds"] = round(time.perf_counter() - t0, 3)
        out["minibatch_inertia"] = inertia(km.cluster_centers_)
        out["minibatch_steps"] = int(km.n_steps_)
        print(f"  {'MiniBatchKMeans':<17} {out['minibatch_seconds']:7.2f} s  inertia {out['minibatch_inertia']:.4e}  "
              f"(batch 10000, max_iter 100, stopped after {km.n_steps_} steps = {km.n_iter_} epochs)")
    if faiss is not None and MiniBatchKMeans is not None:
        out["ratio"] = round(out["minibatch_seconds"] / out["faiss_seconds"], 1)
        out["ratio_all_points"] = round(out["minibatch_seconds"] / out["faiss_all_points_seconds"], 1)
        print(f"  faiss {out['ratio']:.1f}x faster than MiniBatchKMeans "
              f"({out['ratio_all_points']:.1f}x when faiss trains on every point)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-rows", type=int, default=1_000_000)
    ap.add_argument("--train-rows", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--loop-frac", type=float, default=0.05, help="share of users the per-user loop runs on")
    ap.add_argument("--kmeans-users", type=int, default=1_000_000)
    ap.add_argument("--kmeans-dim", type=int, default=64)
    ap.add_argument("--kmeans-k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay-only", action="store_true", help="skip the k-means benchmark")
    args = ap.parse_args()
    t0 = time.perf_counter()
    replay = bench_replay(args)
    kmeans = None if args.replay_only else bench_kmeans(args)
    threads = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))
    print(json.dumps({"bench": "replay", "replay": replay, "kmeans": kmeans, "threads": threads,
                      "total_seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
