"""PLE (Tang et al., RecSys 2020): the block's shapes, gates and progressive routing, and the
registered ranker: config contract, loss terms, and a two-task model (binary + regression) that
learns on a small synthetic world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import temporal_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.eval.metrics import auc
from thawrec.models.rankers.ple import PLERanker
from thawrec.nn.ple import CGC, PLE
from thawrec.registry import build_model, names
from thawrec.train.fit import score_model, train_model

SMALL = {"embedding_dim": 8, "expert_hidden": [16], "tower_hidden": [8]}
TWO_TASKS = {"tasks": ["label", "watch_time"], "regression_tasks": ["watch_time"]}


@pytest.fixture(scope="module")
def world():
    """A small world with a second, real-valued task: a planted 'watch time' that depends on the
    item's category and on the click label, plus noise."""
    ds, _ = generate(SynthConfig(n_users=500, n_items=300, n_interactions=20000, seed=2))
    split = temporal_split(ds.interactions, valid_frac=0.15, test_frac=0.1)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 10]})).fit(ds, split.train)
    train, valid = pipe.transform(ds, split.train), pipe.transform(ds, split.valid)
    rng = np.random.default_rng(0)
    by_category = rng.normal(size=pipe.feature_map["category"].vocab_size).astype(np.float32)
    for cols in (train, valid):
        noise = rng.normal(size=len(cols["label"])).astype(np.float32)
        cols["watch_time"] = 1.0 + 0.8 * cols["label"] + by_category[cols["category"]] + 0.2 * noise
    return pipe.feature_map, train, valid


def _batch(cols, n=128):
    return next(iter(BatchReader(cols, batch_size=n, rank=0, world_size=1)))


# ---------------------------------------------------------------------------------------------- block
def test_ple_shapes_and_gates_sum_to_one():
    torch.manual_seed(0)
    net = PLE(12, 3, levels=3, n_task_experts=2, n_shared_experts=1, expert_hidden=[16, 8], tower_hidden=[4],
              out_dim=2)
    x = torch.randn(5, 12)
    outs = net(x)
    assert len(outs) == 3 and all(o.shape == (5, 2) for o in outs)
    ext = net.extract(x)
    assert [h.shape for h in ext.tasks] == [(5, 8)] * 3
    assert len(ext.levels) == 3
    for k, level in enumerate(ext.levels):
        assert [g.shape for g in level.task_gates] == [(5, 2 + 1)] * 3  # own experts + shared
        for g in level.task_gates:
            assert torch.allclose(g.sum(-1), torch.ones(5)) and bool((g > 0).all())
        if k < 2:  # every level but the last has a shared gate over all 3*2 + 1 experts
            assert level.shared_gate is not None and level.shared_gate.shape == (5, 7)
            assert torch.allclose(level.shared_gate.sum(-1), torch.ones(5))
            assert level.shared is not None and level.shared.shape == (5, 8)
        else:
            assert level.shared_gate is None and level.shared is None


def test_cgc_output_is_the_gated_mix_of_own_and_shared_experts():
    torch.manual_seed(1)
    cgc = CGC(6, 2, n_task_experts=2, n_shared_experts=3, expert_hidden=[4], shared_gate=True)
    xs = [torch.randn(7, 6), torch.randn(7, 6)]
    shared_in = torch.randn(7, 6)
    out = cgc(xs, shared_in)
    shared = [ex(shared_in) for ex in cgc.shared_experts]
    every = []
    for t in range(2):
        own = [ex(xs[t]) for ex in cgc.task_experts[t]]
        every += own
        w = torch.softmax(cgc.task_gates[t](xs[t]), -1)
        expect = sum(w[:, i:i + 1] * e for i, e in enumerate(own + shared))
        assert torch.allclose(out.tasks[t], expect, atol=1e-6)
    w = torch.softmax(cgc.shared_gate(shared_in), -1)
    expect = sum(w[:, i:i + 1] * e for i, e in enumerate(every + shared))
    assert torch.allclose(out.shared, expect, atol=1e-6)


