"""RecBole atomic files: ``<name>.inter`` (required), ``<name>.user``, ``<name>.item``.

Tab-separated with typed headers ``field:type`` (token, token_seq, float, float_seq). Sequence
fields are space-separated. Fields the canonical contract has no place for are listed in
``meta["unused_fields"]`` rather than dropped silently.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import polars as pl

from thawrec.data.schema import Dataset
from thawrec.data.sources.tabular import (
    RawTables,
    build_dataset,
    check_duplicates,
    check_unique_ids,
    drop_blank_rows,
    parse_float,
    parse_id,
    parse_label,
    parse_ts,
    read_text_table,
    require,
    split_tags,
)
from thawrec.errors import DataError

log = logging.getLogger(__name__)

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
TAG_FIELDS = ("class", "genre", "genres", "tags", "categories")
TITLE_FIELDS = ("movie_title", "title", "name")


def read_atomic(path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """One atomic file -> (text frame with bare field names, {field: type})."""
    df = read_text_table(path, separator="\t", quote_char=None)
    types: dict[str, str] = {}
    rename: dict[str, str] = {}
    for col in df.columns:
        name, sep, typ = col.partition(":")
        if not sep:
            raise DataError(f"header field '{col}' has no ':type'", file=str(path), column=col,
                            fix=f"RecBole headers are field:type with type one of {', '.join(RECBOLE_TYPES)}")
        if typ not in RECBOLE_TYPES:
            raise DataError(f"unknown RecBole type '{typ}' in header field '{col}'", file=str(path), column=col,
                            fix=f"use one of {', '.join(RECBOLE_TYPES)}")
        types[name] = typ
        rename[col] = name
    return df.rename(rename), types


def _find_files(src: Path, name: str | None) -> dict[str, Path]:
    """Locate <name>.inter/.user/.item in ``src`` (a folder, or the .inter file itself)."""
    if src.is_file() and src.suffix == ".inter":
        folder, name = src.parent, src.stem
    else:
        folder = src
        if name is None:
            inters = sorted(folder.glob("*.inter")) if folder.is_dir() else []
            if len(inters) != 1:
                raise DataError(f"expected exactly one .inter file, found {[p.name for p in inters]}",
                                file=str(folder), fix="point at a RecBole dataset folder or pass name=DATASET")
            name = inters[0].stem
    out = {ext: folder / f"{name}.{ext}" for ext in ("inter", "user", "item")}
    if not out["inter"].is_file():
        raise DataError("RecBole .inter file not found", file=str(out["inter"]),
                        fix="the folder must hold <name>.inter (and optionally .user/.item)")
    return out


def load_recbole(
    src: str | Path,
    *,
    name: str | None = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    ts_field: str = "timestamp",
    rating_field: str = "rating",
    label_field: str = "label",
    tags_field: str | None = None,
    positive_threshold: float = 4.0,
    dedupe: bool = False,
) -> Dataset:
    """RecBole atomic files -> Dataset.

    Label: ``label_field`` when present, else ``rating >= positive_threshold``. User token fields
    become attribute codes (``zip_code`` -> ``zip_prefix``, first 2 chars); the item tag field is
    ``tags_field`` or the first of class/genre/tags present; ``release_year`` -> year; the title
    goes to ``vocabs['title']``.
    """
    files = _find_files(Path(src), name)
    filtered: dict[str, int] = {}
    unused: dict[str, list[str]] = {}

    f_i = str(files["inter"])
    idf, itypes = read_atomic(files["inter"])
    idf = drop_blank_rows(idf, filtered)
    require(idf, [user_field, item_field, ts_field], f_i,
            fix="RecBole .inter needs user, item and timestamp fields (set user_field/item_field/ts_field)")
    has_label, has_rating = label_field in idf.columns, rating_field in idf.columns
    if not (has_label or has_rating):
        raise DataError(f"neither '{label_field}' nor '{rating_field}' in {idf.columns}", file=f_i, column=label_field,
                        fix="add a label:float or rating:float field, or set label_field/rating_field")
    cols = {
        "user_id": parse_id(idf, user_field, f_i),
        "item_id": parse_id(idf, item_field, f_i),
        "ts": parse_ts(idf, ts_field, f_i),
    }
    if has_rating:
        cols["rating"] = parse_float(idf, rating_field, f_i, what="rating")
    if has_label:
        cols["label"] = parse_label(idf, label_field, f_i)
    inter = pl.DataFrame({k: v.alias(k) for k, v in cols.items()})
    keep = check_duplicates(inter.select(pl.col("user_id").alias(user_field), pl.col("item_id").alias(item_field),
                                         pl.col("ts").alias(ts_field)), f_i, dedupe=dedupe, filtered=filtered)
    if keep is not None:
        inter = inter.filter(keep)
    unused["inter"] = [c for c in idf.columns if c not in (user_field, item_field, ts_field, rating_field, label_field)]

    users = None
    if files["user"].is_file():
        f_u = str(files["user"])
        udf, utypes = read_atomic(files["user"])
        udf = drop_blank_rows(udf, filtered, "blank_lines_users")
        require(udf, [user_field], f_u)
        ids = parse_id(udf, user_field, f_u)
        check_unique_ids(ids, f_u, user_field)
        attrs = {"user_id": ids}
        for c, t in utypes.items():
            if c == user_field:
                continue
            if t != "token":
                unused.setdefault("user", []).append(c)
                continue
            v = udf[c].str.strip_chars()
            if c in ("zip_code", "zip"):
                attrs["zip_prefix"] = v.str.slice(0, 2)
            else:
                as_int = v.cast(pl.Int64, strict=False)  # numeric tokens (age) sort numerically
                attrs[c] = as_int if as_int.null_count() == v.null_count() else v
        users = pl.DataFrame(attrs)

    items = None
    if files["item"].is_file():
        f_t = str(files["item"])
        tdf, ttypes = read_atomic(files["item"])
        tdf = drop_blank_rows(tdf, filtered, "blank_lines_items")
        require(tdf, [item_field], f_t)
        ids = parse_id(tdf, item_field, f_t)
        check_unique_ids(ids, f_t, item_field)
        data: dict[str, pl.Series] = {"item_id": ids}
        tf = tags_field or _first_present(TAG_FIELDS, ttypes)
        if tags_field is not None and tags_field not in ttypes:
            raise DataError(f"tags_field '{tags_field}' not in {list(ttypes)}", file=f_t, column=tags_field,
                            fix="pass a tags_field that exists in the .item header")
        used = {item_field}
        if tf is not None:
            sep = " " if ttypes[tf].endswith("_seq") else "\x00"
            data["tags"] = split_tags(tdf[tf].fill_null(""), sep)
            used.add(tf)
        for yc in ("release_year", "year"):
            if yc in ttypes:
                data["year"] = tdf[yc].str.strip_chars().str.extract(r"(\d{4})", 1).cast(pl.Int64, strict=False).fill_null(0)
                used.add(yc)
                break
        title_f = _first_present(TITLE_FIELDS, ttypes)
        if title_f is not None:
            data["title"] = tdf[title_f]
            used.add(title_f)
        items = pl.DataFrame(data)
        unused["item"] = [c for c in ttypes if c not in used]

    raw = RawTables(inter, users, items, filtered=filtered,
                    meta={"unused_fields": {k: v for k, v in unused.items() if v}, "recbole_name": files["inter"].stem})
    return build_dataset(raw, positive_threshold=positive_threshold)


def _first_present(candidates: Sequence[str], types: dict[str, str]) -> str | None:
    return next((c for c in candidates if c in types), None)
