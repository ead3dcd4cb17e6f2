"""MeLU (Lee et al., KDD'19) as the POSO paper runs it (Table 2/5): every user is one MAML task.

The base model is the plain POSO ranker (no personalized modules). Its representation (embeddings
+ target attention, ``PosoRanker.encode``) is global: it gets gradients from the outer (query)
loss only. Its decision layers (MMoE, towers, heads: ``PosoRanker.decide``) are the fast weights
θ: per user, ``local_steps`` SGD steps of size ``local_lr`` on the support loss give θ', and the
query loss under θ' is the training objective, second order by default as in MeLU's code
(``create_graph=True``). All users of a batch adapt at once (``torch.func``: vmap over users of
grad over θ), never in a Python loop.

Scoring is causal: a user's rows are sorted by time; the first ``n_support`` rows are scored with
the global θ (the meta-learned prior, nothing earlier to adapt on) and are the support set; every
later row is scored with θ' adapted on those rows' labels.

``local_lr`` default 0.1: MeLU's 5e-6 (with global lr 5e-5) was tuned for its rating-regression
MLP; on our BCE decision layers one SGD step of 5e-6 moves the support loss by ~1e-6, i.e. no
adaptation at all. Measured on a synthetic world (2000 users, 3 epochs): one step of 1e-2 / 3e-2 /
0.1 / 0.3 raised the test AUC of the adapted rows over the global θ by .004 / .011 / .018 / .022;
0.1 adapts clearly and stays stable. Tune it per dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from thawrec.data.reader import episode_width
from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.models.poso import PosoRanker
from thawrec.registry import register

MELU_DEFAULTS: dict[str, Any] = {"local_lr": 1e-1, "local_steps": 1, "n_support": 10, "n_query": 10,
                                 "first_order": False, "users_per_batch": 32, "score_users": 256}
Params = dict[str, torch.Tensor]


class _Decider(nn.Module):
    """The decision layers as one module whose parameters ``functional_call`` can swap for θ'.

    It shares (not copies) the base model's MMoE, towers and heads; it is kept out of MeLU's
    module tree so the state dict holds every tensor once.
    """

    def __init__(self, base: PosoRanker) -> None:
        super().__init__()
        self.mmoe, self.towers, self.heads = base.mmoe, base.towers, base.heads
        self.decide, self.tasks = base.decide, list(base.tasks)  # a bound method, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> logits [N, T]
        logits = self.decide(x, None)
        return torch.stack([logits[t] for t in self.tasks], dim=-1)


@register("ranker", "melu")
class MeLU(RecModel):
    defaults = {**PosoRanker.defaults, **MELU_DEFAULTS}
    nested_options = ("poso",)
    scores_per_user = True  # causal per-user adaptation at inference: score_columns

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        cfg = self.cfg
        if any(v not in (False, None, "none") for v in cfg["poso"].values()):
            raise ConfigError(f"MeLU adapts the plain base model, got POSO modules {cfg['poso']}. "
                              "Fix: drop 'poso' from the MeLU config")
        if cfg["local_steps"] < 1 or cfg["local_lr"] <= 0 or cfg["n_support"] < 1:
            raise ConfigError("MeLU needs local_steps >= 1, local_lr > 0 and n_support >= 1. Fix: the MeLU config")
        self.base = PosoRanker(feature_map, {k: v for k, v in cfg.items() if k not in MELU_DEFAULTS})
        self.cfg = {**self.base.cfg, **{k: cfg[k] for k in MELU_DEFAULTS}}  # the full config, base defaults included
        self.tasks = list(self.base.tasks)
        object.__setattr__(self, "_decider", _Decider(self.base))
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self._decider.modules()):
            raise ConfigError("MeLU cannot adapt decision layers with BatchNorm per user (running "
                              "statistics are shared state). Fix: turn batch norm off in the MMoE/towers")

    # ------------------------------------------------------------------ the local update
    def fast_params(self) -> Params:
        """θ: the decision-layer parameters (MMoE, towers, heads), the only ones adapted per user."""
        return dict(self._decider.named_parameters())

    def _logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._decider, params, (x,))

    def _user_loss(self, params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """One user's masked mean BCE per task ``[T]`` (padding rows have weight 0)."""
        bce = F.binary_cross_entropy_with_logits(self._logits(params, x), y, reduction="none")
        return (bce * w[:, None]).sum(0) / w.sum().clamp_min(1.0)

    def _user_adapt(self, params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Params:
        lr, first_order = self.cfg["local_lr"], self.cfg["first_order"]
        for _ in range(self.cfg["local_steps"]):
            g = grad(lambda p: self._user_loss(p, x, y, w).sum())(params)  # summed over tasks, as the outer loss
            params = {k: p - lr * (g[k].detach() if first_order else g[k]) for k, p in params.items()}
        return params

    def adapt(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, params: Params | None = None) -> Params:
        """Per-user θ' (leading dim U) from support activations ``[U, S, D]``, labels ``[U, S, T]``
        and row weights ``[U, S]``. Differentiable w.r.t. θ and x (second order unless
        ``first_order``); under ``torch.no_grad`` it still takes the inner gradient."""
        params = self.fast_params() if params is None else params
        return vmap(self._user_adapt, in_dims=(None, 0, 0, 0), randomness="different")(params, x, y, w)

    def user_logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[U, N, T]`` of activations ``[U, N, D]`` under per-user parameters."""
        return vmap(self._logits, randomness="different")(params, x)

    # ------------------------------------------------------------------ training (global update)
    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([batch[t].float() for t in self.tasks], dim=-1)

    @staticmethod
    def episode_shape(batch: dict[str, torch.Tensor]) -> tuple[int, int, int]:
        """``(users, slots per user, support slots)`` of an EpisodeReader batch."""
        q = batch["_is_query"].bool()
        slots = episode_width(q)
        s = int((~q[:slots]).sum())
        if s < 1 or len(q) % slots:
            raise ConfigError(f"not an episode batch ({len(q)} rows, {s} support slots). Fix: use EpisodeReader")
        return len(q) // slots, slots, s

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Episode batch (``_is_query`` present): logits of every row under its user's θ'.
        Any other batch: the global θ (plain base model)."""
        if "_is_query" not in batch:
            return self.base(batch)
        U, L, S = self.episode_shape(batch)
        x = self.base.encode(batch)[0].view(U, L, -1)
        y, m = self._labels(batch).view(U, L, -1), batch["_mask"].float().view(U, L)
        theta = self.adapt(x[:, :S], y[:, :S], m[:, :S])
        flat = self.user_logits(theta, x).reshape(U * L, -1)
        return {"logits": {t: flat[:, i] for i, t in enumerate(self.tasks)}}

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Episodes: ``query_bce_<task>``, the mean over users of each user's query BCE under θ'."""
        if "_is_query" not in batch:
            return super().compute_loss(batch, out)
        U, L, _ = self.episode_shape(batch)
        w = (batch["_mask"].float() * batch["_is_query"].float()).view(U, L)
        per_user = w.sum(1).clamp_min(1.0)
        terms = {}
        for t in self.tasks:
            bce = F.binary_cross_entropy_with_logits(out["logits"][t], batch[t].float(), reduction="none")
            terms[f"query_bce_{t}"] = ((bce.view(U, L) * w).sum(1) / per_user).mean()
        return terms

    # ------------------------------------------------------------------ causal scoring
    def _take(self, cols: dict[str, np.ndarray], idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        out = {}
        for k in [*self.base.flat_fields, *self.base.seq_fields, *self.tasks]:
            a = np.ascontiguousarray(np.take(cols[k], idx, axis=0))
            t = torch.from_numpy(a)
            out[k] = (t.long() if a.dtype.kind in "iu" else t.float() if a.dtype.kind == "f" else t).to(device)
        return out

    @torch.no_grad()
    def score_columns(self, cols: dict[str, np.ndarray], batch_size: int,
                      device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
        """Probabilities per task in row order; each user's rows after the first ``n_support``
        (by ``_ts``, ties by row order) are scored with θ' adapted on those first rows' labels.
        Users go in chunks of <= ``score_users`` with <= ``batch_size`` padded query slots; the
        model is moved to ``device``."""
        was, device = self.training, torch.device(device)
        self.eval()
        self.to(device)
        S, n, T = self.cfg["n_support"], len(cols["_user"]), len(self.tasks)
        order = np.lexsort((np.arange(n), cols["_ts"], cols["_user"]))
        users = np.asarray(cols["_user"])[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if n else np.zeros(0, np.int64)
        counts = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, counts)
        probs = np.zeros((n, T), np.float32)

        prior = order[rank < S]  # global θ: each user's first S rows
        for b in range(0, len(prior), batch_size):
            idx = prior[b:b + batch_size]
            x, _ = self.base.encode(self._take(cols, idx, device))
            probs[idx] = torch.sigmoid(self._decider(x)).float().cpu().numpy()

        big = np.flatnonzero(counts > S)  # users with rows after their support set
        big = big[np.argsort(counts[big], kind="stable")]  # similar lengths share a chunk: little padding
        q_all = counts[big] - S
        theta0 = {k: v.detach() for k, v in self.fast_params().items()}
        a = 0
        while a < len(big):
            cand = q_all[a:a + self.cfg["score_users"]]
            U = max(1, int(((np.arange(1, len(cand) + 1) * cand) <= max(batch_size, 1)).sum()))
            st, q = starts[big[a:a + U]], q_all[a:a + U]
            a += U
            sup = order[st[:, None] + np.arange(S)]  # [U, S]
            k = np.arange(q.max())
            valid = k < q[:, None]
            qry = order[st[:, None] + S + np.where(valid, k, 0)]  # [U, Qmax], padding repeats a real row
            batch = self._take(cols, np.r_[sup.ravel(), qry.ravel()], device)
            x, _ = self.base.encode(batch)
            xs, xq = x[:U * S].view(U, S, -1), x[U * S:].view(U, len(k), -1)
            ys = self._labels(batch)[:U * S].view(U, S, T)
            theta = self.adapt(xs, ys, torch.ones(U, S, device=device), theta0)
            p = torch.sigmoid(self.user_logits(theta, xq)).float().cpu().numpy()
            probs[qry[valid]] = p[valid]
        self.train(was)
        return {t: probs[:, i].copy() for i, t in enumerate(self.tasks)}
