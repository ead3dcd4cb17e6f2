"""The UIE paper's two Google baselines on PLE (issue 12, item 8): PLE+CL (Yao et al. 2021's
feature-masking contrastive learning, on low-active rows) and PLE+TL (Zhang et al. 2021's
few-shot -> many-shot meta-mapping, learnt on high-active users and applied to low-active ones).

Registry and config contract, named loss terms, the low-active rule, the two views and the
InfoNCE, correlated masking, weight 0 = PLE, the meta-mapping moving a low-active user's vector,
and a short Trainer run for each that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.splits import temporal_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.eval.metrics import auc
from thawrec.models.rankers.ple import PLERanker
from thawrec.models.rankers.ple_cl import PLECLRanker
from thawrec.models.rankers.ple_tl import PLETLRanker
from thawrec.nn.contrastive import multiview_contrastive_loss
from thawrec.registry import build_model, names
from thawrec.train.fit import score_model, train_model

SMALL = {"embedding_dim": 8, "expert_hidden": [16], "tower_hidden": [8]}


@pytest.fixture(scope="module")
def world():
    """The PLE test's small world (tests/test_ple.py) with a second, real-valued task."""
    ds, _ = generate(SynthConfig(n_users=500, n_items=300, n_interactions=20000, seed=2))
    split = temporal_split(ds.interactions, valid_frac=0.15, test_frac=0.1)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 10]})).fit(ds, split.train)
    train, valid = pipe.transform(ds, split.train), pipe.transform(ds, split.valid)
    rng = np.random.default_rng(0)
    by_category = rng.normal(size=pipe.feature_map["category"].vocab_size).astype(np.float32)
    for cols in (train, valid):
        cols["watch_time"] = (1.0 + 0.8 * cols["label"] + by_category[cols["category"]]
                              + 0.2 * rng.normal(size=len(cols["label"])).astype(np.float32))
    return pipe.feature_map, train, valid


def _batch(cols, n=256, start=0):
    return {k: torch.from_numpy(np.ascontiguousarray(v[start:start + n])) for k, v in cols.items()}


def _build(cls, fm, cfg=None, seed=0):
    torch.manual_seed(seed)
    return cls(fm, {**SMALL, **(cfg or {})})


# --------------------------------------------------------------------------------------------- contract
def test_registered_and_config_contract(world):
    fm = world[0]
    assert {"ple_cl", "ple_tl"} <= set(names("ranker"))
    cl, tl = build_model("ple_cl", fm, SMALL), build_model("ple_tl", fm, SMALL)
    assert isinstance(cl, PLECLRanker) and isinstance(tl, PLETLRanker)
    assert isinstance(cl, PLERanker) and isinstance(tl, PLERanker)
    bad_cl = [({"cl": {"weigth": 1.0}}, "weigth"), ({"low_active": {"col": "avc"}}, "col"), ({"cll": {}}, "cll"),
              ({"cl": {"temperature": 0}}, "temperature"), ({"cl": {"masking": "tail"}}, "masking"),
              ({"cl": {"fields": ["nope", "item_id"]}}, "fields"), ({"cl": {"weight": -1}}, "weight"),
              ({"cl": {"value_dropout": 1.0}}, "value_dropout"), ({"low_active": {"column": "nope"}}, "column"),
              ({"low_active": {"at_most": "low"}}, "at_most"), ({"cl": {"head": [0]}}, "head")]
    for cfg, match in bad_cl:
        with pytest.raises(ConfigError, match=match):
            PLECLRanker(fm, {**SMALL, **cfg})
    bad_tl = [({"tl": {"wieght": 1.0}}, "wieght"), ({"tl": {"field": "hist_items"}}, "field"),
              ({"tl": {"condition_fields": ["user_id"]}}, "condition_fields"), ({"tl": {"few_shot_rate": 2}}, "rate"),
              ({"tl": {"min_shots": 0}}, "min_shots"), ({"low_active": {"column": "nope"}}, "column")]
    for cfg, match in bad_tl:
        with pytest.raises(ConfigError, match=match):
            PLETLRanker(fm, {**SMALL, **cfg})


