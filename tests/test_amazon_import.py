"""The amazon importer on tiny files in both public formats (2014 McAuley, 2018 Ni et al.), gz and plain."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from thawrec.cli import app
from thawrec.data.schema import Dataset, read_dataset
from thawrec.data.sources import FORMATS, load_source
from thawrec.errors import DataError

T0 = 1_400_000_000

# 2014 reviews: strict JSON, one object per line (extra fields as in the real files). Line 7 repeats
# line 1; 0001048799 has no metadata line.
BOOK_REVIEWS = [
    ("A1", "0001048791", 5.0, T0), ("A1", "0001048792", 4.0, T0 + 10), ("A2", "0001048792", 2.0, T0 + 20),
    ("A2", "0001048793", 3.0, T0 + 30), ("A3", "0001048794", 1.0, T0 + 40), ("A3", "0001048799", 5.0, T0 + 50),
    ("A1", "0001048791", 5.0, T0),
]
# 2014 metadata: Python literals (single quotes), categories = list of paths; 0009999999 is never reviewed.
BOOK_META = [
    "{'asin': '0001048791', 'title': 'The Crucible of Mystery', 'price': 3.17, 'salesRank': {'Books': 5}, "
    "'categories': [['Books', 'Mystery, Thriller & Suspense', 'Mystery']], 'brand': 'Penguin'}",
    "{'asin': '0001048792', 'title': \"A Mystery of Dragons\", 'categories': [['Books', 'Science Fiction & Fantasy', "
    "'Fantasy']], 'related': {'also_bought': ['0001048793']}}",
    "{'asin': '0001048793', 'title': 'Dragons and Wizards', 'categories': [['Books', 'Science Fiction & Fantasy', "
    "'Fantasy'], ['Books', 'Teens']], 'brand': 'Penguin'}",
    "{'asin': '0001048794', 'title': 'Zebra Quest', 'categories': [['Books']]}",
    "{'asin': '0009999999', 'title': 'Never Reviewed', 'categories': [['Books']]}",
]
# 2018 reviews and strict-JSON metadata (category = one path with HTML entities); one blank line.
MOVIE_REVIEWS = [("A1", "B00M1", 5.0, T0 + 60), ("A4", "B00M2", 4.0, T0 + 70), ("A2", "B00M3", 3.0, T0 + 80),
                 ("A4", "B00M1", 2.0, T0 + 90)]
MOVIE_META = [
    {"asin": "B00M1", "title": "Dragons: The Mystery Movie", "category": ["Movies &amp; TV", "Fantasy"],
     "brand": "Penguin", "also_buy": ["B00M2"], "description": ["long text"]},
    {"asin": "B00M2", "title": "Wizards of the Coast", "category": ["Movies &amp; TV", "Science Fiction &amp; Fantasy"],
     "brand": ""},
    {"asin": "B00M3", "title": "The Quiet Zebra", "category": ["Movies &amp; TV"], "brand": "Unknown"},
]
# Frequencies over the 7 imported items: books 4; dragons, fantasy, movies & tv, mystery, penguin,
# science fiction & fantasy 3; wizards, zebra 2; everything else 1.
TAGS = {
    "0001048791": ["books", "mystery", "penguin"],
    "0001048792": ["books", "dragons", "fantasy", "mystery", "science fiction & fantasy"],
    "0001048793": ["books", "dragons", "fantasy", "penguin", "science fiction & fantasy", "wizards"],
    "0001048794": ["books", "zebra"],
    "B00M1": ["dragons", "fantasy", "movies & tv", "mystery", "penguin"],
    "B00M2": ["movies & tv", "science fiction & fantasy", "wizards"],
    "B00M3": ["movies & tv", "zebra"],
}


def _write(path: Path, lines: list[str], gz: bool) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _review_2014(u: str, i: str, r: float, t: int) -> str:
    return json.dumps({"reviewerID": u, "asin": i, "reviewerName": "x", "helpful": [0, 0], "reviewText": "ok",
                       "overall": r, "summary": "s", "unixReviewTime": t, "reviewTime": "05 13, 2014"})


def _review_2018(u: str, i: str, r: float, t: int) -> str:
    return json.dumps({"overall": r, "verified": True, "reviewTime": "05 13, 2014", "reviewerID": u, "asin": i,
                       "style": {"Format:": " DVD"}, "reviewerName": "x", "reviewText": "ok", "unixReviewTime": t})


def write_amazon(root: Path, books_gz: bool = True, movies_gz: bool = False) -> Path:
    """Books in the 2014 format, Movies_and_TV in the 2018 format."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "reviews_Books_5.json", [_review_2014(*r) for r in BOOK_REVIEWS], books_gz)
    _write(root / "meta_Books.json", BOOK_META, books_gz)
    lines = [_review_2018(*r) for r in MOVIE_REVIEWS]
    _write(root / "Movies_and_TV_5.json", lines[:2] + [""] + lines[2:], movies_gz)
    _write(root / "meta_Movies_and_TV.json", [json.dumps(m) for m in MOVIE_META], movies_gz)
    return root


