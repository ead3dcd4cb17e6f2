"""report.md and figures of `thawrec bench uie`: who is low-active (Table 2 style), Table 3 (AUC of
low- and high-active users), Table 5 (tail items), the Table 4 stand-in (diversity of each user's
top-K), Fig. 3 (PLE with UPE against the number of centroids N), convergence and throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thawrec.eval import report
from thawrec.eval.plots import pyplot, save
from thawrec.suites.uie.plan import FIG3_N, FLOOR, ORACLE, PLE, TABLE3, TABLE5, TIE, UIE, fig3_name

TASK = "label"
USER_GROUPS = ("low-active", "high-active")


def plot_fig3(rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Fig. 3: test AUC of PLE with UPE on low- and high-active users against N (mean ± std over
    seeds), PLE's AUC as dashed lines."""
    idx = {(r["model"], r["group"]): r for r in rows if r["task"] == TASK and r["metric"] == "auc"}
    ns = [n for n in FIG3_N if (fig3_name(n), USER_GROUPS[0]) in idx]
    out: dict[str, Any] = {"N": ns}
    if not ns:
        return out
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, g in zip(axes, USER_GROUPS):
        mean = [idx[(fig3_name(n), g)]["mean"] for n in ns]
        std = [idx[(fig3_name(n), g)]["std"] or 0.0 for n in ns]
        ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label="PLE with UPE")
        if (PLE, g) in idx:
            ax.axhline(idx[(PLE, g)]["mean"], ls="--", color="grey", label="PLE")
        ax.set_xscale("log", base=2)
        ax.set(title=f"{g} users", xlabel="N (user-memory centroids)", ylabel="test AUC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out[g] = {"mean": mean, "std": std, "ple": idx[(PLE, g)]["mean"] if (PLE, g) in idx else None}
    fig.suptitle("Fig. 3 style: PLE with UPE against the number of centroids")
    save(fig, path)
    return out


def _who(payload: dict[str, Any]) -> list[str]:
    """Table 2 style: the low-active definition on the training period (the same every seed)."""
    split = next(iter(payload.get("split", {}).values()), None)
    if not split:
        return []

    def ratio(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    rows = [["low-active share of users", f"{split['low_active_share']:.1%} ({split['low_active_users']:,} of "
                                          f"{split['users']:,})"],
            ["profile features, low-active / high-active (mean)", ratio(split["profile_low_vs_high"])],
            ["consumptions, low-active / high-active (mean)", ratio(split["consumptions_low_vs_high"])],
            ["tail items: fewer training exposures than", f"{split['tail_threshold_exposures']:,} "
                                                          f"({split['tail_items']:,} of {split['items']:,} items, "
                                                          f"{split['tail_share_of_training_exposures']:.1%} of "
                                                          f"exposures)"]]
    if "planted_low_active_recall" in split:
        rows.append(["planted low-active users found (recall / precision)",
                     f"{split['planted_low_active_recall']:.1%} / {split['planted_low_active_precision']:.1%}"])
    return ["## Table 2 style: who is low-active (training period only)", "",
            report.markdown_table(["", "value"], rows), "",
            "Paper (Table 2): profile features 0.54, consumptions 0.41 of the high-active users'.", ""]


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    refs = [m for m in (FLOOR, ORACLE) if m in models]
    cols = [(TASK, "auc"), (TASK, "gauc")]
    counts = report.counts_line(payload.get("test_counts", {}), payload["groups"])
    lines = [f"# thawrec bench uie — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}.", "", counts, ""]
    lines += report.skipped_lines(payload.get("skipped"))
    lines += _who(payload)
    lines += ["## Table 3 style: AUC of valid consumption, low-active and high-active users", "",
              "Mean ± std over seeds; Δ = paired difference from PLE in percentage points (AUC x 100, the paper's "
              "\"+0.37%\") with its 95% CI, p and the minimum detectable effect (alpha 0.05, power 0.8), pairing test "
              "users within each seed (a user bootstrap for AUC, per-user AUC differences for GAUC) and combining "
              "seeds (thawrec.eval.power). Floor: item popularity; ceiling: the planted click model (synthetic "
              "worlds).", ""]
    for g in USER_GROUPS:
        lines += [f"### {g} users", "", report.gains_table(rows, g, cols, [*TABLE3, *refs]), ""]
    if TIE in models or UIE in models:
        lines += ["## Table 5 style: AUC on tail-item rows", "",
                  f"{TIE} is compared with {UIE} (Table 5's pair); the others with PLE.", "",
                  report.gains_table(rows, "tail", cols, [PLE, *TABLE5, *refs]), ""]
    div = payload.get("diversity")
    if div:
        mcols = [(TASK, m) for m in div["metrics"]]
        lines += [f"## Table 4 stand-in: diversity of each user's top {div['k']}", "",
                  f"Distinct categories and tags among the top {div['k']} of {div['candidates']} candidate items "
                  f"(drawn from the items exposed in training, the same for every model within a seed) scored at "
                  f"the user's first test event, for up to {div['users']} test users per group; Δ in distinct "
                  f"categories / tags, paired per user against the model's reference (PLE; {UIE} for {TIE}). "
                  f"An offline stand-in for UCC1/UCC2/UCT, which count what users consumed "
                  f"online.", ""]
        div_models = [m for m in models if m != ORACLE and not m.startswith(f"{TABLE3[3]}, N=")]
        for g in div["groups"]:
            lines += [f"### {g} users", "", report.gains_table(rows, g, mcols, div_models, scale=1.0, unit="n"), ""]
    if payload.get("fig3", {}).get("N"):
        fig = payload["fig3"]
        body = [[n] + [f"{fig[g]['mean'][i]:.4f} ± {fig[g]['std'][i]:.4f}" for g in USER_GROUPS]
                for i, n in enumerate(fig["N"])]
        lines += ["## Fig. 3 style: PLE with UPE against the number of user-memory centroids N", "",
                  report.markdown_table(["N", *(f"{g} AUC" for g in USER_GROUPS)], body), "",
                  "![AUC against N](fig3_auc_vs_n.png)", ""]
        sweep = [fig3_name(n) for n in fig["N"]]
        for g in USER_GROUPS:
            lines += [f"### {g} users, each N against PLE", "",
                      report.gains_table(rows, g, cols[:1], [PLE, *sweep]), ""]
    lines += ["## Convergence (equal step budgets; selection on validation LogLoss)", "",
              report.convergence_table(payload.get("histories", {}), "logloss"), "",
              "![learning curves](training_curves.png)", ""]
    sps = payload["timing"]["samples_per_second"]
    if sps:
        base = sps.get(PLE)
        body = [[m, f"{s:,.0f}", f"{s / base:.2f}x" if base else "–"] for m, s in sps.items()]
        lines += ["## Training throughput (same run, same machine)", "",
                  report.markdown_table(["model", "samples/s", "vs PLE"], body), ""]
    lines += ["", *report.provenance(payload)]
    return "\n".join(lines)
