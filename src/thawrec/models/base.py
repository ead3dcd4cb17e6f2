"""The model contract every thawrec system follows (DESIGN.md, "The model contract").

A model owns no device, optimizer or loop. The Trainer calls ``forward`` and ``compute_loss``,
sums the named loss terms, and steps the optimizers built from ``param_groups``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.schema import FeatureMap


class RecModel(nn.Module):
    """Base class: binary multi-task CTR-style models.

    ``forward(batch)`` returns ``{"logits": {task: [B]}, ...}``; ``compute_loss`` returns named terms.
    ``param_groups()`` returns dicts ``{"name", "params", "optimizer": "adam" | "sparse_adam" | "sgd",
    "lr" (optional), "loss": [term names] or None}``; ``loss`` None means the total loss. Groups with
    different ``loss`` lists let one model train parts on different objectives (MAIL's two optimizers).
    """

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.feature_map = feature_map
        self.cfg = dict(cfg or {})
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
