"""The canonical dataset contract: three Parquet tables + meta.json + vocabs.json + feature_map.json.

A dataset folder holds
- ``interactions.parquet``: user_id, item_id (dense int64), ts (int64 seconds), label (int8 0/1),
  optional rating (float32), domain (int32), optional int64 context columns;
- ``users.parquet``: user_id, categorical attributes as int64 codes (0 = missing), optional
  ``apps`` (list<int64>, a multi-hot side view);
- ``items.parquet``: item_id, tags (list<int64> codes >= 1), category (int64 code, 0 = missing),
  domain (int32), optional year (int64, 0 = unknown);
- ``vocabs.json``: for every coded column, the raw value of each code (``vocabs[col][code]``), so
  a served model maps raw IDs exactly as training did;
- ``meta.json``: provenance, counts, and the count of every row filtered on import;
- ``feature_map.json``: the cardinality and kind of every feature (:class:`FeatureMap`);
- optional extra tables (``Dataset.extras``, e.g. a raw behaviour log): ``<name>.parquet`` each,
  listed under ``meta["extras"]`` so :func:`read_dataset` reads them back. Folders without the key
  (written before extras existed) load with ``extras == {}``.

Raw IDs become dense ints on import (``user_id`` 0..U-1). Categorical codes start at 1 so that 0
can mean "missing" or "padding". Validation lives here so every importer applies the same rules.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import polars as pl

from thawrec.errors import DataError

INTERACTION_REQUIRED = {"user_id": pl.Int64, "item_id": pl.Int64, "ts": pl.Int64, "label": pl.Int8}
USER_REQUIRED = {"user_id": pl.Int64}
ITEM_REQUIRED = {"item_id": pl.Int64, "tags": pl.List(pl.Int64), "category": pl.Int64, "domain": pl.Int32}

# Timestamps are int seconds; anything outside [1970, 2100) is a unit mistake (ms, ns) or garbage.
TS_MIN, TS_MAX = 0, 4_102_444_800

TABLES = ("interactions", "users", "items")
# Extra-table names: lower-case identifiers that cannot collide with the files of the folder.
EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = set(TABLES) | {"meta", "vocabs", "feature_map"}


# --------------------------------------------------------------------------------------------
# Feature map
# --------------------------------------------------------------------------------------------
@dataclass
class FeatureSpec:
    """One model input. ``kind``: categorical | sequence | multihot | dense.

    ``vocab_size`` counts index 0 (padding / unknown), so an embedding table has ``vocab_size``
    rows. ``shared_with`` names another feature whose embedding table this one reuses
    (e.g. the past-items sequence shares ``item_id``'s table). ``max_len`` is the column width of a
    sequence or multi-hot feature; a sequence with ``dim = n > 1`` holds ``n`` values per past item
    (``max_len // n`` items, each a block of ``n``: the ``item_tags`` source, one item's tags).
    """

    name: str
    kind: str
    table: str
    vocab_size: int = 0
    max_len: int = 0
    dim: int = 1
    shared_with: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "sequence", "multihot", "dense"):
            raise DataError(
                f"unknown feature kind '{self.kind}' for feature '{self.name}'",
                fix="use one of categorical, sequence, multihot, dense",
            )


@dataclass
class FeatureMap:
    """Ordered feature specs; saved as ``feature_map.json`` with every dataset and every run."""

    features: list[FeatureSpec] = field(default_factory=list)

    def __getitem__(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(f.name == name for f in self.features)

    def names(self, kind: str | None = None) -> list[str]:
        return [f.name for f in self.features if kind is None or f.kind == kind]

    def add(self, spec: FeatureSpec) -> None:
        self.features = [f for f in self.features if f.name != spec.name] + [spec]

    def to_json(self) -> str:
        return json.dumps({"features": [asdict(f) for f in self.features]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "FeatureMap":
        return cls([FeatureSpec(**f) for f in json.loads(text)["features"]])

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "FeatureMap":
        return cls.from_json(Path(path).read_text())


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    interactions: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    vocabs: dict[str, list[Any]] = field(default_factory=dict)
    # Optional further tables (name -> frame), e.g. ``behaviors``; written as ``<name>.parquet``.
    # A ``user_id`` / ``item_id`` column in one must refer to rows of users / items.
    extras: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def user_attrs(self) -> list[str]:
        return [c for c in self.users.columns if c not in ("user_id", "apps")]

    @property
    def context_cols(self) -> list[str]:
        base = {"user_id", "item_id", "ts", "label", "rating", "domain"}
        return [c for c in self.interactions.columns if c not in base]

    def feature_map(self) -> FeatureMap:
        """Cardinalities of every coded column (max code + 1), as imported."""
        fm = FeatureMap()
        fm.add(FeatureSpec("user_id", "categorical", "users", _card(self.users["user_id"])))
        for c in self.user_attrs:
            fm.add(FeatureSpec(c, "categorical", "users", _card(self.users[c])))
        if "apps" in self.users.columns:
            fm.add(FeatureSpec("apps", "multihot", "users", _card(self.users["apps"].explode())))
        fm.add(FeatureSpec("item_id", "categorical", "items", _card(self.items["item_id"])))
        fm.add(FeatureSpec("category", "categorical", "items", _card(self.items["category"])))
        fm.add(FeatureSpec("tags", "multihot", "items", _card(self.items["tags"].explode())))
        for c in self.context_cols:
            fm.add(FeatureSpec(c, "categorical", "interactions", _card(self.interactions[c])))
        return fm


def _card(s: pl.Series) -> int:
    s = s.drop_nulls()
    return int(s.max()) + 1 if len(s) else 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write then rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_dataset(ds: Dataset, out: str | Path) -> Path:
    """Validate and write a canonical dataset folder. Returns the folder."""
    out = Path(out)
    validate_dataset(ds, source=str(out))
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        df: pl.DataFrame = getattr(ds, name)
        tmp = out / f"{name}.parquet.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, out / f"{name}.parquet")
    for name, df in sorted(ds.extras.items()):
        tmp = out / f"{name}.parquet.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, out / f"{name}.parquet")
    meta = dict(ds.meta)
    meta.update(
        n_users=ds.users.height,
        n_items=ds.items.height,
        n_interactions=ds.interactions.height,
        user_attrs=ds.user_attrs,
        context_cols=ds.context_cols,
        extras=sorted(ds.extras),
    )
    ds.meta = meta
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=1, default=str))
    atomic_write_text(out / "vocabs.json", json.dumps(ds.vocabs, default=str))
    ds.feature_map().save(out / "feature_map.json")
    return out


def read_dataset(path: str | Path, validate: bool = True) -> Dataset:
    """Read a canonical dataset folder written by :func:`write_dataset`."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(
            "dataset folder not found",
            file=str(path),
            fix="run `thawrec data import ...` or `thawrec data synth --out DIR` first",
        )
    tables = {}
    for name in TABLES:
        f = path / f"{name}.parquet"
        if not f.exists():
            raise DataError(
                f"missing {name}.parquet: not a thawrec dataset folder",
                file=str(f),
                fix="point at a folder made by `thawrec data import` or `thawrec data synth`",
            )
        tables[name] = pl.read_parquet(f)
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
    vocabs = json.loads((path / "vocabs.json").read_text()) if (path / "vocabs.json").exists() else {}
    extras = {}
    for name in meta.get("extras", []):
        f = path / f"{name}.parquet"
        if not EXTRA_NAME.match(str(name)) or name in RESERVED_NAMES or not f.exists():
            raise DataError(
                f"meta.json lists extra table '{name}' but {name}.parquet is missing or the name is invalid",
                file=str(f), column="extras",
                fix="re-import the dataset, or remove the name from meta.json's \"extras\" list",
            )
        extras[name] = pl.read_parquet(f)
    ds = Dataset(tables["interactions"], tables["users"], tables["items"], meta, vocabs, extras)
    if validate:
        validate_dataset(ds, source=str(path))
    return ds


# --------------------------------------------------------------------------------------------
# Validation: every rule names file, row and column.
# --------------------------------------------------------------------------------------------
def require_columns(df: pl.DataFrame, required: Iterable[str], file: str, fix: str | None = None) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; found {df.columns}",
            file=file,
            column=missing[0],
            fix=fix or "rename the columns or pass the column mapping flags",
        )


