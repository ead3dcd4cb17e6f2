"""Alibaba "Ad Display/Click Data on Taobao.com" (Tianchi dataset 56, the "Alimama" data of MAIL and
the Taobao proxy of DAUC) -> canonical :class:`~thawrec.data.schema.Dataset`.

The public release is four CSV files (headers exactly as below):

- ``raw_sample.csv``   ``user,time_stamp,adgroup_id,pid,nonclk,clk``: 26M ad impressions over 8 days
  (time_stamp in Unix seconds, pid the ad position like ``430548_1007``, clk 0/1, nonclk = 1 - clk);
- ``ad_feature.csv``   ``adgroup_id,cate_id,campaign_id,customer,brand,price`` (brand may be ``NULL``);
- ``user_profile.csv`` ``userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,
  shopping_level,occupation,new_user_class_level `` (note the trailing space of the real header;
  pvalue_level and new_user_class_level have empty values);
- ``behavior_log.csv`` ``user,time_stamp,btag,cate,brand``: 700M pv/cart/fav/buy events (optional).

What the canonical dataset holds:

- ``interactions``: one row per impression, ``label`` = clk, ``pid`` coded 1..n as a context
  column, sorted by (ts, user, ad, pid, label), so the order does not depend on the file's row
  order. Exact duplicate rows (all six fields equal)
  are kept once and counted in ``meta["filtered"]["duplicate_rows"]``: an identical impression
  logged twice carries no information and the public log is known to hold some, so an import
  that refused them would refuse the real data. Any other bad row raises a DataError.
- ``items``: every ad of raw_sample or ad_feature. ``category`` (cate_id), ``campaign``,
  ``customer`` and ``brand`` are codes 1..n (0 = missing/``NULL``), ``price`` is Float64 (null for
  ads missing from ad_feature, counted in ``meta["items_without_features"]``). ``tags`` is
  ``[category]`` (empty when unknown) and shares the ``category`` vocabulary, as the other
  importers do (``category`` = the first tag); brand stays its own column rather than a second
  tag, because ~100k brands would swamp a tag vocabulary of ~6k categories.
- ``users``: every user of raw_sample or user_profile with ``cms_segid``, ``cms_group_id``,
  ``gender`` (final_gender_code), ``age_level``, ``pvalue_level``, ``shopping_level``,
  ``occupation``, ``new_user_class_level`` (the city level) as codes 1..n, 0 = missing. Users
  without a profile row keep all-zero attributes (``meta["users_without_profile"]``).
- ``extras["behaviors"]`` (``behaviors=True`` and behavior_log.csv present): ``user_id``, ``ts``,
  ``btag`` (pv=1, cart=2, fav=3, buy=4), ``category``, ``brand`` for the users of raw_sample, in
  file order. ``category`` and ``brand`` use the items' vocabularies; values ad_feature never
  lists get new codes after ad_feature's, so item codes do not depend on the behaviour log.
  Read by a streaming Polars scan; ``max_behavior_rows`` reads only the first N rows.

MAIL needs the labelled impressions, timestamps (7 days train / day 8 test) and the profile
attributes; DAUC needs price (clicks on items <= 160 RMB vs dearer ones as two views), timestamps
and the profile (gender, age, city level). Both are kept as raw as the contract allows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.schema import TS_MAX, TS_MIN, Dataset, encode_codes, encode_dense, first_bad_row
from thawrec.data.sources.tabular import (
    NULL_TOKENS,
    check_unique_ids,
    drop_blank_rows,
    parse_id,
    parse_ts,
    read_text_table,
)
from thawrec.errors import DataError

log = logging.getLogger(__name__)

RAW_SAMPLE, AD_FEATURE, USER_PROFILE, BEHAVIOR_LOG = (
    "raw_sample.csv", "ad_feature.csv", "user_profile.csv", "behavior_log.csv")
SAMPLE_COLS = ("user", "time_stamp", "adgroup_id", "pid", "nonclk", "clk")
AD_COLS = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price")
# raw user_profile column -> canonical users column
PROFILE_ATTRS = {
    "cms_segid": "cms_segid", "cms_group_id": "cms_group_id", "final_gender_code": "gender",
    "age_level": "age_level", "pvalue_level": "pvalue_level", "shopping_level": "shopping_level",
    "occupation": "occupation", "new_user_class_level": "new_user_class_level",
}
PROFILE_COLS = ("userid", *PROFILE_ATTRS)
BEHAVIOR_COLS = ("user", "time_stamp", "btag", "cate", "brand")
BTAGS = ("pv", "cart", "fav", "buy")  # codes 1..4
# raw ad_feature column -> canonical items column (coded 1..n, 0 = missing)
AD_CODED = {"cate_id": "category", "campaign_id": "campaign", "customer": "customer", "brand": "brand"}


def _strip_names(cols: list[str]) -> list[str]:
    return [c.strip().lstrip("\ufeff").strip() for c in cols]


# --------------------------------------------------------------------------------------------
# Files and headers
# --------------------------------------------------------------------------------------------
def find_root(src: str | Path) -> Path:
    """The folder holding raw_sample.csv: ``src``, its single sub-folder, or the file's folder."""
    src = Path(src)
    if src.is_file() and src.name == RAW_SAMPLE:
        return src.parent
    if (src / RAW_SAMPLE).is_file():
        return src
    hits = sorted(p.parent for p in src.glob(f"*/{RAW_SAMPLE}")) if src.is_dir() else []
    if len(hits) == 1:
        return hits[0]
    raise DataError(f"'{RAW_SAMPLE}' not found", file=str(src / RAW_SAMPLE),
                    fix="point at the folder holding raw_sample.csv, ad_feature.csv and user_profile.csv "
                        "(unpack behavior_log.csv.tar.gz there too, or pass behaviors=False)")


