"""MAIL: two towers, two optimizers; the zero-shot loss never touches the embedding table."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from thawrec.data.reader import BatchReader
from thawrec.errors import ConfigError
from thawrec.models.mail import MAIL
from thawrec.config import TrainConfig
from thawrec.train.fit import score_model, train_model

SMALL = {"encoder": [32, 16], "hidden_dim": 16, "decoder": [16, 32], "attn_dim": 8,
         "ranker": {"embedding_dim": 8, "hidden": [32, 16]}}
TOWERS = {  # the ranking tower is a config choice: BaseDNN, DMR, the POSO base model
    "base_dnn": SMALL,
    "dmr": {**SMALL, "tower": "dmr", "behaviour_target": "mean",
            "ranker": {"embedding_dim": 8, "attn_hidden": [8, 4], "hidden": [16], "aux_negatives": 10}},
    "poso": {**SMALL, "tower": "poso", "behaviour_target": "mean",
             "ranker": {"embedding_dim": 8, "heads": 2, "head_dim": 4, "expert_hidden": [16], "tower_hidden": [8]}},
}


@pytest.fixture(scope="module")
def world(mail_world):
    return mail_world


def _batch(cols, n=256):
    return next(iter(BatchReader(cols, batch_size=n)))


@pytest.mark.parametrize("tower", ["base_dnn", "dmr"])
def test_zero_shot_loss_leaves_the_embedding_table_unchanged(world, monkeypatch, tower):
    fm, cols = world
    torch.manual_seed(0)
    model = MAIL(fm, TOWERS[tower])
    table0 = copy.deepcopy(model.ranker.embedding.state_dict())
    zst0 = [p.detach().clone() for m in model.zero_shot_modules() for p in m.parameters()]
    # the ranking terms stay (a group whose terms never appear is refused) but carry no gradient
    only_zst = lambda batch, out: {k: v if k.startswith("zst_") else 0 * v  # noqa: E731
                                   for k, v in MAIL.compute_loss(model, batch, out).items()}
    monkeypatch.setattr(model, "compute_loss", only_zst)
    train_model(model, cols["train"], cols["valid"], TrainConfig(epochs=1, progress=False), None)
    for k, v in model.ranker.embedding.state_dict().items():
        assert torch.equal(v, table0[k]), k  # G_A stepped, the table did not move
    after = [p for m in model.zero_shot_modules() for p in m.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(zst0, after))


def test_ranking_loss_never_steps_the_zero_shot_tower(world):
    fm, cols = world
    model = MAIL(fm, SMALL)
    groups = model.param_groups()
    zst = next(g for g in groups if g["name"] == "zero_shot")
    assert zst["loss"] == ["zst_a", "zst_v", "zst_mmd"]
    assert all(g["loss"] == ["rt_bce_label"] for g in groups if g["name"] != "zero_shot")
    zst_ids = {id(p) for p in zst["params"]}
    emb_ids = {id(p) for p in model.ranker.embedding.parameters()}
    assert not zst_ids & emb_ids and all(id(p) in zst_ids | {id(q) for g in groups for q in g["params"]}
                                         for p in model.parameters())


@pytest.mark.parametrize("tower", list(TOWERS))
def test_new_users_get_virtual_behaviour_and_old_users_their_own(world, tower):
    fm, cols = world
    torch.manual_seed(0)
    model = MAIL(fm, TOWERS[tower]).eval()
    batch = _batch(cols["test"], 512)
    new = ~(batch["hist_items"] > 0).any(1)
    assert new.any() and (~new).any()
    v_o = model.virtual_behaviour(batch)[new]
    assert v_o.abs().sum(1).min() > 0  # differs from the zero vector an empty history would pool to
    with torch.no_grad():
        out = model(batch)["logits"]["label"]
        plain = model.ranker(batch)["logits"]["label"]  # zero padding for new users
    torch.testing.assert_close(out[~new], plain[~new])  # old users: their real behaviour
    assert not torch.allclose(out[new], plain[new])


@pytest.mark.parametrize("zst, terms", [("none", set()), ("single", {"zst_a"}), ("dual", {"zst_a", "zst_v"}),
                                        ("base", {"zst_a", "zst_v", "zst_mmd"}), ("llae", {"zst_llae"})])
def test_ablations_have_their_loss_terms(world, zst, terms):
    fm, cols = world
    model = MAIL(fm, {**SMALL, "zst": zst}).train()
    batch = _batch(cols["train"])
    got = set(model.compute_loss(batch, model(batch))) - {"rt_bce_label"}
    assert got == terms
    if zst == "none":
        assert any(g["name"] == "rank_linear_map" for g in model.param_groups())


def test_trains_end_to_end_and_scores(world):
    fm, cols = world
    torch.manual_seed(0)
    model = MAIL(fm, SMALL)
    fit = train_model(model, cols["train"], cols["valid"], TrainConfig(epochs=2, progress=False), None).fit
    assert all(np.isfinite(h["train_zst_mmd"]) and np.isfinite(h["valid_auc"]) for h in fit.history)
    model.eval()
    batch = _batch(cols["test"], 2048)
    old = (batch["hist_items"] > 0).any(1)
    with torch.no_grad():  # generated behaviour is nearer the real one than the zero padding is
        real = model.ranker.embedding.pooled("hist_items", batch["hist_items"])[old]
        gen = model.tower_behaviour(batch)[old]  # as BaseDNN receives it (mean x length by default)
    assert (gen - real).pow(2).sum(1).mean() < real.pow(2).sum(1).mean()
    p = score_model(model, cols["test"], 4096)["label"]
    assert p.shape == cols["test"]["label"].shape and ((p > 0) & (p < 1)).all()


def test_config_errors(world):
    fm, _ = world
    with pytest.raises(ConfigError, match="zero-shot variant"):
        MAIL(fm, {"zst": "triple"})
    with pytest.raises(ConfigError, match="behaviour sequence"):
        MAIL(fm, {"behaviour_field": "hist_tags"})
    with pytest.raises(ConfigError, match="cannot be MAIL's ranking tower"):
        MAIL(fm, {"tower": "melu"})  # a meta-learner wraps a ranker; it takes no behaviour override
    with pytest.raises(ConfigError, match="unknown model"):
        MAIL(fm, {"tower": "din"})


def test_dmr_tower_routes_its_match_loss_to_the_ranking_optimizer(world):
    fm, cols = world
    model = MAIL(fm, TOWERS["dmr"]).train()
    batch = _batch(cols["train"])
    terms = model.compute_loss(batch, model(batch))
    assert {"rt_bce_label", "rt_match", "zst_a", "zst_v", "zst_mmd"} == set(terms)
    assert all(g["loss"] == ["rt_bce_label", "rt_match"] for g in model.param_groups() if g["name"] != "zero_shot")
    old = (batch["hist_items"] > 0).any(1)  # mean target: the average behaviour item, not the sum
    mean = model.ranker.embedding.pooled("hist_items", batch["hist_items"], mode="mean")
    torch.testing.assert_close(model.real_behaviour(batch["hist_items"])[old], mean[old])


def test_llae_is_a_rank_limited_linear_map_with_tied_decoder(world):
    fm, cols = world
    model = MAIL(fm, {**SMALL, "zst": "llae", "llae_rank": 3, "ranker": {"embedding_dim": 8, "hidden": []}})
    assert len(model.ranker.mlp) == 0  # EmbLR: logistic regression straight on the embeddings
    W = model.llae_out.weight @ model.llae_in.weight  # [d + 1, n_a * d]: mean item + log-length (default target)
    assert torch.linalg.matrix_rank(W) <= 3
    batch = _batch(cols["train"])
    a = model._attributes(batch).flatten(1)
    torch.testing.assert_close(model.virtual_behaviour(batch), a @ W.T)
