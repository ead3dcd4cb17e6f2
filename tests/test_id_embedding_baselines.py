"""Meta-Embedding and MWUF on the shared POSO base model: what each may and may not change."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from thawrec.data.preprocess import UNK, FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader, EpisodeReader, episode_width
from thawrec.data.splits import by_user_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.models.baselines.meta_embedding import MetaEmbedding
from thawrec.models.baselines.mwuf import MWUF
from thawrec.models.poso import PosoRanker
from thawrec.config import TrainConfig
from thawrec.train.fit import score_model, train_model

SMALL = {"embedding_dim": 8, "heads": 2, "head_dim": 4, "expert_hidden": [16], "tower_hidden": [8],
         "tasks": ["label"]}


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=400, n_items=200, n_interactions=16000, seed=3))
    split = by_user_split(ds.interactions, test_frac=0.3, valid_frac=0.1, seed=0)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 10], "hist_tags": ["tags", 10]},
                                         history_positive_only=False)).fit(ds, split.train)
    return pipe.feature_map, {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}


def _trained_base(world) -> PosoRanker:
    fm, cols = world
    torch.manual_seed(0)
    base = PosoRanker(fm, SMALL)
    train_model(base, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None)
    return base


def test_episode_width_from_pattern():
    q = torch.tensor([False] * 3 + [True] * 2)
    assert episode_width(q.repeat(4)) == 5 and episode_width(q) == 5


def test_meta_embedding_trains_only_the_generator_and_replaces_only_unknown_users(world):
    fm, cols = world
    base = _trained_base(world)
    frozen = copy.deepcopy(base.state_dict())
    me = MetaEmbedding(base.feature_map, base=base)
    before = [p.detach().clone() for p in me.generator.parameters()]
    reader = EpisodeReader(cols["train"], users_per_batch=16, n_support=5, n_query=5, seed=0)
    fit = train_model(me, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None, reader=reader)
    assert np.isfinite(fit.fit.history[0]["train_warm_up"])
    for k, v in base.state_dict().items():  # the base model is never updated
        assert torch.equal(v, frozen[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(before, me.generator.parameters()))
    test = cols["test"]  # by-user split: every test user is unknown to the ID vocabulary
    assert (test["user_id"] == UNK).all()
    p_me = score_model(me, test, 4096)["label"]
    p_base = score_model(base, test, 4096)["label"]
    assert not np.allclose(p_me, p_base)
    train_rows = {k: v[:500] for k, v in cols["train"].items()}  # known users keep their own embedding
    np.testing.assert_allclose(score_model(me, train_rows, 512)["label"], score_model(base, train_rows, 512)["label"],
                               rtol=1e-5, atol=1e-6)


def test_meta_embedding_warm_up_uses_each_users_own_gradient(world):
    fm, cols = world
    base = _trained_base(world)
    me = MetaEmbedding(base.feature_map, {"warm_lr": 1.0}, base=base)
    batch = next(iter(EpisodeReader(cols["train"], users_per_batch=4, n_support=3, n_query=3, seed=1)))
    width = episode_width(batch["_is_query"])
    flip = torch.arange(len(batch["label"])) < width  # user 0's rows only
    out = me(batch)
    moved = me(dict(batch, label=torch.where(flip, 1 - batch["label"], batch["label"])))
    assert not torch.allclose(out["phi_warm"][0], moved["phi_warm"][0])  # its own warm-up step moved
    torch.testing.assert_close(out["phi_warm"][1:], moved["phi_warm"][1:])  # nobody else's did
    assert torch.isfinite(out["warm_loss"])


def test_mwuf_meta_networks_learn_from_warm_loss_only(world):
    fm, cols = world
    torch.manual_seed(0)
    model = MWUF(fm, SMALL)
    groups = model.param_groups()
    assert {g["name"] for g in groups} >= {"base_dense", "base_sparse", "meta"}
    assert all(g["loss"] == ["cold_bce_label"] for g in groups if g["name"].startswith("base"))
    model.train()
    batch = next(iter(BatchReader(cols["train"], batch_size=256)))
    out = model(batch)
    terms = model.compute_loss(batch, out)
    meta = list(model.scaler.parameters()) + list(model.shifter.parameters())
    g_cold = torch.autograd.grad(terms["cold_bce_label"], meta, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.abs().sum() for g in g_cold)  # the cold path never reaches the meta nets
    g_warm = torch.autograd.grad(terms["warm_bce_label"], meta, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in g_warm)


def test_mwuf_new_users_start_from_the_mean_known_embedding_and_training_runs(world):
    fm, cols = world
    torch.manual_seed(0)
    model = MWUF(fm, SMALL)
    batch = next(iter(BatchReader(cols["test"], batch_size=64)))
    cold = model.cold_embedding(batch)
    table = model.base.embedding.tables["user_id"].weight
    torch.testing.assert_close(cold, table[2:].mean(0).expand_as(cold))
    fit = train_model(model, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None)
    assert 0.5 < fit.fit.history[0]["valid_auc"] <= 1.0
    assert len(score_model(model, cols["test"], 4096)["label"]) == len(cols["test"]["label"])


def test_meta_embedding_of_behaviour_for_models_without_user_ids():
    """MAIL's protocol: no user-ID input, new users have no behaviour; MetaEmb generates the
    behaviour of a BaseDNN (frozen, kept in eval mode) and leaves old users' own behaviour alone."""
    from thawrec.data.splits import mask_new_users, temporal_split
    from thawrec.models.rankers.base_dnn import BaseDNN

    ds, _ = generate(SynthConfig(n_users=300, n_items=150, n_interactions=9000, seed=5))
    split = mask_new_users(temporal_split(ds.interactions, valid_frac=0.1, test_frac=0.2), frac=0.4, seed=0)
    pipe = FeaturePipeline(FeatureConfig(user_fields=list(ds.user_attrs), sequences={"hist_items": ["item_id", 10]},
                                         history_positive_only=True, mask_new_behaviour=True)).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    torch.manual_seed(0)
    base = BaseDNN(pipe.feature_map, {"embedding_dim": 8, "hidden": [16]})
    train_model(base, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None)
    frozen = copy.deepcopy(base.state_dict())  # includes batch-norm running statistics
    me = MetaEmbedding(base.feature_map, {"target": "hist_items", "hide_fields": ["avc"]}, base=base)
    assert isinstance(me.generator[-1], torch.nn.Linear)  # no tanh range for a pooled behaviour
    old = {k: v[~cols["train"]["_is_new"].astype(bool)] for k, v in cols["train"].items()}
    reader = EpisodeReader(old, users_per_batch=16, n_support=5, n_query=5, seed=0)
    fit = train_model(me, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None, reader=reader)
    assert np.isfinite(fit.fit.history[0]["train_cold_start"])
    for k, v in base.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    me.eval()
    batch = next(iter(BatchReader(cols["test"], batch_size=1024)))
    new = ~(batch["hist_items"] > 0).any(1)
    assert new.any() and (~new).any()
    with torch.no_grad():
        got, plain = me(batch)["logits"]["label"], base(batch)["logits"]["label"]
    torch.testing.assert_close(got[~new], plain[~new])
    assert not torch.allclose(got[new], plain[new])
