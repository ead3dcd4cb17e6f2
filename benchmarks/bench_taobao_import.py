"""Import a synthetic Taobao ad display/click dump (public file format, 1M impressions) and time it.

Side by side in the same run: the obvious alternative -- pandas ``read_csv`` + ``merge`` when pandas
is installed, otherwise a per-row ``csv``-module importer with dict re-indexing -- doing the core
work only (re-index users/ads, attach ad features and profiles, sort by time; no validation, no
vocabularies). thawrec does strictly more (every boundary check, codes, vocabs, meta). The 2M-row
behaviour log is timed separately (streaming scan, user filter, shared vocabularies).

    .venv/bin/python benchmarks/bench_taobao_import.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from thawrec.data.sources import import_dataset
from _timing import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

PROFILE_HEADER = ("userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,"
                  "occupation,new_user_class_level ")  # the real header's trailing space


def write_dump(root: Path, n_rows: int, seed: int = 0) -> dict[str, int]:
    """raw_sample (n_rows) + ad_feature + user_profile + behavior_log (2 n_rows) in the public format."""
    rng = np.random.default_rng(seed)
    n_users, n_ads = max(n_rows // 25, 10), max(n_rows // 30, 10)
    users = rng.choice(np.arange(1, 1_200_000), n_users, replace=False)
    ads = rng.choice(np.arange(1, 900_000), n_ads, replace=False)
    clk = (rng.random(n_rows) < 0.05).astype(np.int64)
    pl.DataFrame({
        "user": users[rng.zipf(1.3, n_rows) % n_users],
        "time_stamp": rng.integers(1494000000, 1494691200, n_rows),
        "adgroup_id": ads[rng.zipf(1.2, n_rows) % n_ads],
        "pid": np.where(rng.random(n_rows) < 0.6, "430548_1007", "430539_1007"),
        "nonclk": 1 - clk,
        "clk": clk,
    }).write_csv(root / "raw_sample.csv")
    brand = rng.integers(1, 100_000, n_ads).astype(str).astype(object)
    brand[rng.random(n_ads) < 0.3] = "NULL"
    pl.DataFrame({
        "adgroup_id": ads[: int(n_ads * 0.98)],  # 2% of ads lack features
        "cate_id": rng.integers(1, 6000, n_ads)[: int(n_ads * 0.98)],
        "campaign_id": rng.integers(1, 400_000, n_ads)[: int(n_ads * 0.98)],
        "customer": rng.integers(1, 250_000, n_ads)[: int(n_ads * 0.98)],
        "brand": pl.Series(brand[: int(n_ads * 0.98)].tolist(), dtype=pl.String),
        "price": np.round(rng.lognormal(4, 1.5, n_ads), 2)[: int(n_ads * 0.98)],
    }).write_csv(root / "ad_feature.csv")
    n_prof = int(n_users * 0.93)  # 7% of users lack a profile, as in the real data
    opt = lambda hi: pl.Series(np.where(rng.random(n_prof) < 0.5, rng.integers(1, hi, n_prof).astype(str), ""))  # noqa: E731
    prof = pl.DataFrame({
        "userid": users[:n_prof], "cms_segid": rng.integers(0, 97, n_prof), "cms_group_id": rng.integers(0, 13, n_prof),
        "final_gender_code": rng.integers(1, 3, n_prof), "age_level": rng.integers(0, 7, n_prof),
        "pvalue_level": opt(4), "shopping_level": rng.integers(1, 4, n_prof), "occupation": rng.integers(0, 2, n_prof),
        "new_user_class_level": opt(5),
    })
    text = prof.write_csv(include_header=False)
    (root / "user_profile.csv").write_text(PROFILE_HEADER + "\n" + text)
    n_beh = 2 * n_rows
    pl.DataFrame({
        "user": np.concatenate([users, np.arange(2_000_000, 2_000_000 + n_users // 10)])[
            rng.integers(0, n_users + n_users // 10, n_beh)],
        "time_stamp": rng.integers(1492000000, 1494691200, n_beh),
        "btag": np.array(["pv", "cart", "fav", "buy"])[rng.choice(4, n_beh, p=[0.9, 0.04, 0.03, 0.03])],
        "cate": rng.integers(1, 7000, n_beh),
        "brand": rng.integers(1, 120_000, n_beh),
    }).write_csv(root / "behavior_log.csv")
    return {"raw_sample": n_rows, "behavior_log": n_beh, "users": n_users, "ads": n_ads}


def pandas_import(src: Path, out: Path) -> None:
    import pandas as pd

    s = pd.read_csv(src / "raw_sample.csv")
    ads = pd.read_csv(src / "ad_feature.csv", na_values=["NULL"])
    prof = pd.read_csv(src / "user_profile.csv")
    prof.columns = [c.strip() for c in prof.columns]
    s = s.merge(ads, on="adgroup_id", how="left").merge(prof, left_on="user", right_on="userid", how="left")
    s["user_id"] = s["user"].astype("category").cat.codes
    s["item_id"] = s["adgroup_id"].astype("category").cat.codes
    s = s.sort_values("time_stamp", kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    s.to_parquet(out / "interactions.parquet")


def csv_import(src: Path, out: Path) -> None:
    def rows(name: str):
        with open(src / name, newline="") as fh:
            r = csv.reader(fh)
            next(r)
            yield from r

    ads = {int(a): (int(c), int(cp), int(cu), None if b == "NULL" else int(b), float(p))
           for a, c, cp, cu, b, p in rows("ad_feature.csv")}
    prof = {int(r[0]): tuple(int(v) if v else None for v in r[1:]) for r in rows("user_profile.csv")}
    users: dict[int, int] = {}
    items: dict[int, int] = {}
    recs = []
    for u, ts, a, pid, _nonclk, clk in rows("raw_sample.csv"):
        u, a = int(u), int(a)
        recs.append((users.setdefault(u, len(users)), items.setdefault(a, len(items)), int(ts), int(clk), pid))
    recs.sort(key=lambda r: r[2])
    item_rows = [(i, *(ads.get(a) or (None,) * 5)) for a, i in items.items()]
    user_rows = [(i, *(prof.get(u) or (None,) * 8)) for u, i in users.items()]
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(recs, schema=["user_id", "item_id", "ts", "label", "pid"], orient="row").write_parquet(
        out / "interactions.parquet")
    pl.DataFrame(item_rows, schema=["item_id", "category", "campaign", "customer", "brand", "price"],
                 orient="row").write_parquet(out / "items.parquet")
    pl.DataFrame(user_rows, schema=["user_id"] + [f"a{k}" for k in range(8)], orient="row").write_parquet(
        out / "users.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    try:
        import pandas  # noqa: F401
        alt_name, alt = "pandas read_csv + merge", pandas_import
    except ImportError:
        alt_name, alt = "csv module + dict re-indexing (pandas not installed)", csv_import
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "taobao"
        src.mkdir()
        sizes = write_dump(src, args.rows)
        out = Path(tmp) / "out"
        rep = import_dataset("taobao-ad", src, out, behaviors=False)
        t_import = best_of(lambda: import_dataset("taobao-ad", src, out, behaviors=False))
        t_alt = best_of(lambda: alt(src, Path(tmp) / "alt"))
        t_full = best_of(lambda: import_dataset("taobao-ad", src, Path(tmp) / "full"), n=2)
        from thawrec.data.schema import read_dataset

        beh = read_dataset(Path(tmp) / "full").meta["behaviors"]
    rps = rep.n_interactions / t_import
    t_beh = t_full - t_import
    print(f"thawrec taobao-ad import+write {sizes['raw_sample']:,} impressions (users, items, codes, checks): "
          f"{t_import:.3f}s ({rps:,.0f} rows/s); filtered {rep.filtered}")
    print(f"{alt_name}: {t_alt:.3f}s -> thawrec is {t_alt / t_import:.2f}x faster")
    print(f"with behavior_log ({beh['rows_read']:,} rows read, {beh['rows_kept']:,} kept): {t_full:.3f}s "
          f"(~{beh['rows_read'] / max(t_beh, 1e-9):,.0f} behaviour rows/s)")
    print(json.dumps({"bench": "import_taobao_ad", "n_interactions": rep.n_interactions,
                      "import_seconds": round(t_import, 4), "rows_per_second": round(rps),
                      "alternative": alt_name, "alternative_seconds": round(t_alt, 4),
                      "speedup_vs_alternative": round(t_alt / t_import, 2),
                      "behavior_rows": beh["rows_read"], "import_with_behaviors_seconds": round(t_full, 4),
                      "behavior_rows_per_second": round(beh["rows_read"] / max(t_beh, 1e-9))}))


if __name__ == "__main__":
    main()