def read_header(path: Path) -> list[str]:
    """Column names of a CSV (stripped), or a DataError for a missing / empty file."""
    if not path.is_file():
        raise DataError("file not found", file=str(path),
                        fix="the Taobao ad dataset needs raw_sample.csv, ad_feature.csv and user_profile.csv "
                            "in one folder")
    with open(path, "rb") as fh:
        first = fh.readline()
        while first and not first.strip():
            first = fh.readline()
    if not first.strip():
        raise DataError("the file is empty (0 bytes)", file=str(path),
                        fix="re-download or re-extract the file; it must hold a header and data rows")
    return _strip_names(first.decode("utf-8", errors="replace").rstrip("\r\n").split(","))


def require_header(header: list[str], cols: tuple[str, ...], file: str) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise DataError(f"missing column(s) {missing}; the header has {header}", file=file, column=missing[0],
                        fix=f"this file's header must be {','.join(cols)} (the public release's)")


def _check_rows(df: pl.DataFrame, file: str) -> None:
    if df.height == 0:
        raise DataError("the file has a header but no data rows", file=file,
                        fix="check the download / extraction finished; the file must hold data rows")


# --------------------------------------------------------------------------------------------
# Checked columns (each error names file, row, column)
# --------------------------------------------------------------------------------------------
def _text(s: pl.Series) -> pl.Series:
    """Stripped text; empty and NULL-like tokens -> null."""
    t = s.cast(pl.String).str.strip_chars()
    return pl.select(pl.when(t.str.to_lowercase().is_in(list(NULL_TOKENS)) | (t == "")).then(None)
                     .otherwise(t).alias(s.name)).to_series()


def parse_opt_int(df: pl.DataFrame, col: str, file: str) -> pl.Series:
    """An optional integer code (empty / NULL -> null); anything else that is not an integer raises."""
    s = df[col]
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    t = _text(s)
    out = t.cast(pl.Int64, strict=False)
    row = first_bad_row(out.is_null() & t.is_not_null())
    if row is not None:
        raise DataError(f"{col} {s[row]!r} is not an integer", file=file, row=row, column=col,
                        fix=f"'{col}' holds integer codes; leave it empty or NULL when unknown")
    return out.alias(col)


def parse_flag(df: pl.DataFrame, col: str, file: str) -> pl.Series:
    """A 0/1 column (clk, nonclk) -> Int8."""
    s = df[col]
    if s.dtype.is_integer():
        v = s.cast(pl.Int64)
    elif s.dtype == pl.String:
        t = s.str.strip_chars()
        v = t.cast(pl.Int64, strict=False)
        row = first_bad_row(v.is_null() & t.is_not_null() & (t != ""))
        if row is not None:
            raise DataError(f"{col} {s[row]!r} is not an integer 0 or 1", file=file, row=row, column=col,
                            fix=f"'{col}' must be 0 or 1")
    else:
        raise DataError(f"{col} column has type {s.dtype}", file=file, row=0, column=col, fix=f"'{col}' must be 0 or 1")
    row = first_bad_row(v.is_null())
    if row is not None:
        raise DataError(f"missing {col}", file=file, row=row, column=col, fix=f"fill '{col}' (0 or 1) or remove the row")
    row = first_bad_row(~v.is_in([0, 1]))
    if row is not None:
        raise DataError(f"{col} {v[row]} is not 0 or 1", file=file, row=row, column=col, fix=f"'{col}' must be 0 or 1")
    return v.cast(pl.Int8).alias(col)


