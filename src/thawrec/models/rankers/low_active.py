"""Which rows belong to low-active users: the rule PLE+CL and PLE+TL share (UIE paper, Sec. 2 and 4.3).

The UIE paper calls the ~32% of users with the sparsest profiles and fewest consumptions
"low-active" and applies both Google baselines to them. A model takes the rule as its
``low_active`` option, ``{"column": ..., "at_most": ...}``:

- ``column``: a batch column, either a feature of the map (default ``avc``, the bucketized count
  of the user's earlier views at that row, which every feature map has) or a ``_``-prefixed column
  the caller adds (a suite's per-user low/high-active label, e.g. ``_low_active``);
- ``at_most``: a row is low-active when its ``column`` value is ``<= at_most`` (a bucket or count
  threshold); ``None``: the column is a flag and a row is low-active when it is non-zero / True.

The default, ``avc <= 5``, is "fewer than 8 earlier views" with the default AVC boundaries
(bucket 1 = no view, 2 = one, 3 = two, 4 = 3-4, 5 = 5-7); on the small synthetic worlds of the
tests that is about a quarter of the rows. It is a per-row proxy (a user is low-active early in
their history); a suite that knows its users passes its own column.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError

__all__ = ["LOW_ACTIVE_DEFAULTS", "check_low_active", "low_active_rows"]

LOW_ACTIVE_DEFAULTS: dict[str, Any] = {"column": "avc", "at_most": 5}


def check_low_active(owner: str, spec: dict[str, Any], feature_map: FeatureMap) -> None:
    """Refuse a rule that cannot be evaluated (a column neither in the map nor ``_``-prefixed, a
    threshold that is not a number)."""
    col, thr = spec["column"], spec["at_most"]
    if not isinstance(col, str) or not (col.startswith("_") or col in feature_map):
        raise ConfigError(f"{owner}: low_active.column {col!r} is neither a feature of the map nor a '_' batch "
                          "column. Fix: 'avc' (with at_most, a bucket) or a flag column such as '_low_active' "
                          "(with at_most: None)")
    if thr is not None and (not isinstance(thr, Real) or isinstance(thr, bool)):
        raise ConfigError(f"{owner}: low_active.at_most must be a number (rows with column <= at_most are "
                          f"low-active) or None (the column is a 0/1 flag), got {thr!r}")


def low_active_rows(batch: dict[str, torch.Tensor], spec: dict[str, Any]) -> torch.Tensor:
    """Bool ``[B]``: the batch's low-active rows under ``spec`` (module docstring)."""
    col = spec["column"]
    if col not in batch:
        raise ConfigError(f"low_active.column '{col}' is not a column of the batch. Fix: add it to the data "
                          f"(columns: {sorted(batch)}) or choose another")
    v = batch[col]
    if v.dim() != 1:
        raise ConfigError(f"low_active.column '{col}' must be one value per row, got shape {tuple(v.shape)}")
    thr = spec["at_most"]
    return v != 0 if thr is None else v <= thr
