"""GroupLens MovieLens originals: 100K (u.*), 1M (*.dat), 20M / latest (*.csv).

Each loader reads the raw files as text, validates them (errors name the raw file, row and
column) and lowers them to :class:`RawTables`; :func:`build_dataset` does the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from thawrec.data.schema import Dataset, first_bad_row
from thawrec.data.sources.tabular import (
    RawTables,
    build_dataset,
    check_duplicates,
    check_unique_ids,
    drop_blank_rows,
    parse_float,
    parse_id,
    parse_ts,
    read_text_table,
    split_tags,
    year_from_title,
)
from thawrec.errors import DataError

log = logging.getLogger(__name__)

# The 19 ML-100K genre flags in u.item order (used when u.genre is absent).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
NO_GENRES = "(no genres listed)"


def find_dir(src: str | Path, marker: str) -> Path:
    """The folder holding ``marker``: ``src`` itself or its single sub-folder (as unzipped)."""
    src = Path(src)
    if (src / marker).is_file():
        return src
    hits = sorted(p.parent for p in src.glob(f"*/{marker}")) if src.is_dir() else []
    if len(hits) == 1:
        return hits[0]
    raise DataError(f"'{marker}' not found", file=str(src / marker),
                    fix="point at the unzipped MovieLens folder (the one holding the raw files)")


def _interactions(df: pl.DataFrame, file: str, names: tuple[str, str, str, str], dedupe: bool,
                  filtered: dict[str, int]) -> pl.DataFrame:
    """user, item, rating, ts columns (raw names) -> validated canonical interaction frame."""
    u, i, r, t = names
    inter = pl.DataFrame({
        "user_id": parse_id(df, u, file, numeric=True),
        "item_id": parse_id(df, i, file, numeric=True),
        "rating": parse_float(df, r, file, what="rating"),
        "ts": parse_ts(df, t, file),
    })
    keys = inter.select(pl.col("user_id").alias(u), pl.col("item_id").alias(i), pl.col("ts").alias(t))
    keep = check_duplicates(keys, file, dedupe=dedupe, filtered=filtered)
    return inter if keep is None else inter.filter(keep)


def _users(df: pl.DataFrame, file: str, id_col: str) -> pl.DataFrame:
    """Raw user attributes: age (int), gender, occupation, zip_prefix (first 2 chars, raw zip dropped)."""
    ids = parse_id(df, id_col, file, numeric=True)
    check_unique_ids(ids, file, id_col)
    s = lambda c: df[c].str.strip_chars()  # noqa: E731
    age = s("age")
    age_int = age.cast(pl.Int64, strict=False)
    return pl.DataFrame({
        "user_id": ids,
        # ages sort numerically when they are numbers; otherwise keep the text code
        "age": age_int if age_int.null_count() == age.null_count() else age,
        "gender": s("gender"),
        "occupation": s("occupation"),
        "zip_prefix": s("zip").str.slice(0, 2),
    })


# --------------------------------------------------------------------------------------------
def load_ml100k(src: str | Path, *, positive_threshold: float = 4.0, dedupe: bool = False) -> Dataset:
    """ML-100K: ``u.data`` (tab), ``u.user`` and ``u.item`` (pipe, latin-1), optional ``u.genre``."""
    root = find_dir(src, "u.data")
    filtered: dict[str, int] = {}
    f_data = str(root / "u.data")
    data = drop_blank_rows(read_text_table(f_data, separator="\t", names=("user id", "item id", "rating", "timestamp"),
                                           quote_char=None), filtered)
    inter = _interactions(data, f_data, ("user id", "item id", "rating", "timestamp"), dedupe, filtered)

    users = None
    if (root / "u.user").is_file():
        f_user = str(root / "u.user")
        udf = drop_blank_rows(read_text_table(f_user, separator="|", names=("user id", "age", "gender", "occupation", "zip"),
                                              encoding="latin-1", quote_char=None), filtered, "blank_lines_users")
        users = _users(udf, f_user, "user id")

    items = None
    if (root / "u.item").is_file():
        genres = list(ML100K_GENRES)
        if (root / "u.genre").is_file():
            g = read_text_table(root / "u.genre", separator="|", names=("genre", "index"), encoding="latin-1",
                                quote_char=None).filter(pl.col("genre").is_not_null())
            g_idx = parse_id(g, "index", str(root / "u.genre"), numeric=True)
            genres = g.with_columns(g_idx).sort("index")["genre"].to_list()
        f_item = str(root / "u.item")
        gcols = [f"genre:{n}" for n in genres]
        idf = drop_blank_rows(read_text_table(f_item, separator="|",
                                              names=["movie id", "movie title", "release date", "video release date",
                                                     "IMDb URL", *gcols], encoding="latin-1", quote_char=None),
                              filtered, "blank_lines_items")
        ids = parse_id(idf, "movie id", f_item, numeric=True)
        check_unique_ids(ids, f_item, "movie id")
        flags = []
        for c in gcols:
            v = idf[c].str.strip_chars().fill_null("0")
            row = first_bad_row(~v.is_in(["0", "1"]))
            if row is not None:
                raise DataError(f"genre flag {idf[c][row]!r} is not 0/1", file=f_item, row=row, column=c,
                                fix="u.item genre columns hold 0 or 1")
            flags.append(pl.when(pl.col(c).str.strip_chars() == "1").then(pl.lit(c.split(":", 1)[1])))
        tags = idf.select(pl.concat_list(flags).list.drop_nulls().alias("tags"))["tags"]
        title = idf["movie title"]
        year = (idf["release date"].str.strip_chars().str.extract(r"(\d{4})$", 1).cast(pl.Int64, strict=False)
                .fill_null(year_from_title(title.fill_null(""))))
        items = pl.DataFrame({"item_id": ids, "tags": tags, "year": year, "title": title})
    raw = RawTables(inter, users, items, filtered=filtered)
    return build_dataset(raw, positive_threshold=positive_threshold)


def load_ml1m(src: str | Path, *, positive_threshold: float = 4.0, dedupe: bool = False) -> Dataset:
    """ML-1M: ``ratings.dat``, ``users.dat``, ``movies.dat`` (``::``-separated, latin-1)."""
    root = find_dir(src, "ratings.dat")
    filtered: dict[str, int] = {}
    f_r = str(root / "ratings.dat")
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    data = drop_blank_rows(read_text_table(f_r, separator="::", names=names, encoding="latin-1", quote_char=None), filtered)
    inter = _interactions(data, f_r, names, dedupe, filtered)

    users = None
    if (root / "users.dat").is_file():
        f_u = str(root / "users.dat")
        udf = drop_blank_rows(read_text_table(f_u, separator="::", names=("UserID", "gender", "age", "occupation", "zip"),
                                              encoding="latin-1", quote_char=None), filtered, "blank_lines_users")
        users = _users(udf, f_u, "UserID")

    items = None
    if (root / "movies.dat").is_file():
        f_m = str(root / "movies.dat")
        mdf = drop_blank_rows(read_text_table(f_m, separator="::", names=("MovieID", "Title", "Genres"),
                                              encoding="latin-1", quote_char=None), filtered, "blank_lines_items")
        items = _movies(mdf, f_m, "MovieID", "Title", "Genres")
    raw = RawTables(inter, users, items, filtered=filtered)
    return build_dataset(raw, positive_threshold=positive_threshold)


def _movies(mdf: pl.DataFrame, file: str, id_col: str, title_col: str, genre_col: str) -> pl.DataFrame:
    ids = parse_id(mdf, id_col, file, numeric=True)
    check_unique_ids(ids, file, id_col)
    title = mdf[title_col].fill_null("")
    return pl.DataFrame({
        "item_id": ids,
        "tags": split_tags(mdf[genre_col].fill_null(""), "|", none_values=(NO_GENRES,)),
        "year": year_from_title(title),
        "title": title,
    })


def load_ml20m(src: str | Path, *, positive_threshold: float = 4.0, dedupe: bool = False,
               with_tags: bool = True) -> Dataset:
    """ML-20M / ml-latest: ``ratings.csv``, ``movies.csv``, optional ``tags.csv`` -> items.user_tags.

    ratings.csv is scanned lazily with typed columns (fast path, 20M rows); when that cast fails
    the file is re-read as text only to locate and name the bad row.
    """
    root = find_dir(src, "ratings.csv")
    filtered: dict[str, int] = {}
    f_r = root / "ratings.csv"
    names = ("userId", "movieId", "rating", "timestamp")
    data = _scan_ratings(f_r, names)
    filtered["blank_lines"] = 0
    if data is None:  # slow path: text read for exact error location
        data = drop_blank_rows(read_text_table(f_r, separator=","), filtered)
        for c in names:
            if c not in data.columns:
                raise DataError(f"missing column '{c}'; the file has {data.columns}", file=str(f_r), column=c,
                                fix="ratings.csv needs the header userId,movieId,rating,timestamp")
    inter = _interactions(data, str(f_r), names, dedupe, filtered)

    items = None
    if (root / "movies.csv").is_file():
        f_m = str(root / "movies.csv")
        mdf = drop_blank_rows(read_text_table(f_m, separator=","), filtered, "blank_lines_items")
        for c in ("movieId", "title", "genres"):
            if c not in mdf.columns:
                raise DataError(f"missing column '{c}'; the file has {mdf.columns}", file=f_m, column=c,
                                fix="movies.csv needs the header movieId,title,genres")
        items = _movies(mdf, f_m, "movieId", "title", "genres")
        if with_tags and (root / "tags.csv").is_file():
            items = _attach_user_tags(items, root / "tags.csv", filtered)
    raw = RawTables(inter, None, items, item_list_vocabs=("user_tags",), filtered=filtered)
    return build_dataset(raw, positive_threshold=positive_threshold)


def _scan_ratings(path: Path, names: tuple[str, ...]) -> pl.DataFrame | None:
    """Typed lazy scan; None when anything is off (then the text path explains what)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        df = (pl.scan_csv(path, schema_overrides={names[0]: pl.Int64, names[1]: pl.Int64, names[2]: pl.Float64,
                                                  names[3]: pl.Int64})
              .select(list(names)).collect())
    except pl.exceptions.PolarsError:
        return None
    if df.height == 0 or any(df[c].null_count() for c in names):
        return None
    return df


