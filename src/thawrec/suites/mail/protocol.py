"""MAIL's protocol (Sec. 4): a temporal split by time range (the last 1/8 is test, as the paper's
last of eight days; the 1/16 before it is validation for early stopping); 40% of all users, chosen
at random, become new users: their behaviour (the past clicked items, length 100) is removed in
train and test, and so is every behaviour-derived input (accumulated view count). Inputs are the
paper's four groups: user attributes (no user ID: a new user is described by attributes only),
context (hour, weekday + the dataset's context columns), the target item and the behaviour
sequence. AUC and GAUC for new and old users."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import EpisodeReader
from thawrec.data.splits import mask_new_users, temporal_split
from thawrec.data.worlds import load_world
from thawrec.suites.common.ranking import Prepared

GROUPS = ("new", "old")
METAEMB = {"n_support": 10, "n_query": 10, "users_per_batch": 32}


def prepare(data: str | Path | None, synth: dict[str, Any] | None, new_frac: float, history_len: int) -> Prepared:
    ds, name = load_world(data, synth)
    split = mask_new_users(temporal_split(ds.interactions, valid_frac=1 / 16, test_frac=1 / 8, by="time",
                                          mark_new=False), frac=new_frac, seed=0)
    pipe = FeaturePipeline(FeatureConfig(
        user_fields=list(ds.user_attrs), sequences={"hist_items": ["item_id", history_len]},
        history_positive_only=True, mask_new_behaviour=True, labels=["label"],
    )).fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
    for part in cols.values():  # every behaviour-derived input is gone for new users
        part["avc"] = np.where(part["_is_new"], 0, part["avc"])
    test = cols["test"]
    groups = {"new": test["_is_new"].astype(bool), "old": ~test["_is_new"].astype(bool)}
    return Prepared(name, split, pipe, cols, groups)


def describe(new_frac: float, history_len: int) -> str:
    return (f"MAIL Sec. 4: temporal split by time range (last 1/8 test, 1/16 before it validation), "
            f"{new_frac:.0%} of users new (behaviour removed in train and test), behaviour = past "
            f"clicked items (length {history_len}), AUC/GAUC for new and old users, RI (Eq. 18)")


def metaemb_episodes(train: dict[str, np.ndarray], seed: int) -> EpisodeReader:
    """MetaEmb's episodes: training users who have behaviour, each meta-trained as if new; about
    one pass over their rows per epoch."""
    old = {k: v[~train["_is_new"].astype(bool)] for k, v in train.items()}
    return EpisodeReader.one_pass(old, seed=seed, **METAEMB)
