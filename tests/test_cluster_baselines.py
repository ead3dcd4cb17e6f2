"""DAUC's deep clustering baselines (DEC, IDEC, DCCAE, COMPLETER) and their losses."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import normalized_mutual_info_score as nmi

from thawrec.errors import ConfigError
from thawrec.models.baselines.completer import COMPLETER
from thawrec.models.baselines.dccae import DCCAE
from thawrec.models.baselines.dec import DEC, IDEC, target_distribution
from thawrec.models.clustering import UserViews, embed
from thawrec.retrieval.index import kmeans
from thawrec.train.clustering import fit_clusterer
from thawrec.nn.losses import cca_loss, completer_contrastive_loss

SMALL = {"encoder": [32, 16, 8]}
SMALL2 = {"side_encoder": [32, 16, 8], "target_encoder": [16, 8]}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # weight initialisation happens before fit_clusterer seeds torch


def make_views(seed: int = 0) -> UserViews:
    """300 users in 3 planted groups; side view M = 60 (each group installs its own 20 apps with
    probability 0.5, any other app with 0.05); target view N = 16 (group mean + noise) for about
    half the users (the active ones), zeros for the rest."""
    rng = np.random.default_rng(seed)
    U, M, N, G = 300, 60, 16, 3
    truth = np.repeat(np.arange(G), U // G)
    rng.shuffle(truth)
    prob = np.full((G, M), 0.05)
    for g in range(G):
        prob[g, 20 * g:20 * (g + 1)] = 0.5
    side = (rng.random((U, M)) < prob[truth]).astype(np.float32)
    means = rng.normal(0, 1, (G, N))
    active = rng.random(U) < 0.5
    target = (means[truth] + 0.3 * rng.normal(size=(U, N))).astype(np.float32) * active[:, None]
    return UserViews(np.arange(U), sp.csr_matrix(side), target, active, truth=truth)


@pytest.fixture(scope="module")
def views() -> UserViews:
    return make_views()


def _finite(fit) -> bool:
    return all(np.isfinite(v) for row in fit.history for k, v in row.items() if k != "epoch")


def _kmeans_nmi(model, views: UserViews) -> float:
    labels, _ = kmeans(embed(model, views), 3, seed=0)
    return nmi(views.truth, labels)


# ------------------------------------------------------------------------------------- losses
def test_cca_loss_correlated_below_independent_and_bounds():
    g = torch.Generator().manual_seed(0)
    h1 = torch.randn(500, 3, generator=g)
    mix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0.2, 0.0, -1.0]])
    same = cca_loss(h1, h1 @ mix + 1.0, r1=0.0, r2=0.0)            # invertible linear map: all 3 correlations 1
    indep = cca_loss(h1, torch.randn(500, 3, generator=g), r1=0.0, r2=0.0)
    assert same.item() == pytest.approx(-3.0, abs=1e-4)
    assert -0.5 < indep.item() <= 0.0
    assert same < indep
    assert cca_loss(h1, h1 @ mix, k=1).item() == pytest.approx(-1.0, abs=1e-2)  # top-1 only


def test_cca_loss_one_dimension_is_the_correlation_coefficient():
    rng = np.random.default_rng(1)
    a = rng.normal(size=50)
    b = 0.6 * a + rng.normal(size=50)
    rho = np.corrcoef(a, b)[0, 1]
    t = lambda v: torch.tensor(v[:, None], dtype=torch.float32)  # noqa: E731
    assert cca_loss(t(a), t(b), r1=0.0, r2=0.0).item() == pytest.approx(-abs(rho), abs=1e-5)
    assert cca_loss(t(a), t(-b), r1=0.0, r2=0.0).item() == pytest.approx(-abs(rho), abs=1e-5)
    r = 0.1  # ridge: cov / sqrt((var_a + r)(var_b + r))
    ridge = np.cov(a, b)[0, 1] / np.sqrt((a.var(ddof=1) + r) * (b.var(ddof=1) + r))
    assert cca_loss(t(a), t(b), r1=r, r2=r).item() == pytest.approx(-abs(ridge), abs=1e-5)


def test_cca_loss_gradient_finite_when_batch_smaller_than_dims():
    h1 = torch.randn(10, 40, requires_grad=True)
    h2 = torch.randn(10, 30, requires_grad=True)
    loss = cca_loss(h1, h2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(h1.grad).all() and torch.isfinite(h2.grad).all()
    assert loss.item() >= -9.0 - 1e-3  # at most n - 1 = 9 non-zero correlations


def test_cca_loss_falls_back_when_the_svd_does_not_converge(monkeypatch):
    g = torch.Generator().manual_seed(4)
    h1, h2 = torch.randn(30, 6, generator=g), torch.randn(30, 4, generator=g)
    h2 = h2 + h1[:, :4]
    direct = cca_loss(h1, h2)

    def fail(*args, **kwargs):
        raise torch.linalg.LinAlgError("did not converge")

    monkeypatch.setattr(torch.linalg, "svdvals", fail)
    h1.requires_grad_(True)
    fallback = cca_loss(h1, h2)
    fallback.backward()
    assert fallback.item() == pytest.approx(direct.item(), abs=1e-5)
    assert torch.isfinite(h1.grad).all()


def test_completer_loss_matches_numpy_transcription():
    rng = np.random.default_rng(2)
    z1 = np.exp(rng.normal(size=(6, 4)))
    z1 /= z1.sum(1, keepdims=True)
    z2 = np.exp(rng.normal(size=(6, 4)))
    z2 /= z2.sum(1, keepdims=True)
    alpha = 9.0
    P = sum(np.outer(z1[n], z2[n]) for n in range(6))
    P = (P + P.T) / 2
    P /= P.sum()
    Pd, Pe = P.sum(1), P.sum(0)
    ref = -sum(P[d, e] * (np.log(P[d, e]) - (alpha + 1) * np.log(Pd[d]) - (alpha + 1) * np.log(Pe[e]))
               for d in range(4) for e in range(4))
    got = completer_contrastive_loss(torch.tensor(z1), torch.tensor(z2), alpha=alpha)
    assert got.item() == pytest.approx(ref, rel=1e-10)
    # aligned confident codes spread over the clusters score lower than unrelated ones
    eye = torch.eye(4).repeat(3, 1) * 0.97 + 0.01
    assert completer_contrastive_loss(eye, eye) < completer_contrastive_loss(eye, eye[torch.randperm(12)])


# ---------------------------------------------------------------------------------- DEC / IDEC
def test_target_distribution_sharpens_q():
    q = torch.softmax(torch.randn(200, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    p = target_distribution(q)
    assert torch.allclose(p.sum(1), torch.ones(200), atol=1e-6)
    ent = lambda x: -(x * x.log()).sum(1)  # noqa: E731
    assert ent(p).mean() < ent(q).mean()
    assert (p.argmax(1) == q.argmax(1)).float().mean() > 0.9


def test_dec_phases_give_the_right_terms(views):
    batch = views.batch(np.arange(32))
    for cls, cluster_terms in ((DEC, {"clustering"}), (IDEC, {"reconstruction", "clustering"})):
        m = cls(60, 3, {**SMALL, "pretrain_epochs": 2, "cluster_epochs": 1})
        assert m.fit_defaults == {"epochs": 3, "lr": 1e-3}
        assert set(m.loss(batch, 1)) == {"reconstruction"}
        with pytest.raises(ConfigError, match="on_epoch_start"):
            m.loss(batch, 2)                               # clustering before the centres exist
        m.on_epoch_start(1, views)                         # still pretraining: nothing happens
        assert not bool(m.centres_ready)
        m.on_epoch_start(2, views)
        assert bool(m.centres_ready) and m.target_p.shape == (300, 3)
        terms = m.loss(batch, 2)
        assert set(terms) == cluster_terms
        terms["clustering"].backward()
        assert m.centres.grad is not None
        m.phase = "pretrain"                               # forced phase wins over the epoch
        assert set(m.loss(batch, 2)) == {"reconstruction"}
    with pytest.raises(ConfigError, match="phase"):
        m.phase = "finetune"


def test_idec_gamma_weights_the_clustering_term(views):
    batch = views.batch(np.arange(32))
    a = IDEC(60, 3, {**SMALL, "pretrain_epochs": 0, "gamma": 0.1})
    b = IDEC(60, 3, {**SMALL, "pretrain_epochs": 0, "gamma": 1.0})
    b.load_state_dict(a.state_dict())
    a.on_epoch_start(0, views)
    b.on_epoch_start(0, views)
    ta, tb = a.loss(batch, 0), b.loss(batch, 0)
    assert ta["clustering"].item() == pytest.approx(0.1 * tb["clustering"].item(), rel=1e-5)
    assert ta["reconstruction"].item() == pytest.approx(tb["reconstruction"].item(), rel=1e-6)


@pytest.mark.parametrize("cls", [DEC, IDEC])
def test_dec_idec_train_and_cluster(cls, views):
    model = cls.from_views(views, 3, {**SMALL, "pretrain_epochs": 10, "cluster_epochs": 3})
    fit = fit_clusterer(model, views, epochs=13, batch_size=32, lr=1e-2, seed=0)
    assert _finite(fit)
    assert {"train_reconstruction"} <= set(fit.history[0])
    assert "train_clustering" in fit.history[-1]
    assert ("train_reconstruction" in fit.history[-1]) == (cls is IDEC)
    assign = model.assign(views.batch(np.arange(300))["side"]).numpy()
    assert nmi(views.truth, assign) > 0.5
    assert _kmeans_nmi(model, views) > 0.5
    assert model.label_change is not None


def test_dec_two_calls_one_per_phase(views):
    model = DEC(60, 3, SMALL)
    model.phase = "pretrain"
    fit_clusterer(model, views, epochs=4, batch_size=32, lr=1e-2)
    model.phase = "cluster"
    fit = fit_clusterer(model, views, epochs=2, batch_size=32, lr=1e-2,
                        validate=lambda z: -float(z.std()))             # best epoch restored from its state_dict
    assert set(fit.history[0]) == {"epoch", "train_clustering", "valid_score"} and _finite(fit)
    assert fit.best_epoch in (1, 2) and bool(model.centres_ready)


def test_default_structures_follow_dauc():
    dec = IDEC(1000, 100)
    assert [m.out_features for m in dec.encoder if isinstance(m, torch.nn.Linear)] == [800, 600, 400]
    assert [m.out_features for m in dec.decoder if isinstance(m, torch.nn.Linear)] == [600, 800, 1000]
    assert dec.centres.shape == (100, 400) and dec.fit_defaults == {"epochs": 50, "lr": 1e-3}
    dcc = DCCAE(1000, 64)
    assert [m.out_features for m in dcc.target_encoder if isinstance(m, torch.nn.Linear)] == [256, 400]
    assert [m.out_features for m in dcc.target_decoder if isinstance(m, torch.nn.Linear)] == [256, 64]
    assert dcc.fit_defaults == {"epochs": 30, "lr": 1e-4}
    com = COMPLETER(1000, 64)
    assert com.represent(torch.rand(4, 1000)).sum(1).allclose(torch.ones(4))  # softmax code
    assert [m.out_features for m in com.side_to_target[0] if isinstance(m, torch.nn.Linear)] == [256, 400]
    assert com.fit_defaults == {"epochs": 30, "lr": 1e-4}


# ---------------------------------------------------------------------------- DCCAE, COMPLETER
def test_dccae_terms_and_training(views):
    model = DCCAE.from_views(views, SMALL2)
    batch = views.batch(np.arange(32))
    assert set(model.loss(batch, 0)) == {"reconstruction_side", "reconstruction_target", "cca"}
    cold = views.batch(np.flatnonzero(~views.active)[:16])
    assert set(model.loss(cold, 0)) == {"reconstruction_side"}          # no target view in the batch
    fit = fit_clusterer(model, views, epochs=8, batch_size=64, lr=3e-3, seed=0)
    assert _finite(fit)
    assert fit.history[-1]["train_cca"] < fit.history[0]["train_cca"]
    assert _kmeans_nmi(model, views) > 0.5


def test_dccae_warns_when_batches_hold_fewer_active_users_than_dims(views, caplog):
    model = DCCAE.from_views(views, {"side_encoder": [16, 12], "target_encoder": [12]})
    with caplog.at_level("WARNING", logger="thawrec.models.baselines.dccae"):
        fit_clusterer(model, views, epochs=2, batch_size=16, lr=1e-3)   # about 8 active users < 12 dims
    assert sum("sample CCA overfits" in r.getMessage() for r in caplog.records) == 1


def test_completer_terms_and_training(views):
    # 16 pseudo-clusters: alpha = 9 makes near-uniform codes almost optimal, so the mutual
    # information is found slowly; a wider code and a larger lr find the groups in a few epochs
    model = COMPLETER.from_views(views, {"side_encoder": [32, 16, 16], "target_encoder": [16, 16],
                                         "predictor_hidden": [16], "pred_start_epoch": 3})
    batch = views.batch(np.arange(32))
    assert set(model.loss(batch, 2)) == {"reconstruction_side", "reconstruction_target", "contrastive"}
    assert set(model.loss(batch, 3)) == {"reconstruction_side", "reconstruction_target", "contrastive", "prediction"}
    cold = views.batch(np.flatnonzero(~views.active)[:16])
    assert set(model.loss(cold, 5)) == {"reconstruction_side"}
    assert model.loss(views.batch(np.arange(1)), 5) == {}              # BatchNorm: a last batch of one is skipped
    fit = fit_clusterer(model, views, epochs=8, batch_size=32, lr=1e-2, seed=0)
    assert _finite(fit)
    assert "train_prediction" not in fit.history[2] and "train_prediction" in fit.history[3]
    assert _kmeans_nmi(model, views) > 0.4


@pytest.mark.parametrize("make, decoder", [
    (lambda: DEC(60, 3, {**SMALL, "recon_loss": "bce"}), lambda m: m.decoder[-1]),
    (lambda: DCCAE(60, 16, {**SMALL2, "recon_loss": "bce"}), lambda m: m.side_decoder[-1]),
    (lambda: COMPLETER(60, 16, {**SMALL2, "recon_loss": "bce"}), lambda m: m.side_decoder[-1]),
])
def test_bce_starts_the_side_decoder_at_the_column_priors(make, decoder, views):
    model = make()
    model.on_epoch_start(0, views)
    freq = np.asarray(views.side.mean(0)).ravel().clip(1e-4, 1 - 1e-4)
    np.testing.assert_allclose(decoder(model).bias.detach().numpy(), np.log(freq / (1 - freq)), rtol=1e-5)
    with torch.no_grad():
        decoder(model).bias.zero_()
    model.on_epoch_start(1, views)                                      # once only (flag saved with the weights)
    assert decoder(model).bias.abs().sum() == 0 and bool(model.side_bias_ready)
    assert _finite(fit_clusterer(make(), views, epochs=2, batch_size=64, lr=1e-3))


# ---------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize("make, match", [
    (lambda: DEC(60, 3, {"encoderr": [8]}), "unknown option"),
    (lambda: DEC(60, 0), "k = 0"),
    (lambda: DEC(60, 3, {"recon_loss": "l1"}), "recon_loss"),
    (lambda: DEC(60, 3, {"encoder": []}), "encoder"),
    (lambda: DEC(60, 3, {"alpha": 0}), "alpha"),
    (lambda: DEC(0, 3), "side_dim"),
    (lambda: DEC(60, 3, {"gamma": 0.1}), "unknown option"),        # gamma is IDEC's
    (lambda: IDEC(60, 3, {"gamma": -1}), "gamma"),
    (lambda: DEC(60, 3, {"kmeans_backend": "gpu"}), "kmeans_backend"),
    (lambda: DCCAE(60, 16, {"cca_r1": 0}), "cca_r1"),
    (lambda: DCCAE(60, 16, {"cca_k": 999}), "cca_k"),
    (lambda: COMPLETER(60, 16, {"target_encoder": [256, 300]}), "same number"),
    (lambda: COMPLETER(60, 16, {"alpha": -1}), "alpha"),
])
def test_config_errors(make, match):
    with pytest.raises(ConfigError, match=match) as e:
        make()
    assert "Fix:" in str(e.value)


def test_loss_function_errors():
    with pytest.raises(ConfigError, match="same n"):
        cca_loss(torch.randn(5, 2), torch.randn(4, 2))
    with pytest.raises(ConfigError, match="at least 2"):
        cca_loss(torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(ConfigError, match="same shape"):
        completer_contrastive_loss(torch.rand(5, 3), torch.rand(5, 4))


def test_assign_before_training_is_refused(views):
    with pytest.raises(ConfigError, match="initialised"):
        DEC(60, 3, SMALL).assign(views.batch(np.arange(4))["side"])
