"""Pieces every suite shares: loading a world, training one model for one seed, scoring groups."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from thawrec.data.reader import BatchReader
from thawrec.data.schema import Dataset, read_dataset
from thawrec.errors import DataError
from thawrec.eval import metrics
from thawrec.models.base import RecModel
from thawrec.train import dist as tdist
from thawrec.train.trainer import FitResult, TrainConfig, Trainer, predict, resolve_device

log = logging.getLogger(__name__)


def load_world(data: str | Path | None, synth_options: dict[str, Any] | None = None) -> tuple[Dataset, str]:
    """A canonical dataset folder, a RecBole atomic folder (imported on the fly), or None for the
    built-in synthetic world."""
    if data is None:
        from thawrec.data.synthetic import SynthConfig, generate

        ds, _ = generate(SynthConfig(**(synth_options or {})))
        return ds, "synthetic"
    path = Path(data)
    if (path / "interactions.parquet").exists():
        ds = read_dataset(path)
        return ds, ds.meta.get("name") or path.name
    if path.is_dir() and any(path.glob("*.inter")):
        from thawrec.data.sources import load_source

        return load_source("recbole", path), path.name
    raise DataError(
        "not a dataset folder (no interactions.parquet and no RecBole *.inter file)",
        file=str(path),
        fix="import it first with `thawrec data import FORMAT SRC --out DIR`, or pass a RecBole folder",
    )


def eval_reader(cols: dict[str, np.ndarray], batch_size: int) -> BatchReader:
    return BatchReader(cols, batch_size=batch_size, shuffle=False, rank=0, world_size=1)


def binary_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict[str, float]:
    return {
        "auc": metrics.auc(labels, scores),
        "gauc": metrics.gauc(labels, scores, users),
        "logloss": metrics.logloss(labels, scores),
    }


def group_masks(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    new = cols["_is_new"].astype(bool)
    return {"all": np.ones_like(new), "new": new, "regular": ~new}


@dataclass
class TrainedRun:
    model: RecModel
    fit: FitResult


def train_model(
    model: RecModel,
    train_cols: dict[str, np.ndarray],
    valid_cols: dict[str, np.ndarray],
    train_cfg: TrainConfig,
    run_dir: Path | None,
    task: str = "label",
    tasks: list[str] | None = None,
    resume: bool = False,
    reader: Any | None = None,
) -> TrainedRun:
    """Train with early stopping on a validation metric (``train_cfg.monitor``).

    With several ``tasks`` the monitored ``auc`` / ``gauc`` / ``logloss`` are the means over tasks;
    each task's own values are logged as ``<task>_<metric>``. ``reader`` replaces the shuffled row
    reader (meta-learning baselines train on per-user episodes from an ``EpisodeReader``).
    """
    tasks = tasks or [task]
    info = tdist.current()  # under torchrun each rank reads its own, equal-sized shard
    if reader is None:
        reader = BatchReader(train_cols, batch_size=train_cfg.batch_size, shuffle=True, seed=train_cfg.seed,
                             rank=info.rank, world_size=info.world_size, even_shards=info.enabled)

    def evaluate(m: RecModel) -> dict[str, float]:
        preds = score_model(m, valid_cols, train_cfg.eval_batch_size, train_cfg.device)
        per = {t: binary_metrics(valid_cols[t], preds[t], valid_cols["_user"]) for t in tasks}
        out = {k: float(np.nanmean([per[t][k] for t in tasks])) for k in ("auc", "gauc", "logloss")}
        if len(tasks) > 1:
            out.update({f"{t}_{k}": v for t in tasks for k, v in per[t].items()})
        return out

    fit = Trainer(train_cfg, run_dir).fit(model, reader, evaluate, resume=resume)
    return TrainedRun(model, fit)


def score_model(model: RecModel, cols: dict[str, np.ndarray], batch_size: int, device: str = "auto") -> dict[str, np.ndarray]:
    """Probabilities per task for every row of ``cols``, in row order.

    A model that adapts per user at inference (MeLU's local update on a user's earlier rows)
    defines ``score_columns(cols, batch_size, device)`` and is scored through it instead.
    """
    dev = resolve_device(device)
    if hasattr(model, "score_columns"):
        return model.score_columns(cols, batch_size, dev)
    return predict(model, eval_reader(cols, batch_size), dev)


def item_popularity_scores(train_cols: dict[str, np.ndarray], cols: dict[str, np.ndarray], task: str = "label",
                           smoothing: float = 10.0) -> np.ndarray:
    """ItemPop baseline: each item's smoothed click-through rate on the training rows.

    Items never seen in training (cold items) get the global rate.
    """
    items, y = train_cols["_item"], train_cols[task].astype(np.float64)
    n = int(max(items.max(initial=0), cols["_item"].max(initial=0))) + 1
    clicks = np.bincount(items, weights=y, minlength=n)
    views = np.bincount(items, minlength=n)
    prior = y.mean() if len(y) else 0.5
    ctr = (clicks + smoothing * prior) / (views + smoothing)
    return ctr[cols["_item"]]


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


Callback = Callable[[str], None]
