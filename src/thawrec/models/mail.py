"""MAIL (model-agnostic zero-shot learning for new users): a zero-shot tower that generates a
new user's behaviour from attributes, co-trained with a ranking tower (Sec. 3, Algorithm 1).

Zero-shot tower, on rows whose behaviour is present (flag = false, Eq. 9):
- ``h_a`` / ``h_v``: additive attention pooling of the attribute embeddings and of the behaviour
  embeddings (Eq. 1-2);
- ``p = E1(h_a)``, ``q = E2(h_v)``: residual encoders (Eq. 15); ``D1`` / ``D2`` residual decoders
  (Eq. 16) back to the attribute vector (the sum-pooled ``z_a`` of Eq. 11) and to the behaviour
  target (``behaviour_target``, below);
- ``L_a = |D1(p) - a|^2 + |D2(p) - v|^2`` (Eq. 3), ``L_v`` the same from ``q`` (Eq. 4), ``L_d`` the
  Gaussian MMD between the batch's ``p`` and ``q`` (Eq. 5-6); ``L_zst = L_a + L_v + L_d``.
Rows with no behaviour (flag = true) get ``v_o = D2(E1(h_a))`` (Eq. 8) as their behaviour input
(Eq. 10).

Two optimizers through the trainer's ``param_groups`` (Algorithm 1): G_A steps the zero-shot
tower on ``L_zst`` only; G_B steps the ranking tower and the shared embedding table on ``L_rt``
only. The zero-shot tower reads the embeddings but never changes them (its inputs and targets are
detached).

The ranking tower is any registered ranker that reads the behaviour field (``tower``: ``base_dnn``,
Eq. 11-13, the default; ``dmr``, MAIL-DMR; ``poso``, the POSO base model; ...). It must keep its
embeddings in ``.embedding`` and accept ``overrides``; new users' generated behaviour reaches it as
an :class:`EmbeddedSequence` holding one virtual item at the most recent position (a tower that
only sum-pools the field gets the pooled ``[B, d]`` vector, ``v_o`` on new users' rows: the same
input, without the ``[B, L, d]`` detour). The tower declares how it reads the field
(``RecModel.behaviour_pooling``: ``"sum"`` or ``"attention"``).

Options beyond the paper's architecture (paper = what Sec. 3 prints; each deviation selectable):

- ``behaviour_target``: what D2 reconstructs. ``"sum"`` is Eq. 11's sum pooling (paper-literal);
  its size grows with the history length, so the decoders mostly learn the length. ``"mean"``: the
  mean behaviour item. ``"mean_length"`` (default, a deviation): the mean item and
  ``log(1 + history length)`` (``d + 1`` outputs); the tower
  then gets the mean item if it attends over the field, mean x predicted length (clamped to
  ``[1, max_len]``) if it sum-pools it, so a new user's input has the scale of an old user's.
  ``length_weight`` weighs the log-length's squared error against the mean item's: ``"auto"``
  (default) by the batch's mean squared coordinate of the mean-item target (no gradient), i.e. as
  if the log-length were one more coordinate on the embedding's scale; a number, a fixed weight
  (1.0: plain squared error over the ``d + 1`` outputs, where the length, about 1 against an
  embedding's 1e-3, would again be most of what the decoders learn).
- ``fill``: ``"always"`` (default, Algorithm 1 step 6: new users' rows get ``v_o`` in training
  too) or ``"test_only"`` (the authors' variant: new users' rows keep an empty behaviour in
  training and get ``v_o`` at inference only).
- ``v_o_dropout``: False (default): ``v_o`` for the ranking tower is generated with the zero-shot
  modules' dropout off, as at test time, while ``L_zst`` still trains with dropout 0.5 (Eq. 15-16).
  True: the pre-fix behaviour (the ranker trained on a dropout-noised ``v_o`` it never sees at test
  time). The paper does not say.
- ``mmd_sigma``: ``"median"`` (default, a deviation): the median heuristic on the batch
  (``nn.losses.median_bandwidth``); a number (the paper: 1.0) a fixed bandwidth, which on 512-wide
  codes leaves ``L_d`` about 1% of the reconstruction terms, nearly constant (``2 / n`` once the
  codes are spread, 0 while they are tiny). ``mmd_decoded``: also add the MMD of the
  decoders' outputs (``D1(P)`` vs ``D1(Q)``, ``D2(P)`` vs ``D2(Q)``); off by default.
- ``zst_users``: ``L_zst`` on at most this many distinct old users per batch, one random row each
  (default 128, a deviation: the paper averages over every old row, about 550 of a 1024-row batch
  with 40% new users, so users weigh by their row count; a sample costs less and weighs users
  equally). None: every old row (paper). Users are told apart by the batch's ``_user`` column;
  without it every row counts as a user. At the paper's tower sizes L_zst is most of a step's
  cost: with 256 users the step is about 2.1x faster than the pre-fix one, with 128 about 3x
  (``benchmarks/bench_mail.py``).
- ``compute``: ``"fast"`` (default) or ``"reference"``. Fast generates ``v_o`` only for new rows and
  once per distinct attribute tuple (``v_o`` is a function of the attributes alone; with dropout
  off that is exact), gathered back to the rows and written into their empty first slot (or, for a
  sum-pooling tower, into the pooled vector), and runs D1 and D2 once each on the stacked codes
  ``[P; Q]``. Reference is the pre-fix computation (``v_o`` for every row, merged by
  ``EmbeddedSequence.with_virtual``, each decoder called on ``P`` and ``Q`` separately), kept for
  benchmarks and equivalence tests. Same objective and, with dropout off, the same numbers.

Ablations (Table 3, ``zst``): ``none`` (a linear map from attributes to behaviour, no zero-shot
loss: trained by the ranking loss), ``single`` (Eq. 3), ``dual`` (Eq. 3 + 4), ``base`` (Eq. 7).
Baseline ``llae`` (Table 2's LLAE, Li et al. 2019): a low-rank (``llae_rank`` = 30) linear
autoencoder ``v = W a`` with tied decoder ``a = W^T v``, loss ``|W a - v|^2 + |W^T v - a|^2``, by its
own optimizer, feeding the ranking tower (EmbLR in the paper: a ranker with no hidden layers).
"""

