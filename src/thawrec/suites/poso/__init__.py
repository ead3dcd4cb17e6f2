"""`thawrec bench poso`: POSO's protocols (:mod:`.protocol`), its plan of models, baselines and
ablations (:mod:`.plan`) and its tables and figures (:mod:`.report`).

Personalization code: bucketized accumulated view count. Metric: GAUC; the paper reports
differences from the base model in percentage points. Every number is mean ± std over seeds with a
paired t-test against the base.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.data.reader import BatchReader, EpisodeReader
from thawrec.eval.complexity import cost_table
from thawrec.eval.plots import plot_training_curves
from thawrec.models.poso import PosoRanker
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select
from thawrec.suites.common.ranking import RankingSetup, fit_ranking
from thawrec.suites.common.runner import SeedLog, run_plan
from thawrec.suites.poso.plan import (ALL, BASE, BASELINES, ITEM_PC, MHA_SETTINGS, PC_ABLATION, SECTIONS,  # noqa: F401
                                      VARIANTS, model_plan)
from thawrec.suites.poso.protocol import PROTOCOLS, TASKS, add_rating_tasks, describe, prepare  # noqa: F401
from thawrec.suites.poso.report import _delta_cells, plot_value_gates, render  # noqa: F401


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
    command: str | None = None,
) -> dict[str, Any]:
    """Train every planned model for every seed; write results.json, report.md and the figures.

    ``variants`` restricts the plan to those model names (the base is always kept); ``protocol``
    ``auto`` is ``new-users`` on the synthetic world and ``movielens`` on a real dataset.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = list(sections or ["main", "baselines"])
    entries = select(model_plan(sections, model), variants, keep=[BASE])
    p = prepare(data, synth, protocol, test_frac, history_len, "items" in sections)
    group_rows = {g: int(m.sum()) for g, m in {**p.groups, **p.item_groups}.items()}
    if p.item_groups and group_rows["new items"] < 1000:
        import logging

        logging.getLogger(__name__).warning("only %d test rows of new items: Table 3's new-item column will be "
                                            "noisy or undefined", group_rows["new items"])
    train_defaults = {"epochs": 5, "batch_size": 1024, "patience": 2, "monitor": "gauc", **(train or {})}
    gate_models: list[PosoRanker] = []

    def keep_gates(entry: Entry, seed: int, net: Any) -> None:
        if entry.name == "POSO(MHA)":
            gate_models.append(net)

    setup = RankingSetup(p.cols, p.pipeline.feature_map, TASKS, {**p.groups, **p.item_groups}, train_defaults, out,
                         metrics=("gauc", "auc"), on_trained=keep_gates,
                         episodes=lambda e, net, seed: episodes(p.cols["train"], net.cfg, seed))
    names = {e.name for e in entries}
    costs = _costs(p.pipeline.feature_map, p.cols["train"], entries, [v for v in VARIANTS if v in names])

    def write(log: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        payload = output.payload(
            "poso", p.name, describe(p.protocol, test_frac, history_len), log, entries, command=command,
            device=train_defaults.get("device", "auto"), started=t0, protocol_name=p.protocol,
            groups=list(p.groups), item_groups=list(p.item_groups), group_rows=group_rows,
            plan={e.name: {"model": e.model, **dict(e.cfg)} for e in entries}, costs=costs, split=p.split.info)
        if gate_models:
            payload["value_gates"] = plot_value_gates(gate_models, out / "fig4_value_gates.png")
        plot_training_curves(log.histories, out / "training_curves.png", metric="valid_gauc")
        return output.write(out, payload, render)

    return run_plan(entries, seeds, lambda e, s, t: fit_ranking(setup, e, s, t), on_seed_end=write).result


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
