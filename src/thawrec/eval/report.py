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
