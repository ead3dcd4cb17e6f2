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
from thawrec.suites.mail.plan import FLOOR, HEAD_TO_HEAD, ORACLE, TRUE_BEHAVIOUR
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
def _old_rows(cols: dict[str, np.ndarray], n: int) -> dict[str, torch.Tensor]:
    """One batch of up to ``n`` rows of old users that have behaviour."""
    old = np.flatnonzero(~cols["_is_new"].astype(bool))
    old = old[(cols["hist_items"][old] > 0).any(1)][:n]
    return next(iter(BatchReader({k: v[old] for k, v in cols.items()}, batch_size=max(len(old), 1))))


@torch.no_grad()
def projection(model: MAIL, train: dict[str, np.ndarray], test: dict[str, np.ndarray], path: Path,
               n: int = 2000) -> dict[str, float]:
    """Fig. 5: generated behaviour D2(E1(h_a)) vs the real (reconstruction-target) behaviour of old
    test users, on the first two principal components of both together; and R^2 of the generated
    against the real, relative to the trivial predictor that generates the training users' mean
    behaviour for everyone (R^2 <= 0: the tower has learned nothing about a user from attributes)."""
    plt = pyplot()
    model.eval()
    batch = _old_rows(test, n)
    d = model.ranker.embedding.dim  # the behaviour's item part (mean_length also reconstructs a length)
    real = model.real_behaviour(batch["hist_items"]).numpy()[:, :d]
    gen = model.virtual_behaviour(batch).numpy()[:, :d]
    train_mean = model.real_behaviour(_old_rows(train, 5 * n)["hist_items"]).numpy()[:, :d].mean(0)
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
    gen_err = float(((gen - real) ** 2).sum(1).mean())
    mean_err = float(((train_mean[None, :] - real) ** 2).sum(1).mean())
    return {"users": int(len(real)), "gen_sq_error": gen_err, "train_mean_sq_error": mean_err,
            "zero_padding_sq_error": float((real ** 2).sum(1).mean()),
            "r2_vs_train_mean": 1.0 - gen_err / mean_err if mean_err > 0 else float("nan")}


COLUMNS = [("label", "auc"), ("label", "gauc")]


def render(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    refs = [m for m in (FLOOR, TRUE_BEHAVIOUR, ORACLE) if m in models]

    def tables(ms: list[str]) -> list[str]:
        out = []
        for g in GROUPS:
            out += [f"**{g} users**", "", report.gains_table(rows, g, COLUMNS, [m for m in ms if m in models], ri=True),
                    ""]
        return out

    lines = [f"# thawrec bench mail — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}.", "", report.counts_line(payload.get("test_counts", {}), list(GROUPS)), ""]
    lines += report.skipped_lines(payload.get("skipped"))
    lines += ["## Table 2 style: MAIL against the baselines", "",
              "Mean ± std over seeds, in brackets RI (Eq. 18) against the model's own base (BaseDNN for MetaEmb, "
              "MAIL-Base and the ablations, EmbLR for LLAE, DMR for MAIL-DMR); Δ = paired difference from that base "
              "in percentage points with its 95% CI, p and the minimum detectable effect (alpha 0.05, power 0.8), "
              "pairing test users within each seed and combining seeds. Floor: item popularity; ceilings: BaseDNN "
              "given the new users' true behaviour, and the planted click model (synthetic worlds).", "",
              *tables(["EmbLR", "LLAE", "BaseDNN", "MetaEmb", "MAIL-Base", "DMR", "MAIL-DMR", *refs])]
    if "MAIL-POSO" in models:
        lines += ["## Model-agnostic check: the POSO base model (target MHA + MMoE) as the ranking tower", "",
                  *tables(["POSO-Base", "MAIL-POSO"])]
    if payload.get("head_to_head"):
        lines += ["## Head to head (Δ of the means, RI, paired t-test p over seeds)", "",
                  report.markdown_table(["model", "versus", "group", "metric", "Δ", "RI", "p"], [
                      [r["model"], r["versus"], r["group"], r["metric"].upper(), f"{r['delta']:+.4f}",
                       f"{r['rel_improvement'] * 100:+.2f}%", report.fmt_p(r["p_value"])]
                      for r in payload["head_to_head"]]), ""]
    lines += ["## Table 3 style: zero-shot tower ablations (ranking tower BaseDNN)", "",
              *tables(["BaseDNN", "MAIL-None", "MAIL-Single", "MAIL-Dual", "MAIL-Base"])]
    lines += ["## Convergence (equal step budgets; selection on validation LogLoss)", "",
              report.convergence_table(payload.get("histories", {}), "logloss"), "",
              "![learning curves](training_curves.png)", ""]
    if "loss_curves" in payload:
        lines += ["", "## Fig. 4 style: MAIL-Base losses per epoch", "", "![losses](fig4_losses.png)"]
    if payload.get("projection"):
        pr = payload["projection"]
        lines += ["", "## Fig. 5 style: generated vs real behaviour vectors (old test users, PCA)", "",
                  f"Mean squared distance to the real behaviour over {pr['users']:,} old test users: generated "
                  f"{pr['gen_sq_error']:.4f}, the training users' mean behaviour {pr['train_mean_sq_error']:.4f}, zero "
                  f"padding {pr['zero_padding_sq_error']:.4f}: R^2 of the generated against the training mean "
                  f"{pr['r2_vs_train_mean']:+.3f} (> 0: the attributes tell the tower something about a user).", "",
                  "![projection](fig5_projection.png)"]
    sps = payload["timing"]["samples_per_second"]
    lines += ["", "## Training throughput (same run)", "",
              report.markdown_table(["model", "samples/s"], [[v, f"{s:,.0f}"] for v, s in sps.items()]),
              "", *report.provenance(payload)]
    return "\n".join(lines)
