"""Seed statistics against scipy and hand examples; results.json rows."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from thawrec.errors import DataError, ThawrecError
from thawrec.eval.stats import ROW_KEYS, aggregate, paired_ttest, relative_improvement, results_rows


def test_aggregate():
    a = aggregate([0.7, 0.8, 0.9])
    assert a["mean"] == pytest.approx(0.8) and a["std"] == pytest.approx(0.1) and a["n"] == 3
    assert a["values"] == [0.7, 0.8, 0.9]
    assert aggregate([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1, "values": [0.5]}
    e = aggregate([])
    assert e["n"] == 0 and math.isnan(e["mean"])


@pytest.mark.parametrize("seed", range(5))
def test_paired_ttest_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.75, 0.01, 5)
    b = a - rng.normal(0.005, 0.004, 5)
    assert paired_ttest(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)


def test_paired_ttest_hand_and_degenerate():
    # diffs [1, 2]: mean 1.5, sd 0.7071, t = 3, df 1 -> p = 2 * (1 - atan(3)/pi*... ) = 0.2048
    assert paired_ttest([2.0, 4.0], [1.0, 2.0]) == pytest.approx(0.204833, abs=1e-6)
    assert math.isnan(paired_ttest([0.8], [0.7]))                  # fewer than 2 pairs
    assert math.isnan(paired_ttest([0.8, 0.9], [0.8, 0.9]))        # identical
    assert math.isnan(paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]))  # constant nonzero diff
    assert math.isnan(paired_ttest([1.0, np.nan], [0.0, 1.0]))
    with pytest.raises(ThawrecError):
        paired_ttest([1, 2, 3], [1, 2])


def test_relative_improvement():
    assert relative_improvement(0.75, 0.70, auc_like=True) == pytest.approx(0.25 / 0.20 - 1)
    assert relative_improvement(0.44, 0.40) == pytest.approx(0.1)
    assert relative_improvement(-0.9, -1.0) == pytest.approx(0.1)
    assert math.isnan(relative_improvement(0.6, 0.5, auc_like=True))
    assert math.isnan(relative_improvement(1.0, 0.0))


def _records():
    recs = []
    vals = {"Base": [0.70, 0.71, 0.69], "New": [0.72, 0.735, 0.70]}
    for model, vs in vals.items():
        for seed, v in enumerate(vs):
            recs.append({"model": model, "task": "label", "group": "all", "metric": "auc", "seed": seed, "value": v})
            recs.append({"model": model, "task": "label", "group": "all", "metric": "logloss", "seed": seed,
                         "value": 1 - v})
    return recs


@pytest.mark.parametrize("as_frame", [False, True])
def test_results_rows(as_frame):
    recs = _records()
    rows = results_rows(pl.DataFrame(recs) if as_frame else recs, baseline="Base")
    assert len(rows) == 4 and all(tuple(r) == ROW_KEYS for r in rows)
    by = {(r["model"], r["metric"]): r for r in rows}
    base = by[("Base", "auc")]
    assert base["baseline"] is None and base["p_value"] is None and base["rel_improvement"] is None
    new = by[("New", "auc")]
    assert new["baseline"] == "Base" and new["values"] == [0.72, 0.735, 0.70]
    assert new["mean"] == pytest.approx(np.mean([0.72, 0.735, 0.70]))
    assert new["std"] == pytest.approx(np.std([0.72, 0.735, 0.70], ddof=1))
    assert new["p_value"] == pytest.approx(sps.ttest_rel([0.72, 0.735, 0.70], [0.70, 0.71, 0.69]).pvalue)
    assert new["rel_improvement"] == pytest.approx((new["mean"] - 0.5) / (0.70 - 0.5) - 1)   # RelaImpr
    ll = by[("New", "logloss")]
    assert ll["rel_improvement"] == pytest.approx((ll["mean"] - 0.30) / 0.30)             # plain
    json.loads(json.dumps(rows, allow_nan=False))  # strict JSON


def test_results_rows_pairs_by_seed_and_validates():
    recs = _records()
    shuffled = list(reversed(recs)) + [
        {"model": "New", "task": "label", "group": "new", "metric": "auc", "seed": 0, "value": 0.6}]
    rows = results_rows(shuffled, baseline="Base")
    by = {(r["model"], r["group"], r["metric"]): r for r in rows}
    assert by[("New", "all", "auc")]["values"] == [0.72, 0.735, 0.70]   # sorted by seed
    orphan = by[("New", "new", "auc")]                                   # no baseline row
    assert orphan["baseline"] == "Base" and orphan["p_value"] is None and orphan["rel_improvement"] is None
    with pytest.raises(DataError) as ei:
        results_rows(recs + [recs[0]], baseline="Base")
    assert ei.value.row == len(recs)
    with pytest.raises(DataError) as ei:
        results_rows([{"model": "a", "task": "t", "group": "g", "metric": "auc", "seed": 0}], baseline="a")
    assert ei.value.column == "value"
