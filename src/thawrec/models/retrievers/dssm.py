"""DSSM: the Deep Structured Semantic Model (Huang et al., CIKM 2013) as two-tower recommenders use it.

The original maps a query and a document through separate MLPs into one space and scores them by
cosine similarity under a softmax over a few candidate documents. In recommendation the query is
the user (id, attributes, context, pooled behaviour history) and the document is the item (id,
category, year, pooled tags); here both towers end in an L2 normalisation, so the inner product
the item index ranks by *is* the cosine of the paper, and the candidate softmax is the in-batch
softmax of :class:`~thawrec.models.retrieval.RetrievalModel` with a temperature.

``use_item_id: false`` drops the item id from the item tower: items are then represented by their
content only, which is what lets a brand-new item (an unknown id) be retrieved at all.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.checks import positive_int
from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.retrieval import RetrievalModel
from thawrec.nn.embedding import FeatureEmbedding
from thawrec.nn.mlp import MLP
from thawrec.registry import register

__all__ = ["DSSM"]

POOLING = ("sum", "mean")


class _Tower(nn.Module):
    """Pool a fixed list of fields from the shared embedding tables (held by the model, since
    ``hist_items`` on the user side reuses ``item_id``'s table), concatenate them with the dense
    fields, MLP, L2-normalise."""

    def __init__(self, fields: list[str], dense: list[str], in_dim: int, hidden: list[int], out_dim: int,
                 act: str, dropout: float, pooling: str) -> None:
        super().__init__()
        self.fields, self.dense, self.pooling = fields, dense, pooling
        self.mlp = MLP(in_dim, hidden, out_dim=out_dim, act=act, dropout=dropout)

    def forward(self, embedding: FeatureEmbedding, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [embedding.pooled(n, batch[n], self.pooling) for n in self.fields]
        parts += [batch[n].float().reshape(len(batch[n]), -1) for n in self.dense]
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=-1)


def _hidden(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"DSSM: {name} must be a list of layer widths, got {value!r}. Fix: e.g. {name}: [128, 64]")
    return [positive_int(h, name, example=64) for h in value]


@register("retriever", "dssm")
class DSSM(RetrievalModel):
    """Two MLP towers over pooled field embeddings, cosine scores (L2-normalised outputs)."""

    defaults: ClassVar[dict[str, Any]] = {
        **RetrievalModel.defaults,
        "embedding_dim": 32,
        "user_hidden": [128, 64],
        "item_hidden": [128, 64],
        "out_dim": 32,
        "temperature": 0.05,
        "dropout": 0.0,
        "activation": "relu",
        "pooling": "mean",  # of sequences and multi-hot fields: a long history must not swamp the rest
        "sparse_embeddings": True,
        "use_item_id": True,
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        if c["pooling"] not in POOLING:
            raise ConfigError(f"DSSM: unknown pooling {c['pooling']!r}. Fix: use one of {POOLING}")
        dropout = c["dropout"]
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"DSSM: dropout must be in [0, 1), got {dropout!r}. Fix: e.g. dropout: 0.1")
        dim = positive_int(c["embedding_dim"], "embedding_dim", example=32)
        out_dim = positive_int(c["out_dim"], "out_dim", example=32)
        self.embedding = FeatureEmbedding(feature_map, dim, sparse=bool(c["sparse_embeddings"]))
        embedded = set(self.embedding.names())
        item_side = [f for f in self.item_fields() if c["use_item_id"] or f != "item_id"]
        towers = {}
        for side, names, hidden in (("user", self.user_fields(), c["user_hidden"]),
                                    ("item", item_side, c["item_hidden"])):
            fields = [n for n in names if n in embedded]
            dense = [n for n in names if feature_map[n].kind == "dense"]
            if not fields and not dense:
                raise ConfigError(f"DSSM: the {side} tower has no input feature (feature map: "
                                  f"{feature_map.names()}). Fix: add {side}-side features to the FeatureConfig"
                                  + (" or set use_item_id: true" if side == "item" else ""))
            dense_dim = sum(max(int(feature_map[n].dim), 1) for n in dense)
            towers[side] = _Tower(fields, dense, len(fields) * dim + dense_dim, _hidden(f"{side}_hidden", hidden),
                                  out_dim, c["activation"], float(dropout), c["pooling"])
        self.user_tower, self.item_tower = towers["user"], towers["item"]

    def user_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_tower(self.embedding, batch)

    def item_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_tower(self.embedding, batch)
