"""Amazon product reviews, two category files as two domains -> canonical :class:`~thawrec.data.schema.Dataset`.

COUPLE (Sec. 4.1) uses Books as the source domain and Movies and TV as the target domain, items
represented only by tags extracted from title, category and brand (App. A.1.1). Both public
releases are read, each file detected on its own (gzip by its magic bytes, syntax by its first line):

- **2014** (McAuley et al.): reviews ``reviews_<Category>_5.json(.gz)`` (or ``reviews_<Category>.json``),
  one JSON object per line with ``reviewerID, asin, overall, unixReviewTime``; metadata
  ``meta_<Category>.json(.gz)``, one *Python literal* dict per line (single quotes, read with
  ``ast.literal_eval``, never ``eval``) with ``asin, title, categories`` (a list of category paths),
  ``brand``.
- **2018** (Ni et al.): reviews ``<Category>_5.json(.gz)`` / ``<Category>.json(.gz)`` with the same
  four fields; metadata ``meta_<Category>.json(.gz)`` in strict JSON with ``asin, title, category``
  (one path, HTML entities such as ``&amp;`` in the names), ``brand``.

Strict-JSON files go through Polars' NDJSON reader chunk by chunk; Python-literal files need one
``literal_eval`` per line (a few minutes for the 2.4M lines of 2014 Books metadata). After parsing
everything is column-wise. A bad line stops the import with the file, the 1-based line number and a
fix; a missing required field is named.

What the canonical dataset holds:

- ``interactions``: every review kept, in file order (source file first), ``rating`` (1-5 stars)
  kept, ``label`` = rating >= ``positive_threshold`` (4 = COUPLE's "rating over 3"; no row is dropped
  for its label: the protocol filters later), ``domain`` = its item's domain (0 source, 1 target).
- ``items``: every reviewed item that has metadata; ``domain``; ``tags`` (list<int64>, codes 1..n,
  one vocabulary over both domains in ``vocabs["tags"]``, as the other importers store tags);
  ``category`` = the first tag (shares the vocabulary, as in :func:`build_dataset`); the titles
  are in ``vocabs["title"]``. ``vocabs["domain"]`` = [source name, target name].
- ``users``: every reviewer (no attributes).

Tags (App. A.1.1 says "short terms from title, category, brand based on frequency"; the rest is
ours): an item's candidate terms are its title's words (lowercased, English stopwords, words of
one character and words without a letter removed), each category name of its path(s) as one term
and its brand as one term (lowercased, HTML entities and whitespace normalised; ``unknown`` and
null-like brands ignored). A term's frequency is the number of imported items (both domains) that
have it; terms below ``min_tag_freq`` are dropped (a term on one item links nothing); each item
keeps its ``max_tags`` most frequent terms (ties by the term), most frequent first. The paper's n
for Amazon is 10 in Table 4 but 15 in App. A.1.2 (which swaps the two datasets' (n, l) pairs); we
follow Table 4. The paper states no minimum frequency; 2 is the smallest that makes a tag shared.

Nothing is dropped silently; ``meta["filtered"]`` counts: ``blank_lines``; ``duplicate_reviews``
(same reviewer, item and time: the public files hold some, the first is kept);
``reviews_without_metadata`` (their item has no metadata line, so no tags: dropped);
``meta_duplicate_asins`` (a repeated metadata line, the first kept); ``meta_items_without_reviews``
(metadata for items nobody reviewed: not imported). An item reviewed in both files belongs to the
source domain (COUPLE's domains share no item), counted in ``meta["items_in_both_domains"]``.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np
import polars as pl

from thawrec.data.schema import TS_MAX, TS_MIN, Dataset, first_bad_row
from thawrec.data.sources.tabular import MS_THRESHOLD, NULL_TOKENS, RawTables, build_dataset
from thawrec.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_SOURCE, DEFAULT_TARGET = "Books", "Movies_and_TV"  # COUPLE Sec. 4.1.1
DEFAULT_MAX_TAGS = 10  # n for Amazon, COUPLE Table 4
DEFAULT_MIN_TAG_FREQ = 2
CHUNK_BYTES = 64 << 20  # lines are parsed in chunks of about this many bytes

REVIEW_FIELDS = {"reviewerID": "text", "asin": "text", "overall": "number", "unixReviewTime": "int"}
META_FIELDS = {"asin": "text", "title": "text", "brand": "text", "category": "list", "categories": "list2"}
_DTYPES: dict[str, Any] = {"text": pl.String, "number": pl.Float64, "int": pl.Int64, "list": pl.List(pl.String),
                           "list2": pl.List(pl.List(pl.String))}
_KIND_TEXT = {"text": "text or a number", "number": "a number", "int": "an integer",
              "list": "a list of text", "list2": "a list of lists of text"}

# English function words (the usual IR list); they never make a tag.
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren as at be because been before being below
between both but by can cannot could couldn did didn do does doesn doing don down during each few for
from further had hadn has hasn have haven having he her here hers herself him himself his how i if in
into is isn it its itself just let ll me might more most mustn my myself no nor not now of off on once
only or other ought our ours ourselves out over own re same shan she should shouldn so some such than
that the their theirs them themselves then there these they this those through to too under until up
upon us ve very via was wasn we were weren what when where which while who whom why will with won would
wouldn you your yours yourself yourselves
""".split())
_HTML_ENTITIES = (("&amp;", "&"), ("&quot;", '"'), ("&#39;", "'"), ("&#039;", "'"), ("&apos;", "'"),
                  ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "))
_NO_BRAND = [*NULL_TOKENS, "unknown", ""]


# --------------------------------------------------------------------------------------------
# Finding the files of one category
# --------------------------------------------------------------------------------------------
@dataclass
class CategoryFiles:
    """The review and metadata files of one domain."""

    name: str
    reviews: Path
    meta: Path


def _strip_ext(name: str) -> str:
    for ext in (".gz", ".json"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def category_name(reviews: Path) -> str:
    """``reviews_Books_5.json.gz`` / ``Books_5.json`` -> ``Books``."""
    stem = _strip_ext(reviews.name)
    stem = stem[len("reviews_"):] if stem.startswith("reviews_") else stem
    return stem[:-2] if stem.endswith("_5") else stem


def _one_of(folder: Path, names: list[str], what: str, fix: str) -> Path:
    hits = [folder / n for n in names if (folder / n).is_file()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise DataError(f"{what} not found (looked for {', '.join(names)})", file=str(folder), fix=fix)
    raise DataError(f"more than one {what}: {', '.join(h.name for h in hits)}", file=str(folder),
                    fix="pass the file you mean as a path")


def find_category_files(root: Path, spec: str | Path, meta: str | Path | None = None) -> CategoryFiles:
    """``spec`` is a review file (absolute, or relative to the cwd or ``root``) or a category name
    whose files lie in ``root`` (2014 or 2018 names, 5-core or full); the metadata file is
    ``meta``, or ``meta_<Category>.json(.gz)`` beside the reviews."""
    cand = [Path(spec), root / spec]
    path = next((p for p in cand if p.is_file()), None)
    if path is not None:
        name = category_name(path)
        folder = path.parent
    else:
        name = str(spec).strip().replace(" & ", "_and_").replace(" ", "_")
        if not name or "/" in name:
            raise DataError(f"'{spec}' is neither a review file nor a category name", file=str(spec),
                            fix="pass a category like Books or Movies_and_TV, or the path of its review file")
        folder = root
        names = [f"{p}{name}{s}.json{z}" for p, s in (("reviews_", "_5"), ("reviews_", ""), ("", "_5"), ("", ""))
                 for z in ("", ".gz")]
        path = _one_of(root, names, f"review file for category '{name}'",
                       f"download the {name} reviews (2014: reviews_{name}_5.json.gz, 2018: {name}_5.json.gz) "
                       "into this folder, or pass the review file's path")
    if meta is not None:
        mpath = next((p for p in (Path(meta), root / meta) if p.is_file()), None)
        if mpath is None:
            raise DataError("metadata file not found", file=str(meta), fix="check the path of the meta_*.json(.gz) file")
    else:
        mpath = _one_of(folder, [f"meta_{name}.json", f"meta_{name}.json.gz"], f"metadata file for '{name}'",
                        f"download meta_{name}.json.gz next to the reviews, or pass its path (--source-meta / "
                        "--target-meta)")
    return CategoryFiles(name, path, mpath)


# --------------------------------------------------------------------------------------------
# Reading JSON / Python-literal lines
# --------------------------------------------------------------------------------------------
def _open(path: Path) -> IO[bytes]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _chunks(path: Path, chunk_bytes: int) -> Iterator[tuple[int, list[bytes]]]:
    """(1-based number of the chunk's first line, its lines)."""
    start = 1
    try:
        with _open(path) as fh:
            while True:
                lines = fh.readlines(chunk_bytes)
                if not lines:
                    return
                yield start, lines
                start += len(lines)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read the file after line {start - 1}: {exc}", file=str(path),
                        fix="re-download it; a .gz file must be complete") from exc


def _syntax(first: bytes, line: int, file: str) -> str:
    """'json' or 'literal' from the first non-blank line."""
    s = first.strip()
    if s[:1] != b"{":
        raise DataError(f"line {line}: expected one JSON object (or Python dict) per line, found {s[:60]!r}",
                        file=file, fix="this must be an Amazon review or metadata file (.json or .json.gz, one "
                                       "record per line)")
    return "literal" if s[1:].lstrip()[:1] == b"'" else "json"


def _coerce(kind: str, v: Any) -> Any:
    """A field's value in the form the column holds, or raise TypeError."""
    if v is None:
        return None
    if kind == "text" and isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v if isinstance(v, str) else str(v)
    if kind == "number" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if kind == "list" and isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    if kind == "list2" and isinstance(v, list) and all(
            isinstance(p, list) and all(isinstance(x, str) for x in p) for p in v):
        return v
    raise TypeError(kind)


def _record_error(rec: Any, fields: dict[str, str], line: int, file: str, syntax: str) -> DataError | None:
    if not isinstance(rec, dict):
        return DataError(f"line {line}: a {type(rec).__name__}, not a {'JSON object' if syntax == 'json' else 'dict'}",
                         file=file, fix="every line must be one record {...}")
    for f, kind in fields.items():
        try:
            _coerce(kind, rec.get(f))
        except TypeError:
            return DataError(f"line {line}: field '{f}' is {rec[f]!r:.80}, expected {_KIND_TEXT[kind]}", file=file,
                             column=f, fix=f"fix '{f}' on that line or remove the line")
    return None


def _parse_literal(lines: list[bytes], start: int, fields: dict[str, str], file: str) -> pl.DataFrame:
    """Python-literal dicts (2014 metadata): ``literal_eval`` per line (never ``eval``); the checked
    fields are re-encoded as JSON so Polars builds the typed columns (far faster than from objects)."""
    out: list[str] = []
    nums: list[int] = []
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s:
            continue
        try:
            rec = ast.literal_eval(s.decode("utf-8"))
        except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
            raise DataError(f"line {start + i}: not a Python dict literal ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})", file=file,
                            fix="repair or remove that line (a truncated download ends mid-line)") from None
        try:
            if not isinstance(rec, dict):
                raise TypeError("not a dict")
            out.append(json.dumps({f: _coerce(kind, rec.get(f)) for f, kind in fields.items()}, allow_nan=False))
        except (TypeError, ValueError):
            raise _record_error(rec, fields, start + i, file, "literal") or DataError(
                f"line {start + i}: a field is NaN or infinite", file=file,
                fix="write a finite number or remove the line") from None
        nums.append(start + i)
    schema = {f: _DTYPES[k] for f, k in fields.items()}
    df = pl.read_ndjson(io.BytesIO("\n".join(out).encode()), schema=schema) if out else pl.DataFrame(schema=schema)
    return df.with_columns(pl.Series("_line", nums, dtype=pl.Int64))


def _parse_json(lines: list[bytes], start: int, fields: dict[str, str], file: str) -> pl.DataFrame:
    """Strict JSON lines through Polars; only when that fails are lines read one by one, to name the bad one."""
    try:
        df = pl.read_ndjson(io.BytesIO(b"".join(lines)), schema={f: _DTYPES[k] for f, k in fields.items()})
    except pl.exceptions.PolarsError as exc:
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.strip())
            except (ValueError, UnicodeDecodeError) as e:
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
                raise DataError(f"line {start + i}: not valid JSON ({why})", file=file,
                                fix="repair or remove that line (a truncated download ends mid-line)") from None
            err = _record_error(rec, fields, start + i, file, "json")
            if err is not None:
                raise err from None
        raise DataError(f"lines {start}-{start + len(lines) - 1}: cannot read the records ({str(exc).splitlines()[0]})",
                        file=file, fix="check the file is an Amazon review / metadata file") from exc
    if df.height == len(lines):
        nums = np.arange(start, start + len(lines), dtype=np.int64)
    else:  # the reader skips blank lines
        nonblank = np.fromiter((bool(x.strip()) for x in lines), dtype=bool, count=len(lines))
        nums = start + np.flatnonzero(nonblank).astype(np.int64)
    if len(nums) != df.height:
        raise DataError(f"lines {start}-{start + len(lines) - 1}: {df.height} records in {len(nums)} non-blank lines",
                        file=file, fix="each line must hold exactly one record")
    return df.with_columns(pl.Series("_line", nums, dtype=pl.Int64))


def read_records(path: Path, fields: dict[str, str], filtered: dict[str, int],
                 chunk_bytes: int = CHUNK_BYTES) -> tuple[pl.DataFrame, str]:
    """One record per line (JSON or Python literal, gz or plain) -> (frame of ``fields`` + ``_line``, syntax).

    Absent fields are null; a line that does not parse, or a field of the wrong type, raises naming
    the line."""
    file = str(path)
    if not path.is_file():
        raise DataError("file not found", file=file, fix="check the path")
    parts: list[pl.DataFrame] = []
    syntax = ""
    n_lines = 0
    for start, lines in _chunks(path, chunk_bytes):
        n_lines = start + len(lines) - 1
        if not syntax:
            first = next(((i, x) for i, x in enumerate(lines) if x.strip()), None)
            if first is None:
                continue
            syntax = _syntax(first[1], start + first[0], file)
        parse: Callable[..., pl.DataFrame] = _parse_literal if syntax == "literal" else _parse_json
        parts.append(parse(lines, start, fields, file))
    df = pl.concat(parts) if parts else pl.DataFrame()
    if df.height == 0:
        raise DataError("the file holds no records", file=file,
                        fix="re-download it; it must hold one record per line")
    filtered["blank_lines"] = filtered.get("blank_lines", 0) + n_lines - df.height
    return df, syntax


# --------------------------------------------------------------------------------------------
# Checks (vectorised; errors name the line)
# --------------------------------------------------------------------------------------------
def _raise_at(mask: pl.Series, df: pl.DataFrame, file: str, problem: Callable[[int], str], column: str,
              fix: str) -> None:
    row = first_bad_row(mask.fill_null(True))
    if row is not None:
        raise DataError(f"line {df['_line'][row]}: {problem(row)}", file=file, column=column, fix=fix)


def _check_text(df: pl.DataFrame, col: str, file: str) -> pl.DataFrame:
    s = df[col].str.strip_chars()
    _raise_at(s.is_null(), df, file, lambda r: f"missing field '{col}'", col, f"every record needs '{col}'")
    _raise_at(s == "", df, file, lambda r: f"empty '{col}'", col, f"fill '{col}' or remove the line")
    return df.with_columns(s.alias(col))


def check_reviews(df: pl.DataFrame, file: str) -> pl.DataFrame:
    """Required fields present; stars in 1..5; Unix seconds in range."""
    df = _check_text(_check_text(df, "reviewerID", file), "asin", file)
    for c in ("overall", "unixReviewTime"):
        _raise_at(df[c].is_null(), df, file, lambda r, c=c: f"missing field '{c}'", c, f"every review needs '{c}'")
    r = df["overall"]
    _raise_at(r.is_nan() | (r < 1) | (r > 5), df, file, lambda i: f"overall {r[i]} is not 1-5 stars", "overall",
              "Amazon ratings are 1 to 5 stars")
    t = df["unixReviewTime"]
    _raise_at(t >= MS_THRESHOLD, df, file, lambda i: f"unixReviewTime {t[i]} looks like milliseconds",
              "unixReviewTime", "timestamps are Unix seconds: divide by 1000")
    _raise_at((t < TS_MIN) | (t >= TS_MAX), df, file, lambda i: f"unixReviewTime {t[i]} is out of range "
              f"[{TS_MIN}, {TS_MAX})", "unixReviewTime", "timestamps are Unix seconds after 1970")
    return df


def read_meta(path: Path, filtered: dict[str, int]) -> tuple[pl.DataFrame, str]:
    """Metadata -> (asin, title, cats (flat list of category names), brand, _line), format '2014' or '2018'."""
    df, syntax = read_records(path, META_FIELDS, filtered)
    df = _check_text(df, "asin", str(path))
    fmt = "2014" if syntax == "literal" or df["categories"].is_not_null().any() else "2018"
    cats = pl.coalesce(pl.col("category"), pl.col("categories").list.eval(pl.element().explode()))
    return df.select("asin", "title", cats.alias("cats"), "brand", "_line"), fmt


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------
def _clean(e: pl.Expr) -> pl.Expr:
    for ent, ch in _HTML_ENTITIES:
        e = e.str.replace_all(ent, ch, literal=True)
    return e.str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase()


def _empty() -> pl.Expr:
    return pl.lit([], dtype=pl.List(pl.String))


def candidate_terms() -> pl.Expr:
    """Per item: title words + category names + brand, each once (a list<str> expression)."""
    el = pl.element()
    words = (_clean(pl.col("title")).str.extract_all(r"[\p{L}\p{N}]+")
             .list.eval(el.filter((el.str.len_chars() >= 2) & el.str.contains(r"\p{L}") & ~el.is_in(list(STOPWORDS))))
             .fill_null(_empty()))
    cats = (pl.col("cats").list.eval(_clean(el)).list.eval(el.filter((el != "") & ~el.str.contains("[<>]")))
            .fill_null(_empty()))
    b = _clean(pl.col("brand"))
    brand = pl.when(b.is_not_null() & ~b.is_in(_NO_BRAND)).then(pl.concat_list(b)).otherwise(_empty())
    return pl.concat_list(words, cats, brand).list.unique(maintain_order=True)


def extract_tags(items: pl.DataFrame, max_tags: int, min_freq: int) -> tuple[pl.Series, dict[str, Any]]:
    """Each item's ``max_tags`` most frequent candidate terms with frequency >= ``min_freq``
    (frequency = number of items having the term), most frequent first; and statistics."""
    cand = (items.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"), candidate_terms().alias("term"))
            .explode("term").drop_nulls("term"))
    freq = cand.group_by("term").agg(pl.len().alias("freq"))
    kept = (cand.join(freq.filter(pl.col("freq") >= min_freq), on="term")
            .sort(["_i", "freq", "term"], descending=[False, True, False]))
    per_item = kept.group_by("_i").agg(pl.col("term").head(max_tags).alias("tags"), pl.len().alias("n"))
    tags = (pl.DataFrame({"_i": np.arange(items.height, dtype=np.int64)})
            .join(per_item, on="_i", how="left", maintain_order="left")
            .select(pl.col("tags").fill_null(_empty()), pl.col("n").fill_null(0)))
    stats = {
        "max_tags": max_tags, "min_freq": min_freq, "from": ["title words", "category names", "brand"],
        "candidate_terms": freq.height,
        "terms_below_min_freq": int((freq["freq"] < min_freq).sum()),
        "items_without_tags": int((tags["n"] == 0).sum()),
        "items_capped": int((tags["n"] > max_tags).sum()),
        "mean_tags_per_item": float(tags["tags"].list.len().mean() or 0.0),
    }
    return tags["tags"], stats


# --------------------------------------------------------------------------------------------
def load_amazon(
    src: str | Path,
    *,
    source: str | Path = DEFAULT_SOURCE,
    target: str | Path = DEFAULT_TARGET,
    source_meta: str | Path | None = None,
    target_meta: str | Path | None = None,
    max_tags: int = DEFAULT_MAX_TAGS,
    min_tag_freq: int = DEFAULT_MIN_TAG_FREQ,
    positive_threshold: float = 4.0,
) -> Dataset:
    """Two Amazon categories (``source`` -> domain 0, ``target`` -> domain 1) in ``src`` -> Dataset.

    ``source``/``target``: a category name (files found in ``src``) or a review file's path; the
    metadata is ``meta_<Category>.json(.gz)`` beside it unless ``source_meta``/``target_meta`` say
    otherwise. See the module docstring for the tags and the counts in ``meta``.
    """
    if int(max_tags) < 1 or int(min_tag_freq) < 1:
        raise DataError(f"max_tags={max_tags}, min_tag_freq={min_tag_freq}: both must be >= 1",
                        column="max_tags" if int(max_tags) < 1 else "min_tag_freq",
                        fix="pass positive integers (the paper's n for Amazon is 10)")
    root = Path(src)
    root = root if root.is_dir() else root.parent
    files = [find_category_files(root, source, source_meta), find_category_files(root, target, target_meta)]
    if files[0].reviews.resolve() == files[1].reviews.resolve():
        raise DataError("the source and target domains are the same file", file=str(files[0].reviews),
                        fix="pass two different categories, e.g. --source Books --target Movies_and_TV")
    filtered: dict[str, int] = {"blank_lines": 0}
    reviews, metas, domains = [], [], []
    for d, f in enumerate(files):
        r, syntax = read_records(f.reviews, REVIEW_FIELDS, filtered)
        r = check_reviews(r, str(f.reviews))
        m, fmt = read_meta(f.meta, filtered)
        reviews.append(r.select("reviewerID", "asin", "overall", "unixReviewTime",
                                pl.lit(d, dtype=pl.Int32).alias("domain")))
        metas.append(m.drop("_line").with_columns(pl.lit(d, dtype=pl.Int32).alias("_file")))
        domains.append({"domain": d, "role": ("source", "target")[d], "name": f.name, "reviews": str(f.reviews),
                        "metadata": str(f.meta), "format": fmt, "review_syntax": syntax, "reviews_read": r.height,
                        "metadata_read": m.height})
    rev = pl.concat(reviews)
    meta_all = pl.concat(metas)

    # metadata: one line per item (the first; repeats counted)
    first = meta_all["asin"].is_first_distinct()
    filtered["meta_duplicate_asins"] = int((~first).sum())
    meta_items = meta_all.filter(first)

    # reviews: exact repeats once; items without metadata dropped (counted per domain)
    keep = rev.select(pl.struct("reviewerID", "asin", "unixReviewTime").is_first_distinct()).to_series()
    filtered["duplicate_reviews"] = int((~keep).sum())
    rev = rev.filter(keep)
    has_meta = rev["asin"].is_in(meta_items["asin"].implode())
    for d, info in enumerate(domains):
        info["reviews_without_metadata"] = int((~has_meta & (rev["domain"] == d)).sum())
    filtered["reviews_without_metadata"] = int((~has_meta).sum())
    rev = rev.filter(has_meta)
    if rev.height == 0:
        raise DataError("no review has a metadata line for its item", file=str(files[0].meta), column="asin",
                        fix="check the metadata files belong to the same categories and release as the reviews")

    # an item's domain: the first review file it appears in (source wins: the domains share no item)
    item_dom = rev.group_by("asin").agg(pl.col("domain").min().alias("domain"),
                                        pl.col("domain").n_unique().alias("_nd"))
    n_both = int((item_dom["_nd"] > 1).sum())
    reviewed = meta_items["asin"].is_in(item_dom["asin"].implode())
    filtered["meta_items_without_reviews"] = int((~reviewed).sum())
    items = meta_items.filter(reviewed).join(item_dom.drop("_nd"), on="asin", how="left", maintain_order="left")
    tags, tag_stats = extract_tags(items, int(max_tags), int(min_tag_freq))

    raw_inter = rev.select(pl.col("reviewerID").alias("user_id"), pl.col("asin").alias("item_id"),
                           pl.col("unixReviewTime").alias("ts"), pl.col("overall").alias("rating"))
    raw_items = pl.DataFrame({"item_id": items["asin"], "tags": tags, "title": items["title"]})
    ds = build_dataset(RawTables(raw_inter, None, raw_items, filtered=filtered), positive_threshold=positive_threshold)

    # domains onto the dense ids (item codes are the sorted asins)
    dense = pl.DataFrame({"asin": ds.vocabs["item_id"]}).join(items.select("asin", "domain"), on="asin", how="left",
                                                               maintain_order="left")
    dom = dense["domain"].to_numpy().astype(np.int32)
    ds.items = ds.items.with_columns(pl.Series("domain", dom, dtype=pl.Int32))
    ds.interactions = ds.interactions.with_columns(
        pl.Series("domain", dom[ds.interactions["item_id"].to_numpy()], dtype=pl.Int32))
    ds.vocabs["domain"] = [f.name for f in files]

    inter, it = ds.interactions, ds.items
    tag_sets = [set(it.filter(pl.col("domain") == d)["tags"].explode().drop_nulls().unique().to_list()) for d in (0, 1)]
    tag_stats["n_tags"] = len(ds.vocabs.get("tags", [None])) - 1
    tag_stats["target_tags_shared_with_source"] = (len(tag_sets[1] & tag_sets[0]) / len(tag_sets[1])
                                                   if tag_sets[1] else 0.0)
    users_by_dom = [inter.filter(pl.col("domain") == d)["user_id"].unique() for d in (0, 1)]
    for d, info in enumerate(domains):
        info.update(items=int((it["domain"] == d).sum()), interactions=int((inter["domain"] == d).sum()),
                    users=len(users_by_dom[d]))
    ds.meta.update(
        name="amazon",
        domains=domains,
        tags=tag_stats,
        items_in_both_domains=n_both,
        users_in_both_domains=int(users_by_dom[0].is_in(users_by_dom[1].implode()).sum()),
        positive_rule=f"rating >= {positive_threshold} (COUPLE: rating > 3 on 1-5 stars; every rating kept)",
        time_range={"min_ts": int(inter["ts"].min()), "max_ts": int(inter["ts"].max())},
    )
    if n_both:
        log.warning("%d item(s) reviewed in both %s and %s: kept in the source domain (meta.items_in_both_domains)",
                    n_both, files[0].name, files[1].name)
    for k, v in filtered.items():
        if v:
            log.info("%s: %d", k, v)
    return ds
