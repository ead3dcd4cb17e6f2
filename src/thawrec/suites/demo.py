"""`thawrec demo`: what the library is for, in a few minutes on 2 cores.

A scenario world where one paper's mechanism is planted (:mod:`thawrec.data.scenarios`), that
paper's cold-start method against its base model and a baseline, between the floor (item
popularity) and the ceiling (the planted click model), on cold-start vs established users, with
paired tests over test users and seeds. One table and one plot (``demo.md``, ``demo.png``) on top
of the suite's full report. With ``--data`` the same run on a real dataset (no ceiling there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thawrec.eval import report
from thawrec.eval.plots import pyplot, save
from thawrec.suites import mail

# The MAIL scenario: new users have no behaviour, their attributes say what they like; the zero-shot
# tower generates their behaviour. Small enough for minutes on 2 cores.
DEMO_WORLD = {"n_users": 4000, "n_interactions": 120_000}
MODELS = ["BaseDNN", "MetaEmb", "MAIL-Base"]
FLOOR, TRUE, ORACLE = "Popularity (floor)", "BaseDNN + true behaviour (ceiling)", "Oracle (planted click model)"


def run(data: str | Path | None, out: str | Path, seeds: list[int], *, epochs: int = 3, device: str = "auto",
        command: str | None = None, world: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, score and write ``demo.md`` / ``demo.png`` (plus the MAIL suite's report) under ``out``;
    ``world`` overrides the scenario world's sizes (tests use a tiny one)."""
    out = Path(out)
    payload = mail.run(data, out, seeds, train={"epochs": epochs, "device": device}, variants=MODELS,
                       scenario="mail" if data is None else None,
                       synth=(world or DEMO_WORLD) if data is None else None,
                       world_seed=0, command=command)
    rows = payload["rows"]
    models = [m for m in [*MODELS, FLOOR, TRUE, ORACLE] if any(r["model"] == m for r in rows)]
    text = ["# thawrec demo: cold-start users", "", f"World: {payload['dataset']}. {payload['protocol']}.", "",
            report.counts_line(payload.get("test_counts", {}), ["new", "old"]), ""]
    for g in ("new", "old"):
        text += [f"## {g} users", "", report.gains_table(rows, g, [("label", "auc")], models, ri=True), ""]
    text += ["![new users' AUC](demo.png)", "", f"Full report: [report.md](report.md). Seeds: {payload['seeds']}.",
             *report.provenance(payload)]
    (out / "demo.md").write_text("\n".join(text))
    figure(rows, models, out / "demo.png")
    return payload


def figure(rows: list[dict[str, Any]], models: list[str], path: Path) -> Path:
    """New and old users' AUC per model, mean ± std over seeds, floor and ceilings in grey."""
    plt = pyplot()
    idx = {(r["model"], r["group"]): r for r in rows if r["metric"] == "auc"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, g in zip(axes, ("new", "old")):
        ms = [m for m in models if (m, g) in idx]
        means = [idx[(m, g)]["mean"] for m in ms]
        errs = [idx[(m, g)]["std"] or 0.0 for m in ms]
        colors = ["0.7" if m in (FLOOR, TRUE, ORACLE) else "C0" for m in ms]
        ax.barh(range(len(ms)), means, xerr=errs, color=colors)
        ax.set_yticks(range(len(ms)), [m.replace(" (", "\n(") for m in ms], fontsize=8)
        ax.invert_yaxis()
        lo = min(means) - 0.03
        ax.set_xlim(max(0.45, lo), min(1.0, max(means) + 0.03))
        ax.set(title=f"{g} users", xlabel="test AUC (mean ± std over seeds)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("thawrec demo: MAIL scenario (grey: floor and ceilings)")
    return save(fig, path)
