"""POSO's protocols.

- ``movielens`` (Sec. 5.3, Table 5): users split at random (72% train as 100k of 138k in the
  paper; 10% of those held out for early stopping), so every test user is unseen in training. The
  split seed is the run seed. Groups: a test user's ``early`` rows (the first ``EARLY_EVENTS``
  events of the account, accumulated view count below it: POSO's new users within a lifecycle)
  and the ``established`` rest. This is the protocol of the ``poso`` scenario world (users join
  throughout, so the code means the same for training and test users) and of real data.
- ``new-users`` (Sec. 5.1, Table 2): a temporal split (train on the first 13/16 of the rows, the
  last 1/8 is test, as 7 days then the next); new users = users whose first event lies in the
  last part of the time range. They keep their early rows in train, where they are a small
  share of the samples. Groups ``new`` and ``regular``.

Tasks: Favorite (rating = 5) and Satisfied (rating >= 4). List features: the user's past rated
movie IDs and past rated tags (genres), length 30, strictly earlier than the current rating.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.scenarios import LIFECYCLE_EVENTS
from thawrec.data.splits import by_user_split, temporal_new_users
from thawrec.errors import ConfigError, DataError
from thawrec.suites.common.ranking import Prepared
from thawrec.suites.common.world import World

TASKS = ["favorite", "satisfied"]
ITEM_AGE_DAYS = [1, 2, 4, 7, 14, 30, 60, 120, 365]
PROTOCOLS = ("auto", "movielens", "new-users")
EARLY_EVENTS = LIFECYCLE_EVENTS  # an account's first 5 events (AVC buckets 1-4) are its early life


def add_rating_tasks(inter: pl.DataFrame, source: str) -> pl.DataFrame:
    if "rating" not in inter.columns or inter["rating"].null_count() == inter.height:
        raise DataError("the POSO MovieLens protocol needs ratings (Favorite = 5, Satisfied >= 4)",
                        file=source, column="rating", fix="use a dataset with explicit ratings")
    return inter.with_columns(favorite=(pl.col("rating") >= 5).cast(pl.Int8),
                              satisfied=(pl.col("rating") >= 4).cast(pl.Int8))


@dataclass
class PosoPrepared(Prepared):
    protocol: str = "movielens"
    item_groups: dict[str, np.ndarray] = field(default_factory=dict)


def resolve_protocol(protocol: str, world: World, from_folder: bool) -> str:
    """``auto``: Table 2's new-users protocol on the built-in default world, Table 5's split by user
    on a dataset folder or a scenario world (where accounts of every age are in every period)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'. Fix: choose one of {list(PROTOCOLS)}")
    if protocol != "auto":
        return protocol
    return "new-users" if not from_folder and world.scenario is None else "movielens"


def prepare_world(world: World) -> None:
    """Once per run: the rating tasks, and the planted click model for the oracle row."""
    world.ds.interactions = add_rating_tasks(world.ds.interactions, world.name)
    if world.synthetic:
        world.with_oracle()


def prepare(world: World, protocol: str, seed: int, test_frac: float, history_len: int,
            with_items: bool) -> PosoPrepared:
    """One seed's split (the user split's seed is the run seed), features and test groups."""
    ds = world.ds
    if with_items and protocol == "movielens":
        raise ConfigError("the item cold-start section (Table 3) needs new and regular items in the test "
                          "period. Fix: use --protocol new-users")
    if protocol == "movielens":
        split = by_user_split(ds.interactions, test_frac=test_frac, valid_frac=0.1, seed=seed)
    else:
        split = temporal_new_users(ds.interactions)
    pipe = FeaturePipeline(FeatureConfig(
        sequences={"hist_items": ["item_id", history_len], "hist_tags": ["tags", history_len]},
        history_positive_only=False, labels=TASKS, item_age_days=ITEM_AGE_DAYS if with_items else None,
        passthrough=["oracle_p"] if world.synthetic else [],
    )).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    test = cols["test"]
    if protocol == "movielens":
        early = test["_avc"] < EARLY_EVENTS
        groups = {"early": early, "established": ~early}
    else:
        groups = {"new": test["_is_new"].astype(bool), "regular": ~test["_is_new"].astype(bool)}
    item_groups = ({"new items": test["_is_new_item"], "regular items": ~test["_is_new_item"]}
                   if with_items else {})
    return PosoPrepared(world.name, split, pipe, cols, {**groups, **item_groups}, protocol=protocol,
                        item_groups=item_groups)


def describe(protocol: str, test_frac: float, history_len: int) -> str:
    return ((f"POSO Sec. 5.3: split by user ({1 - test_frac:.0%} train, split seed = run seed); early = a test "
             f"user's first {EARLY_EVENTS} events (AVC < {EARLY_EVENTS})" if protocol == "movielens" else
             "POSO Sec. 5.1: temporal split (last 1/8 of rows = test), new users = first event in "
             "the last 20% of the time range, kept in train")
            + f"; Favorite (rating=5) and Satisfied (rating>=4), past rated items/tags length "
              f"{history_len}, PC = AVC, GAUC")
