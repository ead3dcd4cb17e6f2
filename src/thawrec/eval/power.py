"""Paired comparisons over test users and seeds, and the minimum detectable effect (MDE).

Why not a t-test over five seed means: with 4 degrees of freedom it sees only large effects, and it
throws away what every seed measures precisely, namely how much the test users disagree. Here each
seed gives a paired difference between two models on the *same* test users, with its sampling
variance over users (users, not rows, are the unit: one heavy user's rows are not independent):

- GAUC, and any per-sample mean clustered by user (replay Recall@K over (user, slice) pairs):
  a ratio estimator ``D = sum_u w_u d_u / sum_u w_u`` with its linearised variance
  ``sum_u w_u^2 (d_u - D)^2 / (sum_u w_u)^2`` (exact enough for hundreds of users, no resampling);
- AUC, which is not a mean over users: a Poisson bootstrap over users (each user's rows get one
  weight ~ Poisson(1) per replicate), both models on the same replicates.

Seeds (each retrains every model and, in the suites, redraws the split) are combined as
``D = mean_s d_s`` with ``Var(D) = max(var_s(d_s), mean_s(v_s)) / S``: when the seeds disagree
more than their user-sampling variances (training noise), the seed-level spread with a t test on
S - 1 degrees of freedom (the classic paired t over seeds); otherwise the within-seed user
variance with a z test. The max keeps the false-positive rate at or below alpha whatever the
training noise (a pretest for it, e.g. Cochran's Q, lets moderate noise through and inflates it:
8% at 5% nominal in our simulation); the price is power when there is no training noise. The MDE at level ``alpha`` and power ``power`` is the
true difference that test detects with that probability (``(z_{1-alpha/2} + z_power) * SE`` for
the z test, the noncentral t for the t test): a null result with a small MDE rules out the effects
a method claims. With few seeds the t test's SE is itself estimated from few values, so its MDE is
a noisy estimate (it is the seeds' count, not the users', that limits such a table).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from thawrec.checks import same_length
from thawrec.errors import DataError
from thawrec.eval.metrics import gauc

__all__ = ["SeedPair", "Comparison", "clustered_mean_pair", "gauc_pair", "auc_pair", "combine", "mde",
           "weighted_auc"]


@dataclass(frozen=True)
class SeedPair:
    """One seed's paired difference ``metric(A) - metric(B)`` on the same test users, with its
    sampling variance over users."""

    diff: float
    var: float
    n_users: int
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Seeds combined: the mean difference, its standard error and degrees of freedom, the
    two-sided p-value, the 95% confidence interval and the minimum detectable effect."""

    delta: float
    se: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    mde: float
    n_seeds: int
    n_users: float
    source: str  # "users" (within-seed variance dominates) or "seeds" (seed-to-seed spread does)

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) and k != "df" else v)
                for k, v in asdict(self).items()}