def _tags(ds: Dataset) -> dict[str, list[str]]:
    vocab, ids = ds.vocabs["tags"], ds.vocabs["item_id"]
    return {ids[i]: [vocab[c] for c in t] for i, t in zip(ds.items["item_id"], ds.items["tags"])}


@pytest.fixture(params=[(True, False), (False, True)], ids=["2014gz-2018plain", "2014plain-2018gz"])
def root(request, tmp_path: Path) -> Path:
    return write_amazon(tmp_path / "amazon", *request.param)


def test_rows_domains_ratings_and_counts(root: Path) -> None:
    ds = load_source("amazon", root, source="Books", target="Movies_and_TV")
    assert "amazon" in FORMATS
    inter, items, uv, iv = ds.interactions, ds.items, ds.vocabs["user_id"], ds.vocabs["item_id"]
    # 7 book lines - 1 repeat - 1 without metadata, + 4 movie reviews
    assert inter.height == 9 and items.height == 7 and ds.users.height == 4
    got = sorted(zip([uv[u] for u in inter["user_id"]], [iv[i] for i in inter["item_id"]], inter["rating"].to_list(),
                     inter["ts"].to_list()))
    want = sorted(r for r in BOOK_REVIEWS[:6] if r[1] != "0001048799") + sorted(MOVIE_REVIEWS)
    assert got == sorted(want)
    assert inter["label"].to_list() == (inter["rating"] > 3).cast(pl.Int8).to_list()  # ratings kept, > 3 positive
    assert inter["rating"].min() == 1.0  # no row dropped for its label
    dom = {iv[i]: d for i, d in zip(items["item_id"], items["domain"])}
    assert dom == {a: (0 if a.startswith("000") else 1) for a in TAGS}
    assert (inter["domain"].to_numpy() == items["domain"].to_numpy()[inter["item_id"].to_numpy()]).all()
    assert ds.vocabs["domain"] == ["Books", "Movies_and_TV"]
    f = ds.meta["filtered"]
    assert (f["duplicate_reviews"], f["reviews_without_metadata"], f["meta_items_without_reviews"],
            f["blank_lines"], f["meta_duplicate_asins"]) == (1, 1, 1, 1, 0)
    d0, d1 = ds.meta["domains"]
    assert (d0["format"], d0["review_syntax"], d1["format"], d1["review_syntax"]) == ("2014", "json", "2018", "json")
    assert (d0["reviews_without_metadata"], d0["items"], d0["interactions"], d1["items"], d1["users"]) == (1, 4, 5, 3, 3)
    assert ds.meta["users_in_both_domains"] == 2 and ds.meta["items_in_both_domains"] == 0
    assert ds.vocabs["title"][iv.index("B00M3")] == "The Quiet Zebra"


def test_tags_by_frequency_with_stopwords_removed(root: Path) -> None:
    ds = load_source("amazon", root)  # the paper's domains are the defaults
    assert _tags(ds) == TAGS
    vocab = set(ds.vocabs["tags"][1:])
    assert not vocab & {"the", "of", "a", "and", "crucible", "movies &amp; tv", "unknown", ""}
    assert ds.items["tags"].dtype == pl.List(pl.Int64) and ds.vocabs["category"] == ds.vocabs["tags"]
    t = ds.meta["tags"]
    assert (t["max_tags"], t["min_freq"], t["n_tags"], t["items_without_tags"]) == (10, 2, 9, 0)
    assert t["target_tags_shared_with_source"] == pytest.approx(7 / 8)  # all but "movies & tv"


def test_tag_cap_and_min_frequency_are_parameters(root: Path) -> None:
    capped = _tags(load_source("amazon", root, max_tags=2))
    assert capped["0001048793"] == ["books", "dragons"] and capped["B00M1"] == ["dragons", "fantasy"]
    assert all(v == TAGS[k][:2] for k, v in capped.items())
    ds = load_source("amazon", root, min_tag_freq=3)
    strict = _tags(ds)
    assert strict["0001048794"] == ["books"] and strict["B00M3"] == ["movies & tv"]
    assert ds.meta["tags"]["n_tags"] == 7
    with pytest.raises(DataError, match="max_tags"):
        load_source("amazon", root, max_tags=0)


