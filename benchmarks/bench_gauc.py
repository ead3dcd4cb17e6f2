"""GAUC on 1M predictions / ~50k users: vectorised thawrec.eval.metrics.gauc vs a per-user
scikit-learn loop (roc_auc_score per user), in the same run, on the same data.

    .venv/bin/python benchmarks/bench_gauc.py [--rows 1000000] [--users 50000] [--seed 0]

Users have long-tailed activity (log-normal row counts: many users with a handful of rows, a
few with thousands), scores are rounded to 3 decimals so ties occur, labels depend on scores.
Prints a readable line, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from thawrec.eval.metrics import gauc


def make_data(rows: int, users: int, seed: int):
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(mean=0.0, sigma=1.3, size=users)
    groups = rng.choice(users, size=rows, p=activity / activity.sum())
    user_bias = rng.normal(0.0, 1.0, users)
    logit = rng.normal(0.0, 1.0, rows) + user_bias[groups]
    labels = (rng.random(rows) < 1 / (1 + np.exp(-(logit - 1.0)))).astype(np.int8)
    scores = np.round(1 / (1 + np.exp(-(logit + rng.normal(0.0, 1.5, rows)))), 3).astype(np.float32)
    return labels, scores, groups


def sklearn_loop(labels, scores, groups) -> tuple[float, int]:
    """The obvious alternative: sort once by user, then roc_auc_score per two-class user."""
    order = np.argsort(groups, kind="stable")
    g, y, s = groups[order], labels[order], scores[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    num = den = 0.0
    skipped = 0
    for ys, ss in zip(np.split(y, cuts), np.split(s, cuts)):
        if ys.min() == ys.max():
            skipped += 1
            continue
        num += len(ys) * roc_auc_score(ys, ss)
        den += len(ys)
    return num / den, skipped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="best-of for the vectorised timing")
    args = ap.parse_args()
    labels, scores, groups = make_data(args.rows, args.users, args.seed)

    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = gauc(labels, scores, groups, return_details=True)
        best = min(best, time.perf_counter() - t0)

    t0 = time.perf_counter()
    ref, ref_skipped = sklearn_loop(labels, scores, groups)
    loop_s = time.perf_counter() - t0

    diff = abs(res.value - ref)
    if diff > 1e-9 or res.n_skipped_groups != ref_skipped:
        raise SystemExit(f"MISMATCH: vectorised {res.value!r} vs sklearn loop {ref!r} (diff {diff:.2e}); "
                         f"skipped {res.n_skipped_groups} vs {ref_skipped}")
    print(f"GAUC {res.value:.6f} on {args.rows:,} rows, {res.n_groups:,} users "
          f"({res.n_skipped_groups:,} single-class users skipped, {res.n_skipped_samples:,} rows); "
          f"agrees with the sklearn loop to {diff:.1e}")
    print(f"vectorised {best:.3f} s  vs  per-user sklearn loop {loop_s:.2f} s  ->  {loop_s / best:.0f}x faster")
    print(json.dumps({"bench": "gauc", "rows": args.rows, "users": int(res.n_groups),
                      "vectorised_seconds": round(best, 4), "sklearn_loop_seconds": round(loop_s, 3),
                      "ratio": round(loop_s / best, 1), "abs_diff": diff}))


if __name__ == "__main__":
    main()
