"""Validators at the library's boundaries: arrays of ids, labels, timestamps, counts.

One home for them so every public function (metrics, U2G2I candidates, the replay, serving) refuses
bad input with the same clear :class:`~thawrec.errors.DataError` / :class:`~thawrec.errors.ConfigError`
naming the column (and the first bad row) and saying how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thawrec.errors import ConfigError, DataError

__all__ = ["int_ids", "labels01", "timestamps", "same_length", "positive_int"]


def int_ids(x: Any, name: str, *, allow_minus_one: bool = False) -> np.ndarray:
    """A 1-D int64 array of ids; negative ids are refused (``-1`` too unless allowed)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"expected a 1-D array of ids, got shape {arr.shape}", column=name,
                        fix=f"pass `{name}` as a flat integer array")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DataError(f"ids must be integers, got dtype {arr.dtype}", column=name,
                        fix="re-index raw ids to dense ints (thawrec data import does this)")
    arr = arr.astype(np.int64, copy=False)
    low = -1 if allow_minus_one else 0
    bad = arr < low
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = "-1 (unassigned) or a cluster id >= 0" if allow_minus_one else "ids >= 0"
        raise DataError(f"{int(bad.sum())} negative id(s) (first: {arr[row]})", row=row, column=name,
                        fix=f"use {allowed}")
    return arr


def labels01(x: Any, name: str = "labels") -> np.ndarray:
    """A 1-D int64 array of 0/1 labels (click = 1, exposure without click = 0)."""
    arr = np.asarray(x)
    if arr.ndim != 1 or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise DataError(f"labels must be a 1-D numeric 0/1 array, got {arr.dtype} {arr.shape}", column=name,
                        fix="encode a click as 1 and an exposure without click as 0")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} label(s) not 0/1 (first: {arr[row]!r})", row=row, column=name,
                        fix="binarise the labels (click = 1, exposure without click = 0)")
    return arr.astype(np.int64)


def timestamps(x: Any, name: str = "ts") -> np.ndarray:
    """A 1-D numeric array of timestamps in seconds, without NaN."""
    arr = np.asarray(x)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"ts must be a 1-D numeric array (seconds), got {arr.dtype} {arr.shape}", column=name,
                        fix="pass timestamps as int seconds")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr))[0])
        raise DataError("NaN timestamp", row=row, column=name, fix="drop or fill rows without a timestamp")
    return arr


def same_length(fix: str = "pass the arrays aligned row by row, one entry per row", **arrays: Any) -> int:
    """The common length of ``arrays``; a DataError naming every length (and ``fix``) if they differ."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"arrays differ in length: {lengths}", fix=fix)
    return next(iter(lengths.values()))


def positive_int(value: Any, name: str = "k", *, example: int = 50) -> int:
    """``value`` as an int >= 1 (bools refused); a ConfigError saying what to pass otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}. Fix: pass e.g. {name}={example}")
    return int(value)
