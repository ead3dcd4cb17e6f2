"""Importers: tiny files in every supported format, plus the real RecBole ML-100K."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from thawrec.data.schema import read_dataset
from thawrec.data.sources import FORMATS, ImportReport, import_dataset, load_source
from thawrec.errors import ConfigError



def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def write_ml100k(root: Path, genre_file: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # user 7 has no u.user row; item 9 has no u.item row
    (root / "u.data").write_text(
        "1\t10\t5\t881250949\n2\t10\t3\t881250950\n2\t20\t4\t881250951\n7\t30\t1\t881250952\n1\t9\t4\t881250953\n"
    )
    (root / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n3|30|F|writer|1234X\n")
    items = [
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}",
        f"20|Caf\xe9 Noir (1931)||||{_flags(10)}",  # no release date: year from the title
        f"30|Mystery Film|01-Jan-1987||http://y|{_flags()}",
        f"40|Never Rated (2001)|01-Jan-2001||http://z|{_flags(1)}",
    ]
    (root / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    if genre_file:
        names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
        (root / "u.genre").write_text("".join(f"{n}|{i}\n" for i, n in enumerate(names)) + "\n")
    return root


def test_formats_listed() -> None:
    assert set(FORMATS) == {"amazon", "ml-100k", "ml-1m", "ml-20m", "recbole", "tabular", "taobao-ad"}


@pytest.mark.parametrize("genre_file", [True, False])
def test_ml100k(tmp_path: Path, genre_file: bool) -> None:
    src = write_ml100k(tmp_path / "ml-100k", genre_file)
    ds = load_source("ml-100k", tmp_path)  # finds the single sub-folder holding u.data
    inter = ds.interactions
    assert inter.height == 5
    assert ds.vocabs["user_id"] == [1, 2, 3, 7]  # user 3 has a profile but no ratings: kept
    assert ds.vocabs["item_id"] == [9, 10, 20, 30, 40]
    assert inter["user_id"].to_list() == [0, 1, 1, 3, 0]
    assert inter["item_id"].to_list() == [1, 1, 2, 3, 0]
    assert inter["label"].to_list() == [1, 0, 1, 0, 1]
    assert inter["rating"].dtype == pl.Float32 and inter["label"].dtype == pl.Int8
    assert ds.meta["users_without_profile"] == 1 and ds.meta["items_without_metadata"] == 1
    users = ds.users.sort("user_id")
    assert users.columns == ["user_id", "age", "gender", "occupation", "zip_prefix"]
    assert ds.vocabs["age"] == [None, 24, 30, 53]
    assert users["age"].to_list() == [1, 3, 2, 0]  # user 7 (no profile) -> 0
    assert [ds.vocabs["zip_prefix"][c] for c in users["zip_prefix"]] == ["85", "94", "12", None]
    items = ds.items.sort("item_id")
    tags = [[ds.vocabs["tags"][c] for c in t] for t in items["tags"].to_list()]
    assert tags == [[], ["Animation", "Children's", "Comedy"], ["Film-Noir"], [], ["Action"]]
    assert items["category"].to_list()[1] == items["tags"].to_list()[1][0]
    assert items["category"].to_list()[0] == 0
    assert items["year"].to_list() == [0, 1995, 1931, 1987, 2001]
    assert ds.vocabs["title"][2] == "Caf\xe9 Noir (1931)"
    assert ds.meta["source"]["format"] == "ml-100k"
    assert src.exists()


def test_ml1m(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::"
        "Animation|Children's|Musical\n".encode("latin-1"))
    ds = load_source("ml-1m", tmp_path, positive_threshold=5.0)
    assert ds.interactions["label"].to_list() == [1, 0, 0]
    assert ds.vocabs["item_id"] == [661, 1193]
    assert ds.items["year"].to_list() == [1996, 1975]
    assert ds.vocabs["tags"] == [None, "Animation", "Children's", "Drama", "Musical"]
    assert ds.items["category"].to_list() == [1, 3]
    assert ds.vocabs["gender"] == [None, "F", "M"] and ds.users["gender"].to_list() == [1, 2]
    assert ds.vocabs["occupation"] == [None, 10, 16] or ds.vocabs["occupation"] == [None, "10", "16"]
    assert ds.meta["users_without_profile"] == 0


def test_ml20m_with_tags(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n5,2,5.0,1112484819\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n2,"Jumanji, The (1995)",Adventure|Children|Fantasy\n29,City (1995),(no genres listed)\n'
        "50,Unrated (2003),Drama\n")
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n18,2,fun,1\n65,2,Robin Williams,2\n65,2,fun,3\n7,29,,4\n7,999,x,5\n")
    rep = import_dataset("ml-20m", tmp_path, tmp_path / "out")
    assert isinstance(rep, ImportReport)
    assert (rep.n_users, rep.n_items, rep.n_interactions) == (2, 3, 3)
    assert rep.filtered["tags_empty"] == 1 and rep.filtered["tags_unknown_movie"] == 1
    ds = read_dataset(rep.out)
    assert ds.meta["users_without_profile"] == 2 and ds.users.columns == ["user_id"]
    assert ds.items["tags"].to_list()[1] == [] and ds.items["category"].to_list()[1] == 0
    ut = [[ds.vocabs["user_tags"][c] for c in t] for t in ds.items["user_tags"].to_list()]
    assert ut == [["fun", "Robin Williams"], [], []]
    assert ds.items["user_tags"].dtype == pl.List(pl.Int64)
    assert ds.vocabs["title"][0] == "Jumanji, The (1995)"
    assert ds.interactions["label"].to_list() == [0, 1, 1]
    assert ds.meta["filtered"] == rep.filtered


def _tabular_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "uid": ["u1", "u2", "u1", "u3"],
        "iid": [100, 200, 200, 100],
        "when": ["2020-01-01T00:00:00", "2020-01-02T00:00:00", "2020-01-03 12:00:00", "2020-01-04"],
        "clicked": [1, 0, 1, 1],
        "genres": ["a|b", "c", "ignored|x", None],
        "country": ["fr", "de", "fr", None],
    })


def test_tabular_csv_iso_ts_label_col(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    _tabular_frame().write_csv(f)
    ds = load_source("tabular", f, user_col="uid", item_col="iid", ts_col="when", label_col="clicked",
                     item_tags_col="genres", user_attr_cols="country")
    inter = ds.interactions
    assert inter["ts"].to_list()[0] == 1577836800 and inter["ts"].to_list()[2] == 1577836800 + 2 * 86400 + 43200
    assert inter["label"].to_list() == [1, 0, 1, 1]
    assert "rating" not in inter.columns
    assert ds.vocabs["user_id"] == ["u1", "u2", "u3"] and ds.vocabs["item_id"] == [100, 200]
    tags = [[ds.vocabs["tags"][c] for c in t] for t in ds.items["tags"].to_list()]
    assert tags == [["a", "b"], ["c"]]  # first value per item
    assert [ds.vocabs["country"][c] for c in ds.users["country"]] == ["fr", "de", None]


def test_tabular_parquet_rating_threshold(tmp_path: Path) -> None:
    f = tmp_path / "log.parquet"
    pl.DataFrame({"user": [3, 1, 2], "item": [7, 7, 8], "stars": [4.5, 2.0, 3.0],
                  "ts": [1_000_000_000, 1_000_000_001, 1_000_000_002]}).write_parquet(f)
    rep = import_dataset("tabular", f, tmp_path / "out", user_col="user", item_col="item", rating_col="stars",
                         positive_threshold=3.0)
    ds = read_dataset(rep.out)
    assert ds.interactions["label"].to_list() == [1, 0, 1]
    assert ds.interactions["user_id"].to_list() == [2, 0, 1]
    assert ds.meta["source"]["format"] == "tabular" and ds.meta["label_source"] == "rating >= 3.0"
    assert ds.items["tags"].to_list() == [[], []]


def test_dedupe_counts_filtered(tmp_path: Path) -> None:
    f = tmp_path / "dup.csv"
    f.write_text("user_id,item_id,ts,rating\n1,2,100,5\n1,2,100,4\n3,2,100,1\n")
    ds = load_source("tabular", f, rating_col="rating", dedupe=True)
    assert ds.interactions.height == 2 and ds.meta["filtered"]["duplicate_user_item_ts"] == 1
    assert ds.interactions["rating"].to_list() == [5.0, 1.0]  # first occurrence kept


def test_unknown_option(tmp_path: Path) -> None:
    write_ml100k(tmp_path)
    with pytest.raises(ConfigError, match="user_col"):
        load_source("ml-100k", tmp_path, user_col="x")


def test_real_recbole_ml100k_roundtrip(tmp_path: Path, ml100k_dir: Path) -> None:
    rep = import_dataset("recbole", ml100k_dir, tmp_path / "ml100k")
    assert (rep.n_users, rep.n_items, rep.n_interactions) == (943, 1682, 100_000)
    assert sum(rep.filtered.values()) == 0
    ds = read_dataset(rep.out)
    assert len(ds.vocabs["tags"]) - 1 == 19 and "Film-Noir" in ds.vocabs["tags"] and "Children's" in ds.vocabs["tags"]
    assert ds.interactions["user_id"].max() == 942 and ds.interactions["item_id"].max() == 1681
    assert np.isclose(ds.interactions["label"].mean(), (ds.interactions["rating"] >= 4).mean())
    assert ds.users.columns == ["user_id", "age", "gender", "occupation", "zip_prefix"]
    assert (ds.users["gender"] > 0).all() and ds.vocabs["gender"] == [None, "F", "M"]
    assert ds.vocabs["title"][0] == "Toy Story" and ds.items["year"][0] == 1995
    assert (ds.items["year"] > 1900).mean() > 0.99
    assert (ds.items["tags"].list.len() >= 1).all()
    assert ds.interactions["ts"].min() > 8e8
    fm = ds.feature_map()
    assert fm["user_id"].vocab_size == 943 and fm["tags"].vocab_size == 20
