"""Split protocols: sizes, disjointness, no time leak, leave-one-out picks, masks, cold items."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from thawrec.data.splits import (
    by_user_split,
    cold_item_split,
    leave_one_out,
    mask_new_users,
    temporal_split,
    time_window_new_users,
)
from thawrec.errors import ConfigError, ThawrecError


def _inter(n: int = 5000, n_users: int = 200, n_items: int = 300, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "user_id": rng.integers(0, n_users, n).astype(np.int64),
        "item_id": rng.integers(0, n_items, n).astype(np.int64),
        "ts": rng.integers(1_000_000, 1_000_000 + 10_000, n).astype(np.int64),
        "label": pl.Series(rng.integers(0, 2, n), dtype=pl.Int8),
        "row": np.arange(n),
    })


def _rows(sp) -> list[np.ndarray]:
    return [p["row"].to_numpy() for p in (sp.train, sp.valid, sp.test)]


def _assert_partition(inter: pl.DataFrame, sp) -> None:
    rows = np.concatenate(_rows(sp))
    assert len(rows) == inter.height
    assert np.array_equal(np.sort(rows), np.arange(inter.height))
    for part in _rows(sp):  # input order kept within parts
        assert np.all(np.diff(part) > 0)


def test_temporal_split_sizes_and_no_time_leak():
    inter = _inter()
    sp = temporal_split(inter)
    _assert_partition(inter, sp)
    assert sp.train["ts"].max() < sp.valid["ts"].min()
    assert sp.valid["ts"].max() < sp.test["ts"].min()
    n = inter.height
    assert abs(sp.train.height / n - 0.7) < 0.02 and abs(sp.test.height / n - 0.2) < 0.02
    # is_new_user == no train rows
    train_users = set(sp.train["user_id"].to_list())
    assert not sp.train["is_new_user"].any()
    for part in (sp.valid, sp.test):
        expect = ~part["user_id"].is_in(list(train_users))
        assert (part["is_new_user"] == expect).all()
    assert sp.info["protocol"] == "temporal" and sp.info["train_rows"] == sp.train.height


def test_by_user_split_users_disjoint():
    inter = _inter()
    sp = by_user_split(inter, test_frac=0.28, valid_frac=0.1, seed=3)
    _assert_partition(inter, sp)
    u = [set(p["user_id"].to_list()) for p in (sp.train, sp.valid, sp.test)]
    assert not (u[0] & u[1]) and not (u[0] & u[2]) and not (u[1] & u[2])
    assert abs(len(u[2]) / 200 - 0.28) < 0.01
    assert abs(len(u[1]) / (200 - len(u[2])) - 0.1) < 0.01
    again = by_user_split(inter, test_frac=0.28, valid_frac=0.1, seed=3)
    assert again.test.equals(sp.test)
    other = by_user_split(inter, test_frac=0.28, valid_frac=0.1, seed=4)
    assert not other.test.equals(sp.test)


def test_leave_one_out_picks_last_positive():
    inter = pl.DataFrame({
        "user_id": [0, 0, 0, 0, 0, 1, 1, 1, 2, 2],
        "item_id": [1, 2, 3, 4, 5, 1, 2, 3, 1, 2],
        "ts": [10, 20, 30, 40, 50, 10, 20, 20, 10, 20],
        "label": pl.Series([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=pl.Int8),
        "row": np.arange(10),
    })
    sp = leave_one_out(inter, seed=0)
    _assert_partition(inter, sp)
    t = dict(zip(sp.test["user_id"].to_list(), sp.test["item_id"].to_list()))
    v = dict(zip(sp.valid["user_id"].to_list(), sp.valid["item_id"].to_list()))
    assert t[0] == 5 and v[0] == 3  # the negative at ts 40 is not picked
    assert {t[1], v[1]} == {2, 3}  # tie at ts 20 broken by the seeded shuffle
    assert 2 not in t and sp.info["users_kept_in_train"] == 1  # user 2 has only 2 positives
    picks = {leave_one_out(inter, seed=s).test.filter(pl.col("user_id") == 1)["item_id"][0] for s in range(20)}
    assert picks == {2, 3}


def test_leave_one_out_random_frame_properties():
    inter = _inter()
    sp = leave_one_out(inter, seed=2)
    _assert_partition(inter, sp)
    assert (sp.test["label"] == 1).all() and (sp.valid["label"] == 1).all()
    assert sp.test["user_id"].is_unique().all()
    # test positive is the latest positive of the user
    last = inter.filter(pl.col("label") == 1).group_by("user_id").agg(pl.col("ts").max().alias("mx"))
    j = sp.test.join(last, on="user_id")
    assert (j["ts"] == j["mx"]).all()


def test_mask_new_users_share():
    inter = _inter()
    sp = mask_new_users(temporal_split(inter, mark_new=False), frac=0.4, seed=0)
    all_parts = pl.concat([sp.train, sp.valid, sp.test])
    assert all_parts.height == inter.height
    new_users = all_parts.filter(pl.col("is_new_user"))["user_id"].unique()
    assert len(new_users) == round(0.4 * inter["user_id"].n_unique())
    # a masked user is masked on every one of their rows in every part
    per_user = all_parts.group_by("user_id").agg(pl.col("is_new_user").n_unique().alias("k"))
    assert (per_user["k"] == 1).all()
    assert sp.info["mask_new_users"]["masked_users"] == len(new_users)


def test_cold_items_never_in_train():
    inter = _inter()
    sp = cold_item_split(inter, item_frac=0.2, seed=0)
    _assert_partition(inter, sp)
    cold = set(pl.concat([sp.valid, sp.test])["item_id"].to_list())
    assert not cold & set(sp.train["item_id"].to_list())
    assert sp.valid["is_cold_item"].all() and sp.test["is_cold_item"].all()
    assert not sp.train["is_cold_item"].any()
    assert sp.info["cold_items"] == round(0.2 * inter["item_id"].n_unique())
    assert not set(sp.valid["user_id"].to_list()) & set(sp.test["user_id"].to_list())


def test_time_window_new_users():
    inter = _inter()
    sp = time_window_new_users(inter, window=0.2, valid_frac=0.1)
    _assert_partition(inter, sp)
    assert sp.train["ts"].max() < sp.valid["ts"].min() <= sp.valid["ts"].max() < sp.test["ts"].min()
    first = inter.group_by("user_id").agg(pl.col("ts").min().alias("first"))
    cut = sp.info["cut_ts"]
    new = set(first.filter(pl.col("first") >= cut)["user_id"].to_list())
    flagged = set(pl.concat([sp.valid, sp.test]).filter(pl.col("is_new_user"))["user_id"].to_list())
    assert flagged == new


@pytest.mark.parametrize("call", [
    lambda i: temporal_split(i, valid_frac=0.0),
    lambda i: temporal_split(i, valid_frac=0.5, test_frac=0.6),
    lambda i: by_user_split(i, test_frac=1.2),
    lambda i: mask_new_users(temporal_split(i), frac=1.0),
    lambda i: leave_one_out(i, min_positives=1),
    lambda i: temporal_split(i.head(2)),
])
def test_bad_params_raise_with_fix(call):
    with pytest.raises(ThawrecError, match="Fix"):
        call(_inter())


def test_missing_column_is_data_error():
    with pytest.raises(ThawrecError, match="ts"):
        temporal_split(_inter().drop("ts"))
    assert issubclass(ConfigError, ThawrecError)


def test_temporal_new_users_keeps_new_users_early_rows_in_train():
    from thawrec.data.splits import temporal_new_users
    from thawrec.data.synthetic import SynthConfig, generate

    ds, truth = generate(SynthConfig(n_users=800, n_items=300, n_interactions=30000, seed=4))
    s = temporal_new_users(ds.interactions, new_window=0.2)
    assert sum(p.height for p in s.parts().values()) == ds.interactions.height
    assert s.train["ts"].max() < s.test["ts"].min()
    flagged = set(pl.concat([p.filter(pl.col("is_new_user")) for p in s.parts().values()])["user_id"].to_list())
    planted = set(np.flatnonzero(truth["user_is_new"]).tolist())
    # the planted new users, recovered from first-event times alone (the observed time range is a hair
    # narrower than the generator's, so a user right at the window's start may be missed)
    assert flagged <= planted and len(flagged) >= 0.98 * len(planted)
    assert 0 < s.info["train_new_user_share"] < 0.05 and s.train["is_new_user"].sum() > 0
    assert s.test["is_new_user"].sum() > 0 and "is_new_item" in s.test.columns


def test_temporal_split_by_time_range_cuts_at_range_fractions():
    inter = pl.DataFrame({"user_id": np.arange(100) % 7, "item_id": np.arange(100),
                          "ts": np.r_[np.arange(90), np.arange(90, 800, 71)][:100]})
    s = temporal_split(inter, valid_frac=0.125, test_frac=0.125, by="time")
    lo, hi = int(inter["ts"].min()), int(inter["ts"].max()) + 1
    assert s.test["ts"].min() >= lo + 0.875 * (hi - lo) and s.train["ts"].max() < lo + 0.75 * (hi - lo)
    assert s.train.height > 3 * s.test.height  # by rows this would have been 75/12.5/12.5
    with pytest.raises(ConfigError, match="rows' or 'time'"):
        temporal_split(inter, by="days")
