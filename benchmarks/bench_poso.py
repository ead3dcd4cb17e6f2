"""Training throughput of POSO(All Combined) vs the plain base model (MHA + MMoE), same run.

The paper claims negligible overhead (Table 1: about +1.5% FLOPs). All models train on the same
batches of the synthetic world. Timed rounds are interleaved (base, POSO, old POSO, base, POSO, ...)
so machine noise hits every model alike; each round gives one samples/s per model, and the report
takes medians over rounds. Models:

- ``base``: the base model (target MHA + MMoE, no POSO module);
- ``poso_all``: POSO(All Combined) on its fast path (gates looked up per AVC bucket in one pass,
  query gating, the POSO(MMoE) mask on the task weights);
- ``poso_all_old``: the same model with ``fast_path: False``, the literal computation (per-row gate
  MLPs, key gating, expert masking), to show the speedup side by side (``--no-old`` skips it).

Prints samples/s, ratios and FLOPs per sample, then a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import time_window_new_users
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.eval.complexity import cost_table
from thawrec.models.poso import PosoRanker
from thawrec.train.trainer import build_optimizers
from _timing import interleaved_rounds, paired_ratio, print_rounds

ALL_COMBINED = {"mlp": True, "mha": "gated_k", "mmoe": True}


def main(rounds: int = 7, steps: int = 20, batch_size: int = 1024, old: bool = True) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ds, _ = generate(SynthConfig(n_users=6000, n_items=3000, n_interactions=200_000, seed=0))
    split = time_window_new_users(ds.interactions, window=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 30], "hist_tags": ["tags", 30]})).fit(
        ds, split.train)
    cols = pipe.transform(ds, split.train)
    batches = list(BatchReader(cols, batch_size=batch_size, shuffle=True, seed=0, drop_last=True, rank=0,
                               world_size=1))[:steps]
    models = {"base": {}, "poso_all": {"poso": ALL_COMBINED}}
    if old:
        models["poso_all_old"] = {"poso": ALL_COMBINED, "fast_path": False}
    nets, opts = {}, {}
    for name, cfg in models.items():
        torch.manual_seed(0)  # identical initial parameters for poso_all and poso_all_old
        nets[name] = PosoRanker(pipe.feature_map, cfg)
        opts[name] = build_optimizers(nets[name].param_groups(), TrainConfig())

    def step(name: str, batch) -> None:
        net = nets[name]
        loss = sum(net.compute_loss(batch, net(batch)).values())
        for o in opts[name]:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts[name]:
            o.step()

    n_round = len(batches) * batch_size
    per_round = interleaved_rounds(models, batches, step, rounds, n_round)
    sps = {name: statistics.median(v) for name, v in per_round.items()}

    def ratio(name: str) -> float:
        return paired_ratio(per_round, name)

    flops = {name: cost_table(nets[name], batches[0], {"whole": ""})[0]["flops_per_sample"] for name in models}
    result = {
        "bench": "poso_throughput", "batch_size": batch_size, "rounds": rounds, "samples_per_round": n_round,
        "threads": torch.get_num_threads(),
        "base_samples_per_second": round(sps["base"], 1), "poso_all_samples_per_second": round(sps["poso_all"], 1),
        "throughput_ratio": round(sps["poso_all"] / sps["base"], 3),
        "paired_throughput_ratio": round(ratio("poso_all"), 3),
        "base_flops_per_sample": flops["base"], "poso_all_flops_per_sample": flops["poso_all"],
        "flops_overhead": round(flops["poso_all"] / flops["base"] - 1, 4),
    }
    if old:
        result.update({
            "poso_all_old_samples_per_second": round(sps["poso_all_old"], 1),
            "old_throughput_ratio": round(sps["poso_all_old"] / sps["base"], 3),
            "old_paired_throughput_ratio": round(ratio("poso_all_old"), 3),
            "fast_path_speedup": round(sps["poso_all"] / sps["poso_all_old"], 3),
            "poso_all_old_flops_per_sample": flops["poso_all_old"],
        })
    print_rounds(per_round)
    print(f"POSO(All Combined) / base = {result['throughput_ratio']:.3f} (paired {result['paired_throughput_ratio']:.3f}); "
          f"FLOPs +{result['flops_overhead']:.1%}"
          + (f"; old path / base = {result['old_throughput_ratio']:.3f}, fast path speedup "
             f"{result['fast_path_speedup']:.3f}x" if old else ""))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="batches per timed round")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--no-old", action="store_true", help="skip the literal (fast_path: False) POSO model")
    a = ap.parse_args()
    main(rounds=a.rounds, steps=a.steps, batch_size=a.batch_size, old=not a.no_old)
