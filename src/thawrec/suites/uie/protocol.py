"""UIE's protocol (Sec. 2 and 4.1).

- **Split**: temporal, as the paper's "first 10 days train, next 2 test", as fractions of the time
  range (on the ``uie`` scenario world, 12 days: exactly those days): the last 2/12 of the range is
  test; the 1/12 before it (day 10) is validation, used only to select the epoch (every suite
  selects on validation LogLoss); the training period is everything before the test cut. The split
  has no seed: run seeds vary the training, the AUC bootstrap and the diversity candidates.
- **Tasks**: valid consumption (``label``) and watch time as a regression (``watch_time``, log(1 +
  seconds)) where the data has a watch-time / duration / dwell column; otherwise a second binary
  task where the data has ratings (``favorite``: rating = 5), else ``label`` alone. Tables report
  the valid-consumption task (the paper's Sec. 4.2.1).
- **Low-active users** (Sec. 2, Table 2): on the training period only, every user's number of
  profile features (non-missing attributes + distinct categories + distinct tags of the items
  consumed: Table 1's basic attributes and preference lists) and number of consumptions; a user's
  sparsity is the mean of the two percentile ranks, and the sparsest ``low_frac`` (32%) of the
  users in the log are low-active, the rest high-active. A batch column ``_active_type`` carries it
  (1 = low-active, 0 = high-active): UIE samples its memories by it.
- **Tail items** (Sec. 3.5): the least-exposed items that together hold at most ``tail_share`` (10%)
  of the training-period exposures, and items never exposed in training: the paper's tail "90%
  items only account for less than 10% of total exposures" (its cut is 10,000 exposures; a count
  fits one platform's volume, a share fits any log). Groups of test rows: ``low-active``, ``high-active``,
  ``tail``.
- **Features**: the user's ID and attributes (the profile's basic attributes, the aux user tower's
  input), the item's ID, category, tags and year, the hour and weekday, the accumulated view
  count, and the valid-consumption sequences (positives strictly before the row, length
  ``history_len`` = 100 as the paper): items, their categories (aligned with the items: UCSE's
  consumption vector is item + category, 2 x 24 = 48 dims, the paper's item-memory width) and
  their tags. Sum-pooled, a category / tag sequence is Table 1's preference counts as of the row's
  time (a static table of training-period counts would hand every training row its own label).
  The synthetic side view ``apps`` is left out: it names the interest group almost perfectly and
  would make every profile dense.
- **Diversity** (a stand-in for Table 4's UCC1/UCC2/UCT): for up to ``div_users`` test users per
  group, the model scores ``div_candidates`` items (drawn with the run seed from the items exposed
  in training) at the user's first test event; the number of distinct categories and of distinct
  tags among the top ``div_k`` is the user's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.splits import temporal_split
from thawrec.errors import ConfigError
from thawrec.suites.common.ranking import Prepared
from thawrec.suites.common.world import World

GROUPS = ("low-active", "high-active", "tail")
WATCH_COLUMNS = ("watch_time", "duration", "dwell_time", "dwell")  # seconds watched / dwelt, first found
TEST_FRAC = 2 / 12  # days 11-12 of 12
VALID_FRAC = 1 / 12  # day 10: epoch selection only
LOW_FRAC = 0.32  # Sec. 2: 32% low-active
TAIL_SHARE = 0.10  # Sec. 3.5: the tail items hold under 10% of the exposures


@dataclass(frozen=True)
class Tasks:
    """The columns the models learn: ``binary`` (the first is valid consumption, the one every table
    reports) and ``regression`` (watch time)."""

    binary: tuple[str, ...]
    regression: tuple[str, ...] = ()
    source: str = ""

    @property
    def all(self) -> list[str]:
        return [*self.binary, *self.regression]


@dataclass
class UIEPrepared(Prepared):
    """One seed's data, plus the candidate columns of the diversity stand-in and the per-user facts
    of the low-active definition."""

    candidates: dict[str, np.ndarray] | None = None
    candidate_users: dict[str, np.ndarray] = field(default_factory=dict)  # group -> user ids scored
    users: dict[str, Any] = field(default_factory=dict)


def prepare_world(world: World) -> Tasks:
    """Once per run: the tasks (watch time as log(1 + seconds), or a rating task) and the planted
    click model for the oracle row."""
    inter = world.ds.interactions
    watch = next((c for c in WATCH_COLUMNS if c in inter.columns), None)
    if watch is not None:
        inter = inter.with_columns(pl.col(watch).cast(pl.Float64).fill_null(0.0).clip(lower_bound=0.0)
                                   .log1p().cast(pl.Float32).alias("watch_time"))
        if watch != "watch_time":  # the raw column is a label's source, never a context feature
            inter = inter.drop(watch)
        tasks = Tasks(("label",), ("watch_time",), f"watch time = log(1 + {watch} seconds), squared error")
    elif "rating" in inter.columns and inter["rating"].null_count() < inter.height:
        inter = inter.with_columns(favorite=(pl.col("rating") >= 5).cast(pl.Int8))
        tasks = Tasks(("label", "favorite"), (), "no watch time in the data: second task favorite (rating = 5)")
    else:
        tasks = Tasks(("label",), (), "no watch time or rating in the data: valid consumption only")
    world.ds.interactions = inter
    if world.synthetic:
        world.with_oracle()
    return tasks


def user_activity(ds, train_period: pl.DataFrame, low_frac: float = LOW_FRAC) -> dict[str, Any]:
    """The low-active definition on the training period only: per user (every user in the log,
    ``users`` sorted), profile features (non-missing attributes + distinct consumed categories +
    distinct consumed tags), consumptions, sparsity (mean percentile rank of the two) and
    ``low`` (the sparsest ``low_frac``)."""
    users = np.unique(ds.interactions["user_id"].to_numpy())
    n = len(users)
    pos = train_period.filter(pl.col("label") == 1).select("user_id", "item_id")
    cons = np.zeros(n, np.int64)
    prof = np.zeros(n, np.int64)
    if pos.height:
        per = pos.group_by("user_id").agg(pl.len().alias("n"))
        idx = np.searchsorted(users, per["user_id"].to_numpy())
        cons[idx] = per["n"].to_numpy()
        items = ds.items.select("item_id", *(c for c in ("category", "tags") if c in ds.items.columns))
        joined = pos.join(items, on="item_id", how="left")
        if "category" in joined.columns:
            cats = joined.filter(pl.col("category").is_not_null() & (pl.col("category") > 0)).group_by(
                "user_id").agg(pl.col("category").n_unique().alias("n"))
            prof[np.searchsorted(users, cats["user_id"].to_numpy())] += cats["n"].to_numpy()
        if "tags" in joined.columns:
            tags = joined.select("user_id", "tags").explode("tags").filter(
                pl.col("tags").is_not_null() & (pl.col("tags") > 0)).group_by("user_id").agg(
                pl.col("tags").n_unique().alias("n"))
            prof[np.searchsorted(users, tags["user_id"].to_numpy())] += tags["n"].to_numpy()
    attrs = [c for c in ds.user_attrs if ds.users[c].dtype.is_integer()]
    n_attrs = np.zeros(n, np.int64)
    if attrs:
        table = ds.users.select("user_id", *attrs).sort("user_id")
        row = np.searchsorted(table["user_id"].to_numpy(), users)
        ok = (row < table.height) & (table["user_id"].to_numpy()[np.clip(row, 0, table.height - 1)] == users)
        present = (table.select(attrs).fill_null(0).to_numpy() > 0).sum(1)
        n_attrs = np.where(ok, present[np.clip(row, 0, table.height - 1)], 0)
    prof = prof + n_attrs
    sparsity = 0.5 * (_pct_rank(prof) + _pct_rank(cons))
    order = np.lexsort((users, cons, sparsity))  # the sparsest first; ties by consumptions, then ID
    low = np.zeros(n, bool)
    low[order[:int(round(low_frac * n))]] = True
    return {"users": users, "profile": prof, "consumptions": cons, "attributes": n_attrs, "sparsity": sparsity,
            "low": low}


def _pct_rank(x: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1] with ties averaged."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    uniq, inv = np.unique(x, return_inverse=True)
    mean_rank = np.bincount(inv, weights=ranks) / np.bincount(inv)
    return mean_rank[inv] / max(len(x) - 1, 1)


def tail_items(train_period: pl.DataFrame, n_items: int, tail_share: float = TAIL_SHARE) -> tuple[np.ndarray, int]:
    """Bool per item id: a tail item, i.e. fewer training-period exposures than ``threshold``, the
    largest cut under which the items hold at most ``tail_share`` of the exposures (items never
    exposed are tail); and that threshold (exposures)."""
    counts = np.bincount(train_period["item_id"].to_numpy(), minlength=n_items)
    srt = np.sort(counts)
    if srt.sum() == 0:
        return np.ones(n_items, bool), 0
    below = np.r_[0, np.cumsum(srt)[:-1]] / srt.sum()  # share held by the items before each in ascending order
    # a candidate cut at each distinct count c: the items with fewer than c exposures hold below[first c]
    values, first = np.unique(srt, return_index=True)
    ok = values[below[first] <= tail_share]
    threshold = int(ok.max()) if len(ok) else 0
    return counts < max(threshold, 1), threshold


def prepare(world: World, tasks: Tasks, seed: int, history_len: int, low_frac: float, tail_share: float,
            diversity: dict[str, int] | None) -> UIEPrepared:
    """One seed's split, features, groups and diversity candidates (the split itself has no seed)."""
    ds = world.ds
    split = temporal_split(ds.interactions, valid_frac=VALID_FRAC, test_frac=TEST_FRAC, by="time", mark_new=False)
    if split.train.height == 0 or split.test.height == 0:
        raise ConfigError("the temporal split left no training or no test rows. Fix: use data that spans time")
    period = pl.concat([split.train, split.valid])  # the paper's training period: before the test cut
    act = user_activity(ds, period, low_frac)
    n_items = int(max(ds.items["item_id"].max(), ds.interactions["item_id"].max())) + 1
    tail, threshold = tail_items(period, n_items, tail_share)
    act["tail_items"] = tail
    has_cat = "category" in ds.items.columns
    seqs: dict[str, list] = {"hist_items": ["item_id", history_len]}
    if has_cat:
        seqs["hist_cats"] = ["category", history_len]
    if "tags" in ds.items.columns:
        seqs["hist_tags"] = ["tags", history_len]
    pipe = FeaturePipeline(FeatureConfig(
        sequences=seqs, history_positive_only=True, user_multihot=[], labels=tasks.all,
        passthrough=["oracle_p"] if world.synthetic else [],
    )).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    for part in cols.values():
        _mark(part, act, tail)
    test = cols["test"]
    low = test["_active_type"] == 1
    groups = {"low-active": low, "high-active": ~low, "tail": test["_tail"].astype(bool)}
    info = {"low_active_users": int(act["low"].sum()), "users": int(len(act["users"])),
            "low_active_share": float(act["low"].mean()),
            "profile_low_vs_high": _ratio(act["profile"], act["low"]),
            "consumptions_low_vs_high": _ratio(act["consumptions"], act["low"]),
            "tail_threshold_exposures": threshold, "tail_items": int(tail.sum()), "items": n_items,
            "tail_share_of_training_exposures": float(tail[period["item_id"].to_numpy()].mean()),
            "history_len": history_len, "sequences": list(seqs)}
    if world.gt is not None and "user_is_low_active" in world.gt:  # how well the definition finds the planted
        planted = world.gt["user_is_low_active"][act["users"]]
        hit = (planted & act["low"]).sum()
        info["planted_low_active_recall"] = float(hit / max(planted.sum(), 1))
        info["planted_low_active_precision"] = float(hit / max(act["low"].sum(), 1))
    split = type(split)(split.train, split.valid, split.test, {**split.info, **info})
    ctx = UIEPrepared(world.name, split, pipe, cols, groups, users=act)
    if diversity and diversity.get("k"):
        _candidates(ctx, ds, period, split.test, diversity, seed, tasks, world.synthetic, has_cat)
    return ctx


