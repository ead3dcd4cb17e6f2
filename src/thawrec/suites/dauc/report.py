"""report.md and figures of `thawrec bench dauc`: Table 2 and 3, DAUC against the best baseline,
NMI with the planted groups, Fig. 3 (share of active users per cluster), validation curves and the
Fig. 4-style case study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thawrec.eval import report
from thawrec.eval.plots import pyplot, save
from thawrec.eval.stats import paired_ttest, relative_improvement
from thawrec.data.views import UserViews
from thawrec.suites.dauc.plan import ABLATIONS, BASELINES, FLOOR, ORACLE, TASTE_ORACLE
from thawrec.suites.dauc.protocol import Setting as World


def improvement(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Table 2's last row: DAUC against the best baseline of each column, with the paired p."""
    out = []
    for g, met in (("overall", f"recall@{k}"), ("overall", f"ndcg@{k}"), ("cold-start", f"recall@{k}"),
                   ("cold-start", f"ndcg@{k}")):
        by = {}
        for r in records:
            if r["group"] == g and r["metric"] == met:
                by.setdefault(r["model"], {})[r["seed"]] = r["value"]
        base = {m: v for m, v in by.items() if m in BASELINES}
        if "DAUC" not in by or not base:
            continue
        best = max(base, key=lambda m: np.mean(list(base[m].values())))
        seeds = sorted(set(by["DAUC"]) & set(base[best]))
        a, b = [by["DAUC"][s] for s in seeds], [base[best][s] for s in seeds]
        out.append({"group": g, "metric": met, "best_baseline": best,
                    "rel_improvement": relative_improvement(float(np.mean(a)), float(np.mean(b))),
                    "p_value": _nan_none(paired_ttest(a, b))})
    return out


