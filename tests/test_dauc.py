"""DAUC (issue 5): gradient reversal, the multi-view contrastive loss of Eq. 3, the model's terms
and ablations, and that it recovers planted user groups from the side view."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score

from thawrec.errors import ConfigError
from thawrec.models.clustering import UserViews, embed
from thawrec.retrieval.index import kmeans
from thawrec.train.clustering import fit_clusterer
from thawrec.models.dauc import DAUC
from thawrec.nn.contrastive import multiview_contrastive_loss
from thawrec.nn.grl import GradientReversal, grad_reverse

SMALL = {"side_encoder": [64, 32], "target_encoder": [32], "contrastive": [32, 32]}


def planted_views(n_users: int = 300, groups: int = 3, seed: int = 0) -> UserViews:
    """3 planted groups. Side view (M = 60): 15 apps per group, installed with p = 0.5 in the
    group and 0.05 outside, plus 15 apps that active users install more (p = 0.5 vs 0.05), the
    active/cold shift DAUC must not cluster on. Target view (N = 16): group mean + noise for the
    ~half of users that are active, zeros for the rest."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(groups, size=n_users)
    active = rng.random(n_users) < 0.5
    band = 15
    p = np.full((n_users, groups * band + band), 0.05)
    for g in range(groups):
        p[np.ix_(truth == g, np.arange(g * band, (g + 1) * band))] = 0.5
    p[active, groups * band:] = 0.5
    side = sp.csr_matrix((rng.random(p.shape) < p).astype(np.float32))
    means = rng.normal(size=(groups, 16))
    target = (means[truth] + 0.5 * rng.normal(size=(n_users, 16))) * active[:, None]
    return UserViews(np.arange(n_users), side, target.astype(np.float32), active, truth=truth)


# ---------------------------------------------------------------------- gradient reversal
def test_grl_is_identity_forward_and_scales_gradient_by_minus_lambda():
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    y = GradientReversal(0.5)(x)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.5 * upstream)
    x2 = torch.randn(4, requires_grad=True)
    grad_reverse(x2, 2.0).sum().backward()
    assert torch.allclose(x2.grad, torch.full((4,), -2.0))


def test_grl_refuses_negative_lambda():
    with pytest.raises(ConfigError, match="Fix"):
        GradientReversal(-1.0)


# ---------------------------------------------------------------------- contrastive loss
def eq3_reference(h1: torch.Tensor, h2: torch.Tensor, tau: float) -> float:
    """Eq. 3 transcribed with loops over users i, j."""
    views = {1: h1.double(), 2: h2.double()}
    B = len(h1)

    def d(u: int, v: int, i: int, j: int) -> float:
        a, b = views[u][i], views[v][j]
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(B):
        for (u, v) in ((1, 2), (2, 1)):
            den = sum(math.exp(d(u, u, i, j) / tau) for j in range(B) if j != i)
            den += sum(math.exp(d(u, v, i, j) / tau) for j in range(B))
            total += math.log(math.exp(d(u, v, i, i) / tau) / den)
    return -total / (2 * B)


@pytest.mark.parametrize("tau", [0.5, 0.1, 1.0])
def test_contrastive_loss_matches_eq3_transcription(tau):
    g = torch.Generator().manual_seed(1)
    h1, h2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    got = float(multiview_contrastive_loss(h1, h2, tau))
    assert got == pytest.approx(eq3_reference(h1, h2, tau), abs=1e-5)


def test_contrastive_loss_is_lower_for_aligned_views():
    g = torch.Generator().manual_seed(2)
    h1 = torch.randn(32, 8, generator=g)
    aligned = multiview_contrastive_loss(h1, h1.clone())
    random_pairs = multiview_contrastive_loss(h1, torch.randn(32, 8, generator=g))
    assert float(aligned) < float(random_pairs) - 0.5


def test_contrastive_loss_refuses_mismatched_views_and_bad_temperature():
    with pytest.raises(ConfigError, match="Fix"):
        multiview_contrastive_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ConfigError, match="Fix"):
        multiview_contrastive_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


# ---------------------------------------------------------------------- the model
def test_defaults_are_the_papers_architecture():
    m = DAUC(60, 16)
    widths = lambda mlp: [l.out_features for l in mlp.modules() if isinstance(l, torch.nn.Linear)]  # noqa: E731
    assert widths(m.side_encoder) == [800, 600, 400] and widths(m.side_decoder) == [600, 800, 60]
    assert widths(m.target_encoder) == [256, 400] and widths(m.target_decoder) == [256, 16]
    assert widths(m.f_con) == [400, 400] and widths(m.classifier) == [2]
    assert m.grl.lambda_ == 0.5 and m.cfg["temperature"] == 0.5
    assert m.represent(torch.zeros(3, 60)).shape == (3, 400)


@pytest.mark.parametrize("flag, term", [("use_rec", {"rec_side", "rec_target"}), ("use_con", {"con"}),
                                        ("use_adv", {"adv"})])
