"""Raw tables -> canonical Dataset, and the generic CSV/Parquet importer.

Every real format (GroupLens, RecBole, any CSV) is lowered to the same three raw frames that still
carry the *raw* column names and the *raw* file row order. All checks run on those frames, so a
DataError can name the file the user actually has, its 0-based data row and its own column name.
Only after validation are IDs re-indexed and columns renamed to the canonical contract.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from thawrec.data.schema import (
    TS_MAX,
    TS_MIN,
    Dataset,
    encode_codes,
    encode_dense,
    encode_list_codes,
    first_bad_row,
)
from thawrec.errors import DataError

log = logging.getLogger(__name__)

# Above this a "seconds" timestamp is almost surely milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 100_000_000_000
# Text an export writes for a missing value; never a real ID.
NULL_TOKENS = ("nan", "null", "none", "na", "n/a", "nat")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_text_table(
    path: str | Path,
    *,
    separator: str = ",",
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    quote_char: str | None = '"',
) -> pl.DataFrame:
    """Read a delimited file with every column as text, so casts can report the bad row.

    ``names`` means the file has no header. Multi-byte separators (GroupLens ``::``) and
    non-UTF-8 encodings are rewritten in memory first (one C-level pass, no per-row Python).
    A 0-byte or header-only file raises DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path), fix="check the path / the dataset folder layout")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError("the file is empty (0 bytes)", file=str(path),
                        fix="re-download or re-export the file; it must hold data rows")
    sep = separator
    if encoding.lower().replace("-", "") not in ("utf8", "ascii"):
        raw = raw.decode(encoding).encode("utf-8")
    if len(separator.encode()) > 1:
        raw = raw.replace(separator.encode(), b"\x1f")
        sep = "\x1f"
    try:
        df = pl.read_csv(
            io.BytesIO(raw),
            separator=sep,
            has_header=names is None,
            new_columns=list(names) if names is not None else None,
            infer_schema=False,
            quote_char=quote_char,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse the file as '{separator}'-separated text: {exc}", file=str(path),
                        fix=f"check the separator ({separator!r}) and that every row has the same fields") from exc
    if names is not None and df.width != len(names):
        raise DataError(f"expected {len(names)} fields per row, found {df.width}", file=str(path),
                        column=names[min(df.width, len(names) - 1)],
                        fix="check that this is the right file for the chosen format")
    if df.height == 0:
        raise DataError("the file has a header but no data rows", file=str(path),
                        fix="check the export finished; the file must hold data rows")
    return df


def blank_rows(df: pl.DataFrame) -> pl.Series:
    """Rows where every field is null: blank lines in the file."""
    return df.select(pl.all_horizontal(pl.all().is_null())).to_series()


def drop_blank_rows(df: pl.DataFrame, filtered: dict[str, int], key: str = "blank_lines") -> pl.DataFrame:
    """Blank lines are the one thing dropped without an error; they are counted in ``filtered``."""
    mask = blank_rows(df)
    n = int(mask.sum())
    filtered[key] = filtered.get(key, 0) + n
    if n:
        log.info("dropped %d blank line(s)", n)
        df = df.filter(~mask)
    return df


