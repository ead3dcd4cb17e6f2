"""results.json, Markdown tables and PNG plots: the benchmark report every suite writes.

Style of reczoo/BARS: pinned versions and hardware, the exact command, mean +- std over seeds,
paired t-test against the baseline, relative improvement.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from thawrec.data.schema import atomic_write_text


def environment(device: str = "cpu") -> dict[str, Any]:
    import numpy
    import polars
    import torch

    import thawrec

    return {
        "thawrec": thawrec.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "polars": polars.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=1, default=_jsonable))
    return path


def _jsonable(x: Any) -> Any:
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None or mean != mean:
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def provenance(payload: dict[str, Any]) -> list[str]:
    """The report's last lines: the exact command and the environment it ran in."""
    return [f"Command: `{payload['command']}`", "",
            "Environment: " + ", ".join(f"{k} {v}" for k, v in payload["env"].items()), ""]


def fmt_p(p: float | None) -> str:
    if p is None or p != p:
        return "–"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def markdown_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(rows: list[dict[str, Any]], metrics: list[str], groups: list[str], task: str | None = None) -> str:
    """One line per model; columns group x metric as mean ± std, with p-value vs the baseline."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    header = ["model"] + [f"{g} {m.upper()}" for g in groups for m in metrics] + ["p (vs baseline)"]
    index = {(r["model"], r["group"], r["metric"], r.get("task")): r for r in rows}
    body = []
    for m in models:
        cells, ps = [m], []
        for g in groups:
            for met in metrics:
                r = index.get((m, g, met, task)) or next(
                    (x for k, x in index.items() if k[:3] == (m, g, met)), None)
                if r is None:
                    cells.append("n/a")
                    continue
                cell = fmt_mean_std(r["mean"], r["std"])
                if r.get("rel_improvement") is not None and r["rel_improvement"] == r["rel_improvement"]:
                    cell += f" ({r['rel_improvement']:+.2%})"
                cells.append(cell)
                if r.get("p_value") is not None:
                    ps.append(f"{g} {met}: {fmt_p(r['p_value'])}")
        cells.append("; ".join(ps) if ps else "(baseline)")
        body.append(cells)
    return markdown_table(header, body)


def fmt_delta(r: dict[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """``+0.41 [+0.12, +0.70]``: the paired difference from the row's reference with its 95% CI,
    in ``scale`` units (percentage points by default)."""
    if r.get("delta") is None:
        return "–"
    lo, hi = r.get("ci_low"), r.get("ci_high")
    ci = f" [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{r['delta'] * scale:+.{digits}f}{ci}"


def gains_table(rows: list[dict[str, Any]], group: str, columns: list[tuple[str, str]], models: list[str],
                scale: float = 100.0, unit: str = "pp", ri: bool = False) -> str:
    """One group's table: for each ``(task, metric)`` column, each model's value (mean ± std over
    seeds; with ``ri`` its relative improvement over its reference) and its paired difference from
    its reference with the 95% CI, the p-value and the minimum detectable effect (alpha 0.05,
    power 0.8), in ``unit``. Models missing from ``rows`` are left out."""
    idx = {(r["model"], r["task"], r["group"], r["metric"]): r for r in rows}
    tasks = {t for t, _ in columns}
    head = ["model"]
    for t, metric in columns:
        name = metric.upper() if len(tasks) == 1 else f"{t} {metric.upper()}"
        head += [name, f"Δ {unit} [95% CI]", "p", f"MDE {unit}"]
    body = []
    for m in models:
        if not any((m, t, group, metric) in idx for t, metric in columns):
            continue
        cells = [m]
        for t, metric in columns:
            r = idx.get((m, t, group, metric))
            if r is None:
                cells += ["–"] * 4
                continue
            ref = r.get("baseline")
            value = fmt_mean_std(r["mean"], r["std"])
            if ri and ref and r.get("rel_improvement") is not None:
                value += f" ({r['rel_improvement']:+.2%})"
            cells += [value, fmt_delta(r, scale) if ref else "(reference)",
                      fmt_p(r.get("p_value")) if ref else "",
                      f"{r['mde'] * scale:.2f}" if ref and r.get("mde") is not None else ""]
        body.append(cells)
    return markdown_table(head, body)


def skipped_lines(skipped: dict[str, str] | None) -> list[str]:
    """The entries a run left out because the data cannot support them, with why (or nothing)."""
    if not skipped:
        return []
    return ["Skipped (the data cannot support them): " + "; ".join(f"{m}: {why}" for m, why in skipped.items())
            + ".", ""]


def counts_line(counts: dict[str, dict[str, dict[str, int]]], groups: list[str]) -> str:
    """Test users / rows / positives per group, averaged over seeds (every table states its n)."""
    per = [c for c in counts.values() if c]
    if not per:
        return ""
    parts = []
    for g in groups:
        vals = [c[g] for c in per if g in c]
        if vals:
            avg = {k: sum(v[k] for v in vals) / len(vals) for k in vals[0]}
            parts.append(f"{g}: {avg.get('users', 0):,.0f} users, {avg.get('rows', 0):,.0f} rows"
                         + (f", {avg['positives']:,.0f} positives" if "positives" in avg else ""))
    return "Test counts per seed (mean over seeds): " + "; ".join(parts) + "."


def convergence_table(histories: dict[str, list[dict[str, float]]], monitor: str, mode: str = "min") -> str:
    """Per model (over seeds): epochs and optimizer steps run, the selected (best-validation) epoch,
    and whether training stopped on a plateau (the best epoch is not the last) or ran out of budget
    (the best is the last: it might still improve). ``histories`` keys are ``"<model> seed <s>"``."""
    by: dict[str, list[list[dict[str, float]]]] = {}
    for key, hist in histories.items():
        by.setdefault(key.rsplit(" seed ", 1)[0], []).append(hist)
    body = []
    for model, runs in by.items():
        runs = [h for h in runs if h]
        if not runs:
            continue
        col = f"valid_{monitor}"
        best = [int(min(range(len(h)), key=lambda i: (h[i].get(col, float("nan")) * (1 if mode == "min" else -1))))
                for h in runs]
        plateau = sum(b < len(h) - 1 for b, h in zip(best, runs))
        body.append([model, f"{sum(len(h) for h in runs) / len(runs):.1f}",
                     f"{sum(h[-1].get('step', 0) for h in runs) / len(runs):,.0f}",
                     f"{sum(b + 1 for b in best) / len(best):.1f}", f"{plateau}/{len(runs)}"])
    return markdown_table(["model", "epochs run", "steps", "selected epoch", "stopped on a plateau"], body)
