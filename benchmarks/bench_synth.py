"""Synthetic world generation: the vectorised generator vs the obvious per-user Python loop.

    .venv/bin/python benchmarks/bench_synth.py [--users 1000000] [--items 200000] [--rows 10000000]
                                               [--loop-users 2000] [--seed 0] [--no-write]

The vectorised generator builds the whole world (users, items, exposures, clicks, ratings, apps,
ground truth). The alternative loops over users: per user it draws its events with
``rng.choice(n_items, size, replace=False, p=...)`` from its group's precomputed exposure
distribution, then times, click logits and labels; it runs on a slice of users and is
extrapolated by rows. ``write_world`` (generation + Parquet + ground truth) is timed separately.
Prints readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from thawrec.data.synthetic import SynthConfig, generate, write_world


def loop_generator(cfg: SynthConfig, gt: dict[str, np.ndarray], n_users: int) -> tuple[int, float]:
    """The obvious generator: one Python iteration per user. Returns (rows, seconds)."""
    rng = np.random.default_rng(cfg.seed + 1)
    pop, topic = gt["item_popularity"], gt["item_topic"]
    aff = gt["group_topic_affinity"]
    lp = np.log(pop)
    lp = (lp - (pop * lp).sum()) / lp.std()
    t0 = time.perf_counter()
    # per group exposure distribution over all items (precomputed once: generous to the loop)
    pref = np.exp(cfg.exposure_temperature * aff)[:, topic] * pop[None, :]
    pref /= pref.sum(axis=1, keepdims=True)
    p_group = cfg.pop_mix * pop[None, :] + (1 - cfg.pop_mix) * pref
    span = int(cfg.t_span_days * 86400)
    rows = 0
    for u in range(n_users):
        g = gt["user_group"][u]
        c = int(gt["user_activity"][u])
        items = rng.choice(cfg.n_items, size=c, replace=False, p=p_group[g])
        join = rng.integers(cfg.t_start, cfg.t_start + span)
        ts = np.sort(join + (rng.random(c) * (cfg.t_start + span - join)).astype(np.int64))
        user_aff = aff[g] + rng.normal(0, cfg.personal_sigma, cfg.n_topics)
        logit = (cfg.base_logit + user_aff[topic[items]] + cfg.popularity_weight * lp[items]
                 + rng.normal(0, cfg.click_noise, c))
        label = (rng.random(c) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        rows += min(len(label), len(ts))
    return rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--loop-users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="skip timing write_world")
    args = ap.parse_args()
    cfg = SynthConfig(n_users=args.users, n_items=args.items, n_interactions=args.rows, seed=args.seed)

    t0 = time.perf_counter()
    ds, gt = generate(cfg)
    gen_s = time.perf_counter() - t0
    rows = ds.interactions.height
    rps = rows / gen_s
    loop_rows, loop_s = loop_generator(cfg, gt, min(args.loop_users, cfg.n_users))
    loop_rps = loop_rows / loop_s
    del ds
    print(f"vectorised: {rows:,} rows in {gen_s:.2f} s = {rps:,.0f} rows/s "
          f"({cfg.n_users:,} users, {cfg.n_items:,} items)")
    print(f"per-user loop: {loop_rows:,} rows ({args.loop_users} users) in {loop_s:.2f} s = {loop_rps:,.0f} rows/s "
          f"-> {rows / loop_rps:,.0f} s extrapolated; vectorised is {rps / loop_rps:.1f}x faster")
    result = {"bench": "synthetic", "rows": rows, "seconds": round(gen_s, 3), "rows_per_second": round(rps),
              "loop_rows_per_second": round(loop_rps), "ratio": round(rps / loop_rps, 2),
              "n_users": cfg.n_users, "n_items": cfg.n_items}
    if not args.no_write:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_world(cfg, tmp)
            ww = time.perf_counter() - t0
        print(f"write_world (generate + Parquet + ground truth): {ww:.2f} s; writing alone ~{ww - gen_s:.2f} s")
        result.update(write_world_seconds=round(ww, 3), write_only_seconds=round(ww - gen_s, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
