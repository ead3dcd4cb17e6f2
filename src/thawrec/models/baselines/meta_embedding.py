"""Meta-Embedding (Pan et al., SIGIR'19, "Warm Up Cold-start Advertisements"), for new users.

A generator maps a user's other features (attribute embeddings of the trained base model, not
updated) to an initial user-ID embedding. It is meta-trained on training users as if each were
new, with two mini-batches of that user's rows per episode:

- cold-start phase: loss ``l_a`` of batch *a* with the generated embedding ``phi``;
- warm-up phase: one gradient step on the embedding, ``phi' = phi - warm_lr * d l_a / d phi``,
  then the loss ``l_b`` of batch *b* with ``phi'``;
- ``L = alpha * l_a + (1 - alpha) * l_b`` with ``alpha = 0.1`` (the paper's default), and only the
  generator's parameters are updated (the base model is frozen).

At inference a user whose ID was never seen in training (index "unknown") gets ``phi`` instead
of the untrained unknown-ID row; known users keep their learned embedding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.reader import episode_width
from thawrec.models.base import RecModel
from thawrec.models.baselines.id_embedding import unknown_ids, user_attribute_fields
from thawrec.models.poso import PosoRanker


class MetaEmbedding(RecModel):
    defaults: dict[str, Any] = {"alpha": 0.1, "warm_lr": 0.1, "hidden": 0}

    def __init__(self, base: PosoRanker, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(base.feature_map, {**self.defaults, "tasks": base.tasks, **(cfg or {})})
        self.base = base.requires_grad_(False)  # a trained base model; never updated here
        self.attrs = user_attribute_fields(base.feature_map)
        d = base.cfg["embedding_dim"]
        n_in = len(self.attrs) * d
        hidden = int(self.cfg["hidden"])
        layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, d)] if hidden \
            else [nn.Linear(n_in, d)]
        self.generator = nn.Sequential(*layers, nn.Tanh())
        # Generated embeddings live on the scale of the learned ones (tanh alone spans [-1, 1]).
        table = base.embedding.tables[base.embedding.table_of["user_id"]].weight
        self.register_buffer("scale", table[2:].detach().abs().max().clamp(min=1e-3).reshape(1))

    def generate(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]`` user-ID embedding from the user's attribute embeddings (no gradient into them)."""
        with torch.no_grad():
            attrs = torch.cat([self.base.embedding(f, batch[f]) for f in self.attrs], dim=1)
        return self.scale * self.generator(attrs)

    def _with(self, batch: dict[str, torch.Tensor], user_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.base(batch, overrides={"user_id": user_emb})["logits"]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        if "_is_query" in batch:
            return self._episode(batch)
        own = self.base.embedding("user_id", batch["user_id"])
        new = unknown_ids(batch["user_id"])[:, None]
        return {"logits": self._with(batch, torch.where(new, self.generate(batch), own))}

    def _episode(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Cold-start loss on the support rows (batch a), warm-up step, loss on the query rows (b)."""
        mask, query = batch["_mask"], batch["_is_query"]
        width = episode_width(query)
        U = mask.numel() // width
        first_rows = {k: v.view(U, width, *v.shape[1:])[:, 0] for k, v in batch.items() if k in self.attrs}
        phi = self.generate(first_rows)  # one embedding per user: [U, D]
        w_a, w_b = mask * (~query).float(), mask * query.float()
        logits_a = self._with(batch, _per_row(phi, width))
        l_a = self._user_bce(batch, logits_a, w_a, U)  # [U]: each user's own cold-start loss
        g = torch.autograd.grad(l_a.sum(), phi, create_graph=self.training)[0]  # row u = d l_a[u] / d phi[u]
        phi_warm = phi - self.cfg["warm_lr"] * g
        l_b = self._user_bce(batch, self._with(batch, _per_row(phi_warm, width)), w_b, U)
        return {"logits": logits_a, "cold_loss": l_a.mean(), "warm_loss": l_b.mean(), "phi_warm": phi_warm}

    def _user_bce(self, batch: dict[str, torch.Tensor], logits: dict[str, torch.Tensor], w: torch.Tensor,
                  n_users: int) -> torch.Tensor:
        """Mean BCE over each user's weighted rows and the tasks: ``[U]``."""
        per_row = sum(F.binary_cross_entropy_with_logits(logits[t], batch[t].float(), reduction="none")
                      for t in self.tasks) / len(self.tasks)
        w = w.view(n_users, -1)
        return (per_row.view(n_users, -1) * w).sum(1) / w.sum(1).clamp(min=1.0)

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        if "cold_loss" not in out:
            return super().compute_loss(batch, out)
        a = self.cfg["alpha"]
        return {"cold_start": a * out["cold_loss"], "warm_up": (1 - a) * out["warm_loss"]}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "generator", "params": list(self.generator.parameters()), "optimizer": "adam", "loss": None}]


def _per_row(per_user: torch.Tensor, width: int) -> torch.Tensor:
    """``[U, D]`` -> ``[U * width, D]``: each user's vector on each of its episode rows."""
    return per_user.repeat_interleave(width, dim=0)
