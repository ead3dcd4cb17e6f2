"""`thawrec bench uie`: UIE's protocol (:mod:`.protocol`), the plan of Tables 3 and 5 and Fig. 3 with
its floor and ceiling (:mod:`.plan`) and the report (:mod:`.report`).

Metric: AUC of valid consumption for low-active and high-active users (Table 3) and on tail-item
rows (Table 5); the paper reports differences as AUC x 100 (0.7841 -> 0.7878 is "+0.37%"), the
percentage points of every table here. Every difference is paired over test users within each seed
(a Poisson bootstrap over users for AUC) and combined over seeds, with its 95% CI, p and minimum
detectable effect (:mod:`thawrec.eval.power`). Every model gets the same optimizer-step budget
(``epochs`` passes over the training rows, batch 512, Adam) and the epoch with the best validation
LogLoss. A stand-in for Table 4's diversity columns: distinct categories and tags among each
user's top-K of a candidate set, paired per user the same way.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.eval.floors import item_popularity_scores
from thawrec.eval.plots import plot_training_curves
from thawrec.eval.power import clustered_mean_pair
from thawrec.registry import names
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select, supported
from thawrec.suites.common.ranking import RankingSuite, compare_ranking, fit_ranking
from thawrec.suites.common.runner import Outcome, SeedLog, run_plan
from thawrec.suites.common.world import load
from thawrec.suites.uie.plan import (ALWAYS, FIG3_N, FLOOR, ORACLE, PLE, SECTIONS, TABLE3, TABLE5,  # noqa: F401
                                     fig3_name, model_plan, registered)
from thawrec.suites.uie.protocol import (GROUPS, TAIL_SHARE, LOW_FRAC, UIEPrepared, describe,  # noqa: F401
                                         prepare, prepare_world, user_activity)
from thawrec.suites.uie.report import plot_fig3, render
from thawrec.train.fit import score_model

DIVERSITY_GROUPS = ("low-active", "high-active")


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    uie: dict[str, Any] | None = None,
    variants: list[str] | None = None,
    sections: list[str] | None = None,
    history_len: int = 100,
    low_frac: float = LOW_FRAC,
    tail_share: float = TAIL_SHARE,
    diversity_k: int = 10,
    diversity_users: int = 300,
    diversity_candidates: int = 200,
    synth: dict[str, Any] | None = None,
    scenario: str | None = None,
    strength: float | None = None,
    world_seed: int | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train every planned model for every seed; write results.json, report.md and the figures.

    ``model``: options for every PLE-based entry (e.g. smaller layers); ``uie``: UIE options on top
    of the paper's (``memory``, ``aux``, ``sampling``...); ``variants`` restricts the plan to those
    names (PLE, the floor and the ceiling are always kept); ``sections``: ``main`` (UPE, UCBE, UIE,
    TIE), ``baselines`` (CL, TL), ``fig3`` (N sweep); ``diversity_k`` 0 turns the Table 4 stand-in off.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = list(sections or ["main", "baselines"])
    world = load(data, synth, scenario, strength, world_seed)
    tasks = prepare_world(world)
    seqs = ["hist_items"] + (["hist_cats"] if "category" in world.ds.items.columns else [])
    plan = model_plan(sections, tasks.all, list(tasks.regression), seqs, model, uie)
    plan, not_built = registered(select(plan, variants, keep=ALWAYS), names("ranker"))
    entries, skipped = supported(plan, world.capabilities())
    skipped = {**not_built, **skipped}
    train_defaults = {"epochs": 5, "batch_size": 512, "patience": 2, "lr": 1e-3, "monitor": "logloss",
                      "monitor_mode": "min", **(train or {})}
    div = {"k": diversity_k, "users": diversity_users, "candidates": diversity_candidates}
    suite = RankingSuite(list(tasks.binary[:1]), train_defaults, out, metrics=("auc", "gauc"))

    def prepare_seed(seed: int) -> UIEPrepared:
        ctx = prepare(world, tasks, seed, history_len, low_frac, tail_share, div)
        # Equal optimizer-step budgets: `epochs` passes over the training rows for every model.
        steps = math.ceil(len(ctx.cols["train"]["_user"]) / train_defaults["batch_size"])
        suite.train_defaults = {**train_defaults, "max_steps": train_defaults["epochs"] * steps,
                                "epochs": 10 * train_defaults["epochs"]}
        return ctx

    def fit_one(ctx: UIEPrepared, entry: Entry, seed: int, trained: dict[str, Any]) -> Outcome:
        res = fit_ranking(suite, ctx, entry, seed, trained)
        per_user = _diversity(suite, ctx, entry, res, diversity_k)
        if per_user:
            res.scores = {**res.scores, "_diversity": per_user}
            for (g, metric), (_, vals) in per_user.items():
                res.values[(suite.tasks[0], g, metric)] = float(vals.mean()) if len(vals) else float("nan")
        return res

    def compare(ctx: UIEPrepared, entry: Entry, o: Outcome, r: Outcome, seed: int) -> list[dict[str, Any]]:
        rows = compare_ranking(suite, ctx, entry, o, r, seed)
        mine, ref = o.scores.get("_diversity", {}), r.scores.get("_diversity", {})
        for key in mine.keys() & ref.keys():
            (users, a), (_, b) = mine[key], ref[key]
            if len(users):
                rows.append({"model": entry.name, "reference": entry.baseline, "task": suite.tasks[0],
                             "group": key[0], "metric": key[1], "seed": seed,
                             **clustered_mean_pair(a - b, users).to_dict()})
        return rows

    def write(log: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        payload = output.payload(
            "uie", world.name, describe(tasks, history_len, low_frac, tail_share), log, entries, command=command,
            device=train_defaults.get("device", "auto"), started=t0, groups=list(GROUPS), world=world.describe(),
            skipped=skipped, histories=log.histories, sections=sections,
            tasks={"binary": list(tasks.binary), "regression": list(tasks.regression), "source": tasks.source},
            diversity={**div, "metrics": _div_metrics(diversity_k), "groups": list(DIVERSITY_GROUPS)}
            if diversity_k else None,
            plan={e.name: {"model": e.model, "floor": e.floor, "baseline": e.baseline, **dict(e.cfg)} for e in entries},
            split={str(s): f["split"] for s, f in log.facts.items()})
        if "fig3" in sections:
            payload["fig3"] = plot_fig3(payload["rows"], out / "fig3_auc_vs_n.png")
        plot_training_curves(log.histories, out / "training_curves.png", metric="valid_logloss")
        return output.write(out, payload, render)

    return run_plan(entries, seeds, fit_one, prepare=prepare_seed, compare=compare,
                    facts=lambda ctx: {"test_counts": ctx.counts(suite.tasks), "split": ctx.split.info},
                    on_seed_end=write).result


def _div_metrics(k: int) -> list[str]:
    return [f"categories@{k}", f"tags@{k}"]


def _diversity(suite: RankingSuite, ctx: UIEPrepared, entry: Entry, res: Outcome,
               k: int) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """``(group, metric) -> (users, per-user values)``: distinct categories / tags among each chosen
    test user's top ``k`` candidates by this entry's scores (trained entries and the popularity
    floor; the oracle has no score for unseen pairs)."""
    cand = ctx.candidates
    if not k or cand is None or entry.name == ORACLE or (entry.floor is not None and entry.floor != "item_popularity"):
        return {}
    task = suite.tasks[0]
    if entry.floor == "item_popularity":
        s = item_popularity_scores(ctx.cols["train"], cand, task)
    else:
        s = score_model(res.model, cand, suite.train_defaults.get("eval_batch_size", 8192),
                        suite.train_defaults.get("device", "auto"))[task]
    users = cand["_user"]
    uniq, start = np.unique(users, return_index=True)
    n_c = len(users) // max(len(uniq), 1)
    if n_c * len(uniq) != len(users) or n_c == 0:
        return {}
    kk = min(k, n_c)
    top = np.argsort(-s.reshape(len(uniq), n_c), axis=1, kind="stable")[:, :kk]  # rows are sorted by user
    vals: dict[str, np.ndarray] = {}
    if "_category" in cand:
        vals[f"categories@{k}"] = _distinct(np.take_along_axis(cand["_category"].reshape(len(uniq), n_c), top, 1))
    if "_tags" in cand:
        tags = cand["_tags"].reshape(len(uniq), n_c, -1)
        picked = np.take_along_axis(tags, top[:, :, None], 1).reshape(len(uniq), -1)
        vals[f"tags@{k}"] = _distinct(picked)
    out = {}
    for g in DIVERSITY_GROUPS:
        m = np.isin(uniq, ctx.candidate_users.get(g, np.zeros(0, np.int64)))
        for metric, v in vals.items():
            out[(g, metric)] = (uniq[m], v[m].astype(np.float64))
    return out


def _distinct(x: np.ndarray) -> np.ndarray:
    """Distinct nonzero codes per row."""
    s = np.sort(x, axis=1)
    new = np.ones(s.shape, bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return (new & (s > 0)).sum(axis=1)