def _ratio(x: np.ndarray, low: np.ndarray) -> float | None:
    hi = x[~low].mean() if (~low).any() else 0.0
    return float(x[low].mean() / hi) if low.any() and hi > 0 else None


def _mark(part: dict[str, np.ndarray], act: dict[str, Any], tail: np.ndarray) -> None:
    """``_active_type`` (1 = low-active) and ``_tail`` per row."""
    users, low = act["users"], act["low"]
    idx = np.clip(np.searchsorted(users, part["_user"]), 0, len(users) - 1)
    part["_active_type"] = np.where(users[idx] == part["_user"], low[idx], True).astype(np.int64)
    item = part["_item"]
    part["_tail"] = np.where(item < len(tail), tail[np.clip(item, 0, len(tail) - 1)], True)


def _candidates(ctx: UIEPrepared, ds, period: pl.DataFrame, test: pl.DataFrame, div: dict[str, int], seed: int,
                tasks: Tasks, synthetic: bool, has_cat: bool) -> None:
    """The diversity stand-in's rows: chosen test users x candidate items, at each user's first test
    event (its context), as feature columns."""
    rng = np.random.default_rng([seed, 12])
    seen = np.unique(period["item_id"].to_numpy())
    pool = np.sort(rng.choice(seen, min(div["candidates"], len(seen)), replace=False))
    first = test.sort("ts").unique("user_id", keep="first", maintain_order=True)
    users = first["user_id"].to_numpy()
    low = ctx.users["low"][np.clip(np.searchsorted(ctx.users["users"], users), 0, len(ctx.users["users"]) - 1)]
    chosen: dict[str, np.ndarray] = {}
    for g, m in (("low-active", low), ("high-active", ~low)):
        ids = users[m]
        chosen[g] = np.sort(rng.choice(ids, min(div["users"], len(ids)), replace=False)) if len(ids) else ids
    keep = np.concatenate(list(chosen.values()))
    rows = first.filter(pl.col("user_id").is_in(keep.tolist())).drop("item_id")
    if "domain" in rows.columns and "domain" in ds.items.columns:
        rows = rows.drop("domain")
    frame = rows.join(pl.DataFrame({"item_id": pool}), how="cross")
    if "domain" in ds.interactions.columns and "domain" in ds.items.columns:
        frame = frame.join(ds.items.select("item_id", "domain"), on="item_id", how="left")
    frame = frame.with_columns(**{t: pl.lit(0).cast(ds.interactions.schema[t]) for t in tasks.all})
    if synthetic and "oracle_p" in frame.columns:  # the planted probability of the shown item, not a candidate's
        frame = frame.with_columns(oracle_p=pl.lit(float("nan")))
    frame = frame.select([c for c in ds.interactions.columns if c in frame.columns]).sort("user_id", "item_id")
    cols = ctx.pipeline.transform(ds, frame)
    _mark(cols, ctx.users, ctx.users["tail_items"])
    cols["_category"] = _item_lookup(ds, "category", cols["_item"]) if has_cat else None
    cols["_tags"] = _item_tags(ds, cols["_item"]) if "tags" in ds.items.columns else None
    ctx.candidates = {k: v for k, v in cols.items() if v is not None}
    ctx.candidate_users = chosen