def parse_price(df: pl.DataFrame, col: str, file: str) -> pl.Series:
    """Price -> Float64 >= 0 (empty / NULL -> null)."""
    s = df[col]
    t = _text(s)
    out = t.cast(pl.Float64, strict=False)
    row = first_bad_row(out.is_null() & t.is_not_null())
    if row is None:
        row = first_bad_row(out.is_nan() | out.is_infinite() | (out < 0))
    if row is not None:
        raise DataError(f"price {s[row]!r} is not a non-negative number", file=file, row=row, column=col,
                        fix="prices are non-negative numbers (RMB); leave the field empty when unknown")
    return out.alias(col)


# --------------------------------------------------------------------------------------------
# The four files
# --------------------------------------------------------------------------------------------
def read_raw_sample(path: Path, filtered: dict[str, int]) -> pl.DataFrame:
    """raw_sample.csv -> validated frame: user, adgroup_id, ts (Int64), pid (str|null), label (Int8).

    Typed scan first (the 26M-row fast path); if any field fails to parse, the file is re-read as
    text so the error can name the row and column of the bad value.
    """
    file = str(path)
    require_header(read_header(path), SAMPLE_COLS, file)
    types = {"user": pl.Int64, "time_stamp": pl.Int64, "adgroup_id": pl.Int64, "pid": pl.String,
             "nonclk": pl.Int64, "clk": pl.Int64}
    typed = True
    try:
        df = (pl.scan_csv(path, infer_schema=False, schema_overrides=types, with_column_names=_strip_names,
                          raise_if_empty=False)
              .select(list(SAMPLE_COLS)).collect())
    except pl.exceptions.PolarsError as exc:
        typed = False
        log.info("typed read of %s failed (%s); re-reading as text to locate the bad value", file,
                 str(exc).splitlines()[0])
        df = read_text_table(path)
        df = df.rename(dict(zip(df.columns, _strip_names(df.columns)))).select(list(SAMPLE_COLS))
    df = drop_blank_rows(df, filtered)
    _check_rows(df, file)
    user = parse_id(df, "user", file, numeric=True)
    ad = parse_id(df, "adgroup_id", file, numeric=True)
    ts = parse_ts(df, "time_stamp", file)
    clk = parse_flag(df, "clk", file)
    nonclk = parse_flag(df, "nonclk", file)
    row = first_bad_row((clk + nonclk) != 1)
    if row is not None:
        raise DataError(f"nonclk={nonclk[row]} with clk={clk[row]}: nonclk must be 1 - clk", file=file, row=row,
                        column="nonclk", fix="each impression is either clicked (clk=1,nonclk=0) or not (0,1)")
    pid = df["pid"] if typed else _text(df["pid"])  # the typed reader already maps empty fields to null
    # Sorting by every field makes the order independent of the file's row order and puts exact
    # duplicates next to each other (cheaper than hashing rows).
    keys = ["ts", "user", "adgroup_id", "pid", "label"]
    out = pl.DataFrame({"user": user, "adgroup_id": ad, "ts": ts, "pid": pid, "label": clk}).sort(keys)
    later = out.select(pl.all_horizontal([pl.col(c).eq_missing(pl.col(c).shift(1)) for c in keys])).to_series()
    n_dup = int(later.sum())
    filtered["duplicate_rows"] = n_dup
    if n_dup:
        log.info("%s: %d exact duplicate row(s) (all fields equal) kept once; counted in meta.filtered", file, n_dup)
        out = out.filter(~later)
    return out


def _read_side_table(path: Path, header: tuple[str, ...], id_col: str, filtered: dict[str, int],
                     blank_key: str) -> tuple[pl.DataFrame, pl.Series, str]:
    """A side file keyed by a unique integer id: checked header (names stripped), blank lines
    counted, the parsed id column."""
    file = str(path)
    require_header(read_header(path), header, file)
    df = read_text_table(path)
    df = drop_blank_rows(df.rename(dict(zip(df.columns, _strip_names(df.columns)))), filtered, blank_key)
    ids = parse_id(df, id_col, file, numeric=True)
    check_unique_ids(ids, file, id_col)
    return df, ids, file


