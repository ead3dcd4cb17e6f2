"""MAIL-Base training step: the pre-fix computation against the new default, same run.

Both paths train a MAIL-Base with the paper's tower sizes (encoders 1024-512-512, decoders
512-1024-d, BaseDNN 512-256, d = 32) on the same batches (1024 rows) of the synthetic world, with
the features the MAIL protocol builds (`suites/mail/protocol.py`: temporal split by time, 40% of
users new with their behaviour and view count removed, behaviour = the past 100 clicked items, no
user ID). A step is the Trainer's: forward, both objectives, per-group gradients
(G_A on L_zst, G_B on L_rt), clipping, both optimizers.

- ``old``: the pre-fix computation, by config: ``v_o`` for every row with dropout on
  (``compute: reference``, ``v_o_dropout: true``), L_zst on every old row (``zst_users: null``),
  each decoder called on P and Q separately, Eq. 11's sum target and sigma = 1.
- ``new``: the defaults: ``v_o`` for the new rows only, once per distinct attribute tuple, dropout
  off, written into the new rows' empty first slot; L_zst on at most 128 distinct old users, one
  row each; D1 / D2 once on [P; Q]; the mean + length target and the median-heuristic MMD.
  ``--zst-users N`` times the new path with another sample size (e.g. 256).

Timed rounds alternate (old, new, old, new, ...) so machine noise hits both alike. Prints the mean
wall-clock step time of each path and their ratio (the speedup), the same in process CPU time (on
a shared machine the steadier of the two), and a final JSON line.

    OMP_NUM_THREADS=2 python benchmarks/bench_mail.py
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import mask_new_users, temporal_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.models.mail import MAIL
from thawrec.train.trainer import Trainer, build_optimizers

SYNTH = {"n_users": 6000, "n_items": 3000, "n_interactions": 200_000, "seed": 0}
PAPER = {"encoder": [1024, 512], "hidden_dim": 512, "decoder": [512, 1024], "ranker": {"embedding_dim": 32}}
OLD = {"compute": "reference", "v_o_dropout": True, "zst_users": None, "behaviour_target": "sum",
       "mmd_sigma": 1.0, "fill": "always"}
NEW: dict[str, Any] = {}  # the defaults


def mail_train_columns(new_frac: float = 0.4, history_len: int = 100) -> tuple[Any, dict[str, np.ndarray]]:
    """The MAIL protocol's training columns on the synthetic world (as ``suites/mail/protocol.py``)."""
    ds, _ = generate(SynthConfig(**SYNTH))
    split = mask_new_users(temporal_split(ds.interactions, valid_frac=1 / 16, test_frac=1 / 8, by="time",
                                          mark_new=False), frac=new_frac, seed=0)
    pipe = FeaturePipeline(FeatureConfig(
        user_fields=list(ds.user_attrs), sequences={"hist_items": ["item_id", history_len]},
        history_positive_only=True, mask_new_behaviour=True, labels=["label"],
    )).fit(ds, split.train)
    train = pipe.transform(ds, split.train)
    train["avc"] = np.where(train["_is_new"], 0, train["avc"])  # no behaviour-derived input for new users
    return pipe.feature_map, train


class _Step:
    """One model with its optimizers, stepped exactly as ``Trainer._run_epoch`` steps it."""

    def __init__(self, model: MAIL, trainer: Trainer) -> None:
        self.model, self.trainer = model.train(), trainer
        self.groups = model.param_groups()
        self.optimizers = build_optimizers(self.groups, trainer.cfg)
        self.by_loss: dict[tuple[str, ...] | None, list[int]] = {}
        for i, g in enumerate(self.groups):
            self.by_loss.setdefault(tuple(g["loss"]) if g.get("loss") else None, []).append(i)

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        out = self.model(batch)
        terms = self.model.compute_loss(batch, out)
        total = sum(terms.values())
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        self.trainer._backward_per_group(self.groups, self.by_loss, terms, total)
        self.trainer._clip(self.groups)
        for o in self.optimizers:
            o.step()


def main(rounds: int = 4, steps: int = 8, batch_size: int = 1024, threads: int = 2,
         zst_users: int | None = None) -> dict:
    torch.set_num_threads(min(threads, torch.get_num_threads()))
    fm, train = mail_train_columns()
    batches = list(BatchReader(train, batch_size=batch_size, shuffle=True, seed=0, drop_last=True, rank=0,
                               world_size=1))[:steps]
    trainer = Trainer(TrainConfig(device="cpu", progress=False))
    paths = {"old": OLD, "new": NEW if zst_users is None else {**NEW, "zst_users": zst_users}}
    runs = {}
    for name, cfg in paths.items():
        torch.manual_seed(0)
        runs[name] = _Step(MAIL(fm, {**PAPER, **cfg}), trainer)
    for name in paths:  # warm-up
        for b in batches[:2]:
            runs[name](b)
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name in paths:  # interleaved: old, new, old, new, ...
            t0, c0 = time.perf_counter(), time.process_time()
            for b in batches:
                runs[name](b)
            wall[name].append((time.perf_counter() - t0) / len(batches))
            cpu[name].append((time.process_time() - c0) / len(batches))
    step = {name: sum(s) / len(s) for name, s in wall.items()}
    cpu_step = {name: sum(s) / len(s) for name, s in cpu.items()}
    new_rows = [int((~(b["hist_items"] > 0).any(1)).sum()) for b in batches]
    old_rows = [len(b["hist_items"]) - n for b, n in zip(batches, new_rows)]
    result = {
        "bench": "mail_train_step", "batch_size": batch_size, "steps_per_round": len(batches), "rounds": rounds,
        "threads": torch.get_num_threads(), "new_zst_users": runs["new"].model.cfg["zst_users"],
        "old_step_seconds": round(step["old"], 4), "new_step_seconds": round(step["new"], 4),
        "speedup": round(step["old"] / step["new"], 2),
        "old_cpu_seconds": round(cpu_step["old"], 4), "new_cpu_seconds": round(cpu_step["new"], 4),
        "cpu_speedup": round(cpu_step["old"] / cpu_step["new"], 2),
        "old_rounds": [round(s, 4) for s in wall["old"]], "new_rounds": [round(s, 4) for s in wall["new"]],
        "mean_new_rows": round(sum(new_rows) / len(new_rows), 1),
        "mean_old_rows": round(sum(old_rows) / len(old_rows), 1),
    }
    for name in paths:
        print(f"{name:>3}: {step[name] * 1000:7.1f} ms/step wall, {cpu_step[name] * 1000:7.1f} ms/step CPU  "
              "(rounds, wall: " + ", ".join(f"{s * 1000:.0f}" for s in wall[name]) + ")")
    print(f"speedup old/new: {result['speedup']:.2f}x wall, {result['cpu_speedup']:.2f}x CPU time, batch {batch_size}, "
          f"{result['mean_new_rows']:.0f} new / {result['mean_old_rows']:.0f} old rows per batch, "
          f"{result['threads']} threads")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8, help="batches per timed round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--zst-users", type=int, default=None, help="the new path's zst_users (default: the model's)")
    a = ap.parse_args()
    main(rounds=a.rounds, steps=a.steps, threads=a.threads, zst_users=a.zst_users)