def require(df: pl.DataFrame, cols: Sequence[str], file: str, fix: str | None = None) -> None:
    """Missing columns -> DataError naming the first one and listing what was found."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; the file has {df.columns}",
            file=file, column=missing[0],
            fix=fix or "rename the columns in the file or pass the matching column option",
        )


# --------------------------------------------------------------------------------------------
# Checked casts (each raises naming file, row, column)
# --------------------------------------------------------------------------------------------
def _strip(s: pl.Series) -> pl.Series:
    s = s.str.strip_chars()
    return s.set(s == "", None) if s.len() else s  # empty -> null


def parse_float(df: pl.DataFrame, col: str, file: str, *, what: str = "value", allow_null: bool = False) -> pl.Series:
    """Column -> Float64; text that is not a number, null, and NaN are errors."""
    s = df[col]
    if s.dtype == pl.String:
        t = _strip(s)
        out = t.cast(pl.Float64, strict=False)
        row = first_bad_row(out.is_null() & t.is_not_null())
        if row is not None:
            raise DataError(f"{what} {s[row]!r} is not a number", file=file, row=row, column=col,
                            fix=f"make every {what} in '{col}' numeric")
    elif s.dtype.is_numeric():
        out = s.cast(pl.Float64)
    else:
        raise DataError(f"{what} column has type {s.dtype}, expected numbers", file=file, column=col,
                        row=0, fix=f"store '{col}' as a number")
    if not allow_null:
        row = first_bad_row(out.is_null() | out.is_nan())
        if row is not None:
            raise DataError(f"{what} is missing or NaN", file=file, row=row, column=col,
                            fix=f"fill the {what} or remove the row")
    return out.alias(col)


def _is_intlike_text(s: pl.Series) -> bool:
    t = _strip(s)
    return bool((t.cast(pl.Int64, strict=False).is_null() == t.is_null()).all())


def parse_id(df: pl.DataFrame, col: str, file: str, *, numeric: bool | None = None) -> pl.Series:
    """Raw IDs, checked. ``numeric=None`` decides from the data (all integers -> Int64 IDs).

    Numeric IDs must be non-null, integral and >= 0; text IDs must be non-empty.
    """
    s = df[col]
    if s.dtype == pl.String:
        t = _strip(s)
        row = first_bad_row(t.is_null() | t.str.to_lowercase().is_in(list(NULL_TOKENS)))
        if row is not None:
            raise DataError(f"missing ID ({'empty' if t[row] is None else repr(s[row])})", file=file, row=row,
                            column=col, fix="fill the ID or remove the row")
        if numeric is None:
            numeric = _is_intlike_text(t)
        if not numeric:
            return t.alias(col)
        out = t.cast(pl.Int64, strict=False)
        row = first_bad_row(out.is_null())
        if row is not None:
            raise DataError(f"ID {s[row]!r} is not an integer", file=file, row=row, column=col,
                            fix="IDs in this format are integers; check the column order / separator")
    elif s.dtype.is_float():
        row = first_bad_row(s.is_null() | s.is_nan())
        if row is not None:
            raise DataError("missing (null/NaN) ID", file=file, row=row, column=col, fix="fill the ID or remove the row")
        row = first_bad_row(s != s.floor())
        if row is not None:
            raise DataError(f"ID {s[row]} is not an integer", file=file, row=row, column=col,
                            fix="store IDs as integers or text")
        out = s.cast(pl.Int64)
    elif s.dtype.is_integer():
        out = s.cast(pl.Int64)
        row = first_bad_row(out.is_null())
        if row is not None:
            raise DataError("missing (null) ID", file=file, row=row, column=col, fix="fill the ID or remove the row")
    else:
        raise DataError(f"ID column has type {s.dtype}", file=file, row=0, column=col,
                        fix="store IDs as integers or text")
    row = first_bad_row(out < 0)
    if row is not None:
        raise DataError(f"negative ID {out[row]}", file=file, row=row, column=col, fix="numeric IDs must be >= 0")
    return out.alias(col)


def parse_ts(df: pl.DataFrame, col: str, file: str, *, allow_datetime: bool = False) -> pl.Series:
    """Unix seconds (int or float text), or ISO datetimes when allowed -> Int64 seconds in range."""
    s = df[col]
    if s.dtype == pl.String:
        t = _strip(s)
        row = first_bad_row(t.is_null())
        if row is not None:
            raise DataError("missing timestamp", file=file, row=row, column=col, fix="fill the timestamp or remove the row")
        num = t.cast(pl.Float64, strict=False)
        if allow_datetime and num.is_null().any() and num.is_null().all():
            try:
                dt = t.str.to_datetime(strict=False, time_unit="us")
            except pl.exceptions.PolarsError:  # polars found no datetime format that fits the column at all
                raise DataError(f"timestamp {s[0]!r} is neither Unix seconds nor an ISO datetime (no datetime "
                                "format fits the column)", file=file, row=0, column=col,
                                fix="use Unix seconds or ISO 8601 like 2001-01-02T03:04:05") from None
            row = first_bad_row(dt.is_null())
            if row is not None:
                raise DataError(f"timestamp {s[row]!r} is neither Unix seconds nor an ISO datetime", file=file,
                                row=row, column=col, fix="use Unix seconds or ISO 8601 like 2001-01-02T03:04:05")
            return dt.dt.epoch("s").cast(pl.Int64).alias(col)
        row = first_bad_row(num.is_null())
        if row is not None:
            raise DataError(f"timestamp {s[row]!r} is not a number", file=file, row=row, column=col,
                            fix="timestamps must be Unix seconds" + (" or ISO datetimes" if allow_datetime else ""))
        s = num
    elif s.dtype.is_temporal():
        if s.dtype == pl.Date:
            s = s.cast(pl.Datetime("us"))
        row = first_bad_row(s.is_null())
        if row is not None:
            raise DataError("missing timestamp", file=file, row=row, column=col, fix="fill the timestamp or remove the row")
        return s.dt.epoch("s").cast(pl.Int64).alias(col)
    elif not s.dtype.is_numeric():
        raise DataError(f"timestamp column has type {s.dtype}", file=file, row=0, column=col,
                        fix="store timestamps as Unix seconds")
    s = s.cast(pl.Float64)
    row = first_bad_row(s.is_null() | s.is_nan())
    if row is not None:
        raise DataError("missing (null/NaN) timestamp", file=file, row=row, column=col,
                        fix="fill the timestamp or remove the row")
    row = first_bad_row(s >= MS_THRESHOLD)
    if row is not None:
        raise DataError(f"timestamp {s[row]:.0f} looks like milliseconds", file=file, row=row, column=col,
                        fix="timestamps must be Unix seconds: divide by 1000")
    row = first_bad_row((s < TS_MIN) | (s >= TS_MAX))
    if row is not None:
        raise DataError(f"timestamp {s[row]:.0f} out of range [{TS_MIN}, {TS_MAX}) (1970..2100 in seconds)",
                        file=file, row=row, column=col, fix="timestamps must be Unix seconds after 1970")
    return s.floor().cast(pl.Int64).alias(col)


def parse_label(df: pl.DataFrame, col: str, file: str) -> pl.Series:
    """A 0/1 label column (text or numeric) -> Int8."""
    f = parse_float(df, col, file, what="label")
    row = first_bad_row(~f.is_in([0.0, 1.0]))
    if row is not None:
        raise DataError(f"label {df[col][row]!r} is not 0 or 1", file=file, row=row, column=col,
                        fix="labels must be binary; or drop the label column and use positive_threshold")
    return f.cast(pl.Int8).alias(col)


def check_duplicates(keys: pl.DataFrame, file: str, *, dedupe: bool, filtered: dict[str, int]) -> pl.Series | None:
    """Duplicate (user, item, ts) rows are an error unless ``dedupe``; then returns a keep-mask.

    ``keys`` holds the *parsed* values under the raw column names (so '7' and ' 7' collide).

    The error names the *second* occurrence and the row it repeats.
    """
    later = ~keys.select(pl.struct(pl.all()).is_first_distinct()).to_series()
    n = int(later.sum())
    filtered["duplicate_user_item_ts"] = n
    if n == 0:
        return None
    if dedupe:
        log.info("dropping %d duplicate (user, item, ts) rows", n)
        return ~later
    row = first_bad_row(later)
    key = keys.row(row)
    match = keys.select(pl.all_horizontal([pl.col(c) == v for c, v in zip(keys.columns, key)])).to_series()
    first = first_bad_row(match)
    raise DataError(
        f"duplicate interaction {dict(zip(keys.columns, key))} (first seen at row {first}); {n} duplicate row(s) in all",
        file=file, row=row, column=keys.columns[0],
        fix="deduplicate the file, or pass dedupe=True to keep the first occurrence (counted in meta.filtered)",
    )


def unify_ids(*series: pl.Series) -> list[pl.Series]:
    """Make the ID columns of several files comparable: all Int64 if all are integers, else text."""
    if all(s.dtype == pl.Int64 for s in series):
        return list(series)
    return [s.cast(pl.String) for s in series]


# --------------------------------------------------------------------------------------------
# Assembling the canonical dataset
# --------------------------------------------------------------------------------------------
@dataclass
class RawTables:
    """Validated raw frames with canonical column names but raw ID values.

    ``inter``: user_id, item_id, ts (Int64) and rating (Float64) and/or label (Int8).
    ``users``: user_id + raw attribute columns (any dtype; null = missing).
    ``items``: item_id + optional tags (list<str>), year (Int64), title (str), and list<str> columns
    named in ``item_list_vocabs`` (each gets its own vocabulary).
    """

    inter: pl.DataFrame
    users: pl.DataFrame | None = None
    items: pl.DataFrame | None = None
    item_list_vocabs: tuple[str, ...] = ()
    filtered: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _lookup(ids: pl.Series, n: int, frame: pl.DataFrame, col: str, default: Any) -> pl.Series:
    """Values of ``frame[col]`` placed at dense positions ``ids`` in a length-n column."""
    base = pl.DataFrame({"_i": np.arange(n, dtype=np.int64)})
    joined = base.join(pl.DataFrame({"_i": ids, col: frame[col]}), on="_i", how="left", maintain_order="left")
    out = joined[col]
    return out.fill_null(default) if default is not None else out


def _fill_empty_list(s: pl.Series) -> pl.Series:
    """Null list entries (items without metadata) -> empty lists."""
    return pl.select(pl.lit(s).fill_null(pl.lit([], dtype=pl.List(pl.Int64)))).to_series().alias(s.name)


def check_unique_ids(ids: pl.Series, file: str, col: str) -> None:
    """A users/items file must list each ID once (the row it repeats is named)."""
    later = ~ids.is_first_distinct()
    row = first_bad_row(later)
    if row is not None:
        first = first_bad_row(ids == ids[row])
        raise DataError(f"ID {ids[row]!r} appears again (first at row {first})", file=file, row=row, column=col,
                        fix="each ID must have exactly one row in this file")


def build_dataset(raw: RawTables, *, positive_threshold: float = 4.0) -> Dataset:
    """Dense IDs, labels, attribute codes, tag codes; titles and every vocabulary in ``vocabs``."""
    inter = raw.inter
    uid_parts = [inter["user_id"]] + ([raw.users["user_id"]] if raw.users is not None else [])
    iid_parts = [inter["item_id"]] + ([raw.items["item_id"]] if raw.items is not None else [])
    uid_parts, iid_parts = unify_ids(*uid_parts), unify_ids(*iid_parts)
    ucodes, uvocab = encode_dense(pl.concat(uid_parts).alias("user_id"))
    icodes, ivocab = encode_dense(pl.concat(iid_parts).alias("item_id"))
    n_inter, n_users, n_items = inter.height, len(uvocab), len(ivocab)

    if "label" in inter.columns:
        label = inter["label"].cast(pl.Int8)
        label_source = "label column"
    else:
        label = (inter["rating"] >= positive_threshold).cast(pl.Int8)
        label_source = f"rating >= {positive_threshold}"
    cols = {
        "user_id": ucodes[:n_inter],
        "item_id": icodes[:n_inter],
        "ts": inter["ts"].cast(pl.Int64),
        "label": label.alias("label"),
    }
    if "rating" in inter.columns:
        cols["rating"] = inter["rating"].cast(pl.Float32)
    cols["domain"] = pl.Series("domain", np.zeros(n_inter, dtype=np.int32))
    interactions = pl.DataFrame(cols)

    vocabs: dict[str, list[Any]] = {"user_id": uvocab, "item_id": ivocab}
    meta = dict(raw.meta)

    # users: every dense user gets a row; attributes 0 where the user has no profile row
    users = pl.DataFrame({"user_id": np.arange(n_users, dtype=np.int64)})
    if raw.users is not None:
        pos = ucodes[n_inter:]
        for c in raw.users.columns:
            if c == "user_id":
                continue
            codes, vocab = encode_codes(raw.users[c])
            users = users.with_columns(_lookup(pos, n_users, pl.DataFrame({c: codes}), c, 0).cast(pl.Int64))
            vocabs[c] = vocab
        meta["users_without_profile"] = n_users - int(pos.n_unique())
    else:
        meta["users_without_profile"] = n_users

    # items: every dense item gets a row; empty tags / category 0 / year 0 without metadata
    items = pl.DataFrame({"item_id": np.arange(n_items, dtype=np.int64)})
    empty_lists = pl.Series("tags", [[]] * n_items, dtype=pl.List(pl.Int64))
    tags, category, year = empty_lists, pl.Series("category", np.zeros(n_items, np.int64)), None
    extra: dict[str, pl.Series] = {}
    if raw.items is not None:
        pos = icodes[n_inter:]
        it = raw.items
        if "tags" in it.columns:
            tcodes, tvocab = encode_list_codes(it["tags"])
            tags = _lookup(pos, n_items, pl.DataFrame({"tags": tcodes}), "tags", None)
            tags = _fill_empty_list(tags).alias("tags")
            category = tags.list.first().fill_null(0).cast(pl.Int64).alias("category")
            vocabs["tags"] = tvocab
            vocabs["category"] = tvocab
        if "year" in it.columns:
            year = _lookup(pos, n_items, it, "year", 0).cast(pl.Int64).alias("year")
        if "title" in it.columns:
            vocabs["title"] = _lookup(pos, n_items, it, "title", None).to_list()
        for c in raw.item_list_vocabs:
            if c in it.columns:
                codes, vocab = encode_list_codes(it[c])
                col = _lookup(pos, n_items, pl.DataFrame({c: codes}), c, None)
                extra[c] = _fill_empty_list(col).alias(c)
                vocabs[c] = vocab
        meta["items_without_metadata"] = n_items - int(pos.n_unique())
    else:
        meta["items_without_metadata"] = n_items
    items = items.with_columns(tags, category, pl.Series("domain", np.zeros(n_items, dtype=np.int32)))
    if year is not None:
        items = items.with_columns(year)
    if extra:
        items = items.with_columns(*extra.values())

    meta["filtered"] = dict(raw.filtered)
    meta["label_source"] = label_source
    meta["positive_threshold"] = positive_threshold
    return Dataset(interactions, users, items, meta, vocabs)


def split_tags(s: pl.Series, sep: str, *, none_values: Sequence[str] = ()) -> pl.Series:
    """'a|b|c' -> ['a','b','c'] (trimmed, empties and placeholder values like '(no genres listed)' removed)."""
    out = s.str.split(sep).list.eval(pl.element().str.strip_chars())
    drop = list(none_values) + [""]
    return out.list.eval(pl.element().filter(~pl.element().is_in(drop))).alias(s.name)


def year_from_title(title: pl.Series) -> pl.Series:
    """'Toy Story (1995)' -> 1995; 0 when there is no trailing year."""
    return title.str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int64, strict=False).fill_null(0)


# --------------------------------------------------------------------------------------------
# Generic tabular importer
# --------------------------------------------------------------------------------------------
def _read_any(path: Path) -> pl.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        if path.stat().st_size == 0:
            raise DataError("the file is empty (0 bytes)", file=str(path), fix="re-export the file")
        df = pl.read_parquet(path)
        if df.height == 0:
            raise DataError("the file has no data rows", file=str(path), fix="check the export finished")
        return df
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    return read_text_table(path, separator=sep)


def load_tabular(
    src: str | Path,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    ts_col: str = "ts",
    rating_col: str | None = None,
    label_col: str | None = None,
    item_tags_col: str | None = None,
    tag_sep: str = "|",
    user_attr_cols: Sequence[str] | str | None = None,
    positive_threshold: float = 4.0,
    dedupe: bool = False,
) -> Dataset:
    """Any CSV/TSV/Parquet of interactions + a column mapping -> Dataset.

    User attributes and item tags come from the same file: the first value seen per user/item.
    ``ts_col`` may hold Unix seconds or ISO datetimes. A label comes from ``label_col`` or from
    ``rating_col >= positive_threshold``; with neither the import fails.
    """
    path = Path(src)
    file = str(path)
    if isinstance(user_attr_cols, str):
        user_attr_cols = [c.strip() for c in user_attr_cols.split(",") if c.strip()]
    user_attr_cols = list(user_attr_cols or [])
    if label_col is None and rating_col is None:
        raise DataError("no label: neither label_col nor rating_col is set", file=file,
                        column=label_col, fix="pass label_col=COLUMN (0/1) or rating_col=COLUMN with positive_threshold")
    df = _read_any(path)
    filtered: dict[str, int] = {}
    df = drop_blank_rows(df, filtered)
    wanted = [user_col, item_col, ts_col] + [c for c in (rating_col, label_col, item_tags_col) if c] + user_attr_cols
    require(df, wanted, file)

    cols = {
        "user_id": parse_id(df, user_col, file),
        "item_id": parse_id(df, item_col, file),
        "ts": parse_ts(df, ts_col, file, allow_datetime=True),
    }
    if rating_col:
        cols["rating"] = parse_float(df, rating_col, file, what="rating")
    if label_col:
        cols["label"] = parse_label(df, label_col, file)
    inter = pl.DataFrame({k: v.alias(k) for k, v in cols.items()})
    keep = check_duplicates(inter.select(pl.col("user_id").alias(user_col), pl.col("item_id").alias(item_col),
                                         pl.col("ts").alias(ts_col)), file, dedupe=dedupe, filtered=filtered)

    side = df.with_columns(inter["user_id"].alias("__u"), inter["item_id"].alias("__i"))
    if keep is not None:
        inter, side = inter.filter(keep), side.filter(keep)
    users = None
    if user_attr_cols:
        users = side.group_by("__u", maintain_order=True).agg(
            [pl.col(c).first() for c in user_attr_cols]).rename({"__u": "user_id"})
        users = users.with_columns(
            [(_strip(users[c]) if users[c].dtype == pl.String else users[c]).alias(c) for c in user_attr_cols])
    items = None
    if item_tags_col:
        items = side.group_by("__i", maintain_order=True).agg(pl.col(item_tags_col).first().alias("tags"))
        t = items["tags"]
        if t.dtype == pl.String:
            t = split_tags(t.fill_null(""), tag_sep)
        elif isinstance(t.dtype, pl.List):
            t = t.cast(pl.List(pl.String))
        else:
            raise DataError(f"tags column has type {t.dtype}", file=file, row=0, column=item_tags_col,
                            fix=f"store tags as text separated by {tag_sep!r} or as a list column")
        items = items.with_columns(t.alias("tags")).rename({"__i": "item_id"})
    raw = RawTables(inter, users, items, filtered=filtered)
    return build_dataset(raw, positive_threshold=positive_threshold)
