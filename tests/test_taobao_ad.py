"""The taobao-ad importer on tiny files in the exact public format (Tianchi dataset 56)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from thawrec.cli import app
from thawrec.data.schema import Dataset, read_dataset, write_dataset
from thawrec.data.sources import FORMATS, import_dataset, load_source
from thawrec.errors import DataError

SAMPLE = """user,time_stamp,adgroup_id,pid,nonclk,clk
581738,1494137644,1,430548_1007,1,0
449818,1494638778,3,430548_1007,1,0
914836,1494650879,4,430548_1007,1,0
914836,1494651029,5,430548_1007,1,0
399907,1494302958,8,430548_1007,0,1
999999,1494100000,999,430539_1007,0,1
581738,1494137644,1,430548_1007,1,0
449818,1494100000,5,430539_1007,1,0
"""
# ad 999 (in raw_sample) is missing; ad 77 has no impression; ad 3 has a NULL brand
AD_FEATURE = """adgroup_id,cate_id,campaign_id,customer,brand,price
1,6406,83237,1,95471,170.0
3,1489,180521,3,NULL,3.2
4,6406,83237,1,95471,59.0
5,4520,2001,7,247789,1999.5
8,1489,180521,3,12,0.5
77,4520,2001,7,247789,88.0
"""
# the real header ends in a space; user 999999 (in raw_sample) has no profile; 123 has no impression
PROFILE = """userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,new_user_class_level 
581738,0,1,2,1,,3,0,
449818,0,3,2,3,1,3,0,2
914836,0,4,2,4,2,3,0,4
399907,0,8,1,2,2,3,0,
123,5,2,1,2,,1,1,3
"""
# 555555 is not in raw_sample; cate 9999 / brand 31337 are not in ad_feature; one NULL brand
BEHAVIOR = """user,time_stamp,btag,cate,brand
581738,1494137644,pv,6406,95471
449818,1494138000,cart,1489,NULL
914836,1494139000,fav,9999,31337
555555,1494139500,buy,6406,95471
399907,1494140000,buy,1489,95471
399907,1494141000,pv,7777,95471
"""


def write_taobao(root: Path, **override: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"raw_sample.csv": SAMPLE, "ad_feature.csv": AD_FEATURE, "user_profile.csv": PROFILE,
             "behavior_log.csv": BEHAVIOR}
    files.update(override)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_taobao(tmp_path / "taobao")


@pytest.fixture
def ds(src: Path) -> Dataset:
    return load_source("taobao-ad", src)


def test_registered() -> None:
    assert "taobao-ad" in FORMATS


def test_interactions(ds: Dataset) -> None:
    inter = ds.interactions
    assert inter.schema == {"user_id": pl.Int64, "item_id": pl.Int64, "ts": pl.Int64, "label": pl.Int8,
                            "domain": pl.Int32, "pid": pl.Int64}
    assert inter.height == 7  # 8 rows, one exact duplicate
    assert inter["ts"].is_sorted()
    raw = [(ds.vocabs["user_id"][u], ds.vocabs["item_id"][i], t, ds.vocabs["pid"][p], lab)
           for u, i, t, p, lab in inter.select("user_id", "item_id", "ts", "pid", "label").iter_rows()]
    # sorted by ts, then user, ad, pid, label: the tie at ts 1494100000 puts 449818 before 999999
    assert raw == [
        (449818, 5, 1494100000, "430539_1007", 0),
        (999999, 999, 1494100000, "430539_1007", 1),
        (581738, 1, 1494137644, "430548_1007", 0),
        (399907, 8, 1494302958, "430548_1007", 1),
        (449818, 3, 1494638778, "430548_1007", 0),
        (914836, 4, 1494650879, "430548_1007", 0),
        (914836, 5, 1494651029, "430548_1007", 0),
    ]
    assert ds.vocabs["pid"] == [None, "430539_1007", "430548_1007"]
    assert ds.context_cols == ["pid"]


def test_row_order_of_the_file_does_not_matter(ds: Dataset, tmp_path: Path) -> None:
    head, *rows = SAMPLE.splitlines()
    shuffled = load_source("taobao-ad", write_taobao(tmp_path / "shuffled", **{
        "raw_sample.csv": "\n".join([head, *rows[::-1]]) + "\n"}))
    for name in ("interactions", "users", "items"):
        assert getattr(shuffled, name).equals(getattr(ds, name)), name


def test_users(ds: Dataset) -> None:
    users = ds.users
    assert users.columns == ["user_id", "cms_segid", "cms_group_id", "gender", "age_level", "pvalue_level",
                             "shopping_level", "occupation", "new_user_class_level"]
    assert all(dt == pl.Int64 for dt in users.dtypes)
    assert ds.vocabs["user_id"] == [123, 399907, 449818, 581738, 914836, 999999]
    assert users["user_id"].to_list() == list(range(6))
    row = {raw: dict(zip(users.columns, users.row(k))) for k, raw in enumerate(ds.vocabs["user_id"])}
    assert all(v == 0 for c, v in row[999999].items() if c != "user_id")  # no profile row
    assert row[581738]["pvalue_level"] == 0 and row[581738]["new_user_class_level"] == 0  # empty values
    v = ds.vocabs
    assert v["gender"] == [None, 1, 2] and v["gender"][row[399907]["gender"]] == 1
    assert v["occupation"] == [None, 0, 1] and v["occupation"][row[123]["occupation"]] == 1
    assert v["new_user_class_level"][row[914836]["new_user_class_level"]] == 4
    assert v["pvalue_level"] == [None, 1, 2]


def test_items(ds: Dataset) -> None:
    items = ds.items
    assert items.schema == {"item_id": pl.Int64, "tags": pl.List(pl.Int64), "category": pl.Int64,
                            "domain": pl.Int32, "campaign": pl.Int64, "customer": pl.Int64, "brand": pl.Int64,
                            "price": pl.Float64}
    v = ds.vocabs
    assert v["item_id"] == [1, 3, 4, 5, 8, 77, 999]
    row = {raw: dict(zip(items.columns, items.row(k))) for k, raw in enumerate(v["item_id"])}
    assert v["category"][row[1]["category"]] == 6406 and row[1]["tags"] == [row[1]["category"]]
    assert row[1]["category"] == row[4]["category"] and v["tags"] is v["category"]
    assert v["brand"][row[1]["brand"]] == 95471 and row[3]["brand"] == 0  # NULL brand
    assert v["campaign"][row[5]["campaign"]] == 2001 and v["customer"][row[5]["customer"]] == 7
    assert row[5]["price"] == 1999.5 and row[8]["price"] == 0.5
    assert row[999] == {"item_id": 6, "tags": [], "category": 0, "domain": 0, "campaign": 0, "customer": 0,
                        "brand": 0, "price": None}


def test_meta_counts(ds: Dataset) -> None:
    m = ds.meta
    assert m["name"] == "taobao-ad"
    assert m["filtered"]["duplicate_rows"] == 1
    assert m["filtered"]["behaviors_user_not_in_raw_sample"] == 1
    assert m["users_without_profile"] == 1 and m["items_without_features"] == 1
    assert m["profile_users_without_interactions"] == 1 and m["ads_without_interactions"] == 1
    assert m["time_range"] == {"min_ts": 1494100000, "max_ts": 1494651029}
    assert m["n_clicks"] == 2
    assert m["behaviors"]["rows_read"] == 6 and m["behaviors"]["rows_kept"] == 5
    assert m["behaviors"]["capped"] is False


def test_behaviors_share_item_vocabularies(ds: Dataset) -> None:
    b = ds.extras["behaviors"]
    assert b.schema == {"user_id": pl.Int64, "ts": pl.Int64, "btag": pl.Int8, "category": pl.Int64,
                        "brand": pl.Int64}
    v = ds.vocabs
    raw = [(v["user_id"][u], t, v["btag"][g], v["category"][c], v["brand"][br]) for u, t, g, c, br in b.iter_rows()]
    assert raw == [  # file order; 555555 (not in raw_sample) dropped
        (581738, 1494137644, "pv", 6406, 95471),
        (449818, 1494138000, "cart", 1489, None),
        (914836, 1494139000, "fav", 9999, 31337),
        (399907, 1494140000, "buy", 1489, 95471),
        (399907, 1494141000, "pv", 7777, 95471),
    ]
    assert b["btag"].to_list() == [1, 2, 3, 4, 1]
    item1 = ds.items.row(v["item_id"].index(1), named=True)
    assert b["category"][0] == item1["category"] and b["brand"][0] == item1["brand"]
    # unknown values get new codes after ad_feature's, so item codes are unchanged
    assert v["category"] == [None, 1489, 4520, 6406, 7777, 9999] and b["category"].to_list() == [3, 1, 5, 1, 4]
    assert v["brand"] == [None, 12, 95471, 247789, 31337]
    assert ds.meta["vocab_sizes"]["category"] == 6


def test_max_behavior_rows_and_off(src: Path) -> None:
    ds = load_source("taobao-ad", src, max_behavior_rows=2)
    assert ds.extras["behaviors"].height == 2
    assert ds.meta["behaviors"]["rows_read"] == 2 and ds.meta["behaviors"]["capped"] is True
    ds = load_source("taobao-ad", src, behaviors=False)
    assert ds.extras == {} and ds.meta["behaviors"]["loaded"] is False
    assert ds.vocabs["category"] == [None, 1489, 4520, 6406]
    (src / "behavior_log.csv").unlink()
    assert load_source("taobao-ad", src).extras == {}


def test_roundtrip_with_behaviors(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rep = import_dataset("taobao-ad", src, out)
    assert rep.n_interactions == 7 and rep.filtered["duplicate_rows"] == 1
    assert (out / "behaviors.parquet").is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["extras"] == ["behaviors"] and meta["context_cols"] == ["pid"]
    back = read_dataset(out)
    ds = load_source("taobao-ad", src)
    assert back.extras["behaviors"].equals(ds.extras["behaviors"])
    for name in ("interactions", "users", "items"):
        assert getattr(back, name).equals(getattr(ds, name)), name
    assert back.vocabs["user_id"] == ds.vocabs["user_id"] and back.vocabs["brand"] == ds.vocabs["brand"]
    fm = json.loads((out / "feature_map.json").read_text())
    assert {f["name"] for f in fm["features"]} >= {"pid", "gender", "category", "tags"}


def test_extras_backward_compatible_and_checked(src: Path, tmp_path: Path) -> None:
    ds = load_source("taobao-ad", src, behaviors=False)
    out = write_dataset(ds, tmp_path / "old")
    meta = json.loads((out / "meta.json").read_text())
    del meta["extras"]  # a folder written before extras existed
    (out / "meta.json").write_text(json.dumps(meta))
    assert read_dataset(out).extras == {}

    bad = Dataset(ds.interactions, ds.users, ds.items, ds.meta, ds.vocabs,
                  {"behaviors": pl.DataFrame({"user_id": [0, 99]})})
    with pytest.raises(DataError) as info:
        write_dataset(bad, tmp_path / "bad")
    assert info.value.row == 1 and info.value.column == "user_id" and "behaviors.parquet" in info.value.file
    bad.extras = {"items": pl.DataFrame({"x": [1]})}
    with pytest.raises(DataError, match="invalid extra table name"):
        write_dataset(bad, tmp_path / "bad")

    meta["extras"] = ["gone"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="gone.parquet"):
        read_dataset(out)


def test_cli_import(src: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["data", "import", "taobao-ad", str(src), "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "7 interactions" in res.output and "duplicate_rows: 1" in res.output
    assert read_dataset(tmp_path / "cli").extras["behaviors"].height == 5
    capped = CliRunner().invoke(app, ["data", "import", "taobao-ad", str(src), "--out", str(tmp_path / "cap"),
                                      "--max-behavior-rows", "2"])
    assert capped.exit_code == 0, capped.output
    assert read_dataset(tmp_path / "cap").extras["behaviors"].height <= 2
    none = CliRunner().invoke(app, ["data", "import", "taobao-ad", str(src), "--out", str(tmp_path / "none"),
                                    "--no-behaviors"])
    assert none.exit_code == 0, none.output
    assert read_dataset(tmp_path / "none").extras == {}
    other = CliRunner().invoke(app, ["data", "import", "recbole", str(src), "--out", str(tmp_path / "x"),
                                     "--no-behaviors"])
    assert other.exit_code == 2 and "unknown option" in other.output  # said, not silently ignored


# --------------------------------------------------------------------------------------------
# Bad input: a DataError naming file, row and column (row/column where the problem has one)
# --------------------------------------------------------------------------------------------
def _err(src: Path, **opts) -> DataError:
    with pytest.raises(DataError) as info:
        load_source("taobao-ad", src, **opts)
    return info.value


def _where(err: DataError, file: Path, row: int | None, column: str | None) -> None:
    msg = str(err)
    assert err.file == str(file) and str(file) in msg, msg
    assert err.row == row and (row is None or f"row {row}" in msg), msg
    assert err.column == column and (column is None or f"'{column}'" in msg), msg
    assert "Fix:" in msg


H = "user,time_stamp,adgroup_id,pid,nonclk,clk\n"


def test_missing_column(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": "user,time_stamp,adgroup_id,pid,nonclk\n1,1494137644,1,p,1\n"})
    err = _err(src)
    _where(err, src / "raw_sample.csv", None, "clk")  # a header problem has no data row
    assert "missing column" in str(err)


def test_missing_profile_column(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"user_profile.csv": PROFILE.replace(",occupation", ",job")})
    _where(_err(src), src / "user_profile.csv", None, "occupation")


@pytest.mark.parametrize("value", ["yes", "0.5"])
def test_non_integer_clk(tmp_path: Path, value: str) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "1,1494137644,1,p,1,0\n2,1494137645,3,p,1," + value + "\n"})
    err = _err(src)
    _where(err, src / "raw_sample.csv", 1, "clk")
    assert "not an integer" in str(err)


@pytest.mark.parametrize("pair", ["1,1", "0,0"])
def test_clk_nonclk_not_complementary(tmp_path: Path, pair: str) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "1,1494137644,1,p,1,0\n1,1494137645,1,p,0,1\n"
                                    f"2,1494137646,3,p,{pair}\n"})
    err = _err(src)
    _where(err, src / "raw_sample.csv", 2, "nonclk")
    assert "1 - clk" in str(err)


def test_clk_out_of_range(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "1,1494137644,1,p,1,0\n2,1494137645,3,p,1,2\n"})
    _where(_err(src), src / "raw_sample.csv", 1, "clk")


@pytest.mark.parametrize("content", ["", H])
def test_empty_file(tmp_path: Path, content: str) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": content})
    err = _err(src)
    _where(err, src / "raw_sample.csv", None, None)  # no row or column to name in an empty file
    assert "empty" in str(err) or "no data rows" in str(err)


def test_empty_side_file(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"ad_feature.csv": ""})
    _where(_err(src), src / "ad_feature.csv", None, None)


def test_missing_ids(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "1,1494137644,1,p,1,0\n2,1494137645,,p,1,0\n"})
    _where(_err(src), src / "raw_sample.csv", 1, "adgroup_id")
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "x1,1494137644,1,p,1,0\n"})
    _where(_err(src), src / "raw_sample.csv", 0, "user")


def test_timestamp_in_milliseconds(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"raw_sample.csv": H + "1,1494137644,1,p,1,0\n2,1494137644000,3,p,1,0\n"})
    err = _err(src)
    _where(err, src / "raw_sample.csv", 1, "time_stamp")
    assert "milliseconds" in str(err)


def test_side_file_errors(tmp_path: Path) -> None:
    src = write_taobao(tmp_path, **{"ad_feature.csv": AD_FEATURE.replace("1999.5", "cheap")})
    _where(_err(src), src / "ad_feature.csv", 3, "price")
    src = write_taobao(tmp_path, **{"ad_feature.csv": AD_FEATURE + "1,1,1,1,1,1.0\n"})
    _where(_err(src), src / "ad_feature.csv", 6, "adgroup_id")
    src = write_taobao(tmp_path, **{"user_profile.csv": PROFILE.replace("914836,0,4,2", "914836,0,4,F")})
    _where(_err(src), src / "user_profile.csv", 2, "final_gender_code")


@pytest.mark.parametrize("line,column", [("914836,1494139000,like,1,2", "btag"),
                                         ("914836,1494139000,pv,abc,2", "cate"),
                                         (",1494139000,pv,1,2", "user"),
                                         ("914836,,pv,1,2", "time_stamp")])
def test_bad_behavior_row(tmp_path: Path, line: str, column: str) -> None:
    lines = BEHAVIOR.splitlines()
    src = write_taobao(tmp_path, **{"behavior_log.csv": "\n".join(lines[:3] + [line] + lines[3:]) + "\n"})
    _where(_err(src), src / "behavior_log.csv", 2, column)
    assert load_source("taobao-ad", src, behaviors=False).extras == {}  # the switch skips the log
