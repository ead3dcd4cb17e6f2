"""Memory networks with stream clustering (UIE Sec. 3.2-3.4): Eq. 1's update on hand-computed
examples and against a row-by-row reference, clustering of planted clusters, Eq. 2's read with
non-positive centroids zeroed, sampling, the start from data and the re-seeding of dead
centroids (not in the paper, off by default), state_dict / checkpoint / resume, and two gloo
ranks that end with the same memory."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from thawrec.config import TrainConfig
from thawrec.data.reader import BatchReader
from thawrec.errors import ConfigError
from thawrec.models.rankers.ple import PLERanker
from thawrec.nn.memory import StreamClusterMemory, active_type_rates
from thawrec.train.checkpoint import load_checkpoint
from thawrec.train.trainer import Trainer


def _memory(centroids: list[list[float]], rate: float = 0.1) -> StreamClusterMemory:
    mem = StreamClusterMemory(len(centroids), len(centroids[0]), rate=rate)
    mem.centroids.copy_(torch.tensor(centroids))
    return mem


# ------------------------------------------------------------------------------------- Eq. 1 update
def test_update_matches_hand_computed_eq1():
    mem = _memory([[1.0, 0.0], [0.0, 1.0]], rate=0.1)
    # [2, 1] . mu0 = 2 > [2, 1] . mu1 = 1: assigned to centroid 0, which moves by rho (v - mu0).
    assigned = mem.update(torch.tensor([[2.0, 1.0]]))
    assert assigned.tolist() == [0]
    assert torch.allclose(mem.centroids, torch.tensor([[1.1, 0.1], [0.0, 1.0]]))
    assert mem.hits.tolist() == [1, 0]
    # Two vectors on centroid 1 (means [0, 3]): mu1 <- 0.9^2 mu1 + (1 - 0.9^2) [0, 3] = [0, 1.38].
    assigned = mem.update(torch.tensor([[0.0, 2.0], [0.0, 4.0]]))
    assert assigned.tolist() == [1, 1]
    assert torch.allclose(mem.centroids, torch.tensor([[1.1, 0.1], [0.0, 0.81 + 0.19 * 3.0]]))
    assert mem.hits.tolist() == [1, 2]


def test_a_batch_of_equal_vectors_equals_that_many_sequential_steps():
    a, b = _memory([[1.0, 0.0, 0.0]], rate=0.05), _memory([[1.0, 0.0, 0.0]], rate=0.05)
    v = torch.tensor([[0.5, 2.0, -1.0]])
    a.update(v.repeat(7, 1))
    for _ in range(7):
        b.update(v)
    assert torch.allclose(a.centroids, b.centroids, atol=1e-6)


def _reference_update(centroids: torch.Tensor, vectors: torch.Tensor, used: list[bool], rate: float):
    """Eq. 1 row by row: assign each used row by a loop over centroids, accumulate, then step."""
    n, d = centroids.shape
    sums = [[0.0] * d for _ in range(n)]
    counts = [0] * n
    assigned = []
    for row, use in zip(vectors.tolist(), used):
        if not use:
            assigned.append(-1)
            continue
        best, best_sim = 0, -math.inf
        for i, mu in enumerate(centroids.tolist()):
            sim = sum(x * y for x, y in zip(row, mu))
            if sim > best_sim:
                best, best_sim = i, sim
        assigned.append(best)
        counts[best] += 1
        sums[best] = [s + x for s, x in zip(sums[best], row)]
    out = centroids.clone()
    for i in range(n):
        if counts[i]:
            keep = (1 - rate) ** counts[i]
            out[i] = keep * centroids[i] + (1 - keep) * torch.tensor(sums[i]) / counts[i]
    return out, assigned, counts


def test_vectorised_update_equals_a_reference_loop():
    g = torch.Generator().manual_seed(3)
    mem = StreamClusterMemory(7, 5, rate=0.03)
    mem.centroids.copy_(torch.randn(7, 5, generator=g, dtype=torch.float64).float())
    for _ in range(3):
        v = torch.randn(200, 5, generator=g)
        used = torch.rand(200, generator=g) < 0.6
        expect, expect_assigned, counts = _reference_update(mem.centroids, v, used.tolist(), 0.03)
        hits_before = mem.hits.clone()
        got = mem.update(v, used)
        assert got.tolist() == expect_assigned
        assert torch.allclose(mem.centroids, expect, atol=1e-6)
        assert (mem.hits - hits_before).tolist() == counts


def test_centroids_move_toward_clustered_data():
    torch.manual_seed(4)
    centers = 3.0 * torch.eye(8)[:4]  # four well separated clusters

    def draw(n: int) -> torch.Tensor:
        return centers[torch.randint(0, 4, (n,))] + 0.3 * torch.randn(n, 8)

    mem = StreamClusterMemory(8, 8, rate=0.05)
    x = draw(2000)

    def quantization_error() -> float:
        return float(((x - mem.nearest(x)) ** 2).sum(1).mean())

    before = quantization_error()
    for _ in range(200):
        mem.update(draw(64))
    assert quantization_error() < 0.5 * before
    # Every centroid that won many vectors sits at the mean of the points it claims (converged) ...
    owner = mem.assign(x)
    for i in torch.nonzero(mem.hits >= 200).flatten().tolist():
        assert float((mem.centroids[i] - x[owner == i].mean(0)).norm()) < 0.5, i
    # ... and every cluster has a centroid pointing its way.
    cos = torch.nn.functional.cosine_similarity(centers[:, None], mem.centroids[None], dim=-1)
    assert bool((cos.max(dim=1).values > 0.6).all()), cos


# -------------------------------------------------------------------------------------------- sampling
def test_sampling_by_rate_mask_and_active_type():
    torch.manual_seed(5)
    mem = StreamClusterMemory(4, 3, rate=0.01, sample_rate=0.3)
    v = torch.randn(20000, 3)
    share = float((mem.update(v) >= 0).float().mean())  # the memory's own rate
    assert 0.28 < share < 0.32
    share = float((mem.update(v, 0.1) >= 0).float().mean())
    assert 0.08 < share < 0.12
    mask = torch.arange(20000) % 3 == 0
    assert torch.equal(mem.update(v, mask) >= 0, mask)
    types = torch.arange(20000) % 2  # 0 low-active: always; 1 high-active: never
    rates = active_type_rates(types, [1.0, 0.0])
    assert torch.equal(mem.update(v, rates) >= 0, types == 0)
    assert torch.equal(active_type_rates(types, {0: 0.3, 1: 0.1}), torch.where(types == 0, 0.3, 0.1))
    with pytest.raises(ConfigError, match="active type"):
        active_type_rates(types, {0: 0.3})
    before = mem.centroids.clone()
    assert bool((mem.update(v, 0.0) == -1).all()) and torch.equal(mem.centroids, before)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        StreamClusterMemory(0, 4)
    with pytest.raises(ConfigError):
        StreamClusterMemory(4, 4, rate=0.0)
    for kw in ({"init": "kmeans"}, {"reseed_after": 0}, {"reseed_after": 1.5}, {"reseed_after": True}):
        with pytest.raises(ConfigError):
            StreamClusterMemory(4, 4, **kw)
    mem = StreamClusterMemory(4, 3)
    with pytest.raises(ValueError):
        mem.update(torch.randn(5, 2))
    with pytest.raises(ValueError):
        mem.read(torch.randn(5, 3), 5)


# ------------------------------------------------------------------ start from data, re-seeding
def test_data_init_fills_centroids_from_the_sampled_vectors():
    g = torch.Generator().manual_seed(10)
    mem = StreamClusterMemory(8, 4, rate=1e-6, init="data")
    assert not mem.centroids.any() and int(mem.filled) == 0 and mem.n_filled == 0
    x = torch.randn(12, 4, generator=g)
    pick = torch.zeros(12, dtype=torch.bool)
    pick[[1, 3, 4, 7, 10]] = True
    got = mem.update(x, pick)
    # fewer sampled vectors than empty centroids: each becomes one, in order; none moves another
    assert int(mem.filled) == 5 and torch.equal(mem.centroids[:5], x[pick]) and not mem.centroids[5:].any()
    assert torch.equal(got[pick], torch.arange(5)) and bool((got[~pick] == -1).all())
    assert mem.hits.tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert bool((mem.assign(torch.randn(50, 4, generator=g)) < 5).all())  # empty centroids win nothing
    # more sampled vectors than empty centroids: three of them, distinct, fill the rest
    y = torch.randn(10, 4, generator=g)
    got = mem.update(y)
    assert int(mem.filled) == 8 and mem.n_filled == 8 and int(mem.hits.sum()) == 15
    seeds = []
    for j in range(5, 8):  # rho = 1e-6: a seed's centroid is that vector (up to the other rows' step)
        dist = (y - mem.centroids[j]).norm(dim=1)
        r = int(dist.argmin())
        assert float(dist[r]) < 1e-4 and int(got[r]) == j
        seeds.append(r)
    assert len(set(seeds)) == 3
    assert torch.allclose(mem.centroids[:5], x[pick], atol=1e-4)  # the first seeds only took rho-steps


def test_data_init_spreads_the_start_over_planted_clusters():
    g = torch.Generator().manual_seed(11)
    centers = 10.0 * torch.eye(6)[:4]
    lab = torch.arange(40) % 4
    x = centers[lab] + 0.1 * torch.randn(40, 6, generator=g)
    for seed in range(5):  # k-means++: one seed per cluster, whatever the seed
        mem = StreamClusterMemory(4, 6, init="data", seed=seed)
        got = mem.update(x)
        assert sorted(int(lab[(x - c).norm(dim=1).argmin()]) for c in mem.centroids) == [0, 1, 2, 3]
        assert int(mem.filled) == 4 and torch.equal(torch.bincount(got, minlength=4), torch.full((4,), 10))


def _live_after_stream(seed: int, **kw: Any) -> int:
    """Centroids (of 16) that win any of 4000 fresh vectors after 300 updates on 16 planted
    clusters in a cone, as embeddings with a shared component are (random directions of norm 2
    plus 2 on the first axis, noise 0.3, dim 8)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(16, 8, generator=g)
    centers = 2.0 * centers / centers.norm(dim=1, keepdim=True)
    centers[:, 0] += 2.0

    def draw(n: int) -> torch.Tensor:
        return centers[torch.randint(0, 16, (n,), generator=g)] + 0.3 * torch.randn(n, 8, generator=g)

    torch.manual_seed(seed)
    mem = StreamClusterMemory(16, 8, rate=0.05, **kw)
    for _ in range(300):
        mem.update(draw(64))
    return int((torch.bincount(mem.assign(draw(4000)), minlength=16) > 0).sum())


