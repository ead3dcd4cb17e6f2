"""report.md of `thawrec bench base`."""

from __future__ import annotations

import json
from typing import Any

from thawrec.eval import report

GROUPS = ["all", "new", "regular"]


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    return "\n".join([
        f"# thawrec bench base — {payload['dataset']}",
        "",
        f"Protocol: {payload['protocol']}. Seeds: {payload['seeds']}. "
        "Mean ± std over seeds. In brackets the improvement over the baseline (ItemPop): RelaImpr "
        "= (AUC - 0.5) / (AUC_base - 0.5) - 1 for AUC and GAUC, the plain relative change for LogLoss. "
        "p: paired over test users within each seed, seeds combined (thawrec.eval.power).",
        "",
        report.counts_line(payload.get("test_counts", {}), GROUPS),
        "",
        report.results_table(rows, ["auc", "gauc"], GROUPS),
        "",
        "LogLoss (lower is better):",
        "",
        report.results_table(rows, ["logloss"], GROUPS),
        "",
        f"Split: `{json.dumps(payload['split'], default=str)}`",
        "",
        f"BaseDNN: {payload['timing']['samples_per_second'].get('BaseDNN', 0):,.0f} training samples/s, "
        f"{payload['timing']['seconds'].get('BaseDNN', 0):.1f} s per seed. Wall time {payload['wall_seconds']:.1f} s.",
        "",
        "![training curves](training_curves.png)",
        "",
        *report.provenance(payload),
    ])
