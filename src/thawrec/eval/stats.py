"""Seed statistics for reports: mean ± std, paired t-test against a baseline, relative improvement.

Why paired: every model is trained with the same seeds on the same split, so seed-to-seed noise
shared by both (data order, initialisation luck) cancels in the per-seed differences.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from thawrec.errors import DataError, ThawrecError

log = logging.getLogger(__name__)

__all__ = ["aggregate", "paired_ttest", "relative_improvement", "results_rows", "ROW_KEYS", "AUC_LIKE"]

ROW_KEYS = ("model", "task", "group", "metric", "mean", "std", "values", "baseline", "p_value", "rel_improvement")
RECORD_KEYS = ("model", "task", "group", "metric", "seed", "value")
# Metrics whose chance level is 0.5: relative improvement is the RelaImpr of DIN / MAIL for them.
AUC_LIKE = frozenset({"auc", "gauc", "uauc"})


def aggregate(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` with the sample std (ddof=1), 0.0 for a single value.

    NaN values are kept (and make mean/std NaN): a seed whose metric was undefined is visible in
    the report rather than silently averaged away. No values -> mean and std NaN, n 0.
    """
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "values": v}
    arr = np.asarray(v, dtype=np.float64)
    std = float(arr.std(ddof=1)) if n > 1 else (0.0 if not math.isnan(v[0]) else float("nan"))
    return {"mean": float(arr.mean()), "std": std, "n": n, "values": v}


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b``.

    NaN when the test is undefined: fewer than 2 pairs, any NaN value, or zero variance of the
    differences. The last case includes differences that are all equal and nonzero: scipy would
    report p = 0, but a t statistic of ±inf from a handful of seeds says the runs were
    deterministic, not that the effect is infinitely certain, so we do not claim significance.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if len(x) != len(y):
        raise ThawrecError(f"paired t-test needs equal lengths, got {len(x)} and {len(y)}. "
                           "Fix: pair the values by seed (same seeds for both models)")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    d = x - y
    if np.all(d == d[0]):
        return float("nan")
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant differences: precision note only
        return float(stats.ttest_rel(x, y).pvalue)


def relative_improvement(new: float, base: float, *, auc_like: bool = False) -> float:
    """Relative improvement of ``new`` over ``base`` as a fraction (0.05 = +5%).

    Plain: ``(new - base) / |base|`` (for LogLoss a negative value is an improvement).
    ``auc_like=True``: RelaImpr of DIN / MAIL, ``(new - 0.5) / (base - 0.5) - 1``, which measures
    the gain over a random ranker. NaN when the denominator is zero or an input is NaN.
    """
    new, base = float(new), float(base)
    if math.isnan(new) or math.isnan(base):
        return float("nan")
    if auc_like:
        return (new - 0.5) / (base - 0.5) - 1.0 if base != 0.5 else float("nan")
    return (new - base) / abs(base) if base != 0 else float("nan")


def _records(records: Any) -> list[Mapping[str, Any]]:
    if hasattr(records, "to_dicts"):  # polars DataFrame
        missing = [k for k in RECORD_KEYS if k not in records.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}", column=missing[0],
                            fix=f"records need the columns {list(RECORD_KEYS)}")
        return records.to_dicts()
    return list(records)


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def results_rows(
    records: Any,
    baseline: str,
    *,
    auc_like: Iterable[str] = AUC_LIKE,
) -> list[dict[str, Any]]:
    """The ``rows`` of results.json from per-seed records.

    ``records``: a polars DataFrame or an iterable of dicts with keys
    model, task, group, metric, seed, value. One row per (model, task, group, metric), in order
    of first appearance, values sorted by seed. Non-baseline rows are compared with the
    ``baseline`` model's row of the same (task, group, metric), paired by seed (seeds present
    for both; a mismatch is logged): ``p_value`` from :func:`paired_ttest`, ``rel_improvement``
    of the means from :func:`relative_improvement` (RelaImpr for metrics in ``auc_like``).
    Undefined p-values / improvements (NaN, or no baseline row) are ``None`` so results.json
    stays strict JSON; the baseline's own row has baseline, p_value and rel_improvement None.
    """
    recs = _records(records)
    auc_like = frozenset(auc_like)
    by_key: dict[tuple, dict[Any, float]] = {}
    for i, r in enumerate(recs):  # one record per (model, seed, metric): a few hundred, not rows of data
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise DataError(f"record lacks key(s) {missing}", row=i, column=missing[0],
                            fix=f"every record needs {list(RECORD_KEYS)}")
        key = (r["model"], r["task"], r["group"], r["metric"])
        seeds = by_key.setdefault(key, {})
        if r["seed"] in seeds:
            raise DataError(f"duplicate record for {key} seed {r['seed']!r}", row=i, column="seed",
                            fix="record each (model, task, group, metric, seed) once")
        v = r["value"]
        seeds[r["seed"]] = float("nan") if v is None else float(v)

    rows: list[dict[str, Any]] = []
    for (model, task, group, metric), seeds in by_key.items():
        order = sorted(seeds)
        agg = aggregate([seeds[s] for s in order])
        row = {"model": model, "task": task, "group": group, "metric": metric, "mean": agg["mean"],
               "std": agg["std"], "values": agg["values"], "baseline": None, "p_value": None,
               "rel_improvement": None}
        if model != baseline:
            row["baseline"] = baseline
            base = by_key.get((baseline, task, group, metric))
            if base is None:
                log.warning("no baseline '%s' results for %s/%s/%s", baseline, task, group, metric)
            else:
                common = [s for s in order if s in base]
                if len(common) != len(order) or len(common) != len(base):
                    log.warning("%s vs %s on %s/%s/%s: pairing %d common seeds (%d vs %d)", model, baseline,
                                task, group, metric, len(common), len(order), len(base))
                row["p_value"] = _none_if_nan(paired_ttest([seeds[s] for s in common], [base[s] for s in common]))
                base_mean = aggregate(list(base.values()))["mean"]
                row["rel_improvement"] = _none_if_nan(
                    relative_improvement(agg["mean"], base_mean, auc_like=metric in auc_like))
        rows.append(row)
    return rows
