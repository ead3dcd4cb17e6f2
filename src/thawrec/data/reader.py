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


class EpisodeReader:
    """Batches of per-user *episodes* for meta-learning baselines (MeLU, Meta-Embedding).

    Each epoch every user with at least two rows becomes one episode: up to ``n_support`` support
    rows and up to ``n_query`` query rows, disjoint, drawn at random from the user's rows
    (``chronological=True``: the earliest rows are the support, the next ones the query). A batch
    holds ``users_per_batch`` episodes laid out as ``[U, n_support + n_query]`` rows, flattened to
    the usual ``dict[str, Tensor]`` plus ``_mask`` (1.0 real row, 0.0 padding) and ``_is_query``.
    Padding slots repeat one of the user's real rows so every tensor stays valid. Built with one
    sort and fancy indexing, never a loop over users. ``repeats`` draws that many independent
    episodes per user per epoch, so an epoch can cover about as many rows as a pass over the data
    (episodes are small: without it a meta-learner would see a fraction of the rows per epoch).
    """

    def __init__(self, columns: dict[str, np.ndarray], users_per_batch: int = 32, n_support: int = 10,
                 n_query: int = 10, *, group: str = "_user", shuffle: bool = True, seed: int = 0,
                 chronological: bool = False, time_col: str = "_ts", repeats: int = 1) -> None:
        if min(users_per_batch, n_support, n_query, repeats) < 1:
            raise ConfigError("users_per_batch, n_support, n_query and repeats must be >= 1. "
                              "Fix: pass positive sizes")
        self.repeats = int(repeats)
        for need in (group,) + ((time_col,) if chronological else ()):
            if need not in columns:
                raise ConfigError(f"EpisodeReader needs the column '{need}'. Fix: pass FeaturePipeline output")
        self.columns = {k: _as_batchable(k, v) for k, v in columns.items()}
        self.group, self.time_col = group, time_col
        self.users_per_batch, self.n_support, self.n_query = users_per_batch, n_support, n_query
        self.shuffle, self.seed, self.chronological = shuffle, seed, chronological
        self.epoch = 0
        g = self.columns[group]
        _, counts = np.unique(g, return_counts=True)
        self.n_episodes = int((counts >= 2).sum())
        self.users_skipped = int((counts < 2).sum())  # one row cannot be both support and query
        if self.users_skipped:
            log.info("EpisodeReader: %d of %d users have a single row and form no episode (their %d rows are "
                     "not used for meta-training)", self.users_skipped, len(counts), self.users_skipped)
        if self.n_episodes == 0:
            raise DataError("no user has two or more rows, so no support/query episode can be built",
                            column=group, fix="use a split where users have several rows")

    @classmethod
    def one_pass(cls, columns: dict[str, np.ndarray], *, n_support: int = 10, n_query: int = 10,
                 users_per_batch: int = 32, seed: int = 0, group: str = "_user") -> "EpisodeReader":
        """Episodes with enough ``repeats`` that an epoch covers about as many rows as one pass over
        ``columns`` (so a meta-learner and a row-wise model see comparable data per epoch)."""
        n_users = len(np.unique(columns[group]))
        repeats = max(1, round(len(columns[group]) / (max(n_users, 1) * (n_support + n_query))))
        return cls(columns, users_per_batch=users_per_batch, n_support=n_support, n_query=n_query, group=group,
                   seed=seed, repeats=repeats)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.n_episodes * self.repeats // self.users_per_batch)

    def episode_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows [E, S+Q], mask [E, S+Q], is_query [S+Q])`` for this epoch, episodes in batch order."""
        rng = np.random.default_rng(self.seed + self.epoch)
        draws = [self._draw(rng) for _ in range(self.repeats)]  # a handful of draws, not a loop over users
        rows, valid = np.concatenate([d[0] for d in draws]), np.concatenate([d[1] for d in draws])
        if self.shuffle:
            perm = rng.permutation(len(rows))
            rows, valid = rows[perm], valid[perm]
        return rows, valid.astype(np.float32), np.arange(self.n_support + self.n_query) >= self.n_support

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = self.columns[self.group]
        within = self.columns[self.time_col] if self.chronological else rng.random(len(g))
        order = np.lexsort((np.arange(len(g)), within, g))  # by user, then time (or a random key)
        gs = g[order]
        starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        counts = np.diff(np.r_[starts, len(gs)])
        keep = counts >= 2
        starts, counts = starts[keep], counts[keep]
        S, Q = self.n_support, self.n_query
        s = np.minimum(S, -(-counts // 2))  # at most half the rows (rounded up) support the rest
        q = np.minimum(Q, counts - s)
        j = np.arange(S + Q)
        is_query = j >= S
        offset = np.where(is_query, s[:, None] + (j - S), j)  # [E, S+Q]
        valid = np.where(is_query, (j - S) < q[:, None], j < s[:, None])
        return order[starts[:, None] + np.where(valid, offset, 0)], valid

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rows, mask, is_query = self.episode_rows()
        U = self.users_per_batch
        for b in range(0, len(rows), U):
            idx = rows[b:b + U].reshape(-1)
            batch = {k: torch.from_numpy(np.take(v, idx, axis=0)) for k, v in self.columns.items()}
            batch["_mask"] = torch.from_numpy(mask[b:b + U].reshape(-1))
            batch["_is_query"] = torch.from_numpy(np.tile(is_query, len(idx) // len(is_query)))
            yield batch


def episode_width(is_query: torch.Tensor) -> int:
    """Rows per episode (n_support + n_query) of an EpisodeReader batch, from its ``_is_query``
    pattern ``[F]*S + [T]*Q`` repeated once per user."""
    q = is_query.reshape(-1).to(torch.int8)
    restart = torch.nonzero(q[1:] < q[:-1])  # a query slot followed by the next user's support slot
    return int(restart[0]) + 1 if len(restart) else q.numel()
