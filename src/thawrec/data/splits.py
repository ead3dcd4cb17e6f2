"""Every evaluation protocol's train/valid/test split, on polars interaction frames.

Each function returns a :class:`Split` whose parts keep every interaction column (in the input's
row order) and may add Boolean flags (``is_new_user``, ``is_cold_item``); ``info`` records the
protocol, its parameters and the counts a report needs (rows and users per part, new users,
users kept whole in train...). No row is ever dropped: every input row lands in exactly one part.
Randomness comes from ``numpy.random.default_rng(seed)`` over *sorted* unique ids, so a split
depends only on the data and the seed, never on row order or hash seeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.schema import require_columns
from thawrec.errors import ConfigError

log = logging.getLogger(__name__)

_IDX = "__row"


@dataclass
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, pl.DataFrame]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_frac(name: str, value: float) -> None:
    if not (0.0 < float(value) < 1.0):
        raise ConfigError(f"{name}={value} must lie strictly between 0 and 1. Fix: pass e.g. {name}=0.2")


def _check_frame(inter: pl.DataFrame, cols: list[str], min_rows: int = 3) -> None:
    require_columns(inter, cols, "<interactions>", fix="pass the dataset's interactions frame")
    if inter.height < min_rows:
        raise ConfigError(f"{inter.height} interaction rows are too few to split (need >= {min_rows}). "
                          "Fix: use a larger dataset")


def _nonempty(parts: dict[str, pl.DataFrame], protocol: str) -> None:
    for name, df in parts.items():
        if df.height == 0:
            raise ConfigError(f"{protocol}: the {name} part is empty. "
                              "Fix: change the split fractions or use more data")


def _mark_new(parts: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """is_new_user = the user has no train rows (False on every train row)."""
    train_users = parts["train"]["user_id"].unique().implode()
    return {k: df.with_columns(is_new_user=~pl.col("user_id").is_in(train_users)) for k, df in parts.items()}


def _counts(parts: dict[str, pl.DataFrame]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for k, df in parts.items():
        info[f"{k}_rows"] = df.height
        info[f"{k}_users"] = int(df["user_id"].n_unique()) if df.height else 0
        if "is_new_user" in df.columns:
            info[f"{k}_new_users"] = int(df.filter(pl.col("is_new_user"))["user_id"].n_unique())
            info[f"{k}_new_user_rows"] = int(df["is_new_user"].sum())
    return info


def _by_part(inter: pl.DataFrame, part: np.ndarray) -> dict[str, pl.DataFrame]:
    """part codes 0/1/2 per row -> three frames in input row order."""
    s = pl.Series("__part", part.astype(np.int8))
    df = inter.with_columns(s)
    return {name: df.filter(pl.col("__part") == code).drop("__part")
            for code, name in enumerate(("train", "valid", "test"))}


def _finish(inter: pl.DataFrame, parts: dict[str, pl.DataFrame], protocol: str,
            params: dict[str, Any], extra: dict[str, Any] | None = None) -> Split:
    _nonempty(parts, protocol)
    assert sum(df.height for df in parts.values()) == inter.height  # nothing dropped
    info = {"protocol": protocol, "params": params, "rows": inter.height,
            "users": int(inter["user_id"].n_unique())}
    info.update(_counts(parts))
    info.update(extra or {})
    log.info("%s split: %s", protocol, {k: v.height for k, v in parts.items()})
    return Split(parts["train"], parts["valid"], parts["test"], info)


def _random_subset(ids: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(ids)[:n]


# --------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------
def temporal_split(inter: pl.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.2,
                   mark_new: bool = True, by: str = "rows") -> Split:
    """Global time cuts at the ts quantiles (DAUC's 70/10/20): train < t1 <= valid < t2 <= test.
    ``by="time"`` cuts at fractions of the time *range* instead (MAIL: the last of eight days is
    test, however many rows it holds).

    Cutting by timestamp value (not row count) means no train event is later than any
    valid/test event, even with tied timestamps; part sizes are therefore approximate.
    """
    _check_frac("valid_frac", valid_frac)
    _check_frac("test_frac", test_frac)
    if valid_frac + test_frac >= 1:
        raise ConfigError("valid_frac + test_frac must be < 1. Fix: e.g. valid_frac=0.1, test_frac=0.2")
    _check_frame(inter, ["user_id", "ts"])
    if by not in ("rows", "time"):
        raise ConfigError(f"temporal_split by='{by}'. Fix: use 'rows' or 'time'")
    ts = inter["ts"].to_numpy()
    if by == "time":
        lo, hi = int(ts.min()), int(ts.max()) + 1
        t1 = lo + int(np.ceil((1 - valid_frac - test_frac) * (hi - lo)))
        t2 = lo + int(np.ceil((1 - test_frac) * (hi - lo)))
    else:
        srt = np.sort(ts)
        n = len(srt)
        t1 = srt[min(int(round(n * (1 - valid_frac - test_frac))), n - 1)]
        t2 = srt[min(int(round(n * (1 - test_frac))), n - 1)]
    part = np.where(ts < t1, 0, np.where(ts < t2, 1, 2))
    parts = _by_part(inter, part)
    if mark_new:
        parts = _mark_new(parts)
    return _finish(inter, parts, "temporal", dict(valid_frac=valid_frac, test_frac=test_frac, by=by),
                   dict(cut_valid_ts=int(t1), cut_test_ts=int(t2)))


def by_user_split(inter: pl.DataFrame, test_frac: float = 0.28, valid_frac: float = 0.1, seed: int = 0,
                  mark_new: bool = True) -> Split:
    """Users partitioned at random (POSO): test_frac of all users -> test; valid_frac of the
    remaining users -> valid; the rest -> train. A user's rows all go to one part."""
    _check_frac("valid_frac", valid_frac)
    _check_frac("test_frac", test_frac)
    _check_frame(inter, ["user_id"])
    users = np.unique(inter["user_id"].to_numpy())
    if len(users) < 3:
        raise ConfigError(f"{len(users)} users are too few to split by user. Fix: use a larger dataset")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(users)
    n_test = max(1, int(round(len(users) * test_frac)))
    n_valid = max(1, int(round((len(users) - n_test) * valid_frac)))
    code = np.zeros(len(users), np.int8)  # indexed like `users` (sorted)
    code[np.searchsorted(users, perm[:n_test])] = 2
    code[np.searchsorted(users, perm[n_test:n_test + n_valid])] = 1
    part = code[np.searchsorted(users, inter["user_id"].to_numpy())]
    parts = _by_part(inter, part)
    if mark_new:
        parts = _mark_new(parts)
    return _finish(inter, parts, "by_user", dict(test_frac=test_frac, valid_frac=valid_frac, seed=seed))


def leave_one_out(inter: pl.DataFrame, seed: int = 0, positive_only: bool = True,
                  min_positives: int = 3) -> Split:
    """Per user: last positive (by ts; ties by a seeded shuffle) -> test, second-to-last -> valid,
    everything else (earlier positives and all negatives) -> train. Users with fewer than
    ``min_positives`` positives stay whole in train (counted in ``info``)."""
    cols = ["user_id", "ts"] + (["label"] if positive_only else [])
    _check_frame(inter, cols)
    if min_positives < 3:
        raise ConfigError("min_positives must be >= 3 (one each for train, valid, test). Fix: pass 3 or more")
    rng = np.random.default_rng(seed)
    n = inter.height
    user = inter["user_id"].to_numpy().astype(np.int64)
    ts = inter["ts"].to_numpy().astype(np.int64)
    pos = inter["label"].to_numpy() == 1 if positive_only else np.ones(n, bool)
    rows = np.flatnonzero(pos)
    tie = rng.random(len(rows))
    order = rows[np.lexsort((tie, ts[rows], user[rows]))]
    u_sorted = user[order]
    # rank from the end within each user block
    change = np.flatnonzero(np.diff(u_sorted)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(order)]])
    block_len = np.repeat(ends - starts, ends - starts)
    block_end = np.repeat(ends, ends - starts)
    rev = block_end - 1 - np.arange(len(order))
    eligible = block_len >= min_positives
    part = np.zeros(n, np.int8)
    part[order[eligible & (rev == 0)]] = 2
    part[order[eligible & (rev == 1)]] = 1
    parts = _by_part(inter, part)
    n_users = int(np.unique(user).size)
    kept = n_users - int(np.sum((ends - starts) >= min_positives))
    return _finish(inter, parts, "leave_one_out",
                   dict(seed=seed, positive_only=positive_only, min_positives=min_positives),
                   dict(users_kept_in_train=kept))