def first_bad_row(mask: pl.Series | np.ndarray) -> int | None:
    """Index of the first True in a boolean mask, or None."""
    arr = mask.to_numpy() if isinstance(mask, pl.Series) else np.asarray(mask)
    arr = np.asarray(arr, dtype=bool)
    idx = np.flatnonzero(arr)
    return int(idx[0]) if len(idx) else None


def check_not_empty(df: pl.DataFrame, file: str) -> None:
    if df.height == 0:
        raise DataError("the file has no data rows", file=file, fix="check the path and that the export finished")


def check_ids(df: pl.DataFrame, col: str, file: str) -> None:
    """IDs must be present and non-negative integers."""
    s = df[col]
    if not s.dtype.is_integer():
        raise DataError(f"expected integer IDs, got {s.dtype}", file=file, column=col,
                        fix="re-import the data so IDs are re-indexed to dense ints")
    row = first_bad_row(s.is_null())
    if row is not None:
        raise DataError("missing (null/NaN) ID", file=file, row=row, column=col,
                        fix="remove the row or fill the ID")
    row = first_bad_row(s < 0)
    if row is not None:
        raise DataError(f"negative ID {s[row]}", file=file, row=row, column=col,
                        fix="IDs must be >= 0; re-import through `thawrec data import`")