def read_ad_feature(path: Path, filtered: dict[str, int]) -> pl.DataFrame:
    """ad_feature.csv -> adgroup_id + raw integer codes (null = NULL/empty) + price."""
    df, ids, file = _read_side_table(path, AD_COLS, "adgroup_id", filtered, "blank_lines_ad_feature")
    return pl.DataFrame([ids] + [parse_opt_int(df, c, file) for c in AD_CODED] + [parse_price(df, "price", file)])


def read_user_profile(path: Path, filtered: dict[str, int]) -> pl.DataFrame:
    """user_profile.csv (header names stripped: the real one ends in a space) -> userid + raw codes."""
    df, ids, file = _read_side_table(path, PROFILE_COLS, "userid", filtered, "blank_lines_user_profile")
    return pl.DataFrame([ids] + [parse_opt_int(df, c, file) for c in PROFILE_ATTRS])


def _scatter(n: int, pos: pl.Series, values: pl.Series) -> pl.Series:
    """A length-n Int64 column, 0 except ``values`` at dense positions ``pos``."""
    arr = np.zeros(n, dtype=np.int64)
    arr[pos.to_numpy()] = values.to_numpy()
    return pl.Series(values.name, arr)


def extend_codes(raw: pl.Series, vocab: list[Any]) -> tuple[pl.Series, list[Any]]:
    """Code ``raw`` with ``vocab`` (vocab[code] = raw value, vocab[0] = None); values it lacks get
    new codes after the existing ones (in sorted order). Null -> 0."""
    known = pl.Series(vocab[1:], dtype=raw.dtype)
    uniq = raw.drop_nulls().unique()
    new = uniq.filter(~uniq.is_in(known.implode())).sort()
    full = pl.concat([known, new])
    codes = raw.replace_strict(full, pl.Series(np.arange(1, len(full) + 1, dtype=np.int64)), default=0,
                               return_dtype=pl.Int64).fill_null(0)
    return codes.alias(raw.name), vocab + new.to_list()