def _item_lookup(ds, col: str, item: np.ndarray) -> np.ndarray:
    t = ds.items.select("item_id", col).sort("item_id")
    ids = t["item_id"].to_numpy()
    idx = np.clip(np.searchsorted(ids, item), 0, len(ids) - 1)
    return np.where(ids[idx] == item, t[col].fill_null(0).to_numpy()[idx], 0)


def _item_tags(ds, item: np.ndarray) -> np.ndarray:
    """``[rows, max_tags]`` tag codes of each row's item (0 = padding)."""
    t = ds.items.select("item_id", "tags").sort("item_id")
    ids = t["item_id"].to_numpy()
    lists = t["tags"].to_list()
    width = max((len(x) for x in lists if x), default=1)
    table = np.zeros((len(ids), width), np.int64)
    for r, x in enumerate(lists):  # once per seed, one row per item
        if x:
            table[r, :len(x)] = x
    idx = np.clip(np.searchsorted(ids, item), 0, len(ids) - 1)
    return np.where((ids[idx] == item)[:, None], table[idx], 0)


def describe(tasks: Tasks, history_len: int, low_frac: float, tail_share: float) -> str:
    return (f"UIE Sec. 4.1: temporal split by time range (first 10/12 training period, of which day 10 "
            f"validation for epoch selection; last 2/12 test); low-active = the sparsest {low_frac:.0%} of users "
            f"by profile features and consumptions on the training period; tail items = the least exposed, "
            f"holding at most {tail_share:.0%} of the training-period exposures; tasks: valid consumption (label) + "
            f"{tasks.source}; "
            f"valid-consumption sequences of length {history_len}; AUC of valid consumption")