def test_loss_terms_are_declared_and_named(world):
    fm, train, _ = world
    b = _batch(train)
    two = {"tasks": ["label", "watch_time"], "regression_tasks": ["watch_time"]}
    for cls, extra in ((PLECLRanker, ("cl_infonce",)), (PLETLRanker, ("tl_meta", "tl_few_shot"))):
        m = _build(cls, fm, two).train()
        assert m.aux_loss_terms == extra
        if cls is PLETLRanker:  # a trained few-shot vector for every user, so that tl_meta has rows
            m.few_shot_counts.fill_(5)
        out = m(b)
        terms = m.compute_loss(b, out)
        assert set(terms) == {"bce_label", "mse_watch_time", *extra}
        assert all(terms[k].ndim == 0 and float(terms[k].detach()) > 0 for k in extra), terms
        if cls is PLECLRanker:  # weight x Yao et al.'s InfoNCE (cross-view negatives only) of the two views
            ref = 0.1 * multiview_contrastive_loss(*out["cl_z"], 0.1, same_view_negatives=False)
            assert torch.allclose(terms["cl_infonce"], ref)
        sum(terms.values()).backward()
        m.on_batch_end(b, out)
        m.eval()  # outside training the extra terms are zero and predictions are PLE-shaped
        out = m(b)
        assert all(float(m.compute_loss(b, out)[k]) == 0.0 for k in extra)
        assert m.predict(b)["label"].shape == (256,)


# --------------------------------------------------------------------------------------------- PLE+CL
def test_cl_term_only_uses_low_active_rows(world):
    fm, train, _ = world
    b = _batch(train)
    m = _build(PLECLRanker, fm).train()
    low = b["avc"] <= 5
    assert 2 <= int(low.sum()) < len(low)
    out = m(b)
    assert torch.equal(out["cl_rows"], low) and out["cl_z"][0].shape[0] == int(low.sum())
    # the term does not move when only high-active rows change (same random draws)
    torch.manual_seed(7)
    before = m.compute_loss(b, m(b))["cl_infonce"]
    changed = dict(b)
    changed["item_id"] = torch.where(low, b["item_id"], torch.flip(b["item_id"], [0]))
    changed["category"] = torch.where(low, b["category"], torch.zeros_like(b["category"]))
    torch.manual_seed(7)
    assert torch.equal(m.compute_loss(changed, m(changed))["cl_infonce"], before)
    # a batch without low-active rows gives an exact zero
    none = _build(PLECLRanker, fm, {"low_active": {"at_most": 0}}).train()
    out = none(b)
    assert not bool(out["cl_rows"].any()) and "cl_z" not in out
    assert float(none.compute_loss(b, out)["cl_infonce"]) == 0.0
    # an explicit flag column chooses the rows instead
    flag = _build(PLECLRanker, fm, {"low_active": {"column": "_low", "at_most": None}}).train()
    fb = {**b, "_low": torch.arange(256) < 10}
    assert int(flag(fb)["cl_rows"].sum()) == 10 and flag(fb)["cl_z"][0].shape[0] == 10