def _attach_user_tags(items: pl.DataFrame, f_tags: Path, filtered: dict[str, int]) -> pl.DataFrame:
    """Free-text user tags per movie (unique, first-seen order) as a list column ``user_tags``.

    Rows with an empty tag, or whose movie is not in movies.csv, are counted in ``filtered``.
    """
    file = str(f_tags)
    tdf = read_text_table(f_tags, separator=",")
    for c in ("movieId", "tag"):
        if c not in tdf.columns:
            raise DataError(f"missing column '{c}'; the file has {tdf.columns}", file=file, column=c,
                            fix="tags.csv needs the header userId,movieId,tag,timestamp")
    tdf = drop_blank_rows(tdf, filtered, "blank_lines_tags")
    mid = parse_id(tdf, "movieId", file, numeric=True)
    tag = tdf["tag"].str.strip_chars()
    empty = tag.is_null() | (tag == "")
    filtered["tags_empty"] = int(empty.sum())
    t = pl.DataFrame({"item_id": mid, "tag": tag}).filter(~empty)
    unknown = ~t["item_id"].is_in(items["item_id"].implode())
    filtered["tags_unknown_movie"] = int(unknown.sum())
    t = t.filter(~unknown)
    agg = t.group_by("item_id", maintain_order=True).agg(pl.col("tag").unique(maintain_order=True).alias("user_tags"))
    out = items.join(agg, on="item_id", how="left", maintain_order="left")
    return out.with_columns(pl.col("user_tags").fill_null(pl.lit([], dtype=pl.List(pl.String))))
