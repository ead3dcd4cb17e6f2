"""Fitting and scoring one ranking entry of a plan (base, POSO, MAIL): build it from the registry,
train it with early stopping, score the test rows, and compute the metrics per task and group."""

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
from thawrec.eval.metrics import binary_metrics
from thawrec.registry import build_model
from thawrec.suites.common.plan import Entry, slug
from thawrec.suites.common.runner import Outcome
from thawrec.train.fit import score_model, train_model

__all__ = ["Prepared", "RankingSetup", "fit_ranking", "FLOORS"]

# Floors: scorers with nothing to train, ``(setup) -> {task: scores of the test rows}``.
FLOORS: dict[str, Callable[["RankingSetup"], dict[str, np.ndarray]]] = {
    "item_popularity": lambda s: {t: item_popularity_scores(s.cols["train"], s.cols["test"], t) for t in s.tasks},
}


@dataclass
class Prepared:
    """A ranking protocol's output: the dataset's name, the split, the fitted feature pipeline, the
    feature columns per part and the test-row masks of the user groups the tables report."""

    name: str
    split: Split
    pipeline: FeaturePipeline
    cols: dict[str, dict[str, np.ndarray]]
    groups: dict[str, np.ndarray]


@dataclass
class RankingSetup:
    """One suite run's fixed inputs: feature columns per part, the feature map, the tasks, the
    test-row masks per group, which metrics to record, the training defaults and the run folder.
    ``episodes(entry, model, seed)`` makes the reader of episodic entries (MeLU, Meta-Embedding)."""

    cols: dict[str, dict[str, np.ndarray]]
    feature_map: Any
    tasks: list[str]
    groups: Mapping[str, np.ndarray]
    train_defaults: dict[str, Any]
    out: Path
    metrics: tuple[str, ...] = ("auc", "gauc")
    episodes: Callable[[Entry, Any, int], Any] | None = None
    on_trained: Callable[[Entry, int, Any], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def score_test(self, scores: dict[str, np.ndarray]) -> dict[tuple[str, str, str], float]:
        """Metrics of test scores per ``(task, group, metric)``."""
        test = self.cols["test"]
        values = {}
        for g, m in self.groups.items():
            for t in self.tasks:
                vals = binary_metrics(test[t][m], scores[t][m], test["_user"][m])
                values.update({(t, g, k): vals[k] for k in self.metrics})
        return values


def fit_ranking(setup: RankingSetup, entry: Entry, seed: int, trained: dict[str, Any]) -> Outcome:
    """Train ``entry`` for ``seed`` (weights initialised right after seeding, so every entry starts
    from the same random state) and score the test rows."""
    if entry.floor is not None:
        try:
            scores = FLOORS[entry.floor](setup)
        except KeyError:
            raise ConfigError(f"unknown floor '{entry.floor}'. Fix: choose one of {sorted(FLOORS)}") from None
        return Outcome(setup.score_test(scores))
    tcfg = TrainConfig.from_dict({**setup.train_defaults, "seed": seed})
    torch.manual_seed(seed)
    deps = {}
    if entry.needs:
        if trained.get(entry.needs) is None:
            raise ConfigError(f"{entry.name} builds on the trained {entry.needs} of the same seed. "
                              f"Fix: keep {entry.needs} in the plan, before {entry.name}")
        deps["base"] = copy.deepcopy(trained[entry.needs])
    net = build_model(entry.model, setup.feature_map, dict(entry.cfg), **deps)
    reader = setup.episodes(entry, net, seed) if entry.reader == "episodes" else None
    if entry.reader == "episodes" and setup.episodes is None:
        raise ConfigError(f"{entry.name} trains on episodes, but this suite has no episode reader")
    fit = train_model(net, setup.cols["train"], setup.cols["valid"], tcfg, setup.out / f"seed{seed}" / slug(entry.name),
                      tasks=setup.tasks, reader=reader, label=entry.name).fit
    if setup.on_trained is not None:
        setup.on_trained(entry, seed, net)
    scores = score_model(net, setup.cols["test"], tcfg.eval_batch_size, tcfg.device)
    return Outcome(setup.score_test(scores), fit.history, fit.samples_per_second, net)