def _nan_none(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def fig3(views: UserViews, dauc: np.ndarray, no_adv: np.ndarray, path: Path) -> dict[str, float]:
    """Fig. 3: share of active users in each cluster (sorted), DAUC vs DAUC-no-adv; returns the
    standard deviation of the shares (lower = active users spread more evenly)."""
    plt = pyplot()
    def shares(labels: np.ndarray) -> np.ndarray:
        n = np.bincount(labels)
        a = np.bincount(labels, weights=views.active.astype(float), minlength=len(n))
        return np.sort(a[n > 0] / n[n > 0])[::-1]

    s1, s2 = shares(dauc), shares(no_adv)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(np.arange(len(s2)), s2, alpha=0.6, label="DAUC-no-adv")
    ax.bar(np.arange(len(s1)), s1, alpha=0.6, label="DAUC")
    ax.axhline(views.active.mean(), color="k", lw=0.8, ls="--", label="all users")
    ax.set(xlabel="cluster (sorted by share)", ylabel="share of active users",
           title="Active users per cluster (Fig. 3 style)")
    ax.legend(fontsize=8)
    save(fig, path)
    return {"std_share_dauc": float(s1.std()), "std_share_no_adv": float(s2.std())}


def plot_fits(fits: dict[str, list[dict[str, float]]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m, hist in fits.items():
        ys = [h.get("valid_score") for h in hist]
        ax.plot(range(1, len(ys) + 1), ys, label=m)
    ax.set(xlabel="epoch", ylabel="validation replay recall", title="Validation recall per epoch (first seed)")
    ax.legend(fontsize=7)
    save(fig, path)


def case_study(w: World, views: UserViews, train: pl.DataFrame, labels: np.ndarray, info_columns: np.ndarray,
               n_show: int = 4) -> str:
    """Fig. 4 style: for the largest clusters, the top target categories by TGI of CTR and the top
    side features by TGI of their rate (TGI = the cluster's statistic / everyone's x 100)."""
    ds = w.ds
    cl = np.full(int(ds.users["user_id"].max()) + 1, -1)
    cl[views.user_ids] = labels
    t = train.filter(pl.Series(w.split.target)[train["item_id"]])
    cat_of = np.zeros(len(w.split.target), np.int64)
    cat_of[ds.items["item_id"].to_numpy()] = ds.items["category"].fill_null(0).to_numpy()
    c = cl[t["user_id"].to_numpy()]
    ok = c >= 0
    cat = cat_of[t["item_id"].to_numpy()][ok]
    y = t["label"].to_numpy()[ok].astype(float)
    c = c[ok]
    n_cat = int(cat_of.max()) + 1
    shows = np.zeros((labels.max() + 1, n_cat))
    clicks = np.zeros_like(shows)
    np.add.at(shows, (c, cat), 1.0)
    np.add.at(clicks, (c, cat), y)
    overall_ctr = clicks.sum(0) / np.maximum(shows.sum(0), 1)
    side = views.side
    rate_all = np.asarray(side.mean(0)).ravel()
    names_cat = (ds.vocabs or {}).get("category") or (ds.vocabs or {}).get("tags")
    side_names = _side_names(w, info_columns)
    sizes = np.bincount(labels)
    lines = [f"# Case study ({w.name}): the {n_show} largest DAUC clusters", "",
             "TGI = the cluster's statistic / the whole population's x 100: click-through rate for target "
             "categories (at least 20 displays in the cluster), rate of users with the side feature.", ""]
    for cid in np.argsort(-sizes)[:n_show]:
        ctr = clicks[cid] / np.maximum(shows[cid], 1)
        tgi = np.where((shows[cid] >= 20) & (overall_ctr > 0), ctr / np.maximum(overall_ctr, 1e-12) * 100, -1)
        top_c = [j for j in np.argsort(-tgi)[:2] if tgi[j] > 0]
        members = labels == cid
        rate = np.asarray(side[members].mean(0)).ravel()
        s_tgi = np.where((rate_all > 0) & (np.asarray(side[members].sum(0)).ravel() >= 3),
                         rate / np.maximum(rate_all, 1e-12) * 100, -1)
        top_s = [j for j in np.argsort(-s_tgi)[:5] if s_tgi[j] > 0]
        lines += [f"## Cluster #{cid} ({int(sizes[cid])} users, {views.active[members].mean():.0%} active)", "",
                  "Target categories: " + (", ".join(f"{_name(names_cat, j)} (TGI {tgi[j]:.0f})" for j in top_c)
                                           or "too few displays"),
                  "", "Side view: " + (", ".join(f"{side_names[j]} (TGI {s_tgi[j]:.0f})" for j in top_s) or "–"), ""]
    return "\n".join(lines)


def _name(vocab: list | None, j: int) -> str:
    return str(vocab[j]) if vocab and 0 <= j < len(vocab) and vocab[j] is not None else f"category {j}"


def _side_names(w: World, columns: np.ndarray) -> list[str]:
    """Readable names of the side-view columns: app names, or the side items' raw ids."""
    vocabs = w.ds.vocabs or {}
    if w.split.side is None:
        voc = vocabs.get(w.split.side_column)
        return [_name(voc, int(a)) if voc else f"app {a}" for a in columns]
    raw = vocabs.get("item_id")
    return [f"item {raw[i] if raw and i < len(raw) else i}" for i in columns]


def _replay_counts_line(counts: dict[str, Any]) -> str:
    """What the replay's filters did, in the first seed (they do not depend on the clustering)."""
    c = next((v for v in counts.values() if v), None)
    if not c:
        return ""
    return (f"Replay (first seed): {c['test_rows']:,} test rows in {c['pairs']:,} (user, slice) pairs; "
            f"{c['rows_no_click']:,} rows ({c['pairs_no_click']:,} pairs) without a click in their slice are not "
            f"scored; {c['relevant_exposed']:,} of {c['relevant']:,} relevant items had been exposed before (the "
            f"exposure filter hides them: never a hit); {c['pairs_unassigned']:,} scored pairs of unclustered users "
            f"got the global ranking; {c['pairs_backfilled']:,} lists were completed from the global ranking "
            f"({c['items_backfilled']:,} items); {c['pairs_empty']:,} lists stayed empty.")


def render(payload: dict[str, Any], with_case_study: bool) -> str:
    rows = payload["rows"]
    idx = {(r["model"], r["group"], r["metric"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    metrics = [m for m in dict.fromkeys(r["metric"] for r in rows) if m != "nmi" and "random" not in m]
    cols = [("replay", m) for m in metrics]
    refs = [m for m in (FLOOR, ORACLE, TASTE_ORACLE) if m in models]
    groups = [g for g in ("overall", "cold-start") if any(r["group"] == g for r in rows)]

    def tables(ms: list[str]) -> list[str]:
        out = []
        for g in groups:
            out += [f"**{g}**", "", report.gains_table(rows, g, cols, [m for m in ms if m in models]), ""]
        return out

    v = payload["views"]
    lines = [f"# thawrec bench dauc — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}.", "",
             f"Users: {v['users_kept']:,} kept ({v['users_filtered']:,} filtered), {v['active_users']:,} active, "
             f"{v['cold_users']:,} cold-start ({v['hidden_target_users']:,} of them made cold by hiding their "
             f"target-domain training rows); side view {v['side_dims']:,} dims; {v['test_rows_target']:,} test rows "
             f"in the target domain are replayed ({v['test_rows_target_users_filtered']:,} more belong to users the "
             f"view filters removed; {v['test_rows']:,} test rows in all).", "",
             _replay_counts_line(payload.get("replay_counts", {})), "",
             report.counts_line(payload.get("test_counts", {}), groups).replace(" rows", " scored (user, slice) pairs"),
             ""]
    lines += report.skipped_lines(payload.get("skipped"))
    lines += ["## Table 2 style: user clustering methods", "",
              "Mean ± std over seeds; Δ = paired difference from DAUC (the method minus DAUC) in percentage points "
              "with its 95% CI, p and the minimum detectable effect (alpha 0.05, power 0.8), over the same (user, "
              "slice) samples with users as the unit, seeds combined. Floor: everyone in one cluster (global "
              "popularity); ceilings (synthetic worlds): the planted interest groups as clusters, and k-means on the "
              "users' planted topic affinities with as many clusters as the methods.", "",
              *tables(list(BASELINES) + ["DAUC"] + refs)]
    if payload.get("improvement"):
        lines += ["DAUC against the best baseline of each column: " + "; ".join(
            f"{r['group']} {r['metric']} vs {r['best_baseline']} {r['rel_improvement'] * 100:+.2f}% "
            f"(p {report.fmt_p(r['p_value'])}, t test over seeds)" for r in payload["improvement"]) + ".", ""]
    lines += ["## How much the cluster sizes alone explain", "",
              "Each method's replay with its own cluster labels permuted (same cluster sizes, random members): a "
              "method whose score is close to its size-matched random one is ranked by its cluster sizes, not by "
              "what its clusters share.", ""]
    body = []
    for m in models:
        cells = [m]
        for g in groups:
            for met in metrics[:1]:
                real, rnd = idx.get((m, g, met)), idx.get((m, g, f"{met} (size-matched random)"))
                cells += [report.fmt_mean_std(real["mean"], real["std"]) if real else "–",
                          report.fmt_mean_std(rnd["mean"], rnd["std"]) if rnd else "–"]
        if any(c != "–" for c in cells[2::2]):
            body.append(cells)
    lines += [report.markdown_table(["method"] + [f"{g} {c}" for g in groups for c in (metrics[0], "size-matched random")],
                                    body), ""]
    lines += ["## Table 3 style: ablations", "", *tables(["DAUC"] + list(ABLATIONS))]
    if any(k[2] == "nmi" for k in idx):
        nmi = [[m, report.fmt_mean_std(idx[(m, "all users", "nmi")]["mean"], idx[(m, "all users", "nmi")]["std"])]
               for m in models if (m, "all users", "nmi") in idx]
        lines += ["## Agreement with the planted groups (NMI)", "", report.markdown_table(["method", "NMI"], nmi), ""]
    if payload.get("fig3"):
        f = payload["fig3"]
        lines += ["## Fig. 3 style: share of active users per cluster", "",
                  f"Std of the per-cluster share of active users: DAUC {f['std_share_dauc']:.3f} vs "
                  f"DAUC-no-adv {f['std_share_no_adv']:.3f} (lower = more even).", "",
                  "![active share](fig3_active_share.png)", ""]
    if payload.get("histories"):
        lines += ["## Validation curves (first seed; the epoch with the best validation replay recall is kept)", "",
                  "![validation curves](validation_curves.png)", ""]
    if with_case_study:
        lines += ["Case study (Fig. 4 style): [case_study.md](case_study.md)", ""]
    secs = payload["timing"]["seconds"]
    lines += ["## Seconds per run (training + validation replays + clustering + replays)", "",
              report.markdown_table(["method", "seconds"], [[m, f"{s:,.1f}"] for m, s in secs.items()]),
              "", *report.provenance(payload)]
    return "\n".join(lines)
