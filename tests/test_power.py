"""Paired user/seed tests and the MDE: exact on hand-checkable inputs, and calibrated (5% false
positives under the null, about 80% detection at an effect of one MDE) in simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from thawrec.eval.metrics import auc, gauc
from thawrec.eval.power import SeedPair, auc_pair, clustered_mean_pair, combine, gauc_pair, mde, weighted_auc


def test_weighted_auc_matches_sklearn_with_ties_and_duplicated_rows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 20, 300).astype(float)  # many ties
    w = rng.integers(0, 4, 300).astype(float)
    got = weighted_auc(y, s, np.stack([np.ones(300), w]))
    assert got[0] == pytest.approx(auc(y, s))
    rep = np.repeat(np.arange(300), w.astype(int))
    assert got[1] == pytest.approx(roc_auc_score(y[rep], s[rep]))


def test_gauc_pair_is_the_difference_of_gaucs_and_its_variance_is_over_users():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(50), 20)
    y = rng.integers(0, 2, len(users))
    a, b = rng.random(len(users)) + 0.3 * y, rng.random(len(users))
    p = gauc_pair(y, a, b, users)
    assert p.diff == pytest.approx(gauc(y, a, users) - gauc(y, b, users))
    assert p.n_users == 50 and p.n_rows == 1000 and 0 < p.var < 0.01


def test_clustered_mean_pair_uses_users_not_samples():
    """Two users with many identical samples each: the variance is that of two users."""
    d = np.r_[np.full(100, 1.0), np.full(100, 0.0)]
    u = np.r_[np.zeros(100), np.ones(100)]
    p = clustered_mean_pair(d, u)
    assert p.diff == 0.5 and p.n_users == 2 and p.n_rows == 200
    assert p.var == pytest.approx(((100 * 0.5) ** 2 * 2) / 200 ** 2)  # = 0.125, not 0.25 / 200


def test_auc_pair_bootstrap_matches_the_spread_of_independent_test_sets():
    """The bootstrap SE of an AUC difference agrees with the SD over freshly drawn test user sets."""
    def draw(rng, n_users=200):
        users = np.repeat(np.arange(n_users), 10)
        eff = rng.normal(0, 1, n_users)[users]  # user-level effects make rows dependent
        y = (rng.random(len(users)) < 1 / (1 + np.exp(-eff))).astype(int)
        a = eff + rng.normal(0, 1, len(users)) + 0.2 * y
        b = eff + rng.normal(0, 1, len(users))
        return y, a, b, users
    rng = np.random.default_rng(2)
    sims = []
    for _ in range(120):
        y, a, b, u = draw(rng)
        sims.append(auc(y, a) - auc(y, b))
    p = auc_pair(*draw(np.random.default_rng(3)), n_boot=300)
    assert math.sqrt(p.var) == pytest.approx(np.std(sims, ddof=1), rel=0.3)


def _experiment(rng, delta, seed_noise, seeds=5, n_users=300):
    pairs = []
    for _ in range(seeds):
        w = rng.integers(5, 50, n_users)
        d = delta + rng.normal(0, seed_noise) + rng.normal(0, 0.2, n_users) / np.sqrt(w / 20)
        pairs.append(clustered_mean_pair(np.repeat(d, w), np.repeat(np.arange(n_users), w)))
    return combine(pairs)


@pytest.mark.parametrize("seed_noise", [0.0, 0.01, 0.03])
def test_false_positives_stay_at_alpha_whatever_the_training_noise(seed_noise):
    """Simulated 5-seed experiments with no effect: users as random effects and, with seed_noise,
    a per-seed training offset. At most about 5% of them come out significant."""
    rng = np.random.default_rng(4)
    rate = np.mean([_experiment(rng, 0.0, seed_noise).p_value < 0.05 for _ in range(500)])
    assert 0.01 <= rate <= 0.065


@pytest.mark.parametrize("seed_noise, seeds", [(0.0, 1), (0.05, 5)])
def test_an_effect_of_one_mde_is_detected_80_percent_of_the_time(seed_noise, seeds):
    """The MDE formula has its power: the z test on users (one seed) and the seed-level t test
    (training noise dominates; noncentral t), each at the MDE of the estimate's true spread."""
    rng = np.random.default_rng(5)
    null = [_experiment(rng, 0.0, seed_noise, seeds) for _ in range(400)]
    assert np.mean([c.source == ("users" if seeds == 1 else "seeds") for c in null]) > 0.95
    true_se = float(np.std([c.delta for c in null], ddof=1))
    effect = mde(true_se, math.inf if seeds == 1 else seeds - 1)
    power = np.mean([_experiment(rng, effect, seed_noise, seeds).p_value < 0.05 for _ in range(400)])
    assert abs(power - 0.8) < 0.07


def test_combine_reports_ci_and_source_and_handles_no_data():
    c = combine([SeedPair(0.01, 1e-6, 100, 1000), SeedPair(0.012, 1e-6, 100, 1000), SeedPair(0.011, 1e-6, 100, 900)])
    assert c.source == "seeds" and c.ci_low < 0.011 < c.ci_high and c.p_value < 0.05
    assert c.mde == pytest.approx(mde(c.se, c.df))
    empty = combine([SeedPair(float("nan"), float("nan"), 0, 0)])
    assert empty.n_seeds == 0 and math.isnan(empty.delta)
