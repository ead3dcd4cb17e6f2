"""The spine's protocol "new vs regular users": users whose first event lies in the last
``window`` of the time range are new. Train = every event before the time cut; validation and test
= events after it, split by time. New users therefore have no training rows: their user ID maps
to "unknown" and the model must rank for them from attributes, context and the behaviour they
build up after the cut."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.splits import time_window_new_users
from thawrec.data.worlds import load_world
from thawrec.eval.groups import group_masks
from thawrec.suites.common.ranking import Prepared

log = logging.getLogger(__name__)


def prepare(data: str | Path | None, synth: dict[str, Any] | None, window: float, history_len: int,
            out: Path) -> Prepared:
    ds, name = load_world(data, synth)
    split = time_window_new_users(ds.interactions, window=window)
    pipe = FeaturePipeline(FeatureConfig(
        sequences={"hist_items": ["item_id", history_len], "hist_tags": ["tags", history_len]},
        labels=["label"],
    )).fit(ds, split.train)
    pipe.save(out / "features")
    cols = {part: pipe.transform(ds, getattr(split, part)) for part in ("train", "valid", "test")}
    log.info("features ready: %s", {k: len(v["label"]) for k, v in cols.items()})
    return Prepared(name, split, pipe, cols, group_masks(cols["test"]))
