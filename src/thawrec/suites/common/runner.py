"""The seed loop every suite runs: for each seed, for each plan entry, fit and score it, and
record its metrics, training history and speed. Written once; suites give it a ``fit_one``."""

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
    """What fitting one entry for one seed gave: metric values by ``(task, group, metric)``,
    its training history, its training speed (samples/s), and the fitted object."""

    values: dict[tuple[str, str, str], float]
    history: list[dict[str, float]] | None = None
    speed: float | None = None
    model: Any = None


@dataclass
class SeedLog:
    """Everything the seeds produced so far: per-seed records (``model, task, group, metric,
    seed, value``), histories by ``"<model> seed <s>"``, speeds and wall seconds by model."""

    records: list[dict[str, Any]] = field(default_factory=list)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    speed: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    seeds_done: list[int] = field(default_factory=list)
    result: Any = None  # what ``on_seed_end`` returned last (a suite's payload)

    def timing(self) -> dict[str, dict[str, float]]:
        """Mean training samples/s and mean wall seconds (fit + score) per model."""
        return {"samples_per_second": {m: sum(v) / len(v) for m, v in self.speed.items()},
                "seconds": {m: sum(v) / len(v) for m, v in self.seconds.items()}}


FitOne = Callable[[Entry, int, dict[str, Any]], Outcome]


def run_plan(plan: list[Entry], seeds: list[int], fit_one: FitOne, *,
             on_seed_end: Callable[[SeedLog], Any] | None = None) -> SeedLog:
    """Run ``fit_one(entry, seed, trained)`` for every seed and entry (``trained``: this seed's
    fitted objects by entry name, for entries that build on another). ``on_seed_end`` runs after
    each seed, so a suite writes its results as it goes and a stopped run keeps finished seeds;
    its last return value is ``SeedLog.result``."""
    log = SeedLog()
    for seed in seeds:
        trained: dict[str, Any] = {}
        for entry in plan:
            t0 = time.perf_counter()
            out = fit_one(entry, seed, trained)
            secs = time.perf_counter() - t0
            trained[entry.name] = out.model
            log.records += [{"model": entry.name, "task": t, "group": g, "metric": m, "seed": seed, "value": v}
                            for (t, g, m), v in out.values.items()]
            if out.history is not None:
                log.histories[f"{entry.name} seed {seed}"] = out.history
            if out.speed is not None:
                log.speed.setdefault(entry.name, []).append(out.speed)
            log.seconds.setdefault(entry.name, []).append(secs)
            progress.note("seed %d %s: done in %.1f s", seed, entry.name, secs)
        log.seeds_done.append(seed)
        if on_seed_end is not None:
            log.result = on_seed_end(log)
    return log