def test_data_init_leaves_more_centroids_live_than_random_init_on_planted_clusters():
    random = [_live_after_stream(s) for s in range(3)]  # many random centroids point away: never win
    data = [_live_after_stream(s, init="data") for s in range(3)]
    reseeded = [_live_after_stream(s, reseed_after=20) for s in range(3)]  # dead ones revived
    assert max(random) <= 8 and min(data) >= 12 and min(reseeded) >= 15, (random, data, reseeded)


def test_reseed_moves_a_centroid_that_never_wins_onto_a_recent_vector():
    g = torch.Generator().manual_seed(12)
    mem = StreamClusterMemory(2, 2, rate=0.1, reseed_after=3)
    mem.centroids.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # the data sits near [1, 0]: c1 never wins
    batches = [torch.tensor([1.0, 0.0]) + 0.3 * torch.randn(20, 2, generator=g) for _ in range(8)]
    for t, x in enumerate(batches[:2], start=1):
        mem.update(x)
        assert mem.idle.tolist() == [0, t] and mem.centroids[1].tolist() == [-1.0, 0.0]
    mem.update(batches[2])  # the third update without a win: c1 moves onto one of its vectors
    assert int(mem.reseeds) == 1 and mem.idle.tolist() == [0, 0]
    assert bool(((batches[2] - mem.centroids[1]).norm(dim=1) == 0).any())
    for x in batches[3:]:
        mem.update(x)
    assert int(mem.hits[1]) > 0  # it is live now
    plain = StreamClusterMemory(2, 2)
    assert set(plain.state_dict()) == {"centroids", "hits"} and "reseed" not in repr(plain)


