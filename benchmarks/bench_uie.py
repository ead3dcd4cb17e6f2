"""Training throughput of PLE+UIE vs the plain PLE ranker, same run (issue 12: "the memories
should cost little").

All models train on the same batches of the ``uie`` scenario world (a smaller one by default:
2,000 users, 100,000 interactions; the suite's protocol, features and consumption sequences of
100), with the suite's configurations (:func:`thawrec.suites.uie.plan.model_plan`: the paper's
N = M = 256, K1 = K2 = 3, batch 512, Adam). A training step is the trainer's: forward, loss,
backward, optimizer step and ``on_batch_end`` (Eq. 1 and Eq. 3, the memories' updates). Timed
rounds are interleaved (PLE, UIE, UIE+TIE, PLE, UIE, ...) so machine noise hits every model
alike; each round gives one samples/s per model, and the report takes medians over rounds.
Models:

- ``base``: PLE;
- ``uie``: PLE with UIE (UPE, UCBE and UCSE: Table 3's last row);
- ``uie_tie``: PLE with UIE and TIE, every enhancement (``--no-tie`` skips it).

Prints samples/s, ratios and forward FLOPs per sample, then a final JSON line. Run it with
``OMP_NUM_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from thawrec.config import TrainConfig
from thawrec.data.reader import BatchReader
from thawrec.eval.complexity import cost_table
from thawrec.registry import build_model
from thawrec.suites.common.world import load
from thawrec.suites.uie.plan import PLE, TIE, UIE, model_plan
from thawrec.suites.uie.protocol import LOW_FRAC, TAIL_SHARE, prepare, prepare_world
from thawrec.train.trainer import build_optimizers
from _timing import interleaved_rounds, paired_ratio, print_rounds


def main(rounds: int = 7, steps: int = 20, batch_size: int = 512, tie: bool = True, users: int = 2000,
         interactions: int = 100_000) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    world = load(None, {"n_users": users, "n_interactions": interactions}, "uie", None, 0)
    tasks = prepare_world(world)
    ctx = prepare(world, tasks, 0, 100, LOW_FRAC, TAIL_SHARE, None)
    cols = {k: v for k, v in ctx.cols["train"].items() if v.dtype.kind in "biuf"}
    batches = list(BatchReader(cols, batch_size=batch_size, shuffle=True, seed=0, drop_last=True, rank=0,
                               world_size=1))[:steps]
    seqs = ["hist_items", "hist_cats"]
    plan = {e.name: e for e in model_plan(["main"], tasks.all, list(tasks.regression), seqs)}
    models = {"base": plan[PLE], "uie": plan[UIE]}
    if tie:
        models["uie_tie"] = plan[TIE]
    nets, opts = {}, {}
    for name, entry in models.items():
        torch.manual_seed(0)
        nets[name] = build_model(entry.model, ctx.pipeline.feature_map, entry.cfg)
        opts[name] = build_optimizers(nets[name].param_groups(), TrainConfig())

    def step(name: str, batch) -> None:
        net = nets[name]
        out = net(batch)
        loss = sum(net.compute_loss(batch, out).values())
        for o in opts[name]:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts[name]:
            o.step()
        net.on_batch_end(batch, out)

    n_round = len(batches) * batch_size
    per_round = interleaved_rounds(models, batches, step, rounds, n_round)
    sps = {name: statistics.median(v) for name, v in per_round.items()}

    def ratio(name: str) -> float:
        return paired_ratio(per_round, name)

    flops = {name: cost_table(nets[name], batches[0], {"whole": ""})[0]["flops_per_sample"] for name in models}
    real = batches[0]["hist_items"] > 0
    result = {
        "bench": "uie_throughput", "batch_size": batch_size, "rounds": rounds, "samples_per_round": n_round,
        "threads": torch.get_num_threads(), "users": users, "interactions": interactions,
        "history_real_per_row": round(float(real.sum(1).float().mean()), 2), "history_slots": real.shape[1],
        "base_samples_per_second": round(sps["base"], 1), "uie_samples_per_second": round(sps["uie"], 1),
        "throughput_ratio": round(sps["uie"] / sps["base"], 3),
        "paired_throughput_ratio": round(ratio("uie"), 3),
        "base_flops_per_sample": flops["base"], "uie_flops_per_sample": flops["uie"],
        "flops_overhead": round(flops["uie"] / flops["base"] - 1, 4),
    }
    if tie:
        result.update({
            "uie_tie_samples_per_second": round(sps["uie_tie"], 1),
            "tie_throughput_ratio": round(sps["uie_tie"] / sps["base"], 3),
            "tie_paired_throughput_ratio": round(ratio("uie_tie"), 3),
            "uie_tie_flops_per_sample": flops["uie_tie"],
        })
    print_rounds(per_round)
    print(f"PLE+UIE / PLE = {result['throughput_ratio']:.3f} (paired {result['paired_throughput_ratio']:.3f}); "
          f"FLOPs +{result['flops_overhead']:.1%}"
          + (f"; PLE+UIE+TIE / PLE = {result['tie_throughput_ratio']:.3f} (paired "
             f"{result['tie_paired_throughput_ratio']:.3f})" if tie else ""))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="batches per timed round")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--no-tie", action="store_true", help="skip PLE with UIE and TIE")
    ap.add_argument("--users", type=int, default=2000, help="users of the uie scenario world")
    ap.add_argument("--interactions", type=int, default=100_000, help="interactions of the uie scenario world")
    a = ap.parse_args()
    main(rounds=a.rounds, steps=a.steps, batch_size=a.batch_size, tie=not a.no_tie, users=a.users,
         interactions=a.interactions)
