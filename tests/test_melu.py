"""MeLU: the local update adapts only the decision layers, lowers the support loss, is second
order, scores causally, matches a slow per-user autograd reference, and trains end to end."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader, EpisodeReader
from thawrec.data.splits import time_window_new_users
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.models.baselines.melu import MeLU
from thawrec.config import TrainConfig
from thawrec.train.fit import score_model, train_model

SMALL = {"embedding_dim": 8, "heads": 2, "head_dim": 4, "expert_hidden": [16], "tower_hidden": [8]}
DECISION = ("mmoe.", "towers.", "heads.")


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=300, n_items=200, n_interactions=8000, seed=3))
    split = time_window_new_users(ds.interactions, window=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 10]})).fit(ds, split.train)
    return pipe.feature_map, pipe.transform(ds, split.train), pipe.transform(ds, split.test)


def episode(cols, S=10, Q=10):
    return next(iter(EpisodeReader(cols, users_per_batch=16, n_support=S, n_query=Q, seed=0)))


def support_view(m, batch):
    U, L, S = m.episode_shape(batch)
    x = m.base.encode(batch)[0].view(U, L, -1)
    return x[:, :S], m._labels(batch).view(U, L, -1)[:, :S], batch["_mask"].view(U, L)[:, :S]


def mean_loss(m, params, x, y, w, batched):
    dims = (0 if batched else None, 0, 0, 0)
    return float(torch.vmap(m._user_loss, in_dims=dims)(params, x, y, w).sum(-1).mean())


def user_rank(cols):
    """Each row's position in its user's time order (ties by row order), and the user sizes."""
    n = len(cols["_user"])
    order = np.lexsort((np.arange(n), cols["_ts"], cols["_user"]))
    u = cols["_user"][order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    size = np.empty(n, np.int64)
    size[order] = np.repeat(counts, counts)
    return rank, size


def global_probs(m, cols):
    m.eval()
    with torch.no_grad():
        b = next(iter(BatchReader(cols, batch_size=len(cols["_user"]), rank=0, world_size=1)))
        return {t: torch.sigmoid(v).numpy() for t, v in m.base(b)["logits"].items()}


def test_local_update_touches_only_decision_layers(world):
    fm, train, _ = world
    torch.manual_seed(0)
    m = MeLU(fm, SMALL)
    fast = m.fast_params()
    names = {n for n, _ in m.base.named_parameters()}
    assert set(fast) == {n for n in names if n.startswith(DECISION)}
    assert names - set(fast) and all(n.startswith(("embedding.", "attn.")) for n in names - set(fast))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    batch = episode(train)
    with torch.no_grad():
        theta = m.adapt(*support_view(m, batch))
    assert set(theta) == set(fast)
    for k, v in m.state_dict().items():  # embeddings, attention and θ itself untouched in place
        assert torch.equal(v, before[k]), k
    for k, v in theta.items():
        assert v.shape == (16, *fast[k].shape)
        assert (v - fast[k]).abs().amax() > 0, k


def test_outer_loss_reaches_embeddings_and_is_second_order(world):
    fm, train, _ = world
    batch = episode(train)
    grads = {}
    for first_order in (False, True):
        torch.manual_seed(0)
        m = MeLU(fm, {**SMALL, "first_order": first_order})
        sum(m.compute_loss(batch, m(batch)).values()).backward()
        named = dict(m.named_parameters())
        assert all(p.grad is not None for p in named.values())  # embeddings and attention learn via the query loss
        grads[first_order] = {k: (p.grad.to_dense() if p.grad.is_sparse else p.grad) for k, p in named.items()}
    emb = [k for k in grads[False] if k.startswith("base.embedding.")]
    # the second-order path (through the support gradient) changes the outer gradient
    assert any(not torch.allclose(grads[False][k], grads[True][k], atol=1e-9) for k in emb)
    assert not torch.allclose(grads[False]["base.heads.0.weight"], grads[True]["base.heads.0.weight"])


def test_episode_adapts_on_support_and_scores_the_query(world):
    fm, train, _ = world
    torch.manual_seed(0)
    m = MeLU(fm, SMALL)
    batch = episode(train)
    U, L, S = m.episode_shape(batch)
    mask, is_q = batch["_mask"].bool(), batch["_is_query"].bool()
    assert (U, L, S) == (16, 20, 10) and (~mask & ~is_q).any() and (~mask & is_q).any()
    with torch.no_grad():
        out = m(batch)

        def logits_after_flip(slot: int) -> torch.Tensor:
            b = {**batch, "label": batch["label"].clone()}
            b["label"][slot] = 1 - b["label"][slot]
            return m(b)["logits"]["label"]

        first = lambda sel: int(sel.nonzero()[0, 0])  # noqa: E731
        assert torch.equal(logits_after_flip(first(mask & is_q)), out["logits"]["label"])  # query labels unseen
        assert torch.equal(logits_after_flip(first(~mask & ~is_q)), out["logits"]["label"])  # padding masked
        assert not torch.equal(logits_after_flip(first(mask & ~is_q)), out["logits"]["label"])

        terms = m.compute_loss(batch, out)
        lg, y = out["logits"]["label"].view(U, L), batch["label"].view(U, L)
        w = (mask & is_q).view(U, L)
        want = np.mean([F.binary_cross_entropy_with_logits(lg[u][w[u]], y[u][w[u]]).item() for u in range(U)])
        assert set(terms) == {"query_bce_label"} and abs(terms["query_bce_label"].item() - want) < 1e-6
        noisy = {"logits": {"label": torch.where(mask & is_q, out["logits"]["label"], torch.tensor(50.0))}}
        assert torch.equal(m.compute_loss(batch, noisy)["query_bce_label"], terms["query_bce_label"])


def test_one_local_step_lowers_support_loss(world):
    fm, train, _ = world
    torch.manual_seed(0)
    m = MeLU(fm, SMALL)
    assert m.cfg["local_lr"] == 0.1 and m.cfg["local_steps"] == 1
    with torch.no_grad():
        x, y, w = support_view(m, episode(train))
        theta = m.adapt(x, y, w)
        l0 = torch.vmap(m._user_loss, in_dims=(None, 0, 0, 0))(m.fast_params(), x, y, w).sum(-1)
        l1 = torch.vmap(m._user_loss)(theta, x, y, w).sum(-1)
    assert float(l0.mean() - l1.mean()) > 5e-3, (l0.mean(), l1.mean())
    assert float((l1 < l0).float().mean()) >= 0.9


def test_scoring_is_causal(world):
    fm, _, test = world
    torch.manual_seed(0)
    m = MeLU(fm, SMALL)
    S = m.cfg["n_support"]
    rank, size = user_rank(test)
    base = score_model(m, test, 512, "cpu")["label"]
    first = rank < S
    np.testing.assert_allclose(base[first], global_probs(m, test)["label"][first], rtol=0, atol=1e-6)

    user = test["_user"][np.flatnonzero(size >= S + 3)[0]]
    mine = test["_user"] == user
    last = np.flatnonzero(mine & (rank == size - 1))[0]
    early = np.flatnonzero(mine & (rank == 2))[0]
    for row, later_changes in ((last, False), (early, True)):
        flipped = {**test, "label": test["label"].copy()}
        flipped["label"][row] = 1.0 - flipped["label"][row]
        p = score_model(m, flipped, 512, "cpu")["label"]
        np.testing.assert_array_equal(p[~mine], base[~mine])  # other users never see this label
        np.testing.assert_array_equal(p[mine & first], base[mine & first])  # the prior rows ignore it
        later = mine & ~first
        assert (np.abs(p[later] - base[later]).max() > 1e-6) == later_changes


def reference_scores(m, cols):
    """Slow reference: one user at a time, a deep-copied base model, plain autograd SGD steps."""
    S, lr, tasks = m.cfg["n_support"], m.cfg["local_lr"], m.tasks
    n = len(cols["_user"])
    out = {t: np.zeros(n, np.float32) for t in tasks}
    batch_of = lambda idx: {k: torch.from_numpy(np.ascontiguousarray(v[idx])) for k, v in cols.items()}  # noqa: E731
    for u in np.unique(cols["_user"]):
        rows = np.flatnonzero(cols["_user"] == u)
        rows = rows[np.lexsort((rows, cols["_ts"][rows]))]
        model = copy.deepcopy(m.base).eval()
        with torch.no_grad():
            logits = model(batch_of(rows[:S]))["logits"]
        for t in tasks:
            out[t][rows[:S]] = torch.sigmoid(logits[t]).numpy()
        if len(rows) <= S:
            continue
        fast = [p for n_, p in model.named_parameters() if n_.startswith(DECISION)]
        sup = batch_of(rows[:S])
        for _ in range(m.cfg["local_steps"]):
            lg = model(sup)["logits"]
            loss = sum(F.binary_cross_entropy_with_logits(lg[t], sup[t].float()) for t in tasks)
            for p, g in zip(fast, torch.autograd.grad(loss, fast)):
                p.data -= lr * g
        with torch.no_grad():
            logits = model(batch_of(rows[S:]))["logits"]
        for t in tasks:
            out[t][rows[S:]] = torch.sigmoid(logits[t]).numpy()
    return out


def test_vectorised_scoring_matches_slow_reference(world):
    fm, _, test = world
    users = np.unique(test["_user"])[:12]
    keep = np.isin(test["_user"], users)
    cols = {k: v[keep] for k, v in test.items()}
    cols["click2"] = ((cols["_ts"] // 7) % 2).astype(np.float32)  # a second task
    torch.manual_seed(0)
    m = MeLU(fm, {**SMALL, "tasks": ["label", "click2"], "n_support": 4, "local_steps": 2, "score_users": 3})
    _, size = user_rank(cols)
    assert (size <= 4).any() and (size > 4).sum() > 3 * 4  # priors only, and several chunks with padding
    fast = score_model(m, cols, 16, "cpu")  # small batches: many chunks
    slow = reference_scores(m, cols)
    for t in m.tasks:
        np.testing.assert_allclose(fast[t], slow[t], rtol=0, atol=1e-5)


def test_trains_one_epoch_and_scores(world, tmp_path):
    fm, train, test = world
    torch.manual_seed(0)
    m = MeLU(fm, SMALL)
    fixed = episode(train)
    with torch.no_grad():
        before = float(sum(m.compute_loss(fixed, m(fixed)).values()))
    reader = EpisodeReader(train, users_per_batch=16, n_support=10, n_query=10, seed=1)
    run = train_model(m, train, test, TrainConfig(epochs=1, lr=3e-3, progress=False, device="cpu"), tmp_path,
                      reader=reader)
    hist = run.fit.history[-1]
    assert np.isfinite(hist["train_query_bce_label"]) and np.isfinite(hist["valid_auc"])
    with torch.no_grad():
        after = float(sum(m.compute_loss(fixed, m(fixed)).values()))
    assert after < before, (before, after)
    p = score_model(m, test, 4096, "cpu")
    assert p["label"].shape == (len(test["_user"]),) and ((p["label"] > 0) & (p["label"] < 1)).all()
    plain = next(iter(BatchReader(test, batch_size=64, rank=0, world_size=1)))
    np.testing.assert_allclose(m.predict(plain)["label"].numpy(), global_probs(m, test)["label"][:64], atol=1e-6)


def test_config_errors(world, monkeypatch):
    fm = world[0]
    with pytest.raises(ConfigError, match="POSO modules"):
        MeLU(fm, {**SMALL, "poso": {"mlp": True}})
    import thawrec.nn.moe as moe

    monkeypatch.setattr(moe, "MLP", functools.partial(moe.MLP, batch_norm=True))
    with pytest.raises(ConfigError, match="BatchNorm"):
        MeLU(fm, SMALL)