def _codes(users: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, codes = np.unique(np.asarray(users), return_inverse=True)
    return codes.ravel(), len(uniq)


def clustered_mean_pair(diffs: Any, users: Any) -> SeedPair:
    """Paired difference of a per-sample metric (e.g. Recall@K per (user, slice)) whose samples
    cluster by user: the mean of ``diffs`` and its variance with users as the sampling unit."""
    d = np.asarray(diffs, dtype=np.float64).ravel()
    u = np.asarray(users).ravel()
    same_length("pass one difference and one user per sample", diffs=d, users=u)
    ok = ~np.isnan(d)
    d, u = d[ok], u[ok]
    if len(d) == 0:
        return SeedPair(float("nan"), float("nan"), 0, 0)
    codes, n_users = _codes(u)
    c = np.bincount(codes, minlength=n_users).astype(np.float64)
    s = np.bincount(codes, weights=d, minlength=n_users)
    return _ratio_pair(s, c, len(d))


def _ratio_pair(sums: np.ndarray, weights: np.ndarray, n_rows: int) -> SeedPair:
    """``D = sum(s) / sum(w)`` and its linearised variance over clusters (users)."""
    total = weights.sum()
    diff = float(sums.sum() / total)
    resid = sums - diff * weights
    var = float((resid ** 2).sum() / total ** 2) if len(weights) > 1 else float("nan")
    return SeedPair(diff, var, int(len(weights)), int(n_rows))


def gauc_pair(labels: Any, scores_a: Any, scores_b: Any, users: Any) -> SeedPair:
    """GAUC(A) - GAUC(B) over the users whose AUC is defined (both classes), weighted by their
    rows as GAUC is, with the variance over users."""
    ra = gauc(labels, scores_a, users, return_details=True)
    rb = gauc(labels, scores_b, users, return_details=True)
    ok = ~np.isnan(ra.group_auc) & ~np.isnan(rb.group_auc)
    w = ra.group_n[ok].astype(np.float64)
    if not ok.any():
        return SeedPair(float("nan"), float("nan"), 0, 0)
    d = ra.group_auc[ok] - rb.group_auc[ok]
    return _ratio_pair(w * d, w, int(w.sum()))


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC under row weights, ties counted half: ``weights [B, n]`` (one replicate per row of it)
    -> ``[B]``. One sort of the scores serves every replicate."""
    y = np.asarray(labels).astype(bool)
    order = np.argsort(scores, kind="stable")
    s, y = np.asarray(scores)[order], y[order]
    w = np.atleast_2d(weights)[:, order]
    start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    wn = np.where(y, 0.0, w)
    wp = np.where(y, w, 0.0)
    block_neg = np.add.reduceat(wn, start, axis=1)
    block_pos = np.add.reduceat(wp, start, axis=1)
    below = np.cumsum(block_neg, axis=1) - block_neg  # negative weight strictly below each block
    num = (block_pos * (below + 0.5 * block_neg)).sum(1)
    den = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def auc_pair(labels: Any, scores_a: Any, scores_b: Any, users: Any, *, n_boot: int = 200, seed: int = 0,
             chunk: int = 25) -> SeedPair:
    """AUC(A) - AUC(B) with its variance from a Poisson bootstrap over users (both models on the
    same replicates, so the shared user sampling cancels in the difference)."""
    y = np.asarray(labels).ravel()
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    same_length("pass labels, both models' scores and users aligned row by row", labels=y, a=a, b=b,
                users=np.asarray(users).ravel())
    if len(y) == 0 or y.min() == y.max():
        return SeedPair(float("nan"), float("nan"), 0, len(y))
    if np.isnan(a).any() or np.isnan(b).any():
        raise DataError("NaN score", column="scores", fix="score every row with a finite value")
    codes, n_users = _codes(np.asarray(users).ravel())
    ones = np.ones((1, len(y)))
    diff = float(weighted_auc(y, a, ones)[0] - weighted_auc(y, b, ones)[0])
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, n_boot, chunk):  # a handful of chunks of replicates, each vectorised over rows
        k = min(chunk, n_boot - start)
        w = rng.poisson(1.0, size=(k, n_users)).astype(np.float64)[:, codes]
        reps.append(weighted_auc(y, a, w) - weighted_auc(y, b, w))
    r = np.concatenate(reps)
    r = r[~np.isnan(r)]
    var = float(r.var(ddof=1)) if len(r) > 1 else float("nan")
    return SeedPair(diff, var, n_users, len(y))


def _quantile(p: float, df: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(p) if not math.isfinite(df) else stats.t.ppf(p, df))


def mde(se: float, df: float = math.inf, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided test at ``alpha`` detects with probability ``power``,
    for a difference estimated with standard error ``se`` (``df`` finite: a t test, exact power
    from the noncentral t distribution; else a z test)."""
    if not math.isfinite(se) or se <= 0:
        return float("nan")
    if not math.isfinite(df):
        return (_quantile(1 - alpha / 2, df) + _quantile(power, df)) * se
    from scipy import optimize, stats

    crit = stats.t.ppf(1 - alpha / 2, df)

    def gap(lam: float) -> float:
        return float(np.nan_to_num(stats.nct.sf(crit, df, lam) + stats.nct.cdf(-crit, df, lam), nan=1.0)) - power

    hi = crit + _quantile(power, df)
    while gap(hi) < 0:  # the z-style guess undershoots for small df; widen until bracketed
        hi *= 1.5
    return float(optimize.brentq(gap, 0.0, hi)) * se


def combine(pairs: Sequence[SeedPair], alpha: float = 0.05, power: float = 0.8) -> Comparison:
    """Random-effects combination of per-seed paired differences (see the module docstring)."""
    ok = [p for p in pairs if math.isfinite(p.diff) and math.isfinite(p.var)]
    if not ok:
        nan = float("nan")
        return Comparison(nan, nan, nan, nan, nan, nan, nan, 0, 0.0, "none")
    d = np.array([p.diff for p in ok])
    v = np.array([p.var for p in ok])
    s = len(ok)
    within = float(v.mean())
    delta = float(d.mean())
    from scipy import stats

    between = float(d.var(ddof=1)) if s > 1 else 0.0
    if s > 1 and between > within:  # training noise shows: the seeds, not the users, limit the test
        var, df, source = between / s, float(s - 1), "seeds"
    else:
        var, df, source = within / s, math.inf, "users"
    se = math.sqrt(var)

    if se > 0:
        t = delta / se
        p = float(2 * (stats.norm.sf(abs(t)) if not math.isfinite(df) else stats.t.sf(abs(t), df)))
    else:
        p = float("nan")
    q = _quantile(1 - alpha / 2, df)
    return Comparison(delta, se, df, p, delta - q * se, delta + q * se, mde(se, df, alpha, power), s,
                      float(np.mean([x.n_users for x in ok])), source)