def test_start_options_round_trip_state_dict_and_resume_exactly():
    g = torch.Generator().manual_seed(13)
    xs = [torch.randn(6 if i == 0 else 30, 4, generator=g) for i in range(6)]

    def new() -> StreamClusterMemory:
        return StreamClusterMemory(8, 4, rate=0.2, init="data", reseed_after=2)

    a = new()
    a.update(xs[0])  # 6 of 8 filled: the checkpoint falls in the middle of the fill
    state = {k: v.clone() for k, v in a.state_dict().items()}
    assert set(state) == {"centroids", "hits", "filled", "idle", "reseeds"} and int(state["filled"]) == 6
    b = new()
    b.load_state_dict(state)
    assert int(b.filled) == 6 and b.n_filled == 6
    for x in xs[1:]:  # the same draws (fill, re-seeding) as the uninterrupted memory
        a.update(x)
        b.update(x)
        for k, v in a.state_dict().items():
            assert torch.equal(b.state_dict()[k], v), k
    assert int(a.filled) == 8 and int(a.reseeds) > 0
    c = new()
    c.load_state_dict(a.state_dict())
    assert c.n_filled == 8  # a full memory loaded into a fresh one is full


# --------------------------------------------------------------------------------------- Eq. 2 read
def test_read_zeroes_non_positive_centroids_and_weights_by_eq2():
    mem = _memory([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # inner products with [1, -0.2]: 1, -0.2, -1, 0.2 -> top 3 = c0, c3, c1; c1 is negative.
    q = torch.tensor([[1.0, -0.2]], requires_grad=True)
    r = mem.read(q, 3)
    assert r.index.tolist() == [[0, 3, 1]]
    assert r.kept.tolist() == [[True, True, False]]
    assert torch.allclose(r.centroids[0], torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]]))
    assert torch.allclose(r.scores, torch.tensor([[1.0, 0.2, 0.0]]))
    e1, e02, e0 = math.exp(1.0), math.exp(0.2), 1.0  # the zero vector keeps its e^0 share
    expect = torch.tensor([[e1 * 1.0, e02 * -1.0]]) / (e1 + e02 + e0)
    assert torch.allclose(r.weighted, expect, atol=1e-6)
    r.weighted.sum().backward()  # the query gets gradients through the attention; centroids none
    assert q.grad is not None and not mem.centroids.requires_grad
    assert not list(mem.parameters())


