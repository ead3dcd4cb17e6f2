"""The POSO ranker: every module / personalization-code combination builds, trains and learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import time_window_new_users
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.eval.metrics import auc
from thawrec.models.poso import PosoRanker
from thawrec.config import TrainConfig
from thawrec.train.trainer import Trainer, predict


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=500, n_items=300, n_interactions=20000, seed=2))
    split = time_window_new_users(ds.interactions, window=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 10], "hist_tags": ["tags", 10]})).fit(
        ds, split.train)
    return pipe.feature_map, pipe.transform(ds, split.train), pipe.transform(ds, split.test)


SMALL = {"embedding_dim": 8, "heads": 2, "head_dim": 4, "expert_hidden": [16], "tower_hidden": [8]}


@pytest.mark.parametrize("poso, pc", [
    ({}, "avc"),
    ({"mlp": True}, "avc"),
    ({"mha": "gated_k"}, "avc"),
    ({"mha": "full"}, "is_new"),
    ({"mha": "shared_q"}, "user_id"),
    ({"mha": "gated_kv"}, "user_item_id"),
    ({"mmoe": True}, "all"),
    ({"mlp": True, "mha": "gated_k", "mmoe": True}, "avc"),
])
def test_every_variant_trains_one_step(world, poso, pc):
    fm, train, _ = world
    torch.manual_seed(0)
    m = PosoRanker(fm, {**SMALL, "poso": poso, "pc": pc, "tasks": ["label"]})
    batch = next(iter(BatchReader(train, batch_size=256, rank=0, world_size=1)))
    out = m(batch)
    assert out["logits"]["label"].shape == (256,)
    loss = sum(m.compute_loss(batch, out).values())
    loss.backward()
    assert torch.isfinite(loss)
    gated = [p for n, p in m.named_parameters() if "gate" in n and "task_gates" not in n]
    assert bool(gated) == bool(poso)  # POSO variants have personalized gates, the base model none
    assert all(p.grad is not None for p in gated)


def test_all_combined_learns(world, tmp_path):
    fm, train, test = world
    torch.manual_seed(0)
    m = PosoRanker(fm, {**SMALL, "poso": {"mlp": True, "mha": "gated_k", "mmoe": True}})
    reader = BatchReader(train, batch_size=256, shuffle=True, seed=0, rank=0, world_size=1)

    def evaluate(model):
        p = predict(model, BatchReader(test, batch_size=4096, rank=0, world_size=1), torch.device("cpu"))["label"]
        return {"auc": auc(test["label"], p)}

    res = Trainer(TrainConfig(epochs=2, lr=3e-3, progress=False, device="cpu"), tmp_path).fit(m, reader, evaluate)
    assert res.best_score > 0.6, res.history  # chance is 0.5
    assert np.isfinite(res.history[-1]["train_loss"])


def test_unknown_pc_is_a_config_error(world):
    with pytest.raises(ConfigError, match="personalization code"):
        PosoRanker(world[0], {"pc": "zodiac", "poso": {"mlp": True}})
