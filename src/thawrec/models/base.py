"""The model contracts every thawrec system follows (DESIGN.md, "The model contract").

A model owns no device, optimizer or loop. The Trainer calls ``forward`` and ``compute_loss``,
sums the named loss terms, and steps the optimizers built from ``param_groups``. Every optional
hook is declared here with its default, so a model overrides what it needs and nothing is found by
``hasattr``:

- ``param_groups()``: several optimizers / per-group objectives (MAIL's two, MWUF's alternation);
- ``on_batch_end(batch, out)``: non-gradient state (centroids, memories, FIFO queues, schedules);
- ``aux_loss_terms``: named loss terms besides ``bce_<task>`` that belong to the ranking objective
  (DMR's match loss), so a wrapper (MAIL) routes them to the right optimizer;
- ``scores_per_user`` + ``score_columns(cols, batch_size, device)``: models that adapt per user at
  inference (MeLU) score whole columns themselves instead of row batches;
- ``behaviour_pooling``: how the model reads its behaviour sequence field, ``"sum"`` (only as the
  sum-pooled vector ``FeatureEmbedding.vector`` gives, so an override may be that ``[B, D]`` vector
  itself: BaseDNN) or ``"attention"`` (weighs the items of an ``EmbeddedSequence``: DMR, the POSO
  base model); None when not declared. A wrapper that feeds the field generated behaviour (MAIL)
  scales and shapes what it feeds by it.

Configs: ``defaults`` lists every option a model accepts; an unknown key is a ConfigError naming
it and the valid ones (``BaseDNN(fm, {"hiden": [8]})`` no longer builds the default network).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thawrec.config import resolve_options
from thawrec.data.schema import FeatureMap


class RecModel(nn.Module):
    """Base class of ranking models: binary multi-task CTR-style heads.

    ``forward(batch)`` returns ``{"logits": {task: [B]}, ...}``; ``compute_loss`` returns named terms.
    ``param_groups()`` returns dicts ``{"name", "params", "optimizer": "adam" | "sparse_adam" | "sgd",
    "lr" (optional), "loss": [term names] or None}``; ``loss`` None means the total loss. Groups with
    different ``loss`` lists let one model train parts on different objectives (MAIL's two optimizers).
    """

    defaults: ClassVar[dict[str, Any]] = {"tasks": ["label"]}
    nested_options: ClassVar[tuple[str, ...]] = ()  # options that are dicts merged one level down
    aux_loss_terms: ClassVar[tuple[str, ...]] = ()
    scores_per_user: ClassVar[bool] = False
    behaviour_pooling: ClassVar[str | None] = None  # "sum" | "attention" | None (undeclared)
    registry_name: ClassVar[str | None] = None

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.cfg = resolve_options(type(self).__name__, self.defaults, cfg, nested=self.nested_options)
        self.tasks: list[str] = list(self.cfg.get("tasks", ["label"]))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Binary cross-entropy per task, one named term each (``bce_<task>``)."""
        return {
            f"bce_{t}": F.binary_cross_entropy_with_logits(out["logits"][t], batch[t].float())
            for t in self.tasks
        }

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scores per task for a batch of rows (probabilities for ranking models)."""
        return {t: torch.sigmoid(v) for t, v in self(batch)["logits"].items()}

    def param_groups(self) -> list[dict[str, Any]]:
        """Default: sparse embedding tables with SparseAdam, everything else with Adam."""
        sparse_ids = {
            id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding) and m.sparse
        }
        sparse = [p for p in self.parameters() if id(p) in sparse_ids and p.requires_grad]
        dense = [p for p in self.parameters() if id(p) not in sparse_ids and p.requires_grad]
        groups = []
        if dense:
            groups.append({"name": "dense", "params": dense, "optimizer": "adam", "loss": None})
        if sparse:
            groups.append({"name": "sparse", "params": sparse, "optimizer": "sparse_adam", "loss": None})
        return groups

    def on_batch_end(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        """Hook for non-gradient state (queues, centroids, memories). Default: nothing."""

    def score_columns(self, cols: dict[str, np.ndarray], batch_size: int,
                      device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
        """Scores per task for every row of ``cols`` in row order; used instead of row batches when
        ``scores_per_user`` is True (a model that adapts per user at inference)."""
        raise NotImplementedError(f"{type(self).__name__} scores row batches (scores_per_user is False)")