from __future__ import annotations

import inspect
from numbers import Real
from typing import Any

import torch
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.models.baselines.id_embedding import user_attribute_fields
from thawrec.nn.autoencoders import ResidualDecoder, ResidualEncoder
from thawrec.nn.embedding import EmbeddedSequence, FeatureEmbedding
from thawrec.nn.losses import gaussian_mmd
from thawrec.nn.pooling import AdditiveAttentionPooling
from thawrec.registry import build_model, register

ZST_VARIANTS = ("none", "single", "dual", "base", "llae")
TARGETS = ("mean_length", "sum", "mean")
USER_COLUMN = "_user"  # the batch column that tells users apart (zst_users samples one row per user)


@register("ranker", "mail")
class MAIL(RecModel):
    defaults: dict[str, Any] = {
        "zst": "base",
        "tower": "base_dnn",
        "behaviour_field": "hist_items",
        "behaviour_target": "mean_length",  # paper: "sum" (Eq. 11)
        "length_weight": "auto",  # mean_length only: weight of the log-length's squared error
        "fill": "always",  # Algorithm 1; "test_only": the authors' variant
        "v_o_dropout": False,  # the paper is silent; True = the pre-fix behaviour
        "attn_dim": 32,
        "encoder": [1024, 512],
        "hidden_dim": 512,
        "decoder": [512, 1024],
        "zst_dropout": 0.5,
        "mmd_sigma": "median",  # paper: 1.0
        "mmd_decoded": False,
        "zst_users": 128,  # paper: None (every old row of the batch)
        "compute": "fast",  # "reference": the pre-fix computation, same objective
        "llae_rank": 30,
        "ranker": {},
        "tasks": ["label"],
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        cfg = self.cfg
        _check_options(cfg)
        self.v_field = cfg["behaviour_field"]
        if self.v_field not in feature_map or feature_map[self.v_field].kind != "sequence":
            raise ConfigError(f"MAIL needs the behaviour sequence '{self.v_field}' among the features. "
                              "Fix: build it (FeatureConfig.sequences) or set behaviour_field")
        self.ranker = _ranking_tower(cfg["tower"], feature_map, {"tasks": self.tasks, **cfg["ranker"]}, self.v_field)
        self.tasks = self.ranker.tasks
        if cfg["behaviour_target"] == "mean_length" and cfg["zst"] != "none" \
                and self.ranker.behaviour_pooling not in ("sum", "attention"):
            raise ConfigError(f"behaviour_target 'mean_length' scales the generated behaviour by how the tower "
                              f"reads it, but ranker '{cfg['tower']}' does not declare behaviour_pooling. "
                              "Fix: declare it on the ranker ('sum' or 'attention') or set behaviour_target")
        self.max_len = max(int(feature_map[self.v_field].max_len), 1)
        self.a_fields = user_attribute_fields(feature_map)
        d = self.ranker.embedding.dim
        self.v_dim = d + 1 if cfg["behaviour_target"] == "mean_length" else d  # D2's output width
        if cfg["zst"] == "none":
            self.linear_map = nn.Linear(len(self.a_fields) * d, d)
            nn.init.xavier_uniform_(self.linear_map.weight)
            return
        if cfg["zst"] == "llae":
            self.llae_in = nn.Linear(len(self.a_fields) * d, cfg["llae_rank"], bias=False)  # W = out @ in
            self.llae_out = nn.Linear(cfg["llae_rank"], self.v_dim, bias=False)
            for m in (self.llae_in, self.llae_out):
                nn.init.xavier_uniform_(m.weight)
            return
        self.pool_a = AdditiveAttentionPooling(d, cfg["attn_dim"])
        self.pool_v = AdditiveAttentionPooling(d, cfg["attn_dim"])
        enc = dict(hidden=tuple(cfg["encoder"]), out_dim=cfg["hidden_dim"], dropout=cfg["zst_dropout"])
        self.E1, self.E2 = ResidualEncoder(d, **enc), ResidualEncoder(d, **enc)
        dec = dict(hidden=tuple(cfg["decoder"]), dropout=cfg["zst_dropout"])
        self.D1 = ResidualDecoder(cfg["hidden_dim"], d, **dec)
        self.D2 = ResidualDecoder(cfg["hidden_dim"], self.v_dim, **dec)

    # ------------------------------------------------------------------ the zero-shot tower
    def zero_shot_modules(self) -> list[nn.Module]:
        if self.cfg["zst"] == "none":
            return []
        if self.cfg["zst"] == "llae":
            return [self.llae_in, self.llae_out]
        return [self.pool_a, self.pool_v, self.E1, self.E2, self.D1, self.D2]

    def _attribute_ids(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([batch[f] for f in self.a_fields], dim=1)  # [B, n_a]

    def _attributes(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._embed_attributes(self._attribute_ids(batch))

    def _embed_attributes(self, a_ids: torch.Tensor) -> torch.Tensor:
        emb = self.ranker.embedding
        return torch.stack([emb(f, a_ids[:, i]) for i, f in enumerate(self.a_fields)], dim=1)  # [n, n_a, d]

    def _generate(self, a_ids: torch.Tensor, dropout: bool) -> torch.Tensor:
        """Eq. 8 from attribute ids ``[n, n_a]``: ``D2(E1(h_a))``, in the target's space ``[n, v_dim]``
        (MAIL-None: its linear map, already the tower's ``[n, d]``)."""
        a = self._embed_attributes(a_ids)
        if self.cfg["zst"] == "none":
            return self.linear_map(a.flatten(1))
        if self.cfg["zst"] == "llae":
            return self.llae_out(self.llae_in(a.flatten(1)))
        return self.D2(self.E1(self.pool_a(a), dropout=dropout), dropout=dropout)

    def to_tower(self, v_hat: torch.Tensor) -> torch.Tensor:
        """A behaviour in the target's space -> the ``[n, d]`` vector the tower gets as one virtual
        item. ``mean_length``: the mean item, times the length ``exp(l) - 1`` clamped to
        ``[1, max_len]`` for a tower that sum-pools the field."""
        if self.cfg["zst"] == "none" or self.cfg["behaviour_target"] != "mean_length":
            return v_hat
        mean, log_len = v_hat[:, :-1], v_hat[:, -1]
        if self.ranker.behaviour_pooling == "sum":
            return mean * torch.expm1(log_len).clamp(1.0, float(self.max_len)).unsqueeze(-1)
        return mean

    def virtual_behaviour(self, batch: dict[str, torch.Tensor], dropout: bool | None = None) -> torch.Tensor:
        """Eq. 8: ``v_o = D2(E1(h_a))`` from the attributes alone, for every row, in the space of
        :meth:`real_behaviour` (``[B, v_dim]``). ``dropout`` None: on only when training with
        ``v_o_dropout``."""
        if dropout is None:
            dropout = self.training and self.cfg["v_o_dropout"]
        return self._generate(self._attribute_ids(batch), dropout)

    def tower_behaviour(self, batch: dict[str, torch.Tensor], dropout: bool | None = None) -> torch.Tensor:
        """``v_o`` for every row as the ranking tower receives it (:meth:`to_tower`), ``[B, d]``."""
        return self.to_tower(self.virtual_behaviour(batch, dropout))

    def virtual_rows(self, batch: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """``v_o`` as the tower receives it for the rows ``rows`` (indices), ``[len(rows), d]``, computed
        once per distinct attribute tuple among them (``v_o`` depends on the attributes alone; with
        dropout off that is exact) and gathered back."""
        dropout = self.training and self.cfg["v_o_dropout"]
        a_ids = self._attribute_ids(batch)[rows]
        if dropout:  # every row its own dropout mask, as before
            return self.to_tower(self._generate(a_ids, True))
        uniq, inverse = torch.unique(a_ids, dim=0, return_inverse=True)
        return self.to_tower(self._generate(uniq, False))[inverse]

    def _fill(self, batch: dict[str, torch.Tensor], seq: EmbeddedSequence, new: torch.Tensor) -> EmbeddedSequence:
        """Eq. 10: new rows get ``v_o`` as one virtual item at position 0. Reference: the pre-fix
        computation (``v_o`` for every row, :meth:`EmbeddedSequence.with_virtual`). Fast: ``v_o``
        for the new rows only, written into their (empty, all-zero) first slot."""
        if self.cfg["compute"] == "reference":
            return seq.with_virtual(new, self.tower_behaviour(batch))
        rows = new.nonzero().squeeze(1)
        first = torch.zeros_like(rows)
        v = self.virtual_rows(batch, rows).to(seq.emb.dtype)
        return EmbeddedSequence(seq.emb.index_put((rows, first), v),
                                seq.mask.index_put((rows, first), torch.ones_like(rows, dtype=torch.bool)))

    def real_behaviour(self, ids: torch.Tensor) -> torch.Tensor:
        """The behaviour target the decoders reconstruct (``behaviour_target``), ``[B, v_dim]``."""
        mode = self.cfg["behaviour_target"]
        emb = self.ranker.embedding
        if mode != "mean_length":
            return emb.pooled(self.v_field, ids, mode=mode)
        mean = emb.pooled(self.v_field, ids, mode="mean")
        n = (ids > 0).sum(dim=1, keepdim=True).to(mean.dtype)
        return torch.cat([mean, torch.log1p(n)], dim=1)

    def _sq_behaviour(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The behaviour reconstruction error; ``mean_length``: the mean item's squared error plus
        the log-length's, weighted by ``length_weight``."""
        if self.cfg["behaviour_target"] != "mean_length":
            return _sq(pred, target)
        w = self.cfg["length_weight"]
        if w == "auto":
            w = target[:, :-1].detach().pow(2).mean()
        return _sq(pred[:, :-1], target[:, :-1]) + w * (pred[:, -1] - target[:, -1]).pow(2).mean()

    def zero_shot_rows(self, batch: dict[str, torch.Tensor], old: torch.Tensor) -> torch.Tensor:
        """Row indices ``L_zst`` is computed on: every old row (``zst_users`` None) or one random
        row of each of at most ``zst_users`` random distinct old users."""
        idx = old.nonzero().squeeze(1)
        k = self.cfg["zst_users"]
        if k is None:
            return idx
        users = batch.get(USER_COLUMN)
        if users is not None and len(idx) > 1:
            perm = idx[torch.randperm(len(idx), device=idx.device)]
            _, inverse = torch.unique(users[perm], return_inverse=True)
            first = torch.full((int(inverse.max()) + 1,), len(perm), dtype=torch.long, device=idx.device)
            first = first.scatter_reduce(0, inverse, torch.arange(len(perm), device=idx.device), "amin")
            idx = perm[first]  # each user's first row in a random order: a random row per user
        if len(idx) > k:
            idx = idx[torch.randperm(len(idx), device=idx.device)[:k]]
        return idx

    def zero_shot_losses(self, batch: dict[str, torch.Tensor], old: torch.Tensor) -> dict[str, torch.Tensor]:
        """``L_a``, ``L_v``, ``L_d`` on the rows with behaviour (Eq. 3-7), per the ablation."""
        zst = self.cfg["zst"]
        if zst == "none":
            return {}
        rows = self.zero_shot_rows(batch, old)
        if len(rows) < 2:
            return {}
        ids = batch[self.v_field][rows]
        a_emb = self._embed_attributes(self._attribute_ids(batch)[rows]).detach()  # G_A never moves them
        a_target, v_target = a_emb.sum(1), self.real_behaviour(ids).detach()  # z_a of Eq. 11; the target
        if zst == "llae":  # tied weights: decode with W^T = in^T @ out^T
            a_flat = a_emb.flatten(1)
            a_back = (v_target @ self.llae_out.weight) @ self.llae_in.weight
            return {"zst_llae": self._sq_behaviour(self.llae_out(self.llae_in(a_flat)), v_target) + _sq(a_back, a_flat)}
        p = self.E1(self.pool_a(a_emb))
        if zst == "single":
            return {"zst_a": _sq(self.D1(p), a_target) + self._sq_behaviour(self.D2(p), v_target)}
        v_emb = self.ranker.embedding(self.v_field, ids).detach()
        q = self.E2(self.pool_v(v_emb, ids > 0))
        if self.cfg["compute"] == "fast":  # each decoder once, on [P; Q]
            n = len(p)
            pq = torch.cat([p, q])
            a_hat, v_hat = self.D1(pq), self.D2(pq)
            a_p, a_q, v_p, v_q = a_hat[:n], a_hat[n:], v_hat[:n], v_hat[n:]
        else:
            a_p, v_p, a_q, v_q = self.D1(p), self.D2(p), self.D1(q), self.D2(q)
        terms = {"zst_a": _sq(a_p, a_target) + self._sq_behaviour(v_p, v_target),
                 "zst_v": _sq(a_q, a_target) + self._sq_behaviour(v_q, v_target)}
        if zst == "base":
            sigma = self.cfg["mmd_sigma"]
            mmd = gaussian_mmd(p, q, sigma)
            if self.cfg["mmd_decoded"]:
                mmd = mmd + gaussian_mmd(a_p, a_q, sigma) + gaussian_mmd(v_p, v_q, sigma)
            terms["zst_mmd"] = mmd
        return terms

    # ------------------------------------------------------------------ both towers
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        ids = batch[self.v_field]
        new = ~(ids > 0).any(dim=1)  # Eq. 9: flag = true when v is empty
        fill = not (self.training and self.cfg["fill"] == "test_only") and bool(new.any())
        if self.cfg["compute"] == "fast" and self.ranker.behaviour_pooling == "sum":
            # the tower reads the field as its sum-pooled vector only: hand it that vector (Eq. 11's
            # z_v), with v_o on the new rows, whose pooled vector is zero (Eq. 10)
            behaviour = self.ranker.embedding.pooled(self.v_field, ids)
            if fill:
                rows = new.nonzero().squeeze(1)
                behaviour = behaviour.index_put((rows,), self.virtual_rows(batch, rows).to(behaviour.dtype))
        else:
            behaviour = self.ranker.embedding.sequence(self.v_field, ids)
            if fill:
                behaviour = self._fill(batch, behaviour, new)  # Eq. 10
        out = self.ranker(batch, overrides={self.v_field: behaviour})
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


def _check_options(cfg: dict[str, Any]) -> None:
    def choice(key: str, allowed: tuple[str, ...], what: str) -> None:
        if cfg[key] not in allowed:
            raise ConfigError(f"unknown {what} '{cfg[key]}'. Fix: choose one of {allowed}")

    choice("zst", ZST_VARIANTS, "zero-shot variant")
    choice("behaviour_target", TARGETS, "behaviour_target")
    choice("fill", ("always", "test_only"), "fill")
    choice("compute", ("fast", "reference"), "compute")
    sigma = cfg["mmd_sigma"]
    if not (sigma == "median" or (isinstance(sigma, Real) and not isinstance(sigma, bool) and sigma > 0)):
        raise ConfigError(f"mmd_sigma must be 'median' or a positive number, got {sigma!r}")
    w = cfg["length_weight"]
    if not (w == "auto" or (isinstance(w, Real) and not isinstance(w, bool) and w >= 0)):
        raise ConfigError(f"length_weight must be 'auto' or a number >= 0, got {w!r}")
    k = cfg["zst_users"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        raise ConfigError(f"zst_users must be None (every old row) or an int >= 2 (the MMD needs two), got {k!r}")
    if cfg["zst"] == "none" and cfg["fill"] == "test_only":
        raise ConfigError("MAIL-None's linear map is trained by the ranking loss through v_o, so fill 'test_only' "
                          "would leave it untrained. Fix: fill 'always'")


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
