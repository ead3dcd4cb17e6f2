"""Every bad-input case fails at the boundary with a DataError naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from thawrec.data.sources import import_dataset, load_source
from thawrec.errors import DataError

HEADER = "user_id,item_id,ts,rating\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER, name: str = "log.csv") -> Path:
    f = tmp_path / name
    f.write_text(header + body)
    return f


def _err(fmt: str, src: Path, **opts) -> DataError:
    with pytest.raises(DataError) as info:
        load_source(fmt, src, **opts)
    return info.value


def _where(err: DataError, file: Path, row: int | None, column: str | None) -> None:
    msg = str(err)
    assert str(file) in msg and err.file == str(file), msg
    if row is not None:
        assert f"row {row}" in msg and err.row == row, msg
    if column is not None:
        assert f"'{column}'" in msg and err.column == column, msg
    assert "Fix:" in msg


def test_missing_column(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,100,5\n", header="user_id,item_id,time,rating\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, None, "ts")
    assert "missing column" in str(err)


def test_non_numeric_rating(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n2\t10\tgood\t881250950\n")
    err = _err("ml-100k", tmp_path)
    _where(err, tmp_path / "u.data", 1, "rating")
    assert "'good' is not a number" in str(err)


def test_non_numeric_ts(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,100,5\n1,3,1e9,5\n1,4,yesterday,5\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 2, "ts")


@pytest.mark.parametrize("values, row", [
    (("Jan 1 2024", "Jan 2 2024"), 0),                 # no datetime format fits: polars would raise raw
    (("2024-01-01T00:00:00", "not a date"), 1),        # one value does not parse
    (("2024-01-01T00:00:00", "2024-01-01T00:00:00+01:00"), 1),  # naive and zoned mixed
])
def test_unparseable_datetime_ts(tmp_path: Path, values, row) -> None:
    f = _csv(tmp_path, "".join(f"{i},{i},{v},5\n" for i, v in enumerate(values)))
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, row, "ts")
    assert "neither Unix seconds nor an ISO datetime" in str(err)


def test_non_integer_id_in_grouplens(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::x661::3::978302109\n")
    err = _err("ml-1m", tmp_path)
    _where(err, tmp_path / "ratings.dat", 1, "MovieID")


@pytest.mark.parametrize("value", ["", "NaN"])
def test_missing_id(tmp_path: Path, value: str) -> None:
    f = _csv(tmp_path, f"1,2,100,5\n3,2,101,5\n{value},2,102,5\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 2, "user_id")


def test_nan_id_parquet(tmp_path: Path) -> None:
    import polars as pl

    f = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [1, 2], "item_id": [3.0, float("nan")], "ts": [5, 6], "rating": [1.0, 2.0]}).write_parquet(f)
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 1, "item_id")


def test_negative_id(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,100,5\n1,-3,101,5\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 1, "item_id")
    assert "negative ID -3" in str(err)


def test_duplicate_user_item_ts(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n2::1193::5::978300760\n1::1193::3::978300760\n")
    err = _err("ml-1m", tmp_path)
    _where(err, tmp_path / "ratings.dat", 2, "UserID")
    assert "first seen at row 0" in str(err)


def test_ts_out_of_range(tmp_path: Path) -> None:
    d = tmp_path / "rb"
    d.mkdir()
    (d / "x.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                               "1\t2\t3\t881250949\n1\t3\t3\t-5\n")
    err = _err("recbole", d)
    _where(err, d / "x.inter", 1, "timestamp")
    assert "out of range" in str(err)


def test_ts_milliseconds(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,1600000000,5\n1,3,1600000000000,5\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 1, "ts")
    assert "divide by 1000" in str(err)


@pytest.mark.parametrize("content", ["", HEADER])
def test_empty_file(tmp_path: Path, content: str) -> None:
    f = tmp_path / "log.csv"
    f.write_text(content)
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, None, None)
    assert "empty" in str(err) or "no data rows" in str(err)


def test_empty_grouplens_file(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_bytes(b"")
    err = _err("ml-100k", tmp_path)
    _where(err, tmp_path / "u.data", None, None)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        import_dataset("movielens-9000", tmp_path, tmp_path / "out")
    msg = str(info.value)
    assert "movielens-9000" in msg and "ml-100k" in msg and "tabular" in msg and "recbole" in msg


@pytest.mark.parametrize("value", ["nan", ""])
def test_rating_nan(tmp_path: Path, value: str) -> None:
    f = _csv(tmp_path, f"1,2,100,5\n1,3,101,{value}\n")
    err = _err("tabular", f, rating_col="rating")
    _where(err, f, 1, "rating")
    assert "NaN" in str(err)


def test_recbole_header_without_type(tmp_path: Path) -> None:
    (tmp_path / "x.inter").write_text("user_id:token\titem_id\trating:float\ttimestamp:float\n1\t2\t3\t881250949\n")
    err = _err("recbole", tmp_path)
    _where(err, tmp_path / "x.inter", None, "item_id")
    assert "no ':type'" in str(err)


def test_no_label_source(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,100,5\n")
    err = _err("tabular", f)
    assert str(f) in str(err) and "label_col" in str(err)


def test_bad_label_value(tmp_path: Path) -> None:
    f = _csv(tmp_path, "1,2,100,1\n1,3,101,2\n", header="user_id,item_id,ts,click\n")
    err = _err("tabular", f, label_col="click")
    _where(err, f, 1, "click")


def test_duplicate_item_row_in_item_file(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n")
    (tmp_path / "movies.dat").write_text("10::A (1990)::Drama\n11::B (1991)::Drama\n10::C (1992)::Drama\n")
    err = _err("ml-1m", tmp_path)
    _where(err, tmp_path / "movies.dat", 2, "MovieID")


def test_bad_genre_flag(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n")
    flags = ["0"] * 19
    flags[4] = "yes"
    (tmp_path / "u.item").write_text("10|T (1995)|01-Jan-1995||u|" + "|".join(flags) + "\n")
    err = _err("ml-100k", tmp_path)
    _where(err, tmp_path / "u.item", 0, "genre:Children's")


def test_ragged_grouplens_row(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t881250950\n")
    with pytest.raises(DataError) as info:
        load_source("ml-100k", tmp_path)
    assert str(tmp_path / "u.data") in str(info.value)
