"""BatchReader: exact coverage across ranks and workers, deterministic shuffles, dtypes, parquet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from thawrec.data.reader import BatchReader, write_columns_parquet
from thawrec.errors import ConfigError, DataError


def cols(n: int = 1003) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "row": np.arange(n, dtype=np.int32),
        "label": rng.random(n),  # float64 -> float32
        "seq": rng.integers(0, 50, (n, 4)),
        "flag": rng.random(n) < 0.5,
    }


def _rows(reader) -> np.ndarray:
    return np.concatenate([b["row"].numpy() for b in reader]) if len(reader) else np.empty(0)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_once_across_two_ranks(shuffle):
    c = cols()
    parts = [_rows(BatchReader(c, 64, shuffle=shuffle, seed=3, rank=r, world_size=2)) for r in range(2)]
    allr = np.concatenate(parts)
    assert len(allr) == 1003 and np.array_equal(np.sort(allr), np.arange(1003))
    assert abs(len(parts[0]) - len(parts[1])) <= 1


def test_even_shards_pad_by_wraparound():
    c = cols()
    readers = [BatchReader(c, 100, shuffle=True, rank=r, world_size=3, even_shards=True) for r in range(3)]
    parts = [_rows(r) for r in readers]
    assert {len(p) for p in parts} == {335} and len({len(r) for r in readers}) == 1
    allr = np.concatenate(parts)
    assert set(allr.tolist()) == set(range(1003)) and len(allr) - len(set(allr.tolist())) == 2


def test_every_row_once_across_ranks_and_workers():
    c = cols()
    seen = []
    for r in range(2):
        reader = BatchReader(c, 50, shuffle=True, seed=1, rank=r, world_size=2)
        dl = DataLoader(reader, batch_size=None, num_workers=2)
        seen.append(np.concatenate([b["row"].numpy() for b in dl]))
    allr = np.concatenate(seen)
    assert len(allr) == 1003 and np.array_equal(np.sort(allr), np.arange(1003))


def test_deterministic_shuffle_and_set_epoch():
    c = cols()
    a, b = BatchReader(c, 128, shuffle=True, seed=7), BatchReader(c, 128, shuffle=True, seed=7)
    ra = _rows(a)
    assert np.array_equal(ra, _rows(b)) and not np.array_equal(ra, np.arange(1003))
    a.set_epoch(1)
    r1 = _rows(a)
    assert not np.array_equal(ra, r1)
    b.set_epoch(1)
    assert np.array_equal(r1, _rows(b))  # a resumed run replays the same epoch
    a.set_epoch(0)
    assert np.array_equal(ra, _rows(a))


def test_dtypes_len_drop_last_and_row_alignment():
    c = cols()
    r = BatchReader(c, 100, shuffle=True)
    batches = list(r)
    assert len(batches) == len(r) == 11 and len(batches[-1]["row"]) == 3
    b = batches[0]
    assert b["row"].dtype == torch.int64 and b["label"].dtype == torch.float32
    assert b["seq"].dtype == torch.int64 and b["seq"].shape == (100, 4) and b["flag"].dtype == torch.bool
    rows = b["row"].numpy()
    assert np.allclose(b["label"].numpy(), c["label"][rows].astype(np.float32))
    assert np.array_equal(b["seq"].numpy(), c["seq"][rows]) and np.array_equal(b["flag"].numpy(), c["flag"][rows])
    d = BatchReader(c, 100, drop_last=True, keys=["row"])
    assert len(d) == 10 and len(list(d)) == 10 and set(next(iter(d))) == {"row"}


def test_rank_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = BatchReader(cols(), 1000)
    assert (r.rank, r.world_size) == (1, 2) and _rows(r)[0] == 501


def test_bad_input():
    c = cols()
    with pytest.raises(DataError, match="lengths"):
        BatchReader({**c, "bad": np.zeros(5)}, 10)
    with pytest.raises(ConfigError):
        BatchReader(c, 0)
    with pytest.raises(ConfigError):
        BatchReader(c, 10, rank=2, world_size=2)
    with pytest.raises(ConfigError):
        BatchReader(c, 10, keys=["nope"])


def test_from_parquet_roundtrip(tmp_path):
    c = cols(257)
    path = write_columns_parquet(c, tmp_path / "x.parquet", row_group_size=64)
    r = BatchReader.from_parquet(path, batch_size=64, shuffle=True, seed=2)
    ref = BatchReader(c, 64, shuffle=True, seed=2)
    for x, y in zip(r, ref):
        for k in c:
            assert torch.equal(x[k], y[k]), k
    sub = BatchReader.from_parquet(path, columns=["row", "seq"], batch_size=300)
    b = next(iter(sub))
    assert set(b) == {"row", "seq"} and b["seq"].shape == (257, 4)


def test_episode_reader_support_and_query_are_disjoint_rows_of_one_user():
    from thawrec.data.reader import EpisodeReader

    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 600)
    users[:1] = 999  # a user with one row cannot form an episode: skipped and counted
    cols = {"_user": users, "_ts": rng.integers(0, 10**6, 600), "row": np.arange(600)}
    r = EpisodeReader(cols, users_per_batch=8, n_support=4, n_query=3, seed=1, repeats=2)
    assert r.users_skipped == 1 and len(r) == -(-40 * 2 // 8)
    seen = 0
    for b in r:
        u = b["_user"].view(-1, 7)
        rows, mask, q = b["row"].view(-1, 7), b["_mask"].view(-1, 7).bool(), b["_is_query"].view(-1, 7)
        assert (u == u[:, :1]).all()  # one user per episode, padding included
        for i in range(len(u)):
            s_rows, q_rows = set(rows[i][mask[i] & ~q[i]].tolist()), set(rows[i][mask[i] & q[i]].tolist())
            assert s_rows and q_rows and not s_rows & q_rows
        seen += len(u)
    assert seen == 80
    chrono = EpisodeReader(cols, users_per_batch=64, n_support=4, n_query=3, chronological=True, shuffle=False)
    b = next(iter(chrono))
    ts = b["_ts"].view(-1, 7)
    m = b["_mask"].view(-1, 7).bool()
    for i in range(len(ts)):  # chronological: every support row is earlier than every query row
        assert ts[i][:4][m[i][:4]].max() <= ts[i][4:][m[i][4:]].min()
