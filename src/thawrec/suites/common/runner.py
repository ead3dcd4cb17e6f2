"""The seed loop every suite runs. For each seed: prepare the data (the split / masking seed is the
run seed, so seeds vary the test users as well as the training), fit and score every plan entry,
record its metrics, history and speed, and pair every entry with its reference on the same test
users (:mod:`thawrec.eval.power`). Written once; suites give it ``prepare``, ``fit_one`` and
``compare``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thawrec import progress
from thawrec.suites.common.plan import Entry

__all__ = ["Outcome", "SeedLog", "run_plan"]


@dataclass
class Outcome:
    """What fitting one entry for one seed gave: metric values by ``(task, group, metric)``, its
    training history and speed (samples/s), the fitted object, and ``scores``: whatever the
    suite's ``compare`` pairs with the reference's (test scores per task, per-sample replay values)."""

    values: dict[tuple[str, str, str], float]
    history: list[dict[str, float]] | None = None
    speed: float | None = None
    model: Any = None
    scores: Any = None


@dataclass
class SeedLog:
    """Everything the seeds produced so far: per-seed records (``model, task, group, metric,
    seed, value``), paired comparisons (``model, reference, task, group, metric, seed`` + a
    :class:`~thawrec.eval.power.SeedPair`'s fields), histories by ``"<model> seed <s>"``, speeds
    and wall seconds by model, and per-seed facts of the prepared data (test counts...)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    speed: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    seeds_done: list[int] = field(default_factory=list)
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)
    result: Any = None  # what ``on_seed_end`` returned last (a suite's payload)

    def timing(self) -> dict[str, dict[str, float]]:
        """Mean training samples/s and mean wall seconds (fit + score) per model."""
        return {"samples_per_second": {m: sum(v) / len(v) for m, v in self.speed.items()},
                "seconds": {m: sum(v) / len(v) for m, v in self.seconds.items()}}


Prepare = Callable[[int], Any]
FitOne = Callable[[Any, Entry, int, dict[str, Any]], Outcome]
Compare = Callable[[Any, Entry, Outcome, Outcome, int], list[dict[str, Any]]]


def run_plan(plan: list[Entry], seeds: list[int], fit_one: FitOne, *, prepare: Prepare | None = None,
             compare: Compare | None = None, facts: Callable[[Any], dict[str, Any]] | None = None,
             on_seed_end: Callable[[SeedLog], Any] | None = None) -> SeedLog:
    """For every seed: ``ctx = prepare(seed)``; ``fit_one(ctx, entry, seed, trained)`` for every
    entry (``trained``: this seed's fitted objects by entry name, for entries that build on another);
    ``compare(ctx, entry, outcome, reference_outcome, seed)`` for every entry with a reference;
    ``on_seed_end(log)`` after the seed, so a suite writes results as it goes (its last return value
    is ``SeedLog.result``)."""
    log = SeedLog()
    for seed in seeds:
        t_seed = time.perf_counter()
        ctx = prepare(seed) if prepare is not None else None
        if facts is not None:
            log.facts[seed] = facts(ctx)
        trained: dict[str, Any] = {}
        outcomes: dict[str, Outcome] = {}
        for entry in plan:
            t0 = time.perf_counter()
            out = fit_one(ctx, entry, seed, trained)
            secs = time.perf_counter() - t0
            trained[entry.name], outcomes[entry.name] = out.model, out
            log.records += [{"model": entry.name, "task": t, "group": g, "metric": m, "seed": seed, "value": v}
                            for (t, g, m), v in out.values.items()]
            if out.history is not None:
                log.histories[f"{entry.name} seed {seed}"] = out.history
            if out.speed is not None:
                log.speed.setdefault(entry.name, []).append(out.speed)
            log.seconds.setdefault(entry.name, []).append(secs)
            progress.note("seed %d %s: done in %.1f s", seed, entry.name, secs)
        if compare is not None:
            for entry in plan:  # after the seed: references may come later in the plan (DAUC)
                ref = outcomes.get(entry.baseline) if entry.baseline else None
                if ref is not None:
                    log.pairs += compare(ctx, entry, outcomes[entry.name], ref, seed)
        log.seeds_done.append(seed)
        progress.note("seed %d finished in %.0f s", seed, time.perf_counter() - t_seed)
        if on_seed_end is not None:
            log.result = on_seed_end(log)
    return log