def read_behaviors(path: Path, users: pl.DataFrame, vocabs: dict[str, list[Any]], filtered: dict[str, int],
                   max_rows: int | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """behavior_log.csv -> (behaviors frame, meta) for the users in ``users`` (columns user, user_id).

    One streaming scan: rows of unknown users are dropped in the scan (counted); rows with a bad
    user / ts / btag come back as sentinels (user_id -1, ts = their row index) so the error can name
    them without holding a row-index column for the whole log.
    """
    file = str(path)
    require_header(read_header(path), BEHAVIOR_COLS, file)
    types = {"user": pl.Int64, "time_stamp": pl.Int64, "btag": pl.String, "cate": pl.Int64, "brand": pl.Int64}

    def scan(**kw: Any) -> pl.LazyFrame:
        return pl.scan_csv(path, infer_schema=False, with_column_names=_strip_names, raise_if_empty=False,
                           n_rows=max_rows, null_values=["NULL"], **kw)

    blank = pl.all_horizontal([pl.col(c).is_null() for c in BEHAVIOR_COLS])
    btag = (pl.col("btag").str.strip_chars()
            .replace_strict(list(BTAGS), list(range(1, len(BTAGS) + 1)), default=0, return_dtype=pl.Int8))
    ts = pl.col("time_stamp")
    bad = ~blank & (pl.col("user").is_null() | ts.is_null() | (ts < TS_MIN) | (ts >= TS_MAX) | (btag == 0))
    lf = (scan(schema_overrides=types, row_index_name="_row")
          .select(*BEHAVIOR_COLS, "_row")
          .join(users.lazy(), on="user", how="left", maintain_order="left")
          .filter(blank | bad | pl.col("user_id").is_not_null())
          .select(
              pl.when(blank).then(-2).when(bad).then(-1).otherwise(pl.col("user_id")).cast(pl.Int64).alias("user_id"),
              pl.when(blank | bad).then(pl.col("_row").cast(pl.Int64)).otherwise(ts).alias("ts"),
              btag.alias("btag"),
              pl.col("cate"),
              pl.col("brand"),
          ))
    try:
        out = lf.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        _raise_unparsable_behavior(scan, file, exc)
    n_read = int(scan().select(pl.len()).collect().item())
    if n_read == 0:
        raise DataError("the file has a header but no data rows", file=file,
                        fix="check the extraction finished, or pass behaviors=False")
    sentinel = out["user_id"]
    row = first_bad_row(sentinel == -1)
    if row is not None:
        _raise_bad_behavior(scan, file, int(out["ts"][row]))
    n_blank = int((sentinel == -2).sum())
    if n_blank:
        out = out.filter(sentinel >= 0)
    filtered["behaviors_blank_lines"] = n_blank
    filtered["behaviors_user_not_in_raw_sample"] = n_read - n_blank - out.height
    cat, vocabs["category"] = extend_codes(out["cate"], vocabs["category"])
    brand, vocabs["brand"] = extend_codes(out["brand"], vocabs["brand"])
    out = out.select("user_id", "ts", "btag").with_columns(cat.alias("category"), brand.alias("brand"))
    counts = out["btag"].value_counts()
    meta = {
        "loaded": True,
        "file": file,
        "rows_read": n_read,
        "rows_kept": out.height,
        "max_rows": max_rows,
        "capped": max_rows is not None and n_read >= max_rows,
        "btag_counts": {BTAGS[int(k) - 1]: int(v) for k, v in zip(counts["btag"], counts["count"])},
        "ts_min": int(out["ts"].min()) if out.height else None,
        "ts_max": int(out["ts"].max()) if out.height else None,
        "order": "file order",
    }
    return out, meta


def _raise_unparsable_behavior(scan: Any, file: str, exc: Exception) -> None:
    """A typed scan failed: find the first value that is not an integer (streaming text scan)."""
    lf = scan(row_index_name="_row")
    conds = []
    for c in ("user", "time_stamp", "cate", "brand"):
        t = pl.col(c).str.strip_chars()
        conds.append(t.is_not_null() & (t != "") & t.cast(pl.Int64, strict=False).is_null())
    hit = lf.filter(pl.any_horizontal(conds)).head(1).collect(engine="streaming")
    if hit.height:
        for c in ("user", "time_stamp", "cate", "brand"):
            v = hit[c][0]
            if v is not None and v.strip() and pl.Series([v.strip()]).cast(pl.Int64, strict=False).is_null()[0]:
                raise DataError(f"{c} {v!r} is not an integer", file=file, row=int(hit["_row"][0]), column=c,
                                fix=f"'{c}' holds integers (brand may be NULL); fix or remove the row") from exc
    raise DataError(f"cannot parse the file: {str(exc).splitlines()[0]}", file=file,
                    fix="check the file is the public behavior_log.csv (user,time_stamp,btag,cate,brand)") from exc


def _raise_bad_behavior(scan: Any, file: str, row: int) -> None:
    """Explain the bad row ``row`` (missing user, bad timestamp or btag)."""
    rec = scan(row_index_name="_row").filter(pl.col("_row") == row).collect().row(0, named=True)
    user, ts, tag = rec["user"], rec["time_stamp"], rec["btag"]
    if user is None or not user.strip():
        raise DataError("missing user ID", file=file, row=row, column="user", fix="fill the ID or remove the row")
    if ts is None or not ts.strip():
        raise DataError("missing timestamp", file=file, row=row, column="time_stamp", fix="fill or remove the row")
    if not TS_MIN <= int(ts) < TS_MAX:
        raise DataError(f"timestamp {ts} out of range [{TS_MIN}, {TS_MAX}) (1970..2100 in seconds)", file=file,
                        row=row, column="time_stamp", fix="timestamps must be Unix seconds")
    raise DataError(f"btag {tag!r} is not one of {list(BTAGS)}", file=file, row=row, column="btag",
                    fix="btag is pv, cart, fav or buy")


# --------------------------------------------------------------------------------------------
def load_taobao_ad(src: str | Path, *, behaviors: bool = True, max_behavior_rows: int | None = None) -> Dataset:
    """Read the Taobao ad display/click files in ``src`` into a validated Dataset (see module doc).

    ``behaviors``: also read behavior_log.csv when present (into ``ds.extras["behaviors"]``);
    ``max_behavior_rows``: read only its first N rows (a quick look at the 700M-row log).
    """
    if max_behavior_rows is not None and int(max_behavior_rows) < 1:
        raise DataError(f"max_behavior_rows must be >= 1, got {max_behavior_rows}", column="max_behavior_rows",
                        fix="pass a positive row count, or None to read the whole log")
    root = find_root(src)
    filtered: dict[str, int] = {}
    sample = read_raw_sample(root / RAW_SAMPLE, filtered)
    ads = read_ad_feature(root / AD_FEATURE, filtered)
    profile = read_user_profile(root / USER_PROFILE, filtered)
    n_inter = sample.height

    # dense IDs over both files: every ad / user of either gets a row
    ucodes, uvocab = encode_dense(pl.concat([sample["user"], profile["userid"]]).alias("user_id"))
    icodes, ivocab = encode_dense(pl.concat([sample["adgroup_id"], ads["adgroup_id"]]).alias("item_id"))
    n_users, n_items = len(uvocab), len(ivocab)
    vocabs: dict[str, list[Any]] = {"user_id": uvocab, "item_id": ivocab}

    pid, vocabs["pid"] = encode_codes(sample["pid"])
    interactions = pl.DataFrame({
        "user_id": ucodes[:n_inter],
        "item_id": icodes[:n_inter],
        "ts": sample["ts"],
        "label": sample["label"].alias("label"),
        "domain": pl.Series("domain", np.zeros(n_inter, dtype=np.int32)),
        "pid": pid.alias("pid"),
    })

    upos = ucodes[n_inter:]
    ucols = [pl.Series("user_id", np.arange(n_users, dtype=np.int64))]
    for raw_col, col in PROFILE_ATTRS.items():
        codes, vocabs[col] = encode_codes(profile[raw_col])
        ucols.append(_scatter(n_users, upos, codes).alias(col))
    users = pl.DataFrame(ucols)

    ipos = icodes[n_inter:]
    icols: dict[str, pl.Series] = {}
    for raw_col, col in AD_CODED.items():
        codes, vocabs[col] = encode_codes(ads[raw_col])
        icols[col] = _scatter(n_items, ipos, codes).alias(col)
    vocabs["tags"] = vocabs["category"]
    price = np.full(n_items, np.nan)
    price[ipos.to_numpy()] = ads["price"].fill_null(np.nan).to_numpy()
    items = pl.DataFrame({"item_id": np.arange(n_items, dtype=np.int64)}).with_columns(
        pl.Series("category", icols["category"]),
        pl.Series("domain", np.zeros(n_items, dtype=np.int32)),
        icols["campaign"], icols["customer"], icols["brand"],
        pl.Series("price", price).fill_nan(None),
    ).with_columns(
        pl.concat_list("category").list.eval(pl.element().filter(pl.element() > 0)).cast(pl.List(pl.Int64))
        .alias("tags"),
    ).select("item_id", "tags", "category", "domain", "campaign", "customer", "brand", "price")

    seen_users = sample["user"].unique()
    seen_ads = sample["adgroup_id"].unique()
    meta: dict[str, Any] = {
        "name": "taobao-ad",
        "label_source": "clk",
        "tags": "[category] (cate_id codes; tags and category share one vocabulary)",
        "n_clicks": int(sample["label"].sum()),
        "ctr": float(sample["label"].mean()),
        "time_range": {"min_ts": int(sample["ts"].min()), "max_ts": int(sample["ts"].max())},
        "users_without_profile": int((~seen_users.is_in(profile["userid"].implode())).sum()),
        "items_without_features": int((~seen_ads.is_in(ads["adgroup_id"].implode())).sum()),
        "profile_users_without_interactions": int((~profile["userid"].is_in(seen_users.implode())).sum()),
        "ads_without_interactions": int((~ads["adgroup_id"].is_in(seen_ads.implode())).sum()),
    }
    for k in ("users_without_profile", "items_without_features"):
        if meta[k]:
            log.info("%s: %d (kept with missing attributes)", k, meta[k])

    extras: dict[str, pl.DataFrame] = {}
    f_beh = root / BEHAVIOR_LOG
    if behaviors and f_beh.is_file():
        umap = pl.DataFrame({"user": sample["user"], "user_id": interactions["user_id"]}).unique("user")
        extras["behaviors"], meta["behaviors"] = read_behaviors(f_beh, umap, vocabs, filtered, max_behavior_rows)
    elif behaviors:
        log.warning("%s not found: importing without the behaviour log", f_beh)
        meta["behaviors"] = {"loaded": False, "reason": f"{f_beh} not found"}
    else:
        meta["behaviors"] = {"loaded": False, "reason": "behaviors=False"}
    vocabs["tags"] = vocabs["category"]  # extended by behaviour-only categories, codes unchanged
    vocabs["btag"] = [None, *BTAGS]
    meta["vocab_sizes"] = {c: len(vocabs[c]) for c in ("category", "brand", "campaign", "customer", "pid", "btag")}
    meta["filtered"] = filtered
    return Dataset(interactions, users, items, meta, vocabs, extras)