def mask_new_users(split: Split, frac: float = 0.4, seed: int = 0) -> Split:
    """MAIL: a random ``frac`` of all users become new: ``is_new_user`` True on their rows in every
    part (OR-ed with any existing flag). Rows are kept; the feature builder removes their behaviour."""
    _check_frac("frac", frac)
    parts = split.parts()
    users = np.unique(np.concatenate([df["user_id"].to_numpy() for df in parts.values()]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(_random_subset(users, int(round(len(users) * frac)), rng))
    chosen_s = pl.Series(chosen).implode()
    out = {}
    for k, df in parts.items():
        flag = pl.col("user_id").is_in(chosen_s)
        if "is_new_user" in df.columns:
            flag = flag | pl.col("is_new_user")
        out[k] = df.with_columns(is_new_user=flag)
    info = dict(split.info)
    info.update(_counts(out))
    info["mask_new_users"] = dict(frac=frac, seed=seed, masked_users=int(len(chosen)), users=int(len(users)))
    info["protocol"] = f"{split.info.get('protocol', 'split')}+mask_new_users"
    return Split(out["train"], out["valid"], out["test"], info)


def cold_item_split(inter: pl.DataFrame, item_frac: float = 0.2, seed: int = 0, valid_frac: float = 0.5,
                    mark_new: bool = True) -> Split:
    """A random ``item_frac`` of items are cold: all their rows go to valid/test (split by user:
    ``valid_frac`` of the users who touched a cold item -> valid), never to train. Adds
    ``is_cold_item`` (True exactly on the cold-item rows)."""
    _check_frac("item_frac", item_frac)
    _check_frac("valid_frac", valid_frac)
    _check_frame(inter, ["user_id", "item_id"])
    rng = np.random.default_rng(seed)
    items = np.unique(inter["item_id"].to_numpy())
    cold = np.sort(_random_subset(items, max(1, int(round(len(items) * item_frac))), rng))
    item = inter["item_id"].to_numpy()
    user = inter["user_id"].to_numpy()
    is_cold = np.isin(item, cold)
    cold_users = np.unique(user[is_cold])
    valid_users = np.sort(_random_subset(cold_users, int(round(len(cold_users) * valid_frac)), rng))
    part = np.where(is_cold, np.where(np.isin(user, valid_users), 1, 2), 0)
    parts = _by_part(inter.with_columns(is_cold_item=pl.Series(is_cold)), part)
    if mark_new:
        parts = _mark_new(parts)
    return _finish(inter, parts, "cold_item", dict(item_frac=item_frac, seed=seed, valid_frac=valid_frac),
                   dict(cold_items=int(len(cold)), items=int(len(items))))


def time_window_new_users(inter: pl.DataFrame, window: float = 0.2, valid_frac: float = 0.1) -> Split:
    """Temporal cut at ``1 - window`` of the time range: train = events before it; the events after
    it are split by time (first ``valid_frac`` of them -> valid, rest -> test). Users whose first
    event lies after the cut have no train rows and are flagged ``is_new_user``."""
    _check_frac("window", window)
    _check_frac("valid_frac", valid_frac)
    _check_frame(inter, ["user_id", "ts"])
    ts = inter["ts"].to_numpy().astype(np.int64)
    t0, t1 = int(ts.min()), int(ts.max())
    cut = t0 + int(np.ceil((1 - window) * (t1 - t0)))
    after = np.sort(ts[ts >= cut])
    if len(after) == 0:
        raise ConfigError("time_window_new_users: no events after the cut. Fix: increase window")
    t_test = after[min(int(round(len(after) * valid_frac)), len(after) - 1)]
    part = np.where(ts < cut, 0, np.where(ts < t_test, 1, 2))
    parts = _mark_new(_by_part(inter, part))
    return _finish(inter, parts, "time_window_new_users", dict(window=window, valid_frac=valid_frac),
                   dict(cut_ts=cut, cut_test_ts=int(t_test)))


def temporal_new_users(inter: pl.DataFrame, valid_frac: float = 0.0625, test_frac: float = 0.125,
                       new_window: float = 0.2) -> Split:
    """POSO's industrial protocol (Sec. 5.1: train on 7 days, test on the next): a temporal split,
    with ``is_new_user`` marking users whose FIRST event lies in the last ``new_window`` of the time
    range, on every part. Unlike :func:`time_window_new_users`, new users keep their early rows in
    train, as in production, where they are a small share of the samples ("submerged") rather
    than absent. ``is_new_item`` marks items first seen in that window the same way (Table 3)."""
    _check_frac("new_window", new_window)
    base = temporal_split(inter, valid_frac=valid_frac, test_frac=test_frac, mark_new=False)
    ts = inter["ts"].to_numpy().astype(np.int64)
    t0, t1 = int(ts.min()), int(ts.max())
    cut = t0 + int(np.ceil((1 - new_window) * (t1 - t0)))
    new_users = inter.group_by("user_id").agg(pl.col("ts").min()).filter(pl.col("ts") >= cut)["user_id"].implode()
    flags = [pl.col("user_id").is_in(new_users).alias("is_new_user")]
    if "item_id" in inter.columns:
        new_items = inter.group_by("item_id").agg(pl.col("ts").min()).filter(pl.col("ts") >= cut)["item_id"].implode()
        flags.append(pl.col("item_id").is_in(new_items).alias("is_new_item"))
    parts = {k: df.with_columns(flags) for k, df in base.parts().items()}
    extra = {k: v for k, v in base.info.items() if k.startswith("cut_")}
    extra.update(new_user_cut_ts=cut, new_users=int(len(new_users[0])),
                 train_new_user_share=round(float(parts["train"]["is_new_user"].mean()), 4))
    return _finish(inter, parts, "temporal_new_users",
                   dict(valid_frac=valid_frac, test_frac=test_frac, new_window=new_window), extra)