def check_ts(df: pl.DataFrame, col: str, file: str) -> None:
    s = df[col]
    row = first_bad_row(s.is_null())
    if row is not None:
        raise DataError("missing timestamp", file=file, row=row, column=col, fix="fill or remove the row")
    row = first_bad_row((s < TS_MIN) | (s >= TS_MAX))
    if row is not None:
        raise DataError(
            f"timestamp {s[row]} out of range [{TS_MIN}, {TS_MAX}) (1970..2100 in seconds)",
            file=file, row=row, column=col,
            fix="timestamps must be Unix seconds; divide milliseconds by 1000",
        )


def check_unique(df: pl.DataFrame, keys: list[str], file: str) -> None:
    dup = df.select(keys).is_duplicated()
    row = first_bad_row(dup)
    if row is not None:
        raise DataError(
            f"duplicate row for key {keys} = {df.row(row)[: len(keys)] if keys == df.columns[: len(keys)] else [df[k][row] for k in keys]}",
            file=file, row=row, column=keys[0],
            fix="deduplicate the export (each key must appear once)",
        )


def validate_dataset(ds: Dataset, source: str = "<memory>") -> None:
    """Check the canonical contract; raise DataError naming table, row and column."""
    fi, fu, ft = (f"{source}/interactions.parquet", f"{source}/users.parquet", f"{source}/items.parquet")
    inter, users, items = ds.interactions, ds.users, ds.items
    require_columns(inter, INTERACTION_REQUIRED, fi)
    require_columns(users, USER_REQUIRED, fu)
    require_columns(items, ITEM_REQUIRED, ft)
    check_not_empty(inter, fi)
    for c in ("user_id", "item_id"):
        check_ids(inter, c, fi)
    check_ids(users, "user_id", fu)
    check_ids(items, "item_id", ft)
    check_ts(inter, "ts", fi)
    row = first_bad_row(~inter["label"].is_in([0, 1]) | inter["label"].is_null())
    if row is not None:
        raise DataError(f"label {inter['label'][row]} is not 0/1", file=fi, row=row, column="label",
                        fix="labels are binary; use --positive-threshold to derive them from ratings")
    check_unique(users, ["user_id"], fu)
    check_unique(items, ["item_id"], ft)
    row = first_bad_row(~inter["user_id"].is_in(users["user_id"].implode()))
    if row is not None:
        raise DataError(f"user {inter['user_id'][row]} has no row in users.parquet", file=fi, row=row,
                        column="user_id", fix="every interacting user needs a users row (attributes may be 0)")
    row = first_bad_row(~inter["item_id"].is_in(items["item_id"].implode()))
    if row is not None:
        raise DataError(f"item {inter['item_id'][row]} has no row in items.parquet", file=fi, row=row,
                        column="item_id", fix="every interacted item needs an items row")
    for name, df in ds.extras.items():
        validate_extra(name, df, users, items, source)


