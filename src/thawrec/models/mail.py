"""MAIL (model-agnostic zero-shot learning for new users): a zero-shot tower that generates a
new user's behaviour from attributes, co-trained with a ranking tower (Sec. 3, Algorithm 1).

Zero-shot tower, on rows whose behaviour is present (flag = false, Eq. 9):
- ``h_a`` / ``h_v``: additive attention pooling of the attribute embeddings and of the behaviour
  embeddings (Eq. 1-2);
- ``p = E1(h_a)``, ``q = E2(h_v)``: residual encoders (Eq. 15); ``D1`` / ``D2`` residual decoders
  (Eq. 16) back to the attribute and behaviour vectors the ranking tower consumes (the sum-pooled
  ``z_a``, ``z_v`` of Eq. 11, ``d`` wide, so a generated behaviour can stand in for ``z_v``);
- ``L_a = |D1(p) - a|^2 + |D2(p) - v|^2`` (Eq. 3), ``L_v`` the same from ``q`` (Eq. 4), ``L_d`` the
  Gaussian MMD between the batch's ``p`` and ``q`` (Eq. 5-6, sigma = 1); ``L_zst = L_a + L_v + L_d``.
Rows with no behaviour (flag = true) get ``v_o = D2(E1(h_a))`` (Eq. 8) as their behaviour input
(Eq. 10).

Two optimizers through the trainer's ``param_groups`` (Algorithm 1): G_A steps the zero-shot
tower on ``L_zst`` only; G_B steps the ranking tower and the shared embedding table on ``L_rt``
only. The zero-shot tower reads the embeddings but never changes them.

Ablations (Table 3, ``zst``): ``none`` (a linear map from attributes to behaviour, no zero-shot
loss: trained by the ranking loss), ``single`` (Eq. 3), ``dual`` (Eq. 3 + 4), ``base`` (Eq. 7).
Baseline ``llae`` (Table 2's LLAE, Li et al. 2019): a low-rank (``llae_rank`` = 30) linear
autoencoder ``v = W a`` with tied decoder ``a = W^T v``, loss ``|W a - v|^2 + |W^T v - a|^2``, by its
own optimizer, feeding the ranking tower (EmbLR in the paper: a ranker with no hidden layers).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.models.baselines.id_embedding import user_attribute_fields
from thawrec.models.rankers.base_dnn import BaseDNN
from thawrec.nn.autoencoders import ResidualDecoder, ResidualEncoder
from thawrec.nn.losses import gaussian_mmd
from thawrec.nn.pooling import AdditiveAttentionPooling

ZST_VARIANTS = ("none", "single", "dual", "base", "llae")


class MAIL(RecModel):
    defaults: dict[str, Any] = {
        "zst": "base",
        "behaviour_field": "hist_items",
        "attn_dim": 32,
        "encoder": [1024, 512],
        "hidden_dim": 512,
        "decoder": [512, 1024],
        "zst_dropout": 0.5,
        "mmd_sigma": 1.0,
        "llae_rank": 30,
        "ranker": {},
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        cfg = {**self.defaults, **(cfg or {})}
        if cfg["zst"] not in ZST_VARIANTS:
            raise ConfigError(f"unknown zero-shot variant '{cfg['zst']}'. Fix: choose one of {ZST_VARIANTS}")
        super().__init__(feature_map, cfg)
        self.ranker = BaseDNN(feature_map, {"tasks": self.tasks, **cfg["ranker"]})
        self.tasks = self.ranker.tasks
        self.v_field = cfg["behaviour_field"]
        if self.v_field not in self.ranker.fields or feature_map[self.v_field].kind != "sequence":
            raise ConfigError(f"MAIL needs the behaviour sequence '{self.v_field}' among the features. "
                              "Fix: build it (FeatureConfig.sequences) or set behaviour_field")
        self.a_fields = user_attribute_fields(feature_map)
        d = self.ranker.cfg["embedding_dim"]
        if cfg["zst"] == "none":
            self.linear_map = nn.Linear(len(self.a_fields) * d, d)
            nn.init.xavier_uniform_(self.linear_map.weight)
            return
        if cfg["zst"] == "llae":
            self.llae_in = nn.Linear(len(self.a_fields) * d, cfg["llae_rank"], bias=False)  # W = out @ in
            self.llae_out = nn.Linear(cfg["llae_rank"], d, bias=False)
            for m in (self.llae_in, self.llae_out):
                nn.init.xavier_uniform_(m.weight)
            return
        self.pool_a = AdditiveAttentionPooling(d, cfg["attn_dim"])
        self.pool_v = AdditiveAttentionPooling(d, cfg["attn_dim"])
        enc = dict(hidden=tuple(cfg["encoder"]), out_dim=cfg["hidden_dim"], dropout=cfg["zst_dropout"])
        self.E1, self.E2 = ResidualEncoder(d, **enc), ResidualEncoder(d, **enc)
        dec = dict(hidden=tuple(cfg["decoder"]), dropout=cfg["zst_dropout"])
        self.D1, self.D2 = ResidualDecoder(cfg["hidden_dim"], d, **dec), ResidualDecoder(cfg["hidden_dim"], d, **dec)

    # ------------------------------------------------------------------ the zero-shot tower
    def zero_shot_modules(self) -> list[nn.Module]:
        if self.cfg["zst"] == "none":
            return []
        if self.cfg["zst"] == "llae":
            return [self.llae_in, self.llae_out]
        return [self.pool_a, self.pool_v, self.E1, self.E2, self.D1, self.D2]

    def _attributes(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.ranker.embedding(f, batch[f]) for f in self.a_fields], dim=1)  # [B, n_a, d]

    def virtual_behaviour(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 8: ``v_o = D2(E1(h_a))`` from the attributes alone, ``[B, d]``."""
        a = self._attributes(batch)
        if self.cfg["zst"] == "none":
            return self.linear_map(a.flatten(1))
        if self.cfg["zst"] == "llae":
            return self.llae_out(self.llae_in(a.flatten(1)))
        return self.D2(self.E1(self.pool_a(a)))

    def zero_shot_losses(self, batch: dict[str, torch.Tensor], old: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_a``, ``L_v``, ``L_d`` on the rows with behaviour (Eq. 3-7), per the ablation."""
        zst = self.cfg["zst"]
        if zst == "none" or int(old.sum()) < 2:
            return {}
        rows = {k: v[old] for k, v in batch.items() if k in self.a_fields or k == self.v_field}
        a_emb = self._attributes(rows)
        ids = rows[self.v_field]
        v_emb = self.ranker.embedding(self.v_field, ids)
        a_target, v_target = a_emb.sum(1), v_emb.sum(1)  # what the ranking tower consumes (Eq. 11)
        if zst == "llae":  # tied weights: decode with W^T = in^T @ out^T
            a_flat = a_emb.flatten(1)
            a_back = (v_target @ self.llae_out.weight) @ self.llae_in.weight
            return {"zst_llae": _sq(self.llae_out(self.llae_in(a_flat)), v_target) + _sq(a_back, a_flat)}
        p = self.E1(self.pool_a(a_emb))
        terms = {"zst_a": _sq(self.D1(p), a_target) + _sq(self.D2(p), v_target)}
        if zst in ("dual", "base"):
            q = self.E2(self.pool_v(v_emb, ids > 0))
            terms["zst_v"] = _sq(self.D1(q), a_target) + _sq(self.D2(q), v_target)
            if zst == "base":
                terms["zst_mmd"] = gaussian_mmd(p, q, self.cfg["mmd_sigma"])
        return terms

    # ------------------------------------------------------------------ both towers
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        new = ~(batch[self.v_field] > 0).any(dim=1)  # Eq. 9: flag = true when v is empty
        z_v = self.ranker.embedding.pooled(self.v_field, batch[self.v_field])
        if bool(new.any()):
            z_v = torch.where(new[:, None], self.virtual_behaviour(batch), z_v)  # Eq. 10
        out = self.ranker(batch, overrides={self.v_field: z_v})
        out["flag_new"] = new
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = {f"rt_bce_{t}": F.binary_cross_entropy_with_logits(out["logits"][t], batch[t].float())
                 for t in self.tasks}
        if self.training:
            terms.update(self.zero_shot_losses(batch, ~out["flag_new"]))
        return terms

    def param_groups(self) -> list[dict[str, Any]]:
        """G_B: ranking tower + embeddings (+ MAIL-None's linear map) on L_rt; G_A: zero-shot tower on L_zst."""
        rt = [f"rt_bce_{t}" for t in self.tasks]
        groups = [{**g, "name": f"rank_{g['name']}", "loss": rt} for g in self.ranker.param_groups()]
        if self.cfg["zst"] == "none":
            groups.append({"name": "rank_linear_map", "params": list(self.linear_map.parameters()),
                           "optimizer": "adam", "loss": rt})
            return groups
        zst = [p for m in self.zero_shot_modules() for p in m.parameters()]
        names = {"single": ["zst_a"], "dual": ["zst_a", "zst_v"], "base": ["zst_a", "zst_v", "zst_mmd"],
                 "llae": ["zst_llae"]}
        return groups + [{"name": "zero_shot", "params": zst, "optimizer": "adam",
                          "loss": names[self.cfg["zst"]]}]


def _sq(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared L2 error per row, averaged over the batch (Eq. 3-4's ||.||_2^2)."""
    return (pred - target).pow(2).sum(-1).mean()
