"""`thawrec bench base`: the spine's honest ranker, BaseDNN, against the ItemPop floor on new vs
regular users (protocol in :mod:`.protocol`). Metrics: AUC, GAUC (per-user AUC weighted by rows)
and LogLoss for all, new and regular users; mean ± std over seeds; paired t-test of BaseDNN
against ItemPop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from thawrec.eval.plots import plot_training_curves
from thawrec.suites.base.plan import plan as make_plan
from thawrec.suites.base.protocol import prepare
from thawrec.suites.base.report import render
from thawrec.suites.common import output
from thawrec.suites.common.ranking import RankingSuite, compare_ranking, fit_ranking
from thawrec.suites.common.runner import SeedLog, run_plan

METRICS = ("auc", "gauc", "logloss")


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    window: float = 0.2,
    history_len: int = 30,
    synth: dict[str, Any] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    p = prepare(data, synth, window, history_len, out)  # the time split does not depend on the seed
    entries = make_plan(model)
    train_defaults = {"epochs": 5, "batch_size": 1024, "patience": 2, **(train or {})}
    suite = RankingSuite(["label"], train_defaults, out, metrics=METRICS)
    protocol = f"new-vs-regular users: time cut at {1 - window:.0%} of the time range; new = first event after it"

    def write(log: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        plot_training_curves(log.histories, out / "training_curves.png")
        return output.write(out, output.payload("base", p.name, protocol, log, entries, split=p.split.info,
                                                command=command, device=train_defaults.get("device", "auto"),
                                                started=t_start), render)

    return run_plan(entries, seeds, lambda ctx, e, s, t: fit_ranking(suite, ctx, e, s, t), prepare=lambda s: p,
                    compare=lambda ctx, e, o, r, s: compare_ranking(suite, ctx, e, o, r, s),
                    facts=lambda ctx: {"test_counts": ctx.counts(["label"])}, on_seed_end=write).result
