"""`thawrec bench poso`: POSO's protocols (:mod:`.protocol`), its plan of models, baselines,
ablations, floor and ceiling (:mod:`.plan`) and its tables and figures (:mod:`.report`).

Personalization code: bucketized accumulated view count. Metric: GAUC; the paper reports
differences from the base model in percentage points. Every difference is paired over test users
within each seed and combined over seeds, with its 95% CI and minimum detectable effect. Every
model gets the same optimizer-step budget (``epochs`` passes over the training rows) and the epoch
with the best validation LogLoss (all validation rows: the least noisy score).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.data.reader import BatchReader, EpisodeReader
from thawrec.eval.complexity import cost_table
from thawrec.eval.plots import plot_training_curves
from thawrec.models.poso import PosoRanker
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select, supported
from thawrec.suites.common.ranking import RankingSuite, compare_ranking, fit_ranking
from thawrec.suites.common.runner import SeedLog, run_plan
from thawrec.suites.common.world import load
from thawrec.suites.poso.plan import (ALL, BASE, BASELINES, FLOOR, ITEM_PC, MHA_SETTINGS, ORACLE,  # noqa: F401
                                      PC_ABLATION, SECTIONS, VARIANTS, model_plan)
from thawrec.suites.poso.protocol import (EARLY_EVENTS, PROTOCOLS, TASKS, add_rating_tasks,  # noqa: F401
                                          describe, prepare, prepare_world, resolve_protocol)
from thawrec.suites.poso.report import plot_value_gates, render  # noqa: F401


def episodes(cols: dict[str, np.ndarray], cfg: dict[str, Any], seed: int) -> EpisodeReader:
    """Per-user episodes of the model's own sizes (MeLU's; 10 + 10, 32 users for Meta-Embedding)."""
    return EpisodeReader.one_pass(cols, n_support=cfg.get("n_support", 10), n_query=cfg.get("n_query", 10),
                                  users_per_batch=cfg.get("users_per_batch", 32), seed=seed)


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    variants: list[str] | None = None,
    sections: list[str] | None = None,
    protocol: str = "auto",
    test_frac: float = 0.28,
    history_len: int = 30,
    synth: dict[str, Any] | None = None,
    scenario: str | None = None,
    strength: float | None = None,
    world_seed: int | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train every planned model for every seed; write results.json, report.md and the figures.

    ``variants`` restricts the plan to those model names (the base, floor and ceiling are always
    kept); ``protocol`` ``auto`` is ``new-users`` on the default synthetic world and ``movielens``
    (split by user, early vs established rows) on a scenario world or real data.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = list(sections or ["main", "baselines"])
    world = load(data, synth, scenario, strength, world_seed)
    prepare_world(world)
    protocol = resolve_protocol(protocol, world, data is not None)
    entries, skipped = supported(select(model_plan(sections, model), variants, keep=[BASE, FLOOR, ORACLE]),
                                 world.capabilities())
    train_defaults = {"epochs": 5, "batch_size": 1024, "patience": 2, "monitor": "logloss", "monitor_mode": "min",
                      **(train or {})}
    gate_models: list[PosoRanker] = []
    costs: list[dict[str, Any]] = []

    def keep_gates(entry: Entry, seed: int, net: Any, ctx: Any) -> None:
        if entry.name == "POSO(MHA)":
            gate_models.append(net)

    suite = RankingSuite(TASKS, train_defaults, out, metrics=("gauc", "auc"), on_trained=keep_gates,
                         episodes=lambda e, net, ctx, seed: episodes(ctx.cols["train"], net.cfg, seed))

    def prepare_seed(seed: int):
        ctx = prepare(world, protocol, seed, test_frac, history_len, "items" in sections)
        # Equal optimizer-step budgets: `epochs` passes over the training rows for every model
        # (episodic baselines included, whose epochs hold a different number of batches).
        steps = math.ceil(len(ctx.cols["train"]["_user"]) / train_defaults["batch_size"])
        suite.train_defaults = {**train_defaults, "max_steps": train_defaults["epochs"] * steps,
                                "epochs": 10 * train_defaults["epochs"]}
        if not costs:
            names = {e.name for e in entries}
            costs.extend(_costs(ctx.pipeline.feature_map, ctx.cols["train"], entries, [v for v in VARIANTS if v in names]))
        return ctx

    def write(log: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        payload = output.payload(
            "poso", world.name, describe(protocol, test_frac, history_len), log, entries, command=command,
            device=train_defaults.get("device", "auto"), started=t0, protocol_name=protocol, world=world.describe(),
            groups=list(log.facts[log.seeds_done[0]]["groups"]), item_groups=["new items", "regular items"]
            if "items" in sections else [], skipped=skipped, costs=costs, histories=log.histories,
            plan={e.name: {"model": e.model, "floor": e.floor, **dict(e.cfg)} for e in entries},
            split={str(s): f["split"] for s, f in log.facts.items()})
        if gate_models:
            payload["value_gates"] = plot_value_gates(gate_models, out / "fig4_value_gates.png")
        plot_training_curves(log.histories, out / "training_curves.png", metric="valid_logloss")
        return output.write(out, payload, render)

    return run_plan(entries, seeds, lambda ctx, e, s, t: fit_ranking(suite, ctx, e, s, t), prepare=prepare_seed,
                    compare=lambda ctx, e, o, r, s: compare_ranking(suite, ctx, e, o, r, s),
                    facts=lambda ctx: {"test_counts": ctx.counts(TASKS), "split": ctx.split.info,
                                       "groups": list(ctx.groups)},
                    on_seed_end=write).result


def _costs(fm, train_cols, entries: list[Entry], names: list[str]) -> list[dict[str, Any]]:
    """Table 1: parameters and FLOPs per sample of each main variant, on one real batch."""
    cfg = {e.name: dict(e.cfg) for e in entries}
    batch = next(iter(BatchReader(train_cols, batch_size=512, rank=0, world_size=1)))
    rows = []
    for v in names:
        net = PosoRanker(fm, cfg[v])
        for r in cost_table(net, batch, {"MLP (towers)": "towers", "MHA": "attn", "MMoE": "mmoe", "whole model": ""}):
            rows.append({"model": v, **r})
    return rows
