"""DMR (Deep Match to Rank) and the blocks it adds to thawrec.nn: activation-unit attention,
embedded-sequence overrides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import temporal_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.models.rankers.dmr import DMR
from thawrec.nn.attention import ActivationUnitAttention, masked_softmax
from thawrec.nn.embedding import EmbeddedSequence
from thawrec.config import TrainConfig
from thawrec.train.fit import score_model, train_model

SMALL = {"embedding_dim": 8, "attn_hidden": [12, 6], "hidden": [32, 16], "aux_negatives": 20}


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=300, n_items=150, n_interactions=9000, seed=4))
    split = temporal_split(ds.interactions, valid_frac=0.1, test_frac=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 15]}, history_positive_only=True))
    pipe.fit(ds, split.train)
    return pipe.feature_map, {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}


def _batch(cols, n=256):
    return next(iter(BatchReader(cols, batch_size=n)))


def test_activation_unit_equals_the_mlp_on_the_concatenated_input():
    torch.manual_seed(0)
    att = ActivationUnitAttention(6, (10, 5))
    q, k = torch.randn(4, 6), torch.randn(4, 7, 6)
    mask = torch.rand(4, 7) > 0.3
    mask[3] = False
    qq = q[:, None].expand_as(k)
    h = att.act(att.first(torch.cat([qq, k, qq - k, qq * k], -1)))  # the DIN definition, by hand
    ref = att.rest(h).squeeze(-1)
    torch.testing.assert_close(att.score(q, k), ref)
    pooled, w, raw = att(q, k, mask)
    torch.testing.assert_close(w, masked_softmax(ref, mask))
    torch.testing.assert_close(w[:3].sum(-1), torch.ones(3))
    assert (w[3] == 0).all() and (pooled[3] == 0).all() and (raw[~mask] == 0).all()
    k.requires_grad_(True)
    att(q, k, mask)[0].sum().backward()
    assert torch.isfinite(k.grad).all()  # an empty history gives no NaN


def test_embedded_sequence_virtual_item_and_trim():
    emb = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    seq = EmbeddedSequence(emb * mask[..., None], mask)
    v = torch.tensor([[9.0, 9.0, 9.0], [1.0, 2.0, 3.0]])
    out = seq.with_virtual(torch.tensor([False, True]), v)
    torch.testing.assert_close(out.pooled(), torch.stack([seq.pooled()[0], v[1]]))
    assert out.mask[1].tolist() == [True, False, False, False] and torch.equal(out.mask[0], mask[0])
    assert out.trimmed().emb.shape == (2, 2, 3) and torch.equal(out.trimmed().pooled(), out.pooled())


def test_dmr_forward_losses_and_padding_invariance(world):
    fm, cols = world
    torch.manual_seed(0)
    model = DMR(fm, SMALL).train()
    batch = _batch(cols["train"])
    out = model(batch)
    terms = model.compute_loss(batch, out)
    assert set(terms) == {"bce_label", "match"} and all(torch.isfinite(t) for t in terms.values())
    model.eval()
    with torch.no_grad():
        a = model(batch)["logits"]["label"]
        b = model({**batch, "hist_items": batch["hist_items"][:, :8]})["logits"]["label"]
    longest = int((batch["hist_items"] > 0).sum(1).max())
    if longest <= 8:  # cutting padding columns changes nothing
        torch.testing.assert_close(a, b)
    ids = batch["hist_items"]
    seq = model.embedding.sequence("hist_items", ids)
    u_now, u_before = model.user_vector(seq)
    one = ((ids > 0).sum(1) == 1)
    if one.any():  # with a single behaviour there is no "before": the user vector of nothing
        torch.testing.assert_close(u_before[one], model.u2i_user(torch.zeros_like(u_before[one])))


def test_dmr_trains_and_beats_chance(world):
    fm, cols = world
    torch.manual_seed(0)
    model = DMR(fm, SMALL)
    fit = train_model(model, cols["train"], cols["valid"], TrainConfig(epochs=2, progress=False), None).fit
    assert all(np.isfinite(h["train_match"]) for h in fit.history)
    assert fit.history[-1]["valid_auc"] > 0.55
    p = score_model(model, cols["test"], 4096)["label"]
    assert p.shape == cols["test"]["label"].shape


def test_dmr_config_errors(world):
    fm, _ = world
    with pytest.raises(ConfigError, match="sequence feature 'hist_tags'"):
        DMR(fm, {"behaviour_field": "hist_tags"})