def test_topk_filters_by_another_vector_and_reads_any_leading_shape():
    mem = _memory([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # UCBE: chosen by the item vector, kept when positive with the user's profile vector.
    r = mem.topk(torch.tensor([[0.5, 1.0]]), 2, positive_wrt=torch.tensor([[1.0, -1.0]]))
    assert r.index.tolist() == [[1, 0]] and r.kept.tolist() == [[False, True]]
    assert torch.allclose(r.scores, torch.tensor([[0.0, 0.5]]))
    seq = torch.randn(3, 5, 2)  # UCSE: every behaviour of a sequence replaced by its nearest centroid
    near = mem.nearest(seq)
    assert near.shape == (3, 5, 2)
    assert torch.equal(near, mem.centroids[(seq @ mem.centroids.t()).argmax(-1)])
    assert mem.read(seq, 2).weighted.shape == (3, 5, 2)


# ------------------------------------------------------------------------------- state, checkpoint
def test_state_dict_round_trip():
    torch.manual_seed(6)
    holder = torch.nn.Module()
    holder.memory = StreamClusterMemory(16, 4, rate=0.1)
    holder.memory.update(torch.randn(300, 4))
    assert set(holder.state_dict()) == {"memory.centroids", "memory.hits"}
    buf = io.BytesIO()
    torch.save(holder.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(7)
    other = torch.nn.Module()
    other.memory = StreamClusterMemory(16, 4, rate=0.1)
    assert not torch.equal(other.memory.centroids, holder.memory.centroids)
    other.load_state_dict(torch.load(buf))
    assert torch.equal(other.memory.centroids, holder.memory.centroids)
    assert torch.equal(other.memory.hits, holder.memory.hits)


class _MemoryPLE(PLERanker):
    """PLE plus a memory clustered from the item-ID embeddings in ``on_batch_end``."""

    def __init__(self, fm, cfg=None) -> None:
        super().__init__(fm, cfg)
        self.memory = StreamClusterMemory(8, self.cfg["embedding_dim"], rate=0.05, sample_rate=0.5)

    def forward(self, batch, overrides=None) -> dict[str, Any]:
        out = super().forward(batch, overrides)
        out["item_vec"] = self.embedding("item_id", batch["item_id"])
        return out

    def on_batch_end(self, batch, out) -> None:
        self.memory.update(out["item_vec"])


def _fit(fm, cols, run_dir, epochs: int, resume: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = _MemoryPLE(fm, {"embedding_dim": 8, "expert_hidden": [8], "tower_hidden": [4]})
    reader = BatchReader(cols, batch_size=512, shuffle=True, seed=0, rank=0, world_size=1)
    cfg = TrainConfig(epochs=epochs, lr=3e-3, progress=False, device="cpu", patience=5)
    Trainer(cfg, run_dir).fit(model, reader, lambda m: {"auc": 0.5}, resume=resume)
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_memory_is_updated_by_the_trainer_checkpointed_and_resumed_exactly(mail_world, tmp_path):
    fm, parts = mail_world
    cols = {k: v[:4000] for k, v in parts["train"].items()}
    straight = _fit(fm, cols, tmp_path / "a", epochs=2)
    assert int(straight["memory.hits"].sum()) == pytest.approx(2 * 4000 * 0.5, rel=0.1)  # half the rows, 2 epochs
    _fit(fm, cols, tmp_path / "b", epochs=1)
    resumed = _fit(fm, cols, tmp_path / "b", epochs=2, resume=True)
    assert torch.equal(resumed["memory.centroids"], straight["memory.centroids"])
    assert torch.equal(resumed["memory.hits"], straight["memory.hits"])


# ------------------------------------------------------------------------------------- distributed
def _rows() -> torch.Tensor:
    return torch.randn(60, 4, generator=torch.Generator().manual_seed(8))


def _new_memory() -> StreamClusterMemory:
    torch.manual_seed(9)
    return StreamClusterMemory(5, 4, rate=0.2)


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    mem = _new_memory()
    mem.update(_rows()[rank::world])  # each rank sees its own rows
    torch.save({"centroids": mem.centroids, "hits": mem.hits}, f"{tmp}/rank{rank}.pt")
    # the data start and re-seeding draw from every rank's vectors, the same on every rank
    torch.manual_seed(100 + rank)  # a different global stream per rank changes nothing
    started = StreamClusterMemory(5, 4, rate=0.2, init="data", reseed_after=1)
    rows = _rows()
    for step in range(4):
        part = rows[step * 12:(step + 1) * 12]  # 12 rows a step, half per rank: 6 + 6 > 5 at the fill
        started.update(part[rank::world])
    torch.save(started.state_dict(), f"{tmp}/started{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_ranks_hold_the_same_memory(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(a["centroids"], b["centroids"]) and torch.equal(a["hits"], b["hits"])
    single = _new_memory()  # one process over all the rows: the same step
    single.update(_rows())
    assert torch.allclose(a["centroids"], single.centroids, atol=1e-6)
    assert torch.equal(a["hits"], single.hits) and int(a["hits"].sum()) == 60
    assert not torch.allclose(single.centroids, _new_memory().centroids)
    a, b = (torch.load(tmp_path / f"started{r}.pt") for r in (0, 1))
    assert int(a["filled"]) == 5 and int(a["reseeds"]) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
