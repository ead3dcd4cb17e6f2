"""Fitting, scoring and pairing one ranking entry of a plan (base, POSO, MAIL): build it from the
registry, train it with early stopping, score the test rows, compute the metrics per task and
group, and pair it with its reference on the same test users. Floors and ceilings are entries too:
scored, not trained."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeaturePipeline
from thawrec.data.splits import Split
from thawrec.errors import ConfigError
from thawrec.eval.floors import item_popularity_scores
from thawrec.eval.metrics import auc, gauc, logloss
from thawrec.eval.power import auc_pair, clustered_mean_pair, gauc_pair
from thawrec.registry import build_model
from thawrec.suites.common.plan import Entry, slug
from thawrec.suites.common.runner import Outcome
from thawrec.train.fit import score_model, train_model

__all__ = ["Prepared", "RankingSuite", "fit_ranking", "compare_ranking", "FLOORS", "ORACLE_COLUMN"]

ORACLE_COLUMN = "_oracle_p"  # the planted click probability of a test row (scenario worlds only)


@dataclass
class Prepared:
    """A ranking protocol's output for one seed: the dataset's name, the split, the fitted feature
    pipeline, the feature columns per part, the test-row masks of the user groups the tables
    report, and ``extra`` columns some entries score on (e.g. test rows with the true behaviour)."""

    name: str
    split: Split
    pipeline: FeaturePipeline
    cols: dict[str, dict[str, np.ndarray]]
    groups: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self, tasks: list[str]) -> dict[str, dict[str, int]]:
        """Test rows and users per group (and positives of the first task): every table says them."""
        test = self.cols["test"]
        out = {}
        for g, m in self.groups.items():
            out[g] = {"rows": int(m.sum()), "users": int(len(np.unique(test["_user"][m]))),
                      "positives": int(test[tasks[0]][m].sum())}
        return out


def _item_popularity(suite: "RankingSuite", ctx: Prepared, entry: Entry, trained: dict) -> dict[str, np.ndarray]:
    return {t: item_popularity_scores(ctx.cols["train"], ctx.cols["test"], t) for t in suite.tasks}


def _oracle(suite: "RankingSuite", ctx: Prepared, entry: Entry, trained: dict) -> dict[str, np.ndarray]:
    test = ctx.cols["test"]
    if ORACLE_COLUMN not in test:
        raise ConfigError("the oracle needs the planted click model, which only synthetic worlds have. "
                          "Fix: drop the oracle entry on real data")
    return {t: test[ORACLE_COLUMN] for t in suite.tasks}


def _trained_on(column_set: str) -> Callable[..., dict[str, np.ndarray]]:
    """A trained entry (``entry.needs``) scored on other test columns (``ctx.extra[column_set]``):
    MAIL's ceiling, BaseDNN given the new users' true behaviour."""
    def score(suite: "RankingSuite", ctx: Prepared, entry: Entry, trained: dict) -> dict[str, np.ndarray]:
        model = trained.get(entry.needs)
        if model is None or column_set not in ctx.extra:
            raise ConfigError(f"{entry.name} needs the trained {entry.needs} and the '{column_set}' test columns")
        return score_model(model, ctx.extra[column_set], suite.train_defaults.get("eval_batch_size", 8192),
                           suite.train_defaults.get("device", "auto"))
    return score


# Floors and ceilings: scorers with nothing to train, ``(suite, ctx, entry, trained) -> {task: scores}``.
FLOORS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "item_popularity": _item_popularity,
    "oracle": _oracle,
    "true_behaviour": _trained_on("test_true_behaviour"),
}


@dataclass
class RankingSuite:
    """A ranking suite's fixed settings: the tasks, which metrics to record, the training defaults,
    the run folder; ``episodes(entry, model, ctx, seed)`` makes the reader of episodic entries
    (MeLU, Meta-Embedding); ``on_trained(entry, seed, model, ctx)`` sees every fitted model."""

    tasks: list[str]
    train_defaults: dict[str, Any]
    out: Path
    metrics: tuple[str, ...] = ("auc", "gauc")
    episodes: Callable[[Entry, Any, Prepared, int], Any] | None = None
    on_trained: Callable[[Entry, int, Any, Prepared], None] | None = None

    def score_test(self, ctx: Prepared, scores: Mapping[str, np.ndarray]) -> dict[tuple[str, str, str], float]:
        """Metrics of test scores per ``(task, group, metric)``."""
        test = ctx.cols["test"]
        values = {}
        for g, m in ctx.groups.items():
            for t in self.tasks:
                y, p, u = test[t][m], scores[t][m], test["_user"][m]
                values.update({(t, g, k): METRICS[k](y, p, u) for k in self.metrics})
        return values


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "auc": lambda y, p, u: auc(y, p), "gauc": gauc, "logloss": lambda y, p, u: logloss(y, p)}


def fit_ranking(suite: RankingSuite, ctx: Prepared, entry: Entry, seed: int, trained: dict[str, Any]) -> Outcome:
    """Train ``entry`` for ``seed`` (weights initialised right after seeding, so every entry starts
    from the same random state) and score the test rows; a floor is only scored."""
    if entry.floor is not None:
        try:
            scorer = FLOORS[entry.floor]
        except KeyError:
            raise ConfigError(f"unknown floor '{entry.floor}'. Fix: choose one of {sorted(FLOORS)}") from None
        scores = scorer(suite, ctx, entry, trained)
        return Outcome(suite.score_test(ctx, scores), scores=scores)
    tcfg = TrainConfig.from_dict({**suite.train_defaults, "seed": seed})
    torch.manual_seed(seed)
    deps = {}
    if entry.needs:
        if trained.get(entry.needs) is None:
            raise ConfigError(f"{entry.name} builds on the trained {entry.needs} of the same seed. "
                              f"Fix: keep {entry.needs} in the plan, before {entry.name}")
        deps["base"] = copy.deepcopy(trained[entry.needs])
    net = build_model(entry.model, ctx.pipeline.feature_map, dict(entry.cfg), **deps)
    if entry.reader == "episodes" and suite.episodes is None:
        raise ConfigError(f"{entry.name} trains on episodes, but this suite has no episode reader")
    reader = suite.episodes(entry, net, ctx, seed) if entry.reader == "episodes" else None
    fit = train_model(net, ctx.cols["train"], ctx.cols["valid"], tcfg, suite.out / f"seed{seed}" / slug(entry.name),
                      tasks=suite.tasks, reader=reader, label=entry.name).fit
    if suite.on_trained is not None:
        suite.on_trained(entry, seed, net, ctx)
    scores = score_model(net, ctx.cols["test"], tcfg.eval_batch_size, tcfg.device)
    return Outcome(suite.score_test(ctx, scores), fit.history, fit.samples_per_second, net, scores)


def compare_ranking(suite: RankingSuite, ctx: Prepared, entry: Entry, out: Outcome, ref: Outcome,
                    seed: int) -> list[dict[str, Any]]:
    """``entry`` against its reference on the same test users, per task, group and metric: GAUC by
    per-user AUC differences, AUC by a user bootstrap, LogLoss by per-row differences clustered by
    user (:mod:`thawrec.eval.power`)."""
    test = ctx.cols["test"]
    rows = []
    for g, m in ctx.groups.items():
        users = test["_user"][m]
        for t in suite.tasks:
            y, a, b = test[t][m], out.scores[t][m], ref.scores[t][m]
            for metric in suite.metrics:
                if metric == "gauc":
                    p = gauc_pair(y, a, b, users)
                elif metric == "auc":
                    p = auc_pair(y, a, b, users, seed=seed)
                elif metric == "logloss":
                    p = clustered_mean_pair(_row_logloss(y, a) - _row_logloss(y, b), users)
                else:
                    continue
                rows.append({"model": entry.name, "reference": entry.baseline, "task": t, "group": g,
                             "metric": metric, "seed": seed, **p.to_dict()})
    return rows


def _row_logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Per-row terms whose mean is :func:`thawrec.eval.metrics.logloss`."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))

