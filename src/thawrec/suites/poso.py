"""`thawrec bench poso`: POSO's MovieLens protocol (Sec. 5.3, Table 5) and module costs (Table 1).

Protocol: users split at random (72% train as 100k of 138k in the paper; 10% of those held out
for early stopping), so every test user is unseen in training. Tasks: Favorite (rating = 5) and
Satisfied (rating >= 4). List features: the user's past rated movie IDs and past rated tags
(genres), length 30, strictly earlier than the current rating. Personalization code: bucketized
accumulated view count. Metric: GAUC per task; the paper reports differences from the base model
in percentage points. Every number is mean ± std over seeds with a paired t-test against the base
model.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import by_user_split
from thawrec.errors import DataError
from thawrec.eval import report
from thawrec.eval.complexity import cost_table
from thawrec.eval.stats import results_rows
from thawrec.models.poso import PosoRanker
from thawrec.suites.common import binary_metrics, load_world, score_model, train_model
from thawrec.train.trainer import TrainConfig

log = logging.getLogger(__name__)

TASKS = ["favorite", "satisfied"]
BASE = "Base (MHA+MMoE)"
VARIANTS: dict[str, dict[str, Any]] = {
    BASE: {},
    "POSO(MLP)": {"mlp": True},
    "POSO(MHA)": {"mha": "gated_k"},
    "POSO(MMoE)": {"mmoe": True},
    "POSO(All Combined)": {"mlp": True, "mha": "gated_k", "mmoe": True},
}


def add_rating_tasks(inter: pl.DataFrame, source: str) -> pl.DataFrame:
    if "rating" not in inter.columns or inter["rating"].null_count() == inter.height:
        raise DataError("the POSO MovieLens protocol needs ratings (Favorite = 5, Satisfied >= 4)",
                        file=source, column="rating", fix="use a dataset with explicit ratings")
    return inter.with_columns(favorite=(pl.col("rating") >= 5).cast(pl.Int8),
                              satisfied=(pl.col("rating") >= 4).cast(pl.Int8))


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    variants: list[str] | None = None,
    test_frac: float = 0.28,
    history_len: int = 30,
    synth: dict[str, Any] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds, name = load_world(data, synth)
    ds.interactions = add_rating_tasks(ds.interactions, str(data or "synthetic"))
    split = by_user_split(ds.interactions, test_frac=test_frac, valid_frac=0.1, seed=0)
    pipe = FeaturePipeline(FeatureConfig(
        sequences={"hist_items": ["item_id", history_len], "hist_tags": ["tags", history_len]},
        history_positive_only=False, labels=TASKS,
    )).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    names = variants or list(VARIANTS)
    tcfg_base = {"epochs": 5, "batch_size": 1024, "patience": 2, "monitor": "gauc", **(train or {})}
    mcfg = {"tasks": TASKS, "pc": "avc", **(model or {})}

    records, histories, timing = [], {}, {}
    gate_models: list[PosoRanker] = []
    for seed in seeds:
        for v in names:
            tcfg = TrainConfig.from_dict({**tcfg_base, "seed": seed})
            torch.manual_seed(seed)
            net = PosoRanker(pipe.feature_map, {**mcfg, "poso": VARIANTS[v]})
            fit = train_model(net, cols["train"], cols["valid"], tcfg, out / f"seed{seed}" / _slug(v), tasks=TASKS).fit
            histories[f"{v} seed {seed}"] = fit.history
            if v == "POSO(MHA)":
                gate_models.append(net)
            timing.setdefault(v, []).append(fit.samples_per_second)
            preds = score_model(net, cols["test"], tcfg.eval_batch_size, tcfg.device)
            for t in TASKS:
                m = binary_metrics(cols["test"][t], preds[t], cols["test"]["_user"])
                records += [{"model": v, "task": t, "group": "test users", "metric": k, "seed": seed, "value": m[k]}
                            for k in ("gauc", "auc")]

    rows = results_rows(records, baseline=BASE)
    costs = _costs(pipe.feature_map, cols["train"], mcfg, names)
    payload = {
        "suite": "poso", "dataset": name,
        "protocol": f"POSO Sec. 5.3: split by user ({1 - test_frac:.0%} train), Favorite (rating=5) and "
                    f"Satisfied (rating>=4), past rated items/tags length {history_len}, PC = AVC, GAUC",
        "seeds": list(seeds), "rows": rows, "costs": costs,
        "timing": {"samples_per_second": {v: float(np.mean(s)) for v, s in timing.items()}},
        "split": split.info, "env": report.environment(tcfg_base.get("device", "auto")),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "wall_seconds": time.perf_counter() - t0,
    }
    if "POSO(MHA)" in names:
        payload["value_gates"] = plot_value_gates(gate_models, out / "fig4_value_gates.png")
    report.write_results(out / "results.json", payload)
    report.plot_training_curves(histories, out / "training_curves.png", metric="valid_gauc")
    (out / "report.md").write_text(render(payload))
    return payload


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def _costs(fm, train_cols, mcfg, names) -> list[dict[str, Any]]:
    batch = next(iter(BatchReader(train_cols, batch_size=512, rank=0, world_size=1)))
    rows = []
    for v in names:
        net = PosoRanker(fm, {**mcfg, "poso": VARIANTS[v]})
        for r in cost_table(net, batch, {"MLP (towers)": "towers", "MHA": "attn", "MMoE": "mmoe", "whole model": ""}):
            rows.append({"model": v, **r})
    return rows


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"per_seed": [g.tolist() for g in gates]}


def render(payload: dict[str, Any]) -> str:
    rows = [r for r in payload["rows"] if r["metric"] == "gauc"]
    base = {r["task"]: r for r in rows if r["model"] == BASE}
    lines = [f"# thawrec bench poso — {payload['dataset']}", "", f"Protocol: {payload['protocol']}. "
             f"Seeds: {payload['seeds']}. Test users never appear in training.", "",
             "## Table 5 style: GAUC on test users (mean ± std; Δ = difference from the base model in "
             "percentage points; p = paired t-test over seeds)", ""]
    body = []
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = [model]
        for t in TASKS:
            r = next(x for x in rows if x["model"] == model and x["task"] == t)
            diff = (r["mean"] - base[t]["mean"]) * 100
            cells += [report.fmt_mean_std(r["mean"], r["std"]),
                      "–" if model == BASE else f"{diff:+.3f}", report.fmt_p(r["p_value"])]
        body.append(cells)
    lines.append(report.markdown_table(["model"] + [f"{t} {c}" for t in TASKS for c in ("GAUC", "Δ pp", "p")], body))
    lines += ["", "## Table 1 style: parameters and FLOPs per sample (embedding tables excluded)", ""]
    lines.append(report.markdown_table(
        ["model", "module", "#params", "#FLOPs/sample"],
        [[c["model"], c["module"], f"{c['params']:,}", f"{c['flops_per_sample']:,.0f}"] for c in payload["costs"]]))
    sps = payload["timing"]["samples_per_second"]
    if BASE in sps:
        lines += ["", "## Training throughput (same run)", "",
                  report.markdown_table(["model", "samples/s", "vs base"],
                                        [[v, f"{s:,.0f}", f"{s / sps[BASE]:.2f}x"] for v, s in sps.items()])]
    if "value_gates" in payload:
        lines += ["", "## Fig. 4 style: POSO(MHA) value-gate outputs against AVC buckets", "",
                  "![value gates](fig4_value_gates.png)"]
    lines += ["", "![validation GAUC](training_curves.png)", "", f"Command: `{payload['command']}`", "",
              "Environment: " + ", ".join(f"{k} {v}" for k, v in payload["env"].items()), ""]
    return "\n".join(lines)
