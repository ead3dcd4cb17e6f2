"""Two gloo processes train one model with DDP: both ranks end with identical weights, and the
reader gives each rank its own half of the data."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from thawrec.data.reader import BatchReader
from thawrec.models.rankers.base_dnn import BaseDNN
from thawrec.config import TrainConfig
from thawrec.train.trainer import Trainer


def _worker(rank: int, world: int, tmp: str) -> None:
    from test_trainer import planted  # noqa: PLC0415 - the test module is on sys.path in the child

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    fm, cols = planted(n=2000)
    reader = BatchReader(cols, batch_size=200, shuffle=True, seed=0, even_shards=True)
    assert reader.rank == rank and reader.world_size == world
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = BaseDNN(fm, {"embedding_dim": 8, "hidden": [16], "dropout": 0.0})
    cfg = TrainConfig(epochs=2, batch_size=200, lr=3e-3, progress=False, device="cpu", patience=5)
    res = Trainer(cfg, f"{tmp}/run").fit(model, reader, lambda m: {"auc": 0.5})
    torch.save({"state": model.state_dict(), "n": len(reader) * 200, "history": res.history},
               f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_processes_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=False)
    b = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k in a["state"]:
        assert torch.allclose(a["state"][k].float(), b["state"][k].float(), atol=1e-6), k
    assert a["n"] == b["n"] == 1000  # each rank saw half of the 2000 rows
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()  # written by rank 0 only
    assert np.isfinite(a["history"][-1]["train_loss"])
