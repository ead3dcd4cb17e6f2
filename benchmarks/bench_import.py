"""Import + write the real ML-100K (RecBole atomic files); time read_dataset.

Side by side: a naive per-row importer (csv module + dict re-indexing, interactions only, no
validation) -- the obvious hand-written alternative. thawrec does strictly more work (users,
items, tags, every boundary check) and should still be faster.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

import polars as pl

from thawrec.data.schema import read_dataset
from thawrec.data.sources import import_dataset
from _timing import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SRC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def naive_import(src: Path, out: Path) -> None:
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows = []
    with open(src / "ml-100k.inter", newline="") as fh:
        r = csv.reader(fh, delimiter="\t")
        next(r)
        for u, i, rating, ts in r:
            rows.append((users.setdefault(u, len(users)), items.setdefault(i, len(items)), int(float(ts)),
                         int(float(rating) >= 4.0), float(rating)))
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=["user_id", "item_id", "ts", "label", "rating"], orient="row").write_parquet(
        out / "interactions.parquet")


def main() -> None:
    if not (SRC / "ml-100k.inter").exists():
        sys.exit(f"real ML-100K not found at {SRC}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ml100k"
        rep = import_dataset("recbole", SRC, out)
        t_import = best_of(lambda: import_dataset("recbole", SRC, out))
        t_read = best_of(lambda: read_dataset(out))
        t_naive = best_of(lambda: naive_import(SRC, Path(tmp) / "naive"))
    rps = rep.n_interactions / t_import
    print(f"thawrec import+write ML-100K (users, items, tags, validation): {t_import:.3f}s "
          f"({rps:,.0f} rows/s); read_dataset: {t_read:.3f}s")
    print(f"naive csv+dict importer (interactions only, no checks): {t_naive:.3f}s "
          f"-> thawrec is {t_naive / t_import:.1f}x faster")
    print(json.dumps({"bench": "import_ml100k", "import_seconds": round(t_import, 4), "read_seconds": round(t_read, 4),
                      "rows_per_second": round(rps), "naive_seconds": round(t_naive, 4),
                      "speedup_vs_naive": round(t_naive / t_import, 2), "n_interactions": rep.n_interactions}))


if __name__ == "__main__":
    main()