def validate_extra(name: str, df: Any, users: pl.DataFrame, items: pl.DataFrame, source: str = "<memory>") -> None:
    """An extra table: a valid name, a DataFrame, and ``user_id`` / ``item_id`` that exist."""
    fx = f"{source}/{name}.parquet"
    if not isinstance(name, str) or not EXTRA_NAME.match(name) or name in RESERVED_NAMES:
        raise DataError(f"invalid extra table name {name!r}", file=fx, column="extras",
                        fix=f"use a lower-case identifier other than {sorted(RESERVED_NAMES)}")
    if not isinstance(df, pl.DataFrame):
        raise DataError(f"extra table '{name}' is a {type(df).__name__}, not a polars DataFrame", file=fx,
                        column="extras", fix="store extra tables as polars DataFrames")
    for col, table, fk in (("user_id", users, "users"), ("item_id", items, "items")):
        if col not in df.columns:
            continue
        check_ids(df, col, fx)
        row = first_bad_row(~df[col].is_in(table[col].implode()))
        if row is not None:
            raise DataError(f"{col} {df[col][row]} has no row in {fk}.parquet", file=fx, row=row, column=col,
                            fix=f"every {col} in an extra table must be a row of {fk}")


# --------------------------------------------------------------------------------------------
# Coding helpers used by every importer
# --------------------------------------------------------------------------------------------
def encode_dense(s: pl.Series) -> tuple[pl.Series, list[Any]]:
    """Raw IDs -> dense 0..n-1 in sorted order of the raw value. Returns (codes, vocab)."""
    uniq = s.unique().sort()
    codes = s.replace_strict(uniq, pl.Series(np.arange(len(uniq), dtype=np.int64)), return_dtype=pl.Int64)
    return codes.alias(s.name), uniq.to_list()


def encode_codes(s: pl.Series) -> tuple[pl.Series, list[Any]]:
    """Raw categorical values -> codes 1..n (0 = null/missing). vocab[0] is None."""
    uniq = s.drop_nulls().unique().sort()
    codes = s.replace_strict(
        uniq, pl.Series(np.arange(1, len(uniq) + 1, dtype=np.int64)), default=0, return_dtype=pl.Int64
    )
    return codes.fill_null(0).alias(s.name), [None] + uniq.to_list()


def encode_list_codes(s: pl.Series, vocab: list[Any] | None = None) -> tuple[pl.Series, list[Any]]:
    """A list column of raw tags -> list<int64> codes 1..n (shares one vocabulary)."""
    flat = s.explode().drop_nulls()
    if vocab is None:
        uniq = flat.unique().sort()
        vocab = [None] + uniq.to_list()
    else:
        uniq = pl.Series(vocab[1:], dtype=flat.dtype)
    mapping = pl.Series(np.arange(1, len(uniq) + 1, dtype=np.int64))
    codes = s.list.eval(
        pl.element().replace_strict(uniq, mapping, default=0, return_dtype=pl.Int64)
    ).list.eval(pl.element().filter(pl.element() > 0))
    return codes.cast(pl.List(pl.Int64)).alias(s.name), vocab