def test_progressive_extraction_routes_other_tasks_through_the_shared_gate_only():
    """Task 1's level-1 experts do not reach task 0 at level 1 (its gate sees its own + shared
    experts), but do at level 2, through level 1's shared gate over all experts."""
    torch.manual_seed(2)
    net = PLE(10, 2, levels=2, n_task_experts=1, n_shared_experts=1, expert_hidden=[6], tower_hidden=[4])
    x = torch.randn(9, 10)
    before = net.extract(x)
    with torch.no_grad():
        for p in net.levels[0].task_experts[1].parameters():
            p.add_(torch.randn_like(p))
    after = net.extract(x)
    assert torch.allclose(before.levels[0].tasks[0], after.levels[0].tasks[0])
    assert not torch.allclose(before.levels[0].shared, after.levels[0].shared)
    assert not torch.allclose(before.tasks[0], after.tasks[0])


def test_block_refuses_impossible_shapes():
    with pytest.raises(ConfigError, match="level"):
        PLE(4, 2, levels=0)
    with pytest.raises(ConfigError, match="expert"):
        PLE(4, 2, n_task_experts=0, n_shared_experts=0)
    with pytest.raises(ConfigError, match="expert_hidden"):
        PLE(4, 2, expert_hidden=[])


# --------------------------------------------------------------------------------------------- ranker
def test_registered_and_built_by_name(world):
    fm = world[0]
    assert "ple" in names("ranker")
    m = build_model("ple", fm, {**SMALL, "levels": 3})
    assert isinstance(m, PLERanker) and len(m.ple.levels) == 3


def test_config_contract(world):
    fm = world[0]
    with pytest.raises(ConfigError, match="expert_hiden"):
        PLERanker(fm, {"expert_hiden": [8]})
    with pytest.raises(ConfigError, match="regression_tasks"):
        PLERanker(fm, {"tasks": ["label"], "regression_tasks": ["watch_time"]})
    with pytest.raises(ConfigError, match="task_weights"):
        PLERanker(fm, {"task_weights": {"nope": 1.0}})
    with pytest.raises(ConfigError, match=">= 0"):
        PLERanker(fm, {"task_weights": {"label": -1.0}})


def test_two_task_forward_loss_terms_and_predict(world):
    fm, train, _ = world
    torch.manual_seed(0)
    m = PLERanker(fm, {**SMALL, **TWO_TASKS, "task_weights": {"watch_time": 0.5}})
    batch = _batch(train)
    out = m(batch)
    assert {t: v.shape for t, v in out["logits"].items()} == {"label": (128,), "watch_time": (128,)}
    terms = m.compute_loss(batch, out)
    assert set(terms) == {"bce_label", "mse_watch_time"}
    mse = torch.nn.functional.mse_loss(out["logits"]["watch_time"], batch["watch_time"].float())
    assert torch.allclose(terms["mse_watch_time"], 0.5 * mse)
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in m.ple.parameters())
    m.eval()
    pred = m.predict(batch)
    logits = m(batch)["logits"]
    assert torch.allclose(pred["label"], torch.sigmoid(logits["label"]))
    assert torch.allclose(pred["watch_time"], logits["watch_time"])  # a value, not a probability


def test_two_task_ple_learns(world):
    """A few hundred Adam steps through the Trainer: the click task ranks clearly above chance and
    the regression task's error falls well below predicting the mean."""
    fm, train, valid = world
    torch.manual_seed(0)
    m = build_model("ple", fm, {**SMALL, **TWO_TASKS})
    y = valid["watch_time"]
    mse_before = float(np.mean((score_model(m, valid, 4096, "cpu")["watch_time"] - y) ** 2))
    cfg = TrainConfig(epochs=4, batch_size=256, lr=5e-3, progress=False, device="cpu", patience=4)
    fit = train_model(m, train, valid, cfg, None, tasks=["label"]).fit
    assert fit.history[-1]["step"] >= 200
    scores = score_model(m, valid, 4096, "cpu")
    mse_after = float(np.mean((scores["watch_time"] - y) ** 2))
    assert auc(valid["label"], scores["label"]) > 0.6, fit.history  # chance is 0.5
    assert mse_after < 0.5 * float(y.var()) < mse_before, (mse_before, mse_after, float(y.var()))
    losses = [h["train_mse_watch_time"] for h in fit.history]
    assert losses[-1] < 0.5 * losses[0], losses