def test_each_ablation_removes_exactly_its_terms(flag, term):
    views = planted_views(40)
    batch = views.batch(np.arange(40))
    full = set(DAUC.from_views(views, SMALL).loss(batch, 0))
    assert full == {"rec_side", "rec_target", "con", "adv"}
    ablated = DAUC.from_views(views, {**SMALL, flag: False})
    assert set(ablated.loss(batch, 0)) == full - term
    if flag == "use_rec":
        assert ablated.side_decoder is None and ablated.target_decoder is None
    if flag == "use_adv":
        assert ablated.classifier is None
        with pytest.raises(ConfigError, match="use_adv=True"):
            ablated.active_probability(batch["side"])


def test_terms_need_enough_active_users():
    views = planted_views(40)
    m = DAUC.from_views(views, SMALL)
    one_active = views.batch(np.r_[np.flatnonzero(views.active)[:1], np.flatnonzero(~views.active)[:5]])
    assert set(m.loss(one_active, 0)) == {"rec_side", "rec_target", "adv"}  # no negative for con
    no_active = views.batch(np.flatnonzero(~views.active)[:5])
    assert set(m.loss(no_active, 0)) == {"rec_side", "adv"}


def test_target_reconstruction_reads_active_users_only():
    views = planted_views(40)
    m = DAUC.from_views(views, SMALL)
    batch = views.batch(np.arange(40))
    act = batch["active"]
    x2 = batch["target"][act]
    expected = (m.target_decoder(m.target_encoder(x2)) - x2).pow(2).sum(1).mean()
    assert torch.allclose(m.loss(batch, 0)["rec_target"], expected)
    side_expected = F.binary_cross_entropy_with_logits(m.side_decoder(m.side_encoder(batch["side"])), batch["side"])
    assert torch.allclose(m.loss(batch, 0)["rec_side"], side_expected)


@pytest.mark.parametrize("adv_input", ["normalized", "raw"])
def test_adversarial_gradient_reaches_the_encoder_reversed_and_scaled(adv_input):
    views = planted_views(40)
    m = DAUC.from_views(views, {**SMALL, "adv_input": adv_input})
    batch = views.batch(np.arange(40))
    enc = list(m.side_encoder.parameters()) + list(m.f_con.parameters())
    clf = list(m.classifier.parameters())
    with_grl = torch.autograd.grad(m.loss(batch, 0)["adv"], enc + clf)
    h1 = m.represent(batch["side"])
    plain = F.cross_entropy(m.classifier(F.normalize(h1, dim=-1) if adv_input == "normalized" else h1),
                            batch["active"].long())
    without = torch.autograd.grad(plain, enc + clf)
    for g_rev, g in zip(with_grl[:len(enc)], without[:len(enc)]):
        assert torch.allclose(g_rev, -0.5 * g, atol=1e-7)
    for g_rev, g in zip(with_grl[len(enc):], without[len(enc):]):  # the classifier itself is not reversed
        assert torch.allclose(g_rev, g)
    p = m.active_probability(batch["side"])
    assert p.shape == (40,) and bool(((p > 0) & (p < 1)).all()) and not p.requires_grad


def test_config_errors_say_how_to_fix():
    for bad in ({"temprature": 0.5}, {"target_encoder": [256, 300]}, {"side_encoder": []},
                {"use_rec": False, "use_con": False, "use_adv": False}, {"init": "he"}, {"temperature": 0},
                {"adv_input": "unit"}, {"grl_lambda": -1.0}, {"activation": "swish"}):
        with pytest.raises(ConfigError, match="Fix"):
            DAUC(60, 16, bad)
    DAUC(60, 16, {"target_encoder": [256, 300], "use_con": False})  # no shared f_con use: allowed
    xavier = DAUC(60, 16, {**SMALL, "init": "xavier"})
    assert float(xavier.side_encoder[0].bias.detach().abs().sum()) == 0.0


def clusters_nmi(rep: np.ndarray, truth: np.ndarray) -> float:
    return normalized_mutual_info_score(truth, kmeans(rep, 3, seed=0, backend="minibatch")[0])


def test_dauc_recovers_planted_groups_from_the_side_view():
    """The paper's architecture and lr (1e-4; at 1e-3 the adversarial game oscillates, see the
    module doc), 15 epochs of batch 64: k-means on h1 finds the planted groups, not activity."""
    views = planted_views()
    torch.manual_seed(0)
    model = DAUC.from_views(views)
    untrained = clusters_nmi(embed(model, views), views.truth)
    fit = fit_clusterer(model, views, epochs=15, batch_size=64, lr=1e-4, seed=0)
    assert {"train_rec_side", "train_rec_target", "train_con", "train_adv"} <= set(fit.history[-1])
    assert fit.history[-1]["train_con"] < fit.history[0]["train_con"]
    assert fit.history[-1]["train_adv"] < 1.0  # the adversary did not run away
    rep = embed(model, views)
    nmi = clusters_nmi(rep, views.truth)
    noise = clusters_nmi(np.random.default_rng(0).normal(size=rep.shape).astype(np.float32), views.truth)
    assert nmi > 0.9 and nmi > noise + 0.5 and nmi > untrained + 0.2, (nmi, noise, untrained)
    assert clusters_nmi(rep, views.active) < 0.05  # the active/cold shift is not what clusters
