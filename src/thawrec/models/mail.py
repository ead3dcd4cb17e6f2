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

The ranking tower is any registered ranker that reads the behaviour field (``tower``: ``base_dnn``,
Eq. 11-13, the default; ``dmr``, MAIL-DMR; ``poso``, the POSO base model; ...). It must keep its
embeddings in ``.embedding`` and accept ``overrides``; new users' generated behaviour reaches it as
an :class:`EmbeddedSequence` holding one virtual item at the most recent position, so a tower that
sum-pools the field sees exactly ``v_o`` (Eq. 10) and one that attends over it sees one item.
``behaviour_target`` is what the decoders reconstruct: ``sum`` (Eq. 11's sum pooling, default) or
``mean`` (the scale of one item, for attention towers).

Ablations (Table 3, ``zst``): ``none`` (a linear map from attributes to behaviour, no zero-shot
loss: trained by the ranking loss), ``single`` (Eq. 3), ``dual`` (Eq. 3 + 4), ``base`` (Eq. 7).
Baseline ``llae`` (Table 2's LLAE, Li et al. 2019): a low-rank (``llae_rank`` = 30) linear
autoencoder ``v = W a`` with tied decoder ``a = W^T v``, loss ``|W a - v|^2 + |W^T v - a|^2``, by its
own optimizer, feeding the ranking tower (EmbLR in the paper: a ranker with no hidden layers).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.models.baselines.id_embedding import user_attribute_fields
from thawrec.nn.autoencoders import ResidualDecoder, ResidualEncoder
from thawrec.nn.embedding import FeatureEmbedding
from thawrec.nn.losses import gaussian_mmd
from thawrec.nn.pooling import AdditiveAttentionPooling
from thawrec.registry import build_model, register

ZST_VARIANTS = ("none", "single", "dual", "base", "llae")


@register("ranker", "mail")
class MAIL(RecModel):
    defaults: dict[str, Any] = {
        "zst": "base",
        "tower": "base_dnn",
        "behaviour_field": "hist_items",
        "behaviour_target": "sum",
        "attn_dim": 32,
        "encoder": [1024, 512],
        "hidden_dim": 512,
        "decoder": [512, 1024],
        "zst_dropout": 0.5,
        "mmd_sigma": 1.0,
        "llae_rank": 30,
        "ranker": {},
        "tasks": ["label"],
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        cfg = self.cfg
        if cfg["zst"] not in ZST_VARIANTS:
            raise ConfigError(f"unknown zero-shot variant '{cfg['zst']}'. Fix: choose one of {ZST_VARIANTS}")
        if cfg["behaviour_target"] not in ("sum", "mean"):
            raise ConfigError(f"behaviour_target must be 'sum' or 'mean', got '{cfg['behaviour_target']}'")
        self.v_field = cfg["behaviour_field"]
        if self.v_field not in feature_map or feature_map[self.v_field].kind != "sequence":
            raise ConfigError(f"MAIL needs the behaviour sequence '{self.v_field}' among the features. "
                              "Fix: build it (FeatureConfig.sequences) or set behaviour_field")
        self.ranker = _ranking_tower(cfg["tower"], feature_map, {"tasks": self.tasks, **cfg["ranker"]}, self.v_field)
        self.tasks = self.ranker.tasks
        self.a_fields = user_attribute_fields(feature_map)
        d = self.ranker.embedding.dim
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

    def real_behaviour(self, ids: torch.Tensor) -> torch.Tensor:
        """The behaviour vector the decoders reconstruct (``behaviour_target``), ``[B, d]``."""
        mode = self.cfg["behaviour_target"]
        return self.ranker.embedding.pooled(self.v_field, ids, mode=mode)

    def zero_shot_losses(self, batch: dict[str, torch.Tensor], old: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_a``, ``L_v``, ``L_d`` on the rows with behaviour (Eq. 3-7), per the ablation."""
        zst = self.cfg["zst"]
        if zst == "none" or int(old.sum()) < 2:
            return {}
        rows = {k: v[old] for k, v in batch.items() if k in self.a_fields or k == self.v_field}
        a_emb = self._attributes(rows)
        ids = rows[self.v_field]
        v_emb = self.ranker.embedding(self.v_field, ids)
        a_target, v_target = a_emb.sum(1), self.real_behaviour(ids)  # what the tower consumes (Eq. 11)
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
        ids = batch[self.v_field]
        new = ~(ids > 0).any(dim=1)  # Eq. 9: flag = true when v is empty
        seq = self.ranker.embedding.sequence(self.v_field, ids)
        if bool(new.any()):
            seq = seq.with_virtual(new, self.virtual_behaviour(batch))  # Eq. 10
        out = self.ranker(batch, overrides={self.v_field: seq})
        out["flag_new"] = new
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = {f"rt_{k}": v for k, v in self.ranker.compute_loss(batch, out).items()}
        if self.training:
            terms.update(self.zero_shot_losses(batch, ~out["flag_new"]))
        return terms

    def param_groups(self) -> list[dict[str, Any]]:
        """G_B: ranking tower + embeddings (+ MAIL-None's linear map) on L_rt; G_A: zero-shot tower on L_zst."""
        rt = [f"rt_bce_{t}" for t in self.tasks] + [f"rt_{n}" for n in self.ranker.aux_loss_terms]
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


def _ranking_tower(name: str, feature_map: FeatureMap, cfg: dict[str, Any], v_field: str) -> RecModel:
    """Build the ranking tower from the registry and check it can take a behaviour override."""
    if name == "mail":
        raise ConfigError("MAIL cannot be its own ranking tower. Fix: set tower to base_dnn, dmr, poso, ...")
    tower = build_model(name, feature_map, cfg)
    emb = getattr(tower, "embedding", None)
    if not isinstance(emb, FeatureEmbedding) or v_field not in emb.names() \
            or "overrides" not in inspect.signature(tower.forward).parameters:
        raise ConfigError(f"ranker '{name}' cannot be MAIL's ranking tower: it must embed the behaviour field "
                          f"'{v_field}' in `.embedding` and accept `forward(batch, overrides)`. "
                          "Fix: choose base_dnn, dmr or poso")
    return tower


def _sq(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared L2 error per row, averaged over the batch (Eq. 3-4's ||.||_2^2)."""
    return (pred - target).pow(2).sum(-1).mean()
