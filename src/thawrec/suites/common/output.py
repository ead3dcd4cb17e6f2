"""Turning a suite's records into results.json rows, and writing results.json + report.md."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from thawrec.eval import report
from thawrec.eval.power import SeedPair, combine
from thawrec.eval.stats import AUC_LIKE, results_rows
from thawrec.suites.common.plan import Entry
from thawrec.suites.common.runner import SeedLog

__all__ = ["rows_by_reference", "command_line", "provenance", "payload", "write"]


def rows_by_reference(records: list[dict[str, Any]], plan: list[Entry], auc_like: Iterable[str] = AUC_LIKE,
                      pairs: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """results.json rows: every entry against its own reference. With ``pairs`` (per-seed paired
    differences on the same test users), each row also carries the combined test of
    :func:`thawrec.eval.power.combine` (``delta``, ``se``, ``ci_low``/``ci_high``, ``mde``,
    ``n_users``, ``variance``: users or seeds) and its ``p_value`` replaces the t test over seed
    means; without, the paired t test over seeds stays."""
    refs = list(dict.fromkeys(e.reference for e in plan))
    rows: list[dict[str, Any]] = []
    for ref in refs:
        mine = {e.name for e in plan if e.reference == ref}
        # A reference that is itself compared with another entry (UIE's TIE against UIE) lends its
        # records for the comparison; its own row is the one against its own reference.
        lent = {ref} - mine
        got = results_rows([r for r in records if r["model"] in mine | lent], baseline=ref, auc_like=auc_like)
        rows += [r for r in got if r["model"] not in lent]
    by: dict[tuple, list[SeedPair]] = {}
    for p in pairs:
        by.setdefault((p["model"], p["reference"], p["task"], p["group"], p["metric"]), []).append(
            SeedPair(p["diff"], p["var"], p["n_users"], p["n_rows"]))
    for r in rows:
        r.update({k: None for k in COMPARISON_KEYS})
        found = by.get((r["model"], r["baseline"], r["task"], r["group"], r["metric"]))
        if found:
            c = combine(found).to_dict()
            r.update({k: c[k] for k in ("delta", "se", "ci_low", "ci_high", "mde", "n_users")},
                     p_value=c["p_value"], variance=c["source"], df=c["df"] if c["df"] != float("inf") else None)
    return rows


COMPARISON_KEYS = ("delta", "se", "ci_low", "ci_high", "mde", "n_users", "variance", "df")


def command_line(command: str | None = None) -> str:
    """The command to print in a report: the CLI's, or this process's argv."""
    return command or " ".join(shlex.quote(a) for a in sys.argv)


def provenance(command: str | None, device: str, started: float) -> dict[str, Any]:
    """The keys every results.json ends with: environment, the exact command, wall seconds since
    ``started`` (a ``time.perf_counter()`` value)."""
    return {"env": report.environment(device), "command": command_line(command),
            "wall_seconds": time.perf_counter() - started}


def payload(suite: str, dataset: str, protocol: str, log: SeedLog, entries: list[Entry], *, command: str | None,
            device: str, started: float, auc_like: Iterable[str] = AUC_LIKE, **extra: Any) -> dict[str, Any]:
    """results.json of a suite run so far (DESIGN.md's layout): the rows paired with each entry's
    reference, timing per model, the suite's own ``extra`` keys, and the provenance."""
    return {"suite": suite, "dataset": dataset, "protocol": protocol, "seeds": list(log.seeds_done),
            "rows": rows_by_reference(log.records, entries, auc_like, log.pairs), "timing": log.timing(),
            "test_counts": {str(s): f.get("test_counts") for s, f in log.facts.items()}, **extra,
            **provenance(command, device, started)}


def write(out: Path, payload: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """results.json (atomically) and report.md."""
    report.write_results(out / "results.json", payload)
    (out / "report.md").write_text(render(payload))
    return payload
