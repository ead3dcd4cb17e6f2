"""report.md and figures of `thawrec bench poso`: Table 5 or Table 2 (GAUC by user group, Δ pp
against the base), POSO against each baseline, Tables 6, 7 and 3, Table 1 (costs), throughput and
Fig. 4 (value gates against the view count)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawrec.eval import report
from thawrec.eval.plots import pyplot, save
from thawrec.eval.stats import paired_ttest
from thawrec.models.poso import PosoRanker
from thawrec.suites.poso.plan import ALL, BASE, BASELINES, MHA_SETTINGS, PC_ABLATION, VARIANTS
from thawrec.suites.poso.protocol import TASKS


@torch.no_grad()
def value_gate_outputs(model: PosoRanker) -> torch.Tensor:
    """``[n_avc_buckets, N]``: the POSO(MHA) value gates g(pc) for every AVC bucket (Fig. 4)."""
    model.eval()
    buckets = torch.arange(1, model.pc_embedding.num_embeddings)  # 0 is padding
    att = next(iter(model.attn.values()))
    return att.value_gates(model.pc_embedding(buckets))


def plot_value_gates(models: list[PosoRanker], path: Path) -> dict[str, Any]:
    """Each value gate against the AVC bucket, one panel per seed, as POSO's Fig. 4.

    Seeds are not averaged: which gate specialises in new users is arbitrary per run (the N value
    sets are interchangeable), so a mean over seeds would blur exactly what the figure shows.
    """
    plt = pyplot()
    gates = [value_gate_outputs(m).numpy() for m in models]  # each [buckets, N]
    fig, axes = plt.subplots(1, len(gates), figsize=(4.2 * len(gates), 3.6), squeeze=False, sharey=True)
    for k, (ax, g) in enumerate(zip(axes[0], gates)):
        x = np.arange(1, g.shape[0] + 1)
        for i in range(g.shape[1]):
            ax.plot(x, g[:, i], marker="o", ms=3, label=f"gate #{i + 1}")
        ax.set(xlabel="AVC bucket (1 = no views yet)", title=f"seed {k}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("value gate g(pc)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("POSO(MHA) value-gate outputs against accumulated view count")
    save(fig, path)
    return {"per_seed": [g.tolist() for g in gates]}


def _versus_baselines(idx: dict, group: str) -> str:
    """Each POSO variant against each Table 2 baseline on one user group: Δ pp (paired p over seeds)."""
    posos = [v for v in VARIANTS if v != BASE and (v, TASKS[0], group) in idx]
    bases = [b for b in BASELINES if (b, TASKS[0], group) in idx]
    body = []
    for v in posos:
        cells = [v]
        for b in bases:
            for t in TASKS:
                r, o = idx[(v, t, group)], idx[(b, t, group)]
                cells.append(f"{(r['mean'] - o['mean']) * 100:+.3f} ({report.fmt_p(paired_ttest(r['values'], o['values']))})")
        body.append(cells)
    return report.markdown_table(["POSO variant"] + [f"vs {b} {t}" for b in bases for t in TASKS], body)


GAUC = [(t, "gauc") for t in TASKS]


def render(payload: dict[str, Any]) -> str:
    rows = [r for r in payload["rows"] if r["metric"] == "gauc"]
    idx = {(r["model"], r["task"], r["group"]): r for r in rows}
    groups = [g for g in payload.get("groups", []) if g not in payload.get("item_groups", [])]
    models = list(dict.fromkeys(r["model"] for r in rows))
    movielens = payload.get("protocol_name", "movielens") == "movielens"
    lines = [f"# thawrec bench poso — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}.", "", report.counts_line(payload.get("test_counts", {}), groups), ""]
    lines += report.skipped_lines(payload.get("skipped"))
    title = ("Table 5 style: GAUC of test users, all unseen in training, by account age" if movielens else
             "Table 2 style: GAUC by user group")
    lines += [f"## {title}", "",
              "Mean ± std over seeds; Δ = paired difference from the base model in percentage points with its "
              "95% CI, p and the minimum detectable effect (alpha 0.05, power 0.8), pairing test users within "
              "each seed and combining seeds (thawrec.eval.power). Floor: item popularity; ceiling: the planted "
              "click model (synthetic worlds).", ""]
    main = [m for m in models if not m.startswith(("PC: ", "MHA: ", "item-age PC: "))]
    for g in groups:
        lines += [f"### {g}", "", report.gains_table(payload["rows"], g, GAUC, main), ""]
    focus = [g for g in groups if g not in ("regular", "established")][:1] or groups[:1]
    who = focus[0] if focus[0].endswith(("users", "rows")) else f"{focus[0]} rows"
    if any(m in BASELINES for m in models):
        lines += ["", f"### POSO against each baseline, {who}: Δ pp (paired t-test p over seeds)", "",
                  _versus_baselines(idx, focus[0])]
    if any(m.startswith("PC: ") for m in models):
        pcs = [ALL if pc == "avc" else f"PC: {label}" for label, pc in PC_ABLATION.items()]
        lines += ["", f"## Table 6 style: personalization code of POSO (All Combined), {who}", "",
                  report.gains_table(payload["rows"], focus[0], GAUC, [BASE] + pcs)]
    if any(m.startswith("MHA: ") for m in models):
        mha = ["POSO(MHA)" if m == "gated_k" else f"MHA: {label}" for label, m in MHA_SETTINGS.items()]
        lines += ["", f"## Table 7 style: POSO (MHA) settings, {who}", "",
                  report.gains_table(payload["rows"], focus[0], GAUC, [BASE] + mha)]
    for g in payload.get("item_groups", []):
        items = [BASE] + [m for m in models if m.startswith("item-age PC: ")]
        lines += ["", f"## Table 3 style: item cold start (item age as the personalization code), {g}", "",
                  report.gains_table(payload["rows"], g, GAUC, items)]
    lines += ["", "## Convergence (equal step budgets; selection on validation LogLoss)", "",
              report.convergence_table(payload.get("histories", {}), "logloss"), "",
              "![learning curves](training_curves.png)"]
    lines += ["", "## Table 1 style: parameters and FLOPs per sample (embedding tables excluded)", ""]
    lines.append(report.markdown_table(
        ["model", "module", "#params", "#FLOPs/sample"],
        [[c["model"], c["module"], f"{c['params']:,}", f"{c['flops_per_sample']:,.0f}"] for c in payload["costs"]]))
    sps = payload["timing"]["samples_per_second"]
    if BASE in sps:
        lines += ["", "## Training throughput (same run; episodic baselines count support + query rows)", "",
                  report.markdown_table(["model", "samples/s", "vs base"],
                                        [[v, f"{s:,.0f}", f"{s / sps[BASE]:.2f}x"] for v, s in sps.items()])]
    if "value_gates" in payload:
        lines += ["", "## Fig. 4 style: POSO(MHA) value-gate outputs against AVC buckets", "",
                  "![value gates](fig4_value_gates.png)"]
    lines += ["", *report.provenance(payload)]
    return "\n".join(lines)