def test_explicit_files_and_2014_meta_as_strict_json(tmp_path: Path) -> None:
    root = write_amazon(tmp_path / "a")
    meta_json = tmp_path / "elsewhere" / "books_meta.json"
    meta_json.parent.mkdir()
    # the strict-JSON conversion of 2014 metadata keeps 'categories' (a list of paths)
    import ast
    meta_json.write_text("\n".join(json.dumps(ast.literal_eval(x)) for x in BOOK_META) + "\n")
    ds = load_source("amazon", root, source=str(root / "reviews_Books_5.json.gz"), source_meta=str(meta_json),
                     target=str(root / "Movies_and_TV_5.json"))
    assert _tags(ds) == TAGS and ds.vocabs["domain"] == ["Books", "Movies_and_TV"]
    assert ds.meta["domains"][0]["format"] == "2014" and ds.meta["domains"][0]["metadata"] == str(meta_json)


def test_item_in_both_domains_goes_to_source(tmp_path: Path) -> None:
    root = write_amazon(tmp_path / "a", books_gz=False)
    with open(root / "reviews_Books_5.json", "a") as fh:
        fh.write(_review_2014("A3", "B00M3", 4.0, T0 + 99) + "\n")
    ds = load_source("amazon", root)
    iv = ds.vocabs["item_id"]
    assert ds.meta["items_in_both_domains"] == 1
    assert ds.items["domain"][iv.index("B00M3")] == 0
    assert ds.interactions.filter(pl.col("item_id") == iv.index("B00M3"))["domain"].to_list() == [0, 0]


@pytest.mark.parametrize("file, line_no, bad, needle", [
    ("Movies_and_TV_5.json", 2, '{"reviewerID": "A9", "asin": "B00M1", "overall": 5.0,', "not valid JSON"),
    ("Movies_and_TV_5.json", 3, '{"reviewerID": "A9", "asin": "B00M1", "unixReviewTime": 1400000000}',
     "missing field 'overall'"),
    ("Movies_and_TV_5.json", 1, '{"reviewerID": "A9", "asin": "B00M1", "overall": 5.0, "unixReviewTime": "May 2014"}',
     "field 'unixReviewTime'"),
    ("Movies_and_TV_5.json", 2, '{"reviewerID": "A9", "asin": "B00M1", "overall": 7.0, "unixReviewTime": 1400000000}',
     "not 1-5 stars"),
    ("meta_Books.json", 2, "{'asin': '0001048792', 'title': 'cut off", "not a Python dict literal"),
    ("meta_Books.json", 4, "{'title': 'no asin', 'categories': [['Books']]}", "missing field 'asin'"),
    ("meta_Movies_and_TV.json", 3, '{"asin": "B00M3", "category": "Movies"}', "field 'category'"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, file: str, line_no: int, bad: str, needle: str) -> None:
    root = write_amazon(tmp_path / "a", books_gz=False)
    path = root / file
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    lines[line_no - 1] = bad
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_source("amazon", root)
    msg = str(exc.value)
    assert str(path) in msg and f"line {line_no}:" in msg and needle in msg and "Fix:" in msg, msg


def test_missing_and_ambiguous_files(tmp_path: Path) -> None:
    root = write_amazon(tmp_path / "a")
    with pytest.raises(DataError, match="review file for category 'Toys' not found"):
        load_source("amazon", root, target="Toys")
    (root / "meta_Movies_and_TV.json").unlink()
    with pytest.raises(DataError, match="meta_Movies_and_TV.json"):
        load_source("amazon", root)
    write_amazon(root, books_gz=False)  # now both reviews_Books_5.json and .json.gz exist
    with pytest.raises(DataError, match="more than one review file"):
        load_source("amazon", root)


def test_cli_import_amazon_end_to_end(tmp_path: Path) -> None:
    root = write_amazon(tmp_path / "raw")
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["data", "import", "amazon", str(root), "--source", "Books", "--target",
                                   "Movies_and_TV", "--max-tags", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "9 interactions" in text and "reviews_without_metadata: 1" in text and "duplicate_reviews: 1" in text
    ds = read_dataset(out)
    assert ds.items["tags"].list.len().max() == 3 and sorted(ds.items["domain"].to_list()) == [0, 0, 0, 0, 1, 1, 1]
    meta = json.loads((out / "meta.json").read_text())
    assert [d["name"] for d in meta["domains"]] == ["Books", "Movies_and_TV"] and meta["tags"]["max_tags"] == 3
    (root / "meta_Books.json.gz").write_bytes(gzip.compress(b"{'asin': '1'}\n[1, 2]\n"))
    res = CliRunner().invoke(app, ["data", "import", "amazon", str(root), "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "line 2:" in " ".join(res.output.split()), res.output


def test_python_literal_metadata_is_never_evaluated(tmp_path: Path) -> None:
    root = write_amazon(tmp_path / "a", books_gz=False)
    marker = tmp_path / "pwned"
    lines = (root / "meta_Books.json").read_text().splitlines()
    lines[1] = f"__import__('os').system('touch {marker}')"
    (root / "meta_Books.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 2: not a Python dict literal"):
        load_source("amazon", root)
    assert not marker.exists()
