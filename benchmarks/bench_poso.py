"""Training throughput of POSO(All Combined) vs the plain base model (MHA + MMoE), same run.

The paper claims negligible overhead (Table 1: about +1.5% FLOPs). Both models train on the same
batches of the synthetic world; timed rounds alternate between the two so machine noise hits both
alike. Prints samples/s, FLOPs per sample and ratios, then a final JSON line.
"""

from __future__ import annotations

import json
import time

import torch

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import time_window_new_users
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.eval.complexity import cost_table
from thawrec.models.poso import PosoRanker
from thawrec.config import TrainConfig
from thawrec.train.trainer import build_optimizers


def main(rounds: int = 5, steps: int = 30, batch_size: int = 1024) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ds, _ = generate(SynthConfig(n_users=6000, n_items=3000, n_interactions=200_000, seed=0))
    split = time_window_new_users(ds.interactions, window=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 30], "hist_tags": ["tags", 30]})).fit(
        ds, split.train)
    cols = pipe.transform(ds, split.train)
    batches = list(BatchReader(cols, batch_size=batch_size, shuffle=True, seed=0, drop_last=True, rank=0,
                               world_size=1))[:steps]
    models = {"base": {}, "poso_all": {"mlp": True, "mha": "gated_k", "mmoe": True}}
    nets, opts = {}, {}
    for name, poso in models.items():
        torch.manual_seed(0)
        nets[name] = PosoRanker(pipe.feature_map, {"poso": poso})
        opts[name] = build_optimizers(nets[name].param_groups(), TrainConfig())

    def step(name: str, batch) -> None:
        net = nets[name]
        loss = sum(net.compute_loss(batch, net(batch)).values())
        for o in opts[name]:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts[name]:
            o.step()

    for name in models:  # warm-up
        for b in batches[:3]:
            step(name, b)
    seconds = {name: 0.0 for name in models}
    for _ in range(rounds):
        for name in models:
            t0 = time.perf_counter()
            for b in batches:
                step(name, b)
            seconds[name] += time.perf_counter() - t0
    n = rounds * len(batches) * batch_size
    sps = {name: n / s for name, s in seconds.items()}
    flops = {name: cost_table(nets[name], batches[0], {"whole": ""})[0]["flops_per_sample"] for name in models}
    result = {
        "bench": "poso_throughput", "batch_size": batch_size, "samples": n,
        "base_samples_per_second": round(sps["base"], 1), "poso_all_samples_per_second": round(sps["poso_all"], 1),
        "throughput_ratio": round(sps["poso_all"] / sps["base"], 3),
        "base_flops_per_sample": flops["base"], "poso_all_flops_per_sample": flops["poso_all"],
        "flops_overhead": round(flops["poso_all"] / flops["base"] - 1, 4),
    }
    print(f"base {sps['base']:,.0f} samples/s, POSO(All Combined) {sps['poso_all']:,.0f} samples/s "
          f"-> {result['throughput_ratio']:.3f}x; FLOPs +{result['flops_overhead']:.1%}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
