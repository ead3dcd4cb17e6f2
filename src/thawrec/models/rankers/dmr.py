"""DMR: Deep Match to Rank (Lyu et al., AAAI 2020), the stronger ranking tower of MAIL's Table 2.

DMR adds two collaborative-filtering style relevance signals to an embedding + MLP ranker:

- **User-to-Item network**: the user is the attention-pooled behaviour, with queries from
  position embeddings only (``a_t = MLP([p_t, e_t, p_t - e_t, p_t * e_t])``, softmax over the real
  items), passed through a PReLU layer: ``u = g(sum_t a_t e_t)``. The target item has its own
  *output* embedding ``v'`` (a separate table), and the relevance is ``r = u . v'``. Because ``r``
  alone cannot learn what ``u`` should be, an auxiliary match task predicts the most recent
  behaviour from the earlier ones: ``u_{T-1}`` (the same attention without the most recent item)
  against ``v'`` of that item and ``aux_negatives`` uniformly sampled items, a sampled softmax
  (``L = L_ctr + aux_weight * L_match``, 0.1 as in the authors' code).
- **Item-to-Item network**: target attention with queries from ``[target item, position]``; the
  attention output and the item-to-item relevance ``r^ = sum_t a_t`` (raw, unnormalised scores).

The MLP input concatenates every field's (sum-pooled) embedding, the target item times the
pooled behaviour, ``r``, ``r^`` and the item-to-item attention output, then BatchNorm and
512-256-128 PReLU layers (the authors' code).

Sequences are stored most recent first, so position 0 is the latest behaviour. An
:class:`EmbeddedSequence` override (MAIL's virtual behaviour) is attended like real items; it
has no item ID, so it never serves as an auxiliary-match target.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.nn.attention import ActivationUnitAttention, masked_softmax
from thawrec.nn.embedding import EmbeddedSequence, FeatureEmbedding
from thawrec.nn.mlp import MLP, PReLULast
from thawrec.registry import register


@register("ranker", "dmr")
class DMR(RecModel):
    behaviour_pooling = "attention"  # attends over the behaviour (plus a sum-pooled product feature)
    aux_loss_terms = ("match",)  # named loss terms besides bce_<task> (a wrapper like MAIL routes them)
    defaults: dict[str, Any] = {
        "embedding_dim": 32,
        "behaviour_field": "hist_items",
        "target_field": "item_id",
        "attn_hidden": [80, 40],
        "hidden": [512, 256, 128],
        "dropout": 0.0,
        "aux_weight": 0.1,
        "aux_negatives": 100,
        "sparse_embeddings": True,
        "tasks": ["label"],
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        d = c["embedding_dim"]
        self.v_field, self.t_field = c["behaviour_field"], c["target_field"]
        for name, kind in ((self.v_field, "sequence"), (self.t_field, "categorical")):
            if name not in feature_map or feature_map[name].kind != kind:
                raise ConfigError(f"DMR needs the {kind} feature '{name}'. Fix: build it (FeatureConfig) or "
                                  f"set {'behaviour_field' if kind == 'sequence' else 'target_field'}")
        self.embedding = FeatureEmbedding(feature_map, d, sparse=c["sparse_embeddings"])
        if self.embedding.table_of[self.v_field] != self.embedding.table_of[self.t_field]:
            raise ConfigError(f"DMR needs '{self.v_field}' to share the item table of '{self.t_field}' "
                              "(a behaviour is a past target item). Fix: build the sequence from that column")
        self.fields = self.embedding.names()
        self.dense_fields = feature_map.names("dense")
        seq_len = feature_map[self.v_field].max_len
        # User-to-Item network
        self.u2i_position = nn.Embedding(seq_len, d)
        self.u2i_query = nn.Sequential(nn.Linear(d, d), PReLULast(d))
        self.u2i_attention = ActivationUnitAttention(d, tuple(c["attn_hidden"]))
        self.u2i_user = nn.Sequential(nn.Linear(d, d), PReLULast(d))
        self.item_output = nn.Embedding(feature_map[self.t_field].vocab_size, d, sparse=c["sparse_embeddings"])
        nn.init.normal_(self.item_output.weight, std=1e-2)
        # Item-to-Item network
        self.i2i_position = nn.Embedding(seq_len, d)
        self.i2i_query = nn.Sequential(nn.Linear(2 * d, d), PReLULast(d))
        self.i2i_attention = ActivationUnitAttention(d, tuple(c["attn_hidden"]))
        in_dim = (len(self.fields) + 2) * d + 2 + sum(f.dim for f in feature_map.features if f.kind == "dense")
        self.input_norm = nn.BatchNorm1d(in_dim)
        self.mlp = MLP(in_dim, list(c["hidden"]), act="prelu", dropout=c["dropout"])
        self.heads = nn.Linear(self.mlp.out_dim, len(self.tasks))

    def user_vector(self, seq: EmbeddedSequence) -> tuple[torch.Tensor, torch.Tensor]:
        """User-to-Item: ``(u_T, u_{T-1})``, from all behaviours and from all but the latest one."""
        L = seq.emb.shape[1]
        q = self.u2i_query(self.u2i_position.weight[:L]).unsqueeze(0)  # [1, L, d]: position-only queries
        _, _, scores = self.u2i_attention(q, seq.emb, seq.mask)
        earlier = seq.mask.clone()
        earlier[:, 0] = False
        u_now = self.u2i_user(torch.einsum("bl,bld->bd", masked_softmax(scores, seq.mask), seq.emb))
        u_before = self.u2i_user(torch.einsum("bl,bld->bd", masked_softmax(scores, earlier), seq.emb))
        return u_now, u_before

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        overrides = overrides or {}
        seq = self.embedding.sequence(self.v_field, batch[self.v_field], overrides).trimmed()
        target = self.embedding.vector(self.t_field, batch[self.t_field], overrides)
        parts = [self.embedding.vector(n, batch[n], overrides) for n in self.fields]
        parts += [batch[n].float().reshape(len(batch[n]), -1) for n in self.dense_fields]
        behaviour_sum = seq.pooled()
        u_now, u_before = self.user_vector(seq)
        r_u2i = (u_now * self.item_output(batch[self.t_field])).sum(-1, keepdim=True)
        L = seq.emb.shape[1]
        pos = self.i2i_position.weight[:L].unsqueeze(0).expand(len(target), -1, -1)
        q = self.i2i_query(torch.cat([target.unsqueeze(1).expand(-1, L, -1), pos], dim=-1))
        i2i_out, _, i2i_scores = self.i2i_attention(q, seq.emb, seq.mask)
        r_i2i = i2i_scores.sum(-1, keepdim=True)
        x = torch.cat(parts + [target * behaviour_sum, r_u2i, r_i2i, i2i_out], dim=1)
        logits = self.heads(self.mlp(self.input_norm(x)))
        out: dict[str, Any] = {"logits": {t: logits[:, i] for i, t in enumerate(self.tasks)}}
        if self.training:
            out["match_loss"] = self._match_loss(batch[self.v_field][:, :L], seq, u_before)
        return out

    def _match_loss(self, ids: torch.Tensor, seq: EmbeddedSequence, u_before: torch.Tensor) -> torch.Tensor | None:
        """Sampled softmax: predict the latest behaviour (position 0) from the earlier ones."""
        latest = ids[:, 0]
        rows = (latest > 0) & seq.mask[:, 1:].any(1) & (seq.mask[:, 0])
        if not bool(rows.any()):
            return None
        u, pos = u_before[rows], latest[rows]
        n_items = self.item_output.num_embeddings
        neg = torch.randint(2, max(n_items, 3), (len(pos), int(self.cfg["aux_negatives"])), device=pos.device)
        cand = torch.cat([pos[:, None], neg], dim=1)  # index 0 is the true next item
        logits = torch.einsum("bd,bkd->bk", u, self.item_output(cand))
        hit = cand == pos[:, None]
        hit[:, 0] = False  # a sampled negative that is the true item is not a negative
        logits = logits.masked_fill(hit, float("-inf"))
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = super().compute_loss(batch, out)
        if out.get("match_loss") is not None:
            terms["match"] = self.cfg["aux_weight"] * out["match_loss"]
        return terms
