"""`thawrec bench dauc`: DAUC's offline protocol (:mod:`.protocol`), Table 2 (baselines) and Table 3
(ablations) with a floor and a ceiling (:mod:`.plan`), Fig. 3 and a Fig. 4-style case study
(:mod:`.report`).

Every method clusters the users; the deep ones train on the views and cluster their side-view
representation ``h(1)`` with k-means (the serving phase), choosing the epoch with the best
validation replay Recall@K. The test period is replayed in 10 chronological slices: each user is
recommended the top K target items of their cluster by CTR in a window before the slice, after
removing items the user was exposed to. Recall@K and NDCG@K overall and for cold-start users
(3 or fewer target clicks in training). Every method is paired with DAUC on the same (user, slice)
samples within each seed (users as the unit) and seeds are combined (95% CI, p, MDE); each method
is also replayed with its own cluster labels permuted (size-matched random clusters), which says
how much of its score its cluster sizes alone explain. On synthetic worlds also the NMI of the
clusters with the planted groups, and the planted groups themselves as the ceiling.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawrec.eval.power import clustered_mean_pair
from thawrec.eval.replay import DEFAULT_MIN_WINDOW_EVENTS, DEFAULT_SMOOTHING, PAPER_LITERAL
from thawrec.models.clustering import DeepClusterer, embed, own_assignment
from thawrec.registry import build_clusterer
from thawrec.retrieval.index import kmeans
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select, supported
from thawrec.suites.common.runner import Outcome, SeedLog, run_plan
from thawrec.suites.common.world import load
from thawrec.suites.dauc.plan import ABLATIONS, ALL, BASELINES, FLOOR, ORACLE, TASTE_ORACLE, model_plan  # noqa: F401
from thawrec.suites.dauc.protocol import Prepared, describe, make_setting, prepare
from thawrec.suites.dauc.report import case_study, fig3, improvement, plot_fits, render
from thawrec.train.clustering import fit_clusterer

log = logging.getLogger(__name__)

# The replay's CTR: "smoothed" (default; see thawrec.eval.replay) or "paper" (plain CTR, fixed window).
REPLAYS: dict[str, dict[str, Any]] = {
    "smoothed": {**DEFAULT_SMOOTHING, "min_window_events": DEFAULT_MIN_WINDOW_EVENTS, "backfill": True},
    "paper": dict(PAPER_LITERAL),
}


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    variants: list[str] | None = None,
    n_clusters: int | None = None,
    k: int | None = None,
    window: int | None = None,
    cold_frac: float | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    replay: str = "smoothed",
    synth: dict[str, Any] | None = None,
    scenario: str | None = None,
    strength: float | None = None,
    world_seed: int | None = None,
    command: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Cluster the users with every planned method for every seed, replay the test period, and
    write results.json, report.md, Fig. 3 and the case study."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if replay not in REPLAYS:
        from thawrec.errors import ConfigError

        raise ConfigError(f"unknown replay '{replay}'. Fix: choose one of {sorted(REPLAYS)}")
    try:
        chosen = select(model_plan(epochs), variants, keep=["DAUC", FLOOR, ORACLE, TASTE_ORACLE])
    except Exception as e:  # the CLI's word for these models is "method"
        raise type(e)(str(e).replace("unknown model(s)", "unknown method(s)")) from None
    world = load(data, synth, scenario, strength, world_seed)
    setting = make_setting(world, n_clusters, k, window, cold_frac)
    if world.gt is not None and "user_topic_affinity" in world.gt:
        setting.taste = np.asarray(world.gt["user_topic_affinity"], dtype=np.float32)
    entries, skipped = supported(chosen, world.capabilities())
    cache: dict[str, Prepared] = {}
    clusters: dict[str, np.ndarray] = {}
    fits: dict[str, list[dict[str, float]]] = {}
    K = setting.k

    def prepare_seed(seed: int) -> Prepared:
        if setting.cold_frac <= 0 and "p" in cache:  # nothing depends on the seed: build the views once
            return cache["p"]
        cache["p"] = prepare(setting, seed, REPLAYS[replay])
        return cache["p"]

    def fit_one(p: Prepared, entry: Entry, seed: int, trained: dict[str, Any]) -> Outcome:
        labels, history = _cluster(entry, p, seed, epochs, batch_size, progress)
        res = p.evaluate(labels)
        vals = _values(res, K)
        if entry.floor is None:  # how much of the score the cluster sizes alone explain
            perm = np.random.default_rng(seed).permutation(labels)
            vals.update({(t, g, f"{m} (size-matched random)"): v for (t, g, m), v in _values(p.evaluate(perm), K).items()})
        if p.views.truth is not None:
            from sklearn.metrics import normalized_mutual_info_score

            vals[("replay", "all users", "nmi")] = float(normalized_mutual_info_score(p.views.truth, labels))
        if seed == seeds[0]:
            clusters[entry.name] = labels
            if history is not None:
                fits[entry.name] = history
        return Outcome(vals, scores=res)

    def write(slog: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        p = cache["p"]
        payload = output.payload("dauc", setting.name, describe(p), slog, entries, auc_like=(), command=command,
                                 device="cpu", started=t0, improvement=improvement(slog.records, K),
                                 views={**{k: v for k, v in p.vinfo.to_dict().items() if k != "extra"}, **p.facts()},
                                 replay_counts={str(s): f["replay_counts"] for s, f in slog.facts.items()},
                                 skipped=skipped, world=world.describe(), histories=fits)
        np.savez_compressed(out / "clusters_first_seed.npz", user_id=p.views.user_ids,
                            **{m.replace("-", "_").replace(" ", "_"): c for m, c in clusters.items()})
        if "DAUC" in clusters and "DAUC-no-adv" in clusters:
            payload["fig3"] = fig3(p.views, clusters["DAUC"], clusters["DAUC-no-adv"], out / "fig3_active_share.png")
        if "DAUC" in clusters:
            (out / "case_study.md").write_text(case_study(setting, p.views, p.train, clusters["DAUC"],
                                                          p.vinfo.extra["side_columns"]))
        if fits:
            plot_fits(fits, out / "validation_curves.png")
        return output.write(out, payload, lambda pl_: render(pl_, (out / "case_study.md").exists()))

    return run_plan(entries, seeds, fit_one, prepare=prepare_seed, compare=lambda p, e, o, r, s: _compare(e, o, r, s, K),
                    facts=_facts, on_seed_end=write).result


def _values(res: Any, k: int) -> dict[tuple[str, str, str], float]:
    return {("replay", "overall", f"recall@{k}"): res.recall, ("replay", "overall", f"ndcg@{k}"): res.ndcg,
            ("replay", "cold-start", f"recall@{k}"): res.cold_recall, ("replay", "cold-start", f"ndcg@{k}"): res.cold_ndcg}


def _facts(p: Prepared) -> dict[str, Any]:
    """Test users and scored (user, slice) samples per group, and what the replay's filters left
    out: one replay of one cluster says them (they do not depend on the clustering)."""
    res = p.evaluate(np.zeros(p.views.n_users, np.int64))
    cold = res.pair_cold
    return {"test_counts": {"overall": {"users": int(len(np.unique(res.pair_users))), "rows": int(len(res.pair_users))},
                            "cold-start": {"users": int(len(np.unique(res.pair_users[cold]))), "rows": int(cold.sum())}},
            "replay_counts": res.counts.as_dict()}


def _compare(entry: Entry, out: Outcome, ref: Outcome, seed: int, k: int) -> list[dict[str, Any]]:
    """``entry`` against DAUC on the same (user, slice) samples, users as the sampling unit."""
    a, b = out.scores, ref.scores
    if not (np.array_equal(a.pair_users, b.pair_users) and np.array_equal(a.pair_slices, b.pair_slices)):
        raise RuntimeError("replays of one seed scored different (user, slice) samples")  # cannot happen
    rows = []
    for g, mask in (("overall", np.ones(len(a.pair_users), bool)), ("cold-start", a.pair_cold)):
        for metric, xa, xb in ((f"recall@{k}", a.pair_recall, b.pair_recall), (f"ndcg@{k}", a.pair_ndcg, b.pair_ndcg)):
            p = clustered_mean_pair((xa - xb)[mask], a.pair_users[mask])
            rows.append({"model": entry.name, "reference": entry.baseline, "task": "replay", "group": g,
                         "metric": metric, "seed": seed, **p.to_dict()})
    return rows


def _cluster(entry: Entry, p: Prepared, seed: int, epochs: int | None, batch_size: int,
             progress: bool) -> tuple[np.ndarray, list[dict[str, float]] | None]:
    """One method's cluster label for every user (and a deep method's training history)."""
    views, n_clusters = p.views, p.setting.n_clusters
    if entry.floor == "one_cluster":
        return np.zeros(views.n_users, np.int64), None
    if entry.floor == "truth":
        return np.unique(views.truth, return_inverse=True)[1].astype(np.int64), None
    if entry.floor == "taste":
        return kmeans(p.taste[views.user_ids], n_clusters, seed=seed)[0], None
    if entry.model in ("random", "profile", "kmeans"):
        return build_clusterer(entry.model, views, n_clusters, dict(entry.cfg)).labels(views, seed), None
    torch.manual_seed(seed)
    model: DeepClusterer = build_clusterer(entry.model, views, n_clusters, dict(entry.cfg))

    def validate(reps: np.ndarray) -> float:
        return p.evaluate(kmeans(reps, n_clusters, seed=seed)[0], on="valid").recall

    own = model.fit_defaults
    # App. A.3 picks the best validation epoch for DAUC, DCCAE and COMPLETER; DEC / IDEC run their
    # 30 + 20 epochs and keep the last (their clusters exist only after the clustering phase).
    fit = fit_clusterer(model, views, epochs=epochs or own["epochs"], lr=own["lr"], seed=seed,
                        batch_size=entry.options.get("batch_size", batch_size),
                        validate=None if model.has_own_assignment else validate, progress_bar=progress,
                        label=entry.name)
    if model.has_own_assignment:
        return own_assignment(model, views), fit.history
    return kmeans(embed(model, views), n_clusters, seed=seed)[0], fit.history
