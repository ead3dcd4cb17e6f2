"""The one training loop of every deep clustering method (DAUC, DEC, IDEC, DCCAE, COMPLETER).

Users are the mini-batch unit: the views stay CSR until a batch densifies its rows. Adam, a seeded
shuffle per epoch, and after every epoch a caller-given validation score of the representations
(DAUC's App. A.3 picks the epoch with the best validation recommendation quality); the best
epoch's weights are restored at the end.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from thawrec import progress
from thawrec.errors import ConfigError
from thawrec.models.clustering import DeepClusterer, UserViews, embed

log = logging.getLogger(__name__)

__all__ = ["ClusterFit", "fit_clusterer"]


@dataclass
class ClusterFit:
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float | None


def fit_clusterer(
    model: DeepClusterer,
    views: UserViews,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-4,
    seed: int = 0,
    validate: Callable[[np.ndarray], float] | None = None,
    progress_bar: bool = False,
    label: str = "clusterer",
) -> ClusterFit:
    """Train ``model`` on mini-batches of users (shuffled per epoch, seeded) with Adam.

    ``validate(representations) -> score`` (higher is better), called after every epoch; the
    weights of the best epoch are restored at the end. Without it the last epoch is kept.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs, batch_size and lr must be positive (got {epochs}, {batch_size}, {lr}). "
                          "Fix: pass positive values")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    n_batches = -(-views.n_users // batch_size)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.on_epoch_start(epoch, views)
        model.train()
        sums: dict[str, float] = {}
        n = 0
        order = rng.permutation(views.n_users)
        with progress.bar(progress_bar, n_batches, f"{label} epoch {epoch + 1}/{epochs}") as advance:
            for s in range(0, len(order), batch_size):
                terms = model.loss(views.batch(order[s:s + batch_size]), epoch)
                advance()
                if not terms:
                    continue
                total = sum(terms.values())
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                n += 1
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(n, 1) for k, v in sums.items()}}
        if validate is not None:
            score = float(validate(embed(model, views)))
            row["valid_score"] = score
            if best is None or score > best[0]:
                best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 5) for k, v in row.items() if k != "epoch"})
        progress.note("%s epoch %d/%d: %s (%.1f s)", label, epoch + 1, epochs,
                      ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"), time.perf_counter() - t0)
    if best is not None:
        model.load_state_dict(best[2])
        return ClusterFit(history, best[1], best[0])
    return ClusterFit(history, epochs, None)
