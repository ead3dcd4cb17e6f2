"""Fit and score ranking models on feature columns: what `thawrec train`, every ranking suite and
the tests call, so the seed -> train -> score path exists once.

``train_model`` builds the row reader (sharded per rank under torchrun), wires the validation
metrics (AUC / GAUC / LogLoss, averaged over tasks) into the Trainer and returns the fitted model
with its history; ``score_model`` returns per-task scores in row order, through the model's own
``score_columns`` when it adapts per user at inference (MeLU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.config import TrainConfig
from thawrec.data.reader import BatchReader
from thawrec.eval.metrics import binary_metrics
from thawrec.models.base import RecModel
from thawrec.train import dist as tdist
from thawrec.train.trainer import FitResult, Trainer, predict, resolve_device

__all__ = ["TrainedRun", "train_model", "score_model", "eval_reader"]


def eval_reader(cols: dict[str, np.ndarray], batch_size: int) -> BatchReader:
    """Row batches in order, unsharded: for scoring."""
    return BatchReader(cols, batch_size=batch_size, shuffle=False, rank=0, world_size=1)


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
    label: str | None = None,
) -> TrainedRun:
    """Train with early stopping on a validation metric (``train_cfg.monitor``).

    With several ``tasks`` the monitored ``auc`` / ``gauc`` / ``logloss`` are the means over tasks;
    each task's own values are logged as ``<task>_<metric>``. ``reader`` replaces the shuffled row
    reader (meta-learning baselines train on per-user episodes from an ``EpisodeReader``).
    ``label`` names the model in progress lines.
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

    fit = Trainer(train_cfg, run_dir, label=label or type(model).__name__).fit(model, reader, evaluate, resume=resume)
    return TrainedRun(model, fit)


def score_model(model: RecModel, cols: dict[str, np.ndarray], batch_size: int,
                device: str = "auto") -> dict[str, np.ndarray]:
    """Scores per task for every row of ``cols``, in row order (``score_columns`` for models with
    ``scores_per_user``, row batches otherwise)."""
    dev = resolve_device(device)
    if model.scores_per_user:
        return model.score_columns(cols, batch_size, dev)
    return predict(model, eval_reader(cols, batch_size), dev)
