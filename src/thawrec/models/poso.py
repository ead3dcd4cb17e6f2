"""POSO (Dai et al., Kuaishou): the production-style base model of Sec. 3 / Fig. 2 and its
personalized cold-start modules (Sec. 4).

Base model: embeddings -> one target MHA per sequential feature (Q from the concatenated
non-sequential embeddings, K and V from the sequence) -> MMoE with one gate per task -> a tower
per task. POSO swaps in personalized versions, each selectable by config:

- ``poso.mlp``: the towers become POSO(MLP) (Eq. 11);
- ``poso.mha``: a Table 7 setting (``gated_k`` is POSO(MHA), Eq. 14);
- ``poso.mmoe``: every expert masked by its personalized gate (Eq. 17);
- all three = POSO (All Combined).

The personalization code (``pc``, Table 6): ``avc`` (bucketized accumulated view count, default),
``is_new`` (new-user indicator), ``user_id`` (user ID embedding), ``user_item_id`` (user + item ID
embeddings), ``all`` (the whole activation: degrades to a plain MoE gate), or ``item_age`` for item
cold start (Sec. 4.5, Table 3).

``value_mix_scale`` (``c_over_n`` default, ``c``): how POSO(MHA) weights its N value sets, see
:class:`~thawrec.nn.attention.TargetAttention`. ``fast_path`` (default True) computes the same
model faster: with a bucketized code (``avc``, ``is_new``, ``item_age``) every personalized gate of
the model is evaluated once per bucket, in one pass, and gathered per row
(:class:`~thawrec.nn.gating.BucketCode`); POSO(MHA) gates the query instead of the keys and
POSO(MMoE) masks the task weights instead of the expert outputs. ``fast_path: False`` is the
literal computation (same parameters, same outputs up to float rounding), kept as a reference
and for the throughput benchmark's old path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.nn.attention import TargetAttention
from thawrec.nn.embedding import EmbeddedSequence, FeatureEmbedding
from thawrec.nn.gating import BucketCode, PersonalizedGate, PosoMLP, code_rows
from thawrec.nn.mlp import MLP
from thawrec.nn.moe import MMoE
from thawrec.registry import register

PC_CHOICES = ("avc", "is_new", "user_id", "user_item_id", "all", "item_age")
BUCKET_PCS = ("avc", "is_new", "item_age")  # small-vocabulary codes: gates are looked up per bucket


@register("ranker", "poso")
class PosoRanker(RecModel):
    behaviour_pooling = "attention"  # target attention over each sequence field
    nested_options = ("poso",)
    defaults: dict[str, Any] = {
        "embedding_dim": 16,
        "heads": 4,
        "head_dim": 8,
        "n_personal": 4,
        "n_experts": 4,
        "expert_hidden": [128, 64],
        "tower_hidden": [32],
        "dropout": 0.0,
        "pc": "avc",
        "pc_dim": 8,
        "gate_scale": 2.0,
        "value_mix_scale": "c_over_n",
        "fast_path": True,
        "poso": {"mlp": False, "mha": "none", "mmoe": False},
        "sparse_embeddings": True,
        "tasks": ["label"],
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        poso = c["poso"]
        d = c["embedding_dim"]
        if c["pc"] not in PC_CHOICES:
            raise ConfigError(f"unknown personalization code '{c['pc']}'; choose one of {PC_CHOICES}")
        self.embedding = FeatureEmbedding(feature_map, d, sparse=c["sparse_embeddings"])
        self.seq_fields = [n for n in self.embedding.names("sequence")]
        self.flat_fields = [n for n in self.embedding.names() if n not in self.seq_fields]
        q_dim = len(self.flat_fields) * d
        personalized = any((poso["mlp"], poso["mmoe"], poso["mha"] != "none"))
        self.pc_dim = self._pc_dim(q_dim) if personalized else 0
        if personalized and c["pc"] in BUCKET_PCS:
            n_codes = 2 if c["pc"] == "is_new" else self._vocab(c["pc"])
            self.pc_embedding = nn.Embedding(n_codes, c["pc_dim"])  # dense: a handful of rows
        mha_mode = poso["mha"]
        self.attn = nn.ModuleDict({
            n: TargetAttention(q_dim, d, heads=c["heads"], head_dim=c["head_dim"], personalization=mha_mode,
                               n_personal=c["n_personal"], pc_dim=self.pc_dim, scale=c["gate_scale"],
                               value_mix_scale=c["value_mix_scale"], fast=c["fast_path"])
            for n in self.seq_fields
        })
        x_dim = q_dim + sum(a.out_dim for a in self.attn.values())
        if c["pc"] == "all" and personalized:
            self.pc_dim = x_dim  # the gate sees every feature: a plain MoE (Table 6, first row)
        self.mmoe = MMoE(x_dim, len(self.tasks), n_experts=c["n_experts"], expert_hidden=c["expert_hidden"],
                         dropout=c["dropout"], pc_dim=self.pc_dim if poso["mmoe"] else 0, scale=c["gate_scale"],
                         fast=c["fast_path"])
        if poso["mlp"]:
            self.towers = nn.ModuleList(PosoMLP(self.mmoe.out_dim, c["tower_hidden"], self.pc_dim,
                                                scale=c["gate_scale"]) for _ in self.tasks)
        else:
            self.towers = nn.ModuleList(MLP(self.mmoe.out_dim, c["tower_hidden"]) for _ in self.tasks)
        self.heads = nn.ModuleList(nn.Linear(c["tower_hidden"][-1], 1) for _ in self.tasks)

    # ------------------------------------------------------------------------------------------
    def _vocab(self, name: str) -> int:
        if name not in self.feature_map:
            raise ConfigError(f"personalization code '{name}' needs the feature '{name}' in the feature map. "
                              "Fix: build features with it (FeatureConfig) or choose another pc")
        return self.feature_map[name].vocab_size

    def _pc_dim(self, q_dim: int) -> int:
        c = self.cfg
        d = c["embedding_dim"]
        return {"avc": c["pc_dim"], "is_new": c["pc_dim"], "item_age": c["pc_dim"], "user_id": d,
                "user_item_id": 2 * d, "all": q_dim}[c["pc"]]

    def personalization_code(self, batch: dict[str, torch.Tensor],
                             flat: torch.Tensor) -> torch.Tensor | BucketCode:
        """The code the personalized gates see: ``[B, pc_dim]``, or for a bucketized code on the
        fast path a :class:`BucketCode` that has already evaluated every gate of the model on the
        code's table (one pass, one gather)."""
        pc = self.cfg["pc"]
        if pc in BUCKET_PCS:
            index = batch["_is_new"].long() if pc == "is_new" else batch[pc]
            if not self.cfg["fast_path"]:
                return self.pc_embedding(index)
            gates = [m for m in self.modules() if isinstance(m, PersonalizedGate)]
            return BucketCode(self.pc_embedding.weight, index, gates)
        if pc == "user_id":
            return self.embedding("user_id", batch["user_id"])
        if pc == "user_item_id":
            return torch.cat([self.embedding("user_id", batch["user_id"]),
                              self.embedding("item_id", batch["item_id"])], dim=1)
        return flat

    def encode(self, batch: dict[str, torch.Tensor],
               overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor | BucketCode | None]:
        """Embeddings + target attention -> (the concatenated activation ``x``, the code ``pc``).

        ``pc`` is ``[B, pc_dim]`` or a :class:`BucketCode` (bucketized code, fast path); ``decide``
        takes either, :func:`~thawrec.nn.gating.code_rows` turns it into the tensor.

        ``overrides`` replaces a field's pooled embedding ``[B, D]`` (Meta-Embedding and MWUF swap
        in a generated or warmed user-ID embedding this way) or a sequence field's embedded items
        (:class:`EmbeddedSequence`: MAIL's virtual behaviour when this model is its ranking tower).
        """
        overrides = overrides or {}
        flat = torch.cat([self.embedding.vector(n, batch[n], overrides) for n in self.flat_fields], dim=1)
        pc = self.personalization_code(batch, flat) if self.pc_dim else None
        parts = [flat]
        for n, att in self.attn.items():
            seq = self.embedding.sequence(n, batch[n], overrides)
            parts.append(att(flat, seq.emb, seq.mask, pc))
        x = torch.cat(parts, dim=1)
        if self.cfg["pc"] == "all" and pc is not None:
            pc = x
        return x, pc

    def decide(self, x: torch.Tensor, pc: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The decision layers (MMoE, towers, heads): activation -> logits per task. MeLU adapts
        exactly these per user."""
        task_inputs = self.mmoe(x, pc)
        logits = {}
        for t, h, tower, head in zip(self.tasks, task_inputs, self.towers, self.heads):
            z = tower(h, pc) if isinstance(tower, PosoMLP) else tower(h)
            logits[t] = head(z).squeeze(-1)
        return logits

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        x, pc = self.encode(batch, overrides)
        return {"logits": self.decide(x, pc), "pc": code_rows(pc)}
