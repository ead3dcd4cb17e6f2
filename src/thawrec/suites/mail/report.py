"""report.md and figures of `thawrec bench mail`: Table 2 (baselines), the model-agnostic check,
head-to-head comparisons, Table 3 (ablations), Fig. 4 (losses) and Fig. 5 (generated vs real
behaviour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from thawrec.data.reader import BatchReader
from thawrec.eval import report
from thawrec.eval.plots import pyplot, save
from thawrec.eval.stats import paired_ttest, relative_improvement
from thawrec.models.mail import MAIL
from thawrec.suites.mail.plan import HEAD_TO_HEAD
from thawrec.suites.mail.protocol import GROUPS


def head_to_head(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MAIL-Base against MetaEmb (the paper's claim) and MAIL-DMR against MAIL-Base, paired by seed."""
    val = {(r["model"], r["group"], r["metric"], r["seed"]): r["value"] for r in records}
    seeds = sorted({r["seed"] for r in records})
    rows = []
    for a, b in HEAD_TO_HEAD:
        for g in GROUPS:
            for k in ("auc", "gauc"):
                pairs = [(val[(a, g, k, s)], val[(b, g, k, s)]) for s in seeds
                         if (a, g, k, s) in val and (b, g, k, s) in val]
                if not pairs:
                    continue
                xa, xb = (np.array(x) for x in zip(*pairs))
                ri = relative_improvement(float(xa.mean()), float(xb.mean()))
                p = paired_ttest(xa, xb)
                rows.append({"model": a, "versus": b, "group": g, "metric": k, "delta": float((xa - xb).mean()),
                             "rel_improvement": ri, "p_value": None if np.isnan(p) else float(p)})
    return rows


def loss_curves(histories: dict[str, list[dict[str, float]]], seed: int, path: Path) -> dict[str, list[float]]:
    """Fig. 4: L_a, L_v, L_d (MMD) and L_rt of MAIL-Base per epoch."""
    plt = pyplot()
    hist = histories[f"MAIL-Base seed {seed}"]
    keys = {"L_a": "train_zst_a", "L_v": "train_zst_v", "L_d (MMD)": "train_zst_mmd", "L_rt": "train_rt_bce_label"}
    curves = {k: [h[c] for h in hist] for k, c in keys.items()}
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (k, ys) in zip(axes, curves.items()):
        ax.plot(range(1, len(ys) + 1), ys, marker="o")
        ax.set(title=k, xlabel="epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(f"MAIL-Base training losses (seed {seed})")
    save(fig, path)
    return curves


@torch.no_grad()
def projection(model: MAIL, test: dict[str, np.ndarray], path: Path, n: int = 2000) -> dict[str, float]:
    """Fig. 5: generated behaviour D2(E1(h_a)) vs real pooled behaviour of old test users, on the
    first two principal components of both together."""
    plt = pyplot()
    model.eval()
    old = np.flatnonzero(~test["_is_new"].astype(bool))
    old = old[(test["hist_items"][old] > 0).any(1)][:n]
    batch = next(iter(BatchReader({k: v[old] for k, v in test.items()}, batch_size=max(len(old), 1))))
    real = model.real_behaviour(batch["hist_items"]).numpy()
    gen = model.virtual_behaviour(batch).numpy()
    both = np.concatenate([real, gen])
    centred = both - both.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(*xy[: len(real)].T, s=4, alpha=0.5, label="real behaviour (old users)")
    ax.scatter(*xy[len(real):].T, s=4, alpha=0.5, label="generated from attributes")
    ax.set(title="MAIL-Base: generated vs real behaviour (PCA)", xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=8)
    save(fig, path)
    zero_err = float((real ** 2).sum(1).mean())
    return {"users": int(len(real)), "gen_sq_error": float(((gen - real) ** 2).sum(1).mean()),
            "zero_padding_sq_error": zero_err}


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    idx = {(r["model"], r["group"], r["metric"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))

    def cell(m: str, g: str, k: str) -> str:
        r = idx[(m, g, k)]
        s = report.fmt_mean_std(r["mean"], r["std"])
        if r["baseline"]:
            s += f" ({r['rel_improvement'] * 100:+.2f}%, p {report.fmt_p(r['p_value'])})" \
                if r["rel_improvement"] is not None else ""
        return s

    head = ["model", "vs"] + [f"{g} {k.upper()}" for g in GROUPS for k in ("auc", "gauc")]
    table = lambda ms: report.markdown_table(  # noqa: E731
        head, [[m, idx[(m, "new", "auc")]["baseline"] or "–"] + [cell(m, g, k) for g in GROUPS for k in ("auc", "gauc")]
               for m in ms if (m, "new", "auc") in idx])
    lines = [f"# thawrec bench mail — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}.", "",
             "## Table 2 style: MAIL against the baselines (mean ± std; in brackets RI against the "
             "model in 'vs' (Eq. 18) and the paired t-test p over seeds)", "",
             table([m for m in ("EmbLR", "LLAE", "BaseDNN", "MetaEmb", "MAIL-Base", "DMR", "MAIL-DMR")
                    if m in models])]
    if "MAIL-POSO" in models:
        lines += ["", "## Model-agnostic check: the POSO base model (target MHA + MMoE) as the ranking tower", "",
                  table(["POSO-Base", "MAIL-POSO"])]
    if payload.get("head_to_head"):
        lines += ["", "## Head to head (Δ of the means, RI, paired t-test p over seeds)", "",
                  report.markdown_table(["model", "versus", "group", "metric", "Δ", "RI", "p"], [
                      [r["model"], r["versus"], r["group"], r["metric"].upper(), f"{r['delta']:+.4f}",
                       f"{r['rel_improvement'] * 100:+.2f}%", report.fmt_p(r["p_value"])]
                      for r in payload["head_to_head"]])]
    lines += ["", "## Table 3 style: zero-shot tower ablations (ranking tower BaseDNN)", "",
              table([m for m in ("BaseDNN", "MAIL-None", "MAIL-Single", "MAIL-Dual", "MAIL-Base") if m in models])]
    if "loss_curves" in payload:
        lines += ["", "## Fig. 4 style: MAIL-Base losses per epoch", "", "![losses](fig4_losses.png)"]
    if payload.get("projection"):
        pr = payload["projection"]
        lines += ["", "## Fig. 5 style: generated vs real behaviour vectors (old test users, PCA)", "",
                  f"Mean squared distance to the real pooled behaviour over {pr['users']:,} old test users: "
                  f"generated {pr['gen_sq_error']:.4f} vs zero padding {pr['zero_padding_sq_error']:.4f}.", "",
                  "![projection](fig5_projection.png)"]
    sps = payload["timing"]["samples_per_second"]
    lines += ["", "## Training throughput (same run)", "",
              report.markdown_table(["model", "samples/s"], [[v, f"{s:,.0f}"] for v, s in sps.items()]),
              "", "![validation AUC](training_curves.png)", "", *report.provenance(payload)]
    return "\n".join(lines)
