"""`thawrec bench dauc`: DAUC's offline protocol (:mod:`.protocol`), Table 2 (baselines) and Table 3
(ablations) (:mod:`.plan`), Fig. 3 and a Fig. 4-style case study (:mod:`.report`).

Every method clusters the users; the deep ones train on the views and cluster their side-view
representation ``h(1)`` with k-means (the serving phase), choosing the epoch with the best
validation replay Recall@K. The test period is replayed in 10 chronological slices: each user is
recommended the top K target items of their cluster by CTR in a window before the slice, after
removing items the user was exposed to. Recall@K and NDCG@K overall and for cold-start users
(3 or fewer target clicks in training). Several runs (seeds) with a paired t-test of DAUC against
each method; on the synthetic world also the NMI of the clusters with the planted groups.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawrec.models.clustering import DeepClusterer, embed, own_assignment
from thawrec.registry import build_clusterer
from thawrec.retrieval.index import kmeans
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select
from thawrec.suites.common.runner import Outcome, SeedLog, run_plan
from thawrec.suites.dauc.plan import ABLATIONS, ALL, BASELINES, model_plan  # noqa: F401
from thawrec.suites.dauc.protocol import Prepared, describe, prepare
from thawrec.suites.dauc.report import case_study, fig3, improvement, plot_fits, render
from thawrec.train.clustering import fit_clusterer

log = logging.getLogger(__name__)


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
    synth: dict[str, Any] | None = None,
    command: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Cluster the users with every planned method for every seed, replay the test period, and
    write results.json, report.md, Fig. 3 and the case study."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        entries = select(model_plan(epochs), variants, keep=["DAUC"])
    except Exception as e:  # the CLI's word for these models is "method"
        raise type(e)(str(e).replace("unknown model(s)", "unknown method(s)")) from None
    p = prepare(data, synth, n_clusters, k, window, cold_frac)
    w, views = p.world, p.views
    clusters: dict[str, np.ndarray] = {}
    fits: dict[str, list[dict[str, float]]] = {}

    def fit_one(entry: Entry, seed: int, trained: dict[str, Any]) -> Outcome:
        labels, history = _cluster(entry, p, seed, epochs, batch_size, progress)
        res = p.evaluate(labels)
        vals = {("replay", "overall", f"recall@{w.k}"): res.recall, ("replay", "overall", f"ndcg@{w.k}"): res.ndcg,
                ("replay", "cold-start", f"recall@{w.k}"): res.cold_recall,
                ("replay", "cold-start", f"ndcg@{w.k}"): res.cold_ndcg}
        if views.truth is not None:
            from sklearn.metrics import normalized_mutual_info_score

            vals[("replay", "all users", "nmi")] = float(normalized_mutual_info_score(views.truth, labels))
        if seed == seeds[0]:
            clusters[entry.name] = labels
            if history is not None:
                fits[entry.name] = history
        log.info("%s seed %d: recall %.4f ndcg %.4f cold recall %.4f", entry.name, seed, res.recall, res.ndcg,
                 res.cold_recall)
        return Outcome(vals)

    def write(slog: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        payload = output.payload("dauc", w.name, describe(p), slog, entries, auc_like=(), command=command,
                                 device="cpu", started=t0, improvement=improvement(slog.records, w.k),
                                 views=_views_info(p))
        np.savez_compressed(out / "clusters_first_seed.npz", user_id=views.user_ids,
                            **{m.replace("-", "_"): c for m, c in clusters.items()})
        if "DAUC" in clusters and "DAUC-no-adv" in clusters:
            payload["fig3"] = fig3(views, clusters["DAUC"], clusters["DAUC-no-adv"], out / "fig3_active_share.png")
        if "DAUC" in clusters:
            (out / "case_study.md").write_text(case_study(w, views, p.train, clusters["DAUC"],
                                                          p.vinfo.extra["side_columns"]))
        if fits:
            plot_fits(fits, out / "validation_curves.png")
        return output.write(out, payload, lambda pl_: render(pl_, (out / "case_study.md").exists()))

    return run_plan(entries, seeds, fit_one, on_seed_end=write).result


def _views_info(p: Prepared) -> dict[str, Any]:
    v = p.views
    return {**{k: x for k, x in p.vinfo.to_dict().items() if k != "extra"},
            "cold_users": int((~v.active).sum()), "hidden_target_users": int(len(p.hidden)),
            "test_rows_target": int(len(p.periods["test"])), "test_rows": p.test_rows,
            "test_rows_target_users_filtered": p.test_in_target - int(len(p.periods["test"]))}


def _cluster(entry: Entry, p: Prepared, seed: int, epochs: int | None, batch_size: int,
             progress: bool) -> tuple[np.ndarray, list[dict[str, float]] | None]:
    """One method's cluster label for every user (and a deep method's training history)."""
    views, n_clusters = p.views, p.world.n_clusters
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
