"""BatchReader vs a per-row torch Dataset + DataLoader (default collate), same arrays, same run.

1M rows x 12 columns (9 categorical int64, one [N, 20] sequence, one float label, one bool flag),
batch 1024, shuffled. The per-row loader is timed on a prefix of batches (it is far slower);
both rates are batches per second on this machine's threads.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from thawrec.data.reader import BatchReader


def make_columns(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {f"cat{i}": rng.integers(0, 10_000, n, dtype=np.int64) for i in range(9)}
    cols["hist_items"] = rng.integers(0, 50_000, (n, 20), dtype=np.int64)
    cols["label"] = (rng.random(n) < 0.3).astype(np.float32)
    cols["_is_new"] = rng.random(n) < 0.1
    return cols


class PerRowDataset(Dataset):
    """The obvious alternative: one dict per row, stacked by default_collate."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.cols = cols
        self.n = len(next(iter(cols.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.cols.items()}


def time_batches(it, max_batches: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for _ in it:
        n += 1
        if n >= max_batches:
            break
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--per-row-batches", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cols = make_columns(args.rows)
    bs = args.batch_size

    reader = BatchReader(cols, bs, shuffle=True, seed=0)
    n_r, t_r = time_batches(iter(reader), len(reader))
    rate_r = n_r / t_r

    dl = DataLoader(PerRowDataset(cols), batch_size=bs, shuffle=True, num_workers=0,
                    generator=torch.Generator().manual_seed(0))
    n_p, t_p = time_batches(iter(dl), args.per_row_batches)
    rate_p = n_p / t_p

    print(f"BatchReader : {n_r} batches in {t_r:.2f}s = {rate_r:,.0f} batches/s ({rate_r * bs:,.0f} rows/s)")
    print(f"per-row DL  : {n_p} batches in {t_p:.2f}s = {rate_p:,.1f} batches/s ({rate_p * bs:,.0f} rows/s)"
          f"   -> BatchReader is {rate_r / rate_p:.1f}x faster")
    print(json.dumps({"bench": "reader", "rows": args.rows, "batch_size": bs, "columns": len(cols),
                      "reader_batches_per_second": round(rate_r, 1),
                      "per_row_batches_per_second": round(rate_p, 2), "ratio": round(rate_r / rate_p, 1)}))


if __name__ == "__main__":
    main()
