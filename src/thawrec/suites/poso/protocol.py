"""POSO's two protocols.

- ``movielens`` (Sec. 5.3, Table 5): users split at random (72% train as 100k of 138k in the
  paper; 10% of those held out for early stopping), so every test user is unseen in training.
- ``new-users`` (Sec. 5.1, Table 2): a temporal split (train on the first 13/16 of the rows, the
  last 1/8 is test, as 7 days then the next); new users = users whose first event lies in the
  last part of the time range. They keep their early rows in train, where they are a small
  share of the samples, which is the "submergence" POSO is about. Reported for new and regular
  users separately.

Tasks: Favorite (rating = 5) and Satisfied (rating >= 4). List features: the user's past rated
movie IDs and past rated tags (genres), length 30, strictly earlier than the current rating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.splits import by_user_split, temporal_new_users
from thawrec.data.worlds import load_world
from thawrec.errors import ConfigError, DataError
from thawrec.suites.common.ranking import Prepared

TASKS = ["favorite", "satisfied"]
ITEM_AGE_DAYS = [1, 2, 4, 7, 14, 30, 60, 120, 365]
PROTOCOLS = ("auto", "movielens", "new-users")


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


def prepare(data: str | Path | None, synth: dict[str, Any] | None, protocol: str, test_frac: float,
            history_len: int, with_items: bool) -> PosoPrepared:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'. Fix: choose one of {list(PROTOCOLS)}")
    ds, name = load_world(data, synth)
    if protocol == "auto":
        protocol = "new-users" if data is None else "movielens"
    ds.interactions = add_rating_tasks(ds.interactions, str(data or "synthetic"))
    if protocol == "movielens":
        split = by_user_split(ds.interactions, test_frac=test_frac, valid_frac=0.1, seed=0)
    else:
        split = temporal_new_users(ds.interactions)
    if with_items and protocol == "movielens":
        raise ConfigError("the item cold-start section (Table 3) needs new and regular items in the test "
                          "period. Fix: use --protocol new-users")
    pipe = FeaturePipeline(FeatureConfig(
        sequences={"hist_items": ["item_id", history_len], "hist_tags": ["tags", history_len]},
        history_positive_only=False, labels=TASKS, item_age_days=ITEM_AGE_DAYS if with_items else None,
    )).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    test = cols["test"]
    groups = ({"test users": np.ones(len(test["_user"]), bool)} if protocol == "movielens" else
              {"new": test["_is_new"].astype(bool), "regular": ~test["_is_new"].astype(bool)})
    item_groups = ({"new items": test["_is_new_item"], "regular items": ~test["_is_new_item"]}
                   if with_items else {})
    return PosoPrepared(name, split, pipe, cols, groups, protocol, item_groups)


def describe(protocol: str, test_frac: float, history_len: int) -> str:
    return ((f"POSO Sec. 5.3: split by user ({1 - test_frac:.0%} train)" if protocol == "movielens" else
             "POSO Sec. 5.1: temporal split (last 1/8 of rows = test), new users = first event in "
             "the last 20% of the time range, kept in train")
            + f"; Favorite (rating=5) and Satisfied (rating>=4), past rated items/tags length "
              f"{history_len}, PC = AVC, GAUC")
