"""BaseDNN: embeddings + sum pooling of every field + MLP (MAIL Eq. 11-13; the spine's ranker).

Every categorical field is embedded, every sequence / multi-hot field is sum-pooled, the results
are concatenated and fed to Dropout-Dense-BN-LeakyReLU layers (512-256 by default) and a logit
head per task.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.models.base import RecModel
from thawrec.nn.embedding import EmbeddedSequence, FeatureEmbedding
from thawrec.nn.mlp import MLP
from thawrec.registry import register


@register("ranker", "base_dnn")
class BaseDNN(RecModel):
    behaviour_pooling = "sum"  # sequence fields are sum-pooled (Eq. 11)
    defaults: dict[str, Any] = {
        "embedding_dim": 32,
        "hidden": [512, 256],
        "dropout": 0.5,
        "activation": "leaky_relu",
        "batch_norm": True,
        "sparse_embeddings": True,
        "tasks": ["label"],
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        self.embedding = FeatureEmbedding(feature_map, c["embedding_dim"], sparse=c["sparse_embeddings"])
        self.fields = self.embedding.names()
        in_dim = len(self.fields) * c["embedding_dim"] + sum(
            f.dim for f in feature_map.features if f.kind == "dense"
        )
        self.dense_fields = feature_map.names("dense")
        self.mlp = MLP(in_dim, list(c["hidden"]), act=c["activation"], dropout=c["dropout"],
                       batch_norm=c["batch_norm"], dropout_first=True)
        self.heads = nn.Linear(self.mlp.out_dim, len(self.tasks))
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def represent(self, batch: dict[str, torch.Tensor],
                  overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> torch.Tensor:
        """Concatenated field vectors ``[B, F*D (+ dense)]`` (the input of the MLP). ``overrides``
        replaces a field's pooled vector ``[B, D]`` or a sequence field's items
        (:class:`EmbeddedSequence`, sum-pooled here): MAIL feeds new users' generated behaviour
        this way."""
        overrides = overrides or {}
        parts = [self.embedding.vector(n, batch[n], overrides) for n in self.fields]
        parts += [batch[n].float().reshape(len(batch[n]), -1) for n in self.dense_fields]
        return torch.cat(parts, dim=1)

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        logits = self.heads(self.mlp(self.represent(batch, overrides)))
        return {"logits": {t: logits[:, i] for i, t in enumerate(self.tasks)}}
