"""`thawrec bench base`: the spine's honest ranker, BaseDNN, against an ItemPop baseline.

Protocol "new vs regular users": users whose first event lies in the last ``window`` of the time
range are new. Train = every event before the time cut; validation and test = events after it,
split by time. New users therefore have no training rows: their user ID maps to "unknown" and
the model must rank for them from attributes, context and the behaviour they build up after the
cut. Metrics: AUC, GAUC (per-user AUC weighted by rows) and LogLoss for all, new and regular
users; mean ± std over seeds; paired t-test of BaseDNN against ItemPop.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.splits import time_window_new_users
from thawrec.eval import report
from thawrec.eval.stats import results_rows
from thawrec.models.rankers.base_dnn import BaseDNN
from thawrec.suites.common import (binary_metrics, group_masks, item_popularity_scores, load_world,
                                   score_model, train_model)
from thawrec.train.trainer import TrainConfig

log = logging.getLogger(__name__)

METRICS = ["auc", "gauc", "logloss"]
GROUPS = ["all", "new", "regular"]


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
    ds, name = load_world(data, synth)
    split = time_window_new_users(ds.interactions, window=window)
    pipe = FeaturePipeline(FeatureConfig(
        sequences={"hist_items": ["item_id", history_len], "hist_tags": ["tags", history_len]},
        labels=["label"],
    )).fit(ds, split.train)
    pipe.save(out / "features")
    cols = {part: pipe.transform(ds, getattr(split, part)) for part in ("train", "valid", "test")}
    log.info("features ready: %s", {k: len(v["label"]) for k, v in cols.items()})

    records: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, float]]] = {}
    timing = {"train_seconds": 0.0, "samples_per_second": []}
    tcfg_base = {"epochs": 5, "batch_size": 1024, "patience": 2, **(train or {})}
    masks = group_masks(cols["test"])
    test = cols["test"]
    pop = item_popularity_scores(cols["train"], test)
    for seed in seeds:
        tcfg = TrainConfig.from_dict({**tcfg_base, "seed": seed})
        net = BaseDNN(pipe.feature_map, model)
        trained = train_model(net, cols["train"], cols["valid"], tcfg, out / f"seed{seed}" / "base_dnn")
        histories[f"BaseDNN seed {seed}"] = trained.fit.history
        timing["train_seconds"] += trained.fit.train_seconds
        timing["samples_per_second"].append(trained.fit.samples_per_second)
        preds = {"BaseDNN": score_model(net, test, tcfg.eval_batch_size, tcfg.device)["label"], "ItemPop": pop}
        for model_name, p in preds.items():
            for g, m in masks.items():
                vals = binary_metrics(test["label"][m], p[m], test["_user"][m])
                records += [{"model": model_name, "task": "label", "group": g, "metric": k, "seed": seed,
                             "value": v} for k, v in vals.items()]

    rows = results_rows(records, baseline="ItemPop")
    timing["samples_per_second"] = float(np.mean(timing["samples_per_second"])) if seeds else 0.0
    payload = {
        "suite": "base",
        "dataset": name,
        "protocol": f"new-vs-regular users: time cut at {1 - window:.0%} of the time range; new = first event after it",
        "seeds": list(seeds),
        "rows": rows,
        "timing": timing,
        "split": split.info,
        "env": report.environment(tcfg_base.get("device", "auto")),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "wall_seconds": time.perf_counter() - t_start,
    }
    report.write_results(out / "results.json", payload)
    report.plot_training_curves(histories, out / "training_curves.png")
    (out / "report.md").write_text(render(payload))
    return payload


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    parts = [
        f"# thawrec bench base — {payload['dataset']}",
        "",
        f"Protocol: {payload['protocol']}. Seeds: {payload['seeds']}. "
        "Mean ± std over seeds. In brackets the improvement over the baseline (ItemPop): RelaImpr "
        "= (AUC - 0.5) / (AUC_base - 0.5) - 1 for AUC and GAUC, the plain relative change for LogLoss. "
        "p: two-sided paired t-test over seeds.",
        "",
        report.results_table(rows, ["auc", "gauc"], GROUPS),
        "",
        "LogLoss (lower is better):",
        "",
        report.results_table(rows, ["logloss"], GROUPS),
        "",
        f"Split: `{json.dumps(payload['split'], default=str)}`",
        "",
        f"Training: {payload['timing']['train_seconds']:.1f} s in all, "
        f"{payload['timing']['samples_per_second']:.0f} samples/s. Wall time {payload['wall_seconds']:.1f} s.",
        "",
        "![training curves](training_curves.png)",
        "",
        f"Command: `{payload['command']}`",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in payload["env"].items()),
        "",
    ]
    return "\n".join(parts)
