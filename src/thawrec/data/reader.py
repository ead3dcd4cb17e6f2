"""Batches of tensors from column arrays, sharded by rank x dataloader worker.

A per-row ``Dataset`` + default collate builds every batch from ``batch_size`` tiny dicts; here a
batch is one fancy-index per column and one ``torch.from_numpy``, which is what keeps data
loading off the training profile. Shards are disjoint slices of one permutation that every rank
computes identically from ``seed + epoch``, so a resumed run replays exactly the same batches
(``set_epoch`` plays the role of ``DistributedSampler.set_epoch``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.utils.data

from thawrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _dist_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """torch.distributed if initialised, else RANK / WORLD_SIZE from the env, else 0 / 1."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} / world_size {world_size} is invalid. "
                          "Fix: 0 <= rank < world_size (torchrun sets RANK and WORLD_SIZE)")
    return rank, world_size


def _as_batchable(name: str, arr: np.ndarray) -> np.ndarray:
    """float -> float32, int -> int64, bool stays bool; converted once, not per batch."""
    a = np.asarray(arr)
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a)
    if a.dtype.kind in "iu":
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype=np.float32)
    raise DataError(f"column dtype {a.dtype} cannot become a tensor", column=name,
                    fix="encode the column to integers or floats first")


def _slice(n: int, part: int, parts: int) -> tuple[int, int]:
    return part * n // parts, (part + 1) * n // parts


class BatchReader(torch.utils.data.IterableDataset):
    """Iterable of ``dict[str, torch.Tensor]`` batches over equal-length numpy columns.

    Sharding: ``rank`` gets a disjoint slice of the (shuffled) row order; with
    ``even_shards=True`` the order is first extended by wrap-around so that every rank gets the
    same number of rows (DDP needs equal step counts), else the slices differ by at most one
    row and nothing repeats. Inside a ``DataLoader(reader, batch_size=None, num_workers=k)``
    each worker takes its own disjoint sub-slice of the rank's shard.
    """

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        keys: list[str] | None = None,
        even_shards: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}. Fix: pass a positive batch size")
        keys = list(keys) if keys is not None else list(columns)
        missing = [k for k in keys if k not in columns]
        if missing:
            raise ConfigError(f"keys {missing} not in columns {list(columns)}. Fix: choose existing columns")
        if not keys:
            raise ConfigError("no columns to batch. Fix: pass at least one column")
        self.columns = {k: _as_batchable(k, columns[k]) for k in keys}
        lens = {k: len(v) for k, v in self.columns.items()}
        self.n_rows = lens[keys[0]]
        bad = [k for k, n in lens.items() if n != self.n_rows]
        if bad:
            raise DataError(f"columns have different lengths {lens}", column=bad[0],
                            fix="every column must have one entry per row")
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = _dist_defaults(rank, world_size)
        self.even_shards = even_shards
        self.epoch = 0

    # ---------------------------------------------------------------- order and shards
    def set_epoch(self, epoch: int) -> None:
        """Reshuffle deterministically from ``seed + epoch`` (same on every rank)."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray | None:
        if not self.shuffle:
            return None  # identity: slices stay contiguous, batches are cheap views-then-copies
        return np.random.default_rng(self.seed + self.epoch).permutation(self.n_rows)

    def _shard_bounds(self) -> tuple[int, int, int]:
        """(start, end, total) of this rank's slice in the (possibly wrapped) global order."""
        n, w = self.n_rows, self.world_size
        if self.even_shards:
            per = -(-n // w)
            return self.rank * per, (self.rank + 1) * per, per * w
        s, e = _slice(n, self.rank, w)
        return s, e, n

    def shard_indices(self, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        """Row indices this rank (and worker) reads this epoch, in order."""
        s, e, _ = self._shard_bounds()
        ws, we = _slice(e - s, worker, num_workers)
        pos = np.arange(s + ws, s + we, dtype=np.int64) % max(self.n_rows, 1)  # wrap-around padding
        order = self._order()
        return pos if order is None else order[pos]

    def _num_rows(self) -> int:
        s, e, _ = self._shard_bounds()
        return e - s

    def __len__(self) -> int:
        n = self._num_rows()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ---------------------------------------------------------------- iteration
    def _batch(self, idx: np.ndarray | slice) -> dict[str, torch.Tensor]:
        if isinstance(idx, slice):
            return {k: torch.from_numpy(v[idx].copy()) for k, v in self.columns.items()}
        return {k: torch.from_numpy(np.take(v, idx, axis=0)) for k, v in self.columns.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        s, e, _ = self._shard_bounds()
        ws, we = _slice(e - s, worker, n_workers)
        lo, hi = s + ws, s + we
        contiguous = self._order() is None and hi <= self.n_rows
        idx = None if contiguous else self.shard_indices(worker, n_workers)
        bs = self.batch_size
        for b in range(0, hi - lo, bs):
            stop = min(b + bs, hi - lo)
            if self.drop_last and stop - b < bs:
                break
            yield self._batch(slice(lo + b, lo + stop)) if contiguous else self._batch(idx[b:stop])

    # ---------------------------------------------------------------- parquet
    @classmethod
    def from_parquet(cls, path: str | Path, columns: list[str] | None = None, **kwargs) -> "BatchReader":
        """Read columns with pyarrow into numpy; list columns of equal length become [N, L]."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise DataError("parquet file not found", file=str(path), fix="check the path")
        table = pq.read_table(path, columns=columns)
        out: dict[str, np.ndarray] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
                lens = np.asarray(col.value_lengths().to_numpy(zero_copy_only=False))
                if len(lens) and (np.any(lens != lens[0]) or col.null_count):
                    row = int(np.flatnonzero(lens != lens[0])[0]) if np.any(lens != lens[0]) else 0
                    raise DataError("list column with unequal lengths", file=str(path), row=row, column=name,
                                    fix="write padded [N, L] columns (e.g. FeaturePipeline output)")
                width = int(lens[0]) if len(lens) else 0
                out[name] = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), width)
            else:
                if col.null_count:
                    row = int(np.flatnonzero(np.asarray(col.is_null().to_numpy(zero_copy_only=False)))[0])
                    raise DataError("null value", file=str(path), row=row, column=name, fix="fill or drop nulls")
                out[name] = np.asarray(col.to_numpy(zero_copy_only=False))
        return cls(out, **kwargs)


def write_columns_parquet(columns: dict[str, np.ndarray], path: str | Path, row_group_size: int = 65536) -> Path:
    """Write [N] / [N, L] numpy columns as Parquet (2-D -> fixed-size lists) for from_parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for k, v in columns.items():
        v = np.asarray(v)
        if v.ndim == 2:
            arrays[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        else:
            arrays[k] = pa.array(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path, row_group_size=row_group_size)
    return path
