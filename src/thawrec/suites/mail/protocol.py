"""MAIL's protocol (Sec. 4).

Behaviour is a separate, earlier log, as in the paper's Alimama data (a behaviour log beside the
display/click log): the events before a cut-off time are the behaviour log and never labelled rows;
the labelled log after it is split by time range (the last 1/8 is test, as the paper's last of
eight days; the 1/16 before it is validation for early stopping). The cut-off is the scenario
world's (its behaviour log precedes the labelled one) or, elsewhere, the median event time.

New users: on the ``mail`` scenario world, the users the world made new (no behaviour log, joining
late: no training rows); elsewhere 40% of all users chosen at random with the run seed, whose
behaviour is removed in train and test as the paper does, together with every behaviour-derived
input (accumulated view count). Inputs are the paper's four groups: user attributes (no user ID: a
new user is described by attributes only), context (hour, weekday + the dataset's context columns),
the target item and the behaviour sequence (the behaviour log's clicked items, length 100). AUC and
GAUC for new and old users.

Ceilings: the planted click model (synthetic worlds) and BaseDNN scoring the new users' rows with
their true behaviour (the scenario world keeps the new users' would-be behaviour log in its ground
truth; on real data it is the masked users' own log).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import EpisodeReader
from thawrec.data.schema import Dataset
from thawrec.data.splits import mask_new_users, temporal_split
from thawrec.suites.common.ranking import Prepared
from thawrec.suites.common.world import World

GROUPS = ("new", "old")
METAEMB = {"n_support": 10, "n_query": 10, "users_per_batch": 32}


def behaviour_cutoff(world: World) -> int:
    """Events strictly before this time are the behaviour log."""
    start = world.ds.meta.get("labelled_log_start_ts")
    if world.scenario is not None and world.gt is not None and "hidden_behaviour_user" in world.gt and start:
        return int(start)
    return int(np.median(world.ds.interactions["ts"].to_numpy()))


def prepare_world(world: World) -> dict[str, Any]:
    """Once per run: the oracle column, the behaviour cut-off, and the dataset with the new users'
    true behaviour restored (for the true-behaviour ceiling)."""
    if world.synthetic:
        world.with_oracle()
    cutoff = behaviour_cutoff(world)
    return {"cutoff": cutoff, "true_ds": _with_hidden_behaviour(world)}


def _with_hidden_behaviour(world: World) -> Dataset:
    """The dataset plus the scenario's hidden behaviour-log clicks of new users (real data: as is,
    the masked users' behaviour is in the log already)."""
    gt = world.gt or {}
    if "hidden_behaviour_user" not in gt:
        return world.ds
    inter = world.ds.interactions
    hidden = pl.DataFrame({"user_id": gt["hidden_behaviour_user"], "item_id": gt["hidden_behaviour_item"],
                           "ts": gt["hidden_behaviour_ts"]}).with_columns(
        pl.lit(1).cast(inter.schema["label"]).alias("label"))
    hidden = hidden.join(world.ds.items.select("item_id", "domain"), on="item_id", how="left")
    fill = {c: pl.lit(None).cast(t) for c, t in inter.schema.items() if c not in hidden.columns}
    hidden = hidden.with_columns(**fill).select(inter.columns).cast(dict(inter.schema))
    ds = copy.copy(world.ds)
    ds.interactions = pl.concat([inter, hidden]).sort("ts")
    return ds


def prepare(world: World, run: dict[str, Any], seed: int, new_frac: float, history_len: int) -> Prepared:
    """One seed: the labelled log's split, new users, features, test groups and the test rows with
    the new users' true behaviour."""
    ds, cutoff = world.ds, run["cutoff"]
    labelled = ds.interactions.filter(pl.col("ts") >= cutoff)
    split = temporal_split(labelled, valid_frac=1 / 16, test_frac=1 / 8, by="time", mark_new=False)
    if world.scenario is not None and world.gt is not None and "hidden_behaviour_user" in world.gt:
        is_new = world.gt["user_is_new"]
        parts = [getattr(split, p) for p in ("train", "valid", "test")]
        parts = [df.with_columns(is_new_user=pl.Series(is_new[df["user_id"].to_numpy()])) for df in parts]
        split = type(split)(*parts, {**split.info, "new_users": "the world's"})
    else:
        split = mask_new_users(split, frac=new_frac, seed=seed)
    cfg = FeatureConfig(user_fields=list(ds.user_attrs), sequences={"hist_items": ["item_id", history_len]},
                        history_positive_only=True, mask_new_behaviour=True, history_before_ts=cutoff,
                        labels=["label"], passthrough=["oracle_p"] if world.synthetic else [])
    pipe = FeaturePipeline(cfg).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    for part in cols.values():  # every behaviour-derived input is gone for new users
        part["avc"] = np.where(part["_is_new"], 0, part["avc"])
    unmasked = copy.copy(pipe)  # same vocabularies, behaviour not removed
    unmasked.cfg = dataclasses.replace(cfg, mask_new_behaviour=False)
    true_test = unmasked.transform(run["true_ds"], split.test)
    test = cols["test"]
    groups = {"new": test["_is_new"].astype(bool), "old": ~test["_is_new"].astype(bool)}
    return Prepared(world.name, split, pipe, cols, groups, extra={"test_true_behaviour": true_test})


def describe(world: World, run: dict[str, Any], new_frac: float, history_len: int) -> str:
    new = ("the world's new users (no behaviour log, no training rows)" if world.scenario is not None
           else f"{new_frac:.0%} of users new (behaviour removed in train and test; seed = run seed)")
    return (f"MAIL Sec. 4: behaviour = the clicks of a separate log before ts {run['cutoff']} (length "
            f"{history_len}); the labelled log after it split by time range (last 1/8 test, 1/16 before it "
            f"validation); {new}; AUC/GAUC for new and old users, RI (Eq. 18)")


def metaemb_episodes(train: dict[str, np.ndarray], seed: int) -> EpisodeReader:
    """MetaEmb's episodes: training users who have behaviour, each meta-trained as if new; about
    one pass over their rows per epoch."""
    old = {k: v[~train["_is_new"].astype(bool)] for k, v in train.items()}
    return EpisodeReader.one_pass(old, seed=seed, **METAEMB)

