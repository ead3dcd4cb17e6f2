"""Trivial floors every report shows beside the methods: what a recommender that knows nothing
about the user achieves."""

from __future__ import annotations

import numpy as np

__all__ = ["item_popularity_scores"]


def item_popularity_scores(train_cols: dict[str, np.ndarray], cols: dict[str, np.ndarray], task: str = "label",
                           smoothing: float = 10.0) -> np.ndarray:
    """ItemPop: each item's smoothed click-through rate on the training rows, for every row of
    ``cols``. Items never seen in training (cold items) get the global rate."""
    items, y = train_cols["_item"], train_cols[task].astype(np.float64)
    n = int(max(items.max(initial=0), cols["_item"].max(initial=0))) + 1
    clicks = np.bincount(items, weights=y, minlength=n)
    views = np.bincount(items, minlength=n)
    prior = y.mean() if len(y) else 0.5
    ctr = (clicks + smoothing * prior) / (views + smoothing)
    return ctr[cols["_item"]]
