"""`thawrec bench mail`: MAIL's protocol (:mod:`.protocol`), Table 2 / Table 3 plan with its floor
and ceilings (:mod:`.plan`) and report (:mod:`.report`).

Relative improvement (Eq. 18, RI = (b - a) / a) against each model's own base: MAIL-Base, MetaEmb
and the ablations against BaseDNN, LLAE against EmbLR, MAIL-DMR against DMR, MAIL-POSO against
the POSO base model (the model-agnostic check), plus MAIL-Base head to head against MetaEmb. Every
difference is also paired over test users within each seed and combined over seeds (95% CI, p,
minimum detectable effect). Every model gets the same optimizer-step budget; the epoch is selected
on validation LogLoss.

MetaEmb on this protocol: MAIL's models have no user-ID input, so what a new user lacks is the
behaviour; MetaEmb generates it from the attributes (one virtual item, as MAIL feeds it) with its
cold-start + warm-up meta-loss on the training users' episodes, on the trained BaseDNN of the
same seed (frozen), as the paper's "base model implemented as BaseDNN".
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from thawrec.eval.plots import plot_training_curves
from thawrec.suites.common import output
from thawrec.suites.common.plan import Entry, select, supported
from thawrec.suites.common.ranking import RankingSuite, compare_ranking, fit_ranking
from thawrec.suites.common.runner import SeedLog, run_plan
from thawrec.suites.common.world import load
from thawrec.suites.mail.plan import ALWAYS, model_plan
from thawrec.suites.mail.protocol import describe, metaemb_episodes, prepare, prepare_world
from thawrec.suites.mail.report import head_to_head, loss_curves, projection, render


def run(
    data: str | Path | None,
    out: str | Path,
    seeds: list[int],
    *,
    train: dict[str, Any] | None = None,
    variants: list[str] | None = None,
    new_frac: float = 0.4,
    history_len: int = 100,
    embedding_dim: int = 32,
    synth: dict[str, Any] | None = None,
    scenario: str | None = None,
    strength: float | None = None,
    world_seed: int | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = load(data, synth, scenario, strength, world_seed)
    run_info = prepare_world(world)
    entries, skipped = supported(select(model_plan(embedding_dim), variants, keep=ALWAYS), world.capabilities())
    train_defaults = {"epochs": 5, "batch_size": 1024, "patience": 2, "lr": 1e-3, "monitor": "logloss",
                      "monitor_mode": "min", **(train or {})}
    fig5: dict[str, Any] = {}

    def on_trained(entry: Entry, seed: int, net: Any, ctx: Any) -> None:
        if entry.name == "MAIL-Base" and not fig5:
            fig5.update(projection(net, ctx.cols["train"], ctx.cols["test"], out / "fig5_projection.png"))

    suite = RankingSuite(["label"], train_defaults, out, on_trained=on_trained,
                         episodes=lambda e, net, ctx, seed: metaemb_episodes(ctx.cols["train"], seed))

    def prepare_seed(seed: int):
        ctx = prepare(world, run_info, seed, new_frac, history_len)
        steps = math.ceil(len(ctx.cols["train"]["_user"]) / train_defaults["batch_size"])
        suite.train_defaults = {**train_defaults, "max_steps": train_defaults["epochs"] * steps,
                                "epochs": 10 * train_defaults["epochs"]}
        return ctx

    def write(log: SeedLog) -> dict[str, Any]:  # after every seed: a stopped run keeps the seeds it finished
        payload = output.payload("mail", world.name, describe(world, run_info, new_frac, history_len), log,
                                 entries, auc_like=(), command=command, device=train_defaults.get("device", "auto"),
                                 started=t0, head_to_head=head_to_head(log.records), world=world.describe(),
                                 skipped=skipped, histories=log.histories,
                                 split={str(s): f["split"] for s, f in log.facts.items()})
        if "MAIL-Base" in {e.name for e in entries}:
            payload["loss_curves"] = loss_curves(log.histories, log.seeds_done[0], out / "fig4_losses.png")
            payload["projection"] = fig5 or None
        plot_training_curves(log.histories, out / "training_curves.png", metric="valid_logloss")
        return output.write(out, payload, render)

    return run_plan(entries, seeds, lambda ctx, e, s, t: fit_ranking(suite, ctx, e, s, t), prepare=prepare_seed,
                    compare=lambda ctx, e, o, r, s: compare_ranking(suite, ctx, e, o, r, s),
                    facts=lambda ctx: {"test_counts": ctx.counts(["label"]), "split": ctx.split.info},
                    on_seed_end=write).result
