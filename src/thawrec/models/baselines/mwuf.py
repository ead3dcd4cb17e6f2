"""MWUF (Zhu et al., SIGIR'21, "Learning to Warm Up Cold Item Embeddings ... with Meta Scaling and
Shifting Networks"), turned to users as POSO's Table 2 uses it.

The cold ID embedding is warmed by two meta networks:
``warm = cold ⊙ scale(attributes) + shift(interacted items)``.

- Meta Scaling: the user's attribute embeddings -> a per-dimension scale, ``2 * sigmoid(.)`` so
  an untrained scaler starts at (about) identity;
- Meta Shifting: the mean embedding of the items the user interacted with (the history sequence)
  -> an additive shift, initialised at zero;
- a new user's cold embedding is the mean of the known users' embeddings (MWUF initialises new
  IDs this way), not the untrained "unknown" row.

Training follows the paper's alternation in one step: the base model is updated by the loss with
the cold embeddings, the meta networks by the loss with the warm embeddings only (the trainer's
per-group objectives), so the warm path never changes the base model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.models.baselines.id_embedding import unknown_ids, user_attribute_fields
from thawrec.models.poso import PosoRanker
from thawrec.registry import register


MWUF_OPTIONS: dict[str, Any] = {"history_field": "hist_items", "meta_hidden": 16}


@register("ranker", "mwuf")
class MWUF(RecModel):
    defaults = {**PosoRanker.defaults, **MWUF_OPTIONS}  # its base model's options + its own
    nested_options = ("poso",)

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        cfg = self.cfg
        self.base = PosoRanker(feature_map, {k: v for k, v in cfg.items() if k not in MWUF_OPTIONS})
        self.attrs = user_attribute_fields(feature_map)
        if cfg["history_field"] not in self.base.seq_fields:
            raise ConfigError(f"MWUF's shifting network needs the history sequence '{cfg['history_field']}'. "
                              f"Fix: set history_field to one of {self.base.seq_fields}")
        d, h = self.base.cfg["embedding_dim"], cfg["meta_hidden"]
        self.scaler = nn.Sequential(nn.Linear(len(self.attrs) * d, h), nn.ReLU(), nn.Linear(h, d))
        self.shifter = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d))
        nn.init.zeros_(self.shifter[-1].weight)
        nn.init.zeros_(self.shifter[-1].bias)

    def cold_embedding(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["user_id"]
        table = self.base.embedding.tables[self.base.embedding.table_of["user_id"]].weight
        mean_known = table[2:].detach().mean(0, keepdim=True)  # rows 0/1: padding / unknown
        return torch.where(unknown_ids(ids)[:, None], mean_known, self.base.embedding("user_id", ids))

    def warm_embedding(self, batch: dict[str, torch.Tensor], cold: torch.Tensor) -> torch.Tensor:
        attrs = torch.cat([self.base.embedding(f, batch[f]) for f in self.attrs], dim=1)
        hist = self.base.embedding.pooled(self.cfg["history_field"], batch[self.cfg["history_field"]], mode="mean")
        return cold * 2 * torch.sigmoid(self.scaler(attrs)) + self.shifter(hist)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        cold = self.cold_embedding(batch)
        warm = self.base(batch, overrides={"user_id": self.warm_embedding(batch, cold)})["logits"]
        out: dict[str, Any] = {"logits": warm}
        if self.training:
            out["cold_logits"] = self.base(batch, overrides={"user_id": cold})["logits"]
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = {f"warm_bce_{t}": F.binary_cross_entropy_with_logits(out["logits"][t], batch[t].float())
                 for t in self.tasks}
        if "cold_logits" in out:
            terms.update({f"cold_bce_{t}": F.binary_cross_entropy_with_logits(out["cold_logits"][t], batch[t].float())
                          for t in self.tasks})
        return terms

    def param_groups(self) -> list[dict[str, Any]]:
        """Base model on the cold loss (its usual dense/sparse groups), meta networks on the warm loss."""
        cold = [f"cold_bce_{t}" for t in self.tasks]
        groups = [{**g, "name": f"base_{g['name']}", "loss": cold} for g in self.base.param_groups()]
        meta = list(self.scaler.parameters()) + list(self.shifter.parameters())
        return groups + [{"name": "meta", "params": meta, "optimizer": "adam", "loss": [f"warm_bce_{t}" for t in self.tasks]}]