def test_two_views_are_complementary_and_differ(world):
    fm, train, _ = world
    b = _batch(train, 64)
    m = _build(PLECLRanker, fm, {"cl": {"masking": "random", "value_dropout": 0.5}})
    assert m.cl_fields == ["user_id", "age_bucket", "gender", "occupation", "city", "apps", "hist_items"]
    x1, x2, masked = m.views(b)
    n_fields = len(m.cl_fields)
    assert masked.shape == (64, n_fields) and bool((masked.sum(1) == n_fields // 2).all())
    assert len({tuple(r) for r in masked.tolist()}) > 1  # drawn per row
    assert not torch.equal(x1, x2)
    full = m.represent(b)
    entity = m.cl_columns >= 0
    single = torch.tensor([fm[f].kind == "categorical" for f in m.cl_fields])[m.cl_columns.clamp(min=0)]
    for x, off in ((x1, masked), (x2, ~masked)):
        cols_off = off[:, m.cl_columns.clamp(min=0)] | ~entity  # masked, or not the user's (item, context)
        assert bool((x[cols_off] == 0).all())
        kept = ~cols_off & single  # an unmasked single-valued field is the plain input
        assert torch.equal(x[kept], full[kept]) and bool((x[kept] != 0).any())
        multi = ~cols_off & ~single  # an unmasked multi-valued field lost some values (dropout 0.5)
        assert not torch.equal(x[multi], full[multi])


def test_infonce_is_lower_for_matched_than_shuffled_pairs():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(64, 16, generator=g)
    z2 = z1 + 0.3 * torch.randn(64, 16, generator=g)
    perm = torch.randperm(64, generator=g)
    matched = multiview_contrastive_loss(z1, z2, 0.1, same_view_negatives=False)
    shuffled = multiview_contrastive_loss(z1, z2[perm], 0.1, same_view_negatives=False)
    assert float(matched) < 0.5 < float(shuffled)
    # Yao et al.'s form by hand: cross-view softmax, cosine / tau, both directions averaged
    s = torch.nn.functional.normalize(z1, dim=1) @ torch.nn.functional.normalize(z2, dim=1).T / 0.1
    ref = 0.5 * (torch.nn.functional.cross_entropy(s, torch.arange(64))
                 + torch.nn.functional.cross_entropy(s.T, torch.arange(64)))
    assert torch.allclose(matched, ref, atol=1e-5)
    assert not torch.allclose(multiview_contrastive_loss(z1, z2, 0.1), ref)  # DAUC's default keeps same-view negatives


def test_correlated_masking_masks_mutually_informative_fields_together(world):
    """user_id determines age_bucket and item_id determines category: CFM, seeded by any of the
    four, masks its partner with it; RFM does so only by chance."""
    fm, train, _ = world
    fields = ["user_id", "age_bucket", "item_id", "category"]
    m = _build(PLECLRanker, fm, {"cl": {"fields": fields}})
    assert float(m.mutual_information().abs().sum()) == 0.0  # nothing seen yet
    for start in range(0, 8192, 1024):
        m.on_batch_end(_batch(train, 1024, start), {})
    mi = m.mutual_information()
    assert mi[0, 1] > 3 * mi[0, 2] and mi[2, 3] > 3 * mi[1, 3], mi
    masks = m.field_masks(2000)
    assert float((masks[:, 0] == masks[:, 1]).float().mean()) > 0.95
    assert float((masks[:, 2] == masks[:, 3]).float().mean()) > 0.95
    rfm = _build(PLECLRanker, fm, {"cl": {"fields": fields, "masking": "random"}}).field_masks(2000)
    assert float((rfm[:, 0] == rfm[:, 1]).float().mean()) < 0.5  # 1/3 expected
    state = m.state_dict()
    assert "cl_joint" in state and "cl_columns" not in state  # the MI counts are checkpointed


# --------------------------------------------------------------------------------------------- weight 0 = PLE
@pytest.mark.parametrize("cls,cfg", [(PLECLRanker, {"cl": {"weight": 0.0}}), (PLETLRanker, {"tl": {"weight": 0.0}})])
def test_weight_zero_is_ple(world, cls, cfg):
    """Same seed, same batches, same optimizer: the same predictions as PLE, before and after steps."""
    fm, train, _ = world
    dense = {"sparse_embeddings": False}  # one plain Adam over everything
    ple, m = _build(PLERanker, fm, dense, seed=3), _build(cls, fm, {**dense, **cfg}, seed=3)
    own = {k: v for k, v in m.state_dict().items() if k in ple.state_dict()}
    assert len(own) == len(ple.state_dict()) and all(torch.equal(v, ple.state_dict()[k]) for k, v in own.items())
    opts = [torch.optim.Adam(net.parameters(), lr=1e-2) for net in (ple, m)]
    v = _batch(train, 512, 4096)
    assert torch.equal(ple.eval().predict(v)["label"], m.eval().predict(v)["label"])
    for step in range(3):
        b = _batch(train, 256, 256 * step)
        assert bool((b["avc"] <= 5).any())  # low-active rows are there
        for net, opt in zip((ple, m), opts):
            net.train()
            out = net(b)
            opt.zero_grad()
            sum(net.compute_loss(b, out).values()).backward()
            opt.step()
            net.on_batch_end(b, out)
    ple.eval(), m.eval()
    assert torch.equal(ple.predict(v)["label"], m.predict(v)["label"])


# --------------------------------------------------------------------------------------------- PLE+TL
def test_tl_mapping_learnt_on_high_active_moves_low_active_users(world):
    fm, train, _ = world
    m = _build(PLETLRanker, fm, {"sparse_embeddings": False, "tl": {"min_shots": 1, "few_shot_rate": 0.5}})
    b = _batch(train, 512)
    low = b["avc"] <= 5
    e0 = m.embedding.vector("user_id", b["user_id"]).detach()
    c0 = m.condition(b)
    assert torch.equal(m.transfer(e0, c0), e0)  # identity at start
    main = [(n, p) for n, p in m.named_parameters() if not n.startswith(("mapping.", "few_shot."))]
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    metas = 0
    for step in range(30):
        bb = _batch(train, 512, 512 * (step % 8))
        m.train()
        out = m(bb)
        assert not bool((out["tl_few_rows"] & out["tl_low"]).any())  # few-shot rows are high-active
        terms = m.compute_loss(bb, out)
        if "tl_meta" in out:
            metas += 1
            pred, target, w = out["tl_meta"]
            assert len(pred) <= int((~out["tl_low"]).sum()) and torch.allclose(w.sum(), torch.tensor(1.0))
            # the transfer terms train F and the few-shot table only, never the main model
            grads = torch.autograd.grad(terms["tl_meta"] + terms["tl_few_shot"], [p for _, p in main],
                                        retain_graph=True, allow_unused=True)
            assert all(g is None or not bool(g.any()) for g in grads)
            assert torch.autograd.grad(terms["tl_meta"], m.mapping.g[-1].weight, retain_graph=True)[0].abs().sum() > 0
            # and the main loss trains the low-active users' vectors through F, never F itself
            assert torch.autograd.grad(terms["bce_label"], m.mapping.g[-1].weight, retain_graph=True,
                                       allow_unused=True)[0] is None
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
        m.on_batch_end(bb, out)
    assert metas >= 25 and int(m.few_shot_counts.sum()) > 0
    m.eval()
    e = m.embedding.vector("user_id", b["user_id"]).detach()
    moved = m.transfer(e, m.condition(b))
    assert not torch.allclose(moved[low], e[low])
    # PLE reads the moved vector on low-active rows and the plain one on high-active rows
    seen = {}
    handle = m.ple.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    m(b)
    handle.remove()
    a, z = m.field_cols
    assert torch.allclose(seen["x"][low, a:z], moved[low]) and torch.equal(seen["x"][~low, a:z], e[~low])
    # no high-active row at all: no few-shot or meta term, F is not trained
    all_low = _build(PLETLRanker, fm, {"low_active": {"at_most": 1000}, "tl": {"min_shots": 1}}).train()
    out = all_low(b)
    terms = all_low.compute_loss(b, out)
    assert "tl_meta" not in out and float(terms["tl_meta"]) == 0.0 and float(terms["tl_few_shot"]) == 0.0


# --------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("name,cfg", [("ple_cl", {"cl": {"weight": 0.1}}), ("ple_tl", {"tl": {"weight": 1.0}})])
def test_short_training_run_learns(world, name, cfg):
    fm, train, valid = world
    torch.manual_seed(0)
    m = build_model(name, fm, {**SMALL, **cfg})
    tc = TrainConfig(epochs=2, batch_size=256, lr=5e-3, progress=False, device="cpu", patience=2)
    fit = train_model(m, train, valid, tc, None).fit
    extra = m.aux_loss_terms
    assert all(f"train_{k}" in fit.history[-1] for k in extra), fit.history[-1]
    scores = score_model(m, valid, 4096, "cpu")["label"]
    assert auc(valid["label"], scores) > 0.6, fit.history
    if name == "ple_cl":  # the contrastive objective was learnt: matched views beat shuffled ones
        cl = [h["train_cl_infonce"] for h in fit.history]
        assert cl[-1] < cl[0], cl
        m.eval()
        b = _batch(train, 2048, 4096)  # the training period has more low-active rows than the later one
        low = {k: v[b["avc"] <= 5] for k, v in b.items()}
        assert len(low["label"]) > 200
        with torch.no_grad():
            z1, z2 = (m.encode(x) for x in m.views(low)[:2])
            perm = torch.randperm(len(z1), generator=torch.Generator().manual_seed(0))
            assert float(m.contrastive_loss(z1, z2)) < float(m.contrastive_loss(z1, z2[perm]))
    else:
        assert int(m.few_shot_counts.sum()) > 0
        b = _batch(valid, 512)
        e = m.embedding.vector("user_id", b["user_id"])
        assert not torch.allclose(m.transfer(e, m.condition(b)), e)
