"""Target multi-head attention over a behaviour sequence, plain or personalized (POSO Sec. 4.3).

Q comes from the concatenated non-sequential embeddings, K and V from the sequence (POSO Fig. 2).
``personalization`` selects the settings of POSO's Table 7:

- ``none``      plain MHA;
- ``full``      Eq. 13: N sets of Q, K, V, outputs mixed by the gate g(pc);
- ``shared_q``  Q shared, N sets of K and V;
- ``gated_k``   Eq. 14 (POSO's standard): Q shared, K gated by G^k(pc), N personalized V mixed by g(pc);
- ``gated_kv``  lightest: Q shared, K gated by G^k, V gated by G^v (no multi-fold V).

The N value sets are mixed with weights ``(C / N) * sigmoid(.) = g(pc) / N`` by default
(``value_mix_scale``), so a neutral gate averages them and the output keeps the base model's scale (Eq. 6's C; see
:class:`TargetAttention`).

Also the MLP-scored attention of DIN / DMR (:class:`ActivationUnitAttention`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from thawrec.errors import ConfigError
from thawrec.nn.gating import BucketCode, PersonalizedGate
from thawrec.nn.mlp import MLP, activation

SETTINGS = ("none", "full", "shared_q", "gated_k", "gated_kv")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis on the real items only (``mask`` True = real, broadcastable to
    ``scores``); a row with nothing real gets all-zero weights.

    Such rows (a brand-new user's empty history) get a finite dummy score before the softmax and
    zero weights after it, rather than repairing the NaN a softmax over only -inf gives: no NaN
    exists anywhere, so even second-order gradients (MeLU, Meta-Embedding) stay finite. Every
    masked attention in thawrec (target MHA, DIN/DMR activation units, MAIL's pooling) uses this.
    """
    empty = ~mask.any(dim=-1, keepdim=True)
    s = scores.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)
    return torch.softmax(s, dim=-1).masked_fill(empty, 0.0)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q ``[B, H, dh]``, k ``[B, H, L, dh]``, mask ``[B, L]`` (True = real item) -> ``[B, H, L]``;
    an empty sequence attends to nothing (:func:`masked_softmax`)."""
    scores = torch.einsum("bhd,bhld->bhl", q, k) / math.sqrt(q.shape[-1])
    return masked_softmax(scores, mask[:, None, :])


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention with a padding mask: ``[B, H, dh]`` out."""
    return torch.einsum("bhl,bhld->bhd", attention_weights(q, k, mask), v)


VALUE_MIX_SCALES = ("c_over_n", "c")


class TargetAttention(nn.Module):
    """Target multi-head attention, plain or personalized (see the module docstring).

    ``value_mix_scale`` rectifies the mixture of the N personalized value sets (Eq. 6 / 13 / 14).
    Each value gate is ``C * sigmoid(.)`` in ``(0, C)`` with C = 2, so a neutral gate is 1, and
    summing N value sets with weight ~1 each makes the output ~N/2 times the base model's scale
    (a review measured 1.9x with N = 4), exactly the drift Eq. 6's C is there to prevent:

    - ``"c_over_n"`` (default): the rectifier is C / N instead of C, i.e. weight
      ``(C / N) * sigmoid(.) = g(pc) / N`` in ``(0, C/N)``: a neutral gate gives the mean of the
      value sets, the base model's scale;
    - ``"c"``: the gates as they are, in ``(0, C)`` (the earlier behaviour, kept for comparison).

    ``fast`` (default) gates the query instead of the keys in ``gated_k`` / ``gated_kv``: per head
    ``(q ⊙ G^k) · k = q · (G^k ⊙ k)``, so the logits are the same without multiplying the
    ``[B, L, D]`` key tensor (the footnote's broadcast over L); and ``gated_k``'s N value sets
    come from one batched product and are mixed by a broadcast multiply (:meth:`_mixed_values`).
    ``fast=False`` keeps the literal key gating and mixture, as a reference and for the
    benchmark's old path. Both compute the same function with the same parameters.
    """

    def __init__(self, query_dim: int, key_dim: int, *, heads: int = 4, head_dim: int = 16,
                 personalization: str = "none", n_personal: int = 4, pc_dim: int = 0,
                 scale: float = 2.0, value_mix_scale: str = "c_over_n", fast: bool = True) -> None:
        super().__init__()
        if personalization not in SETTINGS:
            raise ConfigError(f"unknown MHA personalization '{personalization}'; choose one of {SETTINGS}")
        if personalization != "none" and pc_dim <= 0:
            raise ConfigError("personalized MHA needs a personalization code (pc_dim > 0)")
        if value_mix_scale not in VALUE_MIX_SCALES:
            raise ConfigError(f"unknown value_mix_scale '{value_mix_scale}'; choose one of {VALUE_MIX_SCALES}")
        self.mode, self.h, self.dh, self.scale = personalization, heads, head_dim, scale
        self.fast = fast
        d = heads * head_dim
        n = n_personal if personalization in ("full", "shared_q", "gated_k") else 1
        nq = n if personalization == "full" else 1
        nk = n if personalization in ("full", "shared_q") else 1
        self.n = n
        self.value_mix_scale = value_mix_scale
        # the factor on g(pc) in (0, C): 1/N turns C into C/N (a neutral gate averages the value sets)
        self.mix_factor = 1.0 / n if value_mix_scale == "c_over_n" else 1.0
        self.wq = nn.Linear(query_dim, nq * d, bias=False)
        self.wk = nn.Linear(key_dim, nk * d, bias=False)
        self.wv = nn.Linear(key_dim, n * d, bias=False)
        self.out_dim = d
        if personalization in ("gated_k", "gated_kv"):
            self.gate_k = PersonalizedGate(pc_dim, d, scale=scale)
        if personalization == "gated_kv":
            self.gate_v = PersonalizedGate(pc_dim, d, scale=scale)
        if n > 1:
            self.gate_v_mix = PersonalizedGate(pc_dim, n, scale=scale)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``[B, (L,) n*H*dh] -> [n, B, H, (L,) dh]``."""
        if x.dim() == 2:
            return x.view(x.shape[0], n, self.h, self.dh).permute(1, 0, 2, 3)
        b, l_, _ = x.shape
        return x.view(b, l_, n, self.h, self.dh).permute(2, 0, 3, 1, 4)

    def forward(self, query: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor,
                pc: torch.Tensor | BucketCode | None = None) -> torch.Tensor:
        """query ``[B, Dq]``, seq ``[B, L, Dk]``, mask ``[B, L]``, pc ``[B, pc_dim]`` (or a
        :class:`~thawrec.nn.gating.BucketCode`) -> ``[B, H*dh]``.

        V is linear in the sequence, so ``softmax(QK^T) (X W_v) = (softmax(QK^T) X) W_v``: the raw
        sequence is attention-pooled first and the (N personalized) value projections are applied
        once per head instead of once per position. Exact, and it removes the factor L from the
        cost of POSO's multi-fold V. Likewise G^k gates the query, not the keys (``fast``).
        """
        nq = self.wq.out_features // self.out_dim
        nk = self.wk.out_features // self.out_dim
        q, k = self.wq(query), self._heads(self.wk(seq), nk)
        if self.mode in ("gated_k", "gated_kv"):
            if self.fast:  # (q ⊙ g) · k = q · (g ⊙ k) per head: the same logits, no [B, L, D] product
                q = q * self.gate_k(pc)
            else:  # broadcast over L (footnote 2)
                k = k * self._heads(self.gate_k(pc), 1)[:, :, :, None, :]
        q = self._heads(q, nq)
        n_maps = max(nq, nk)
        w = torch.stack([attention_weights(q[min(i, nq - 1)], k[min(i, nk - 1)], mask) for i in range(n_maps)])
        pooled = torch.einsum("mbhl,bld->mbhd", w, seq)  # [maps, B, H, Dk]
        b = query.shape[0]
        if self.fast and n_maps == 1 and self.n > 1:  # gated_k: one map, N value sets
            return self._mixed_values(pooled[0], pc)
        wv = self.wv.weight.view(self.n, self.h, self.dh, -1)  # [N, H, dh, Dk]
        if n_maps == 1:
            v = torch.einsum("bhd,nhed->nbhe", pooled[0], wv)
        else:
            v = torch.einsum("nbhd,nhed->nbhe", pooled, wv)
        if self.mode == "gated_kv":
            v = v * self._heads(self.gate_v(pc), 1)  # C is inside G^k and G^v
        if self.n == 1:
            return v[0].reshape(b, -1)
        return torch.einsum("bn,nbhe->bhe", self.mix_weights(pc), v).reshape(b, -1)

    def _mixed_values(self, pooled: torch.Tensor, pc: torch.Tensor | BucketCode) -> torch.Tensor:
        """``sum_n w[b, n] * (pooled[b, h] W_v^(n, h))`` with ``w`` = :meth:`mix_weights`: pooled
        ``[B, H, Dk]`` -> ``[B, H*dh]``. All N value sets come from one batched product over heads
        and are mixed with a broadcast multiply; the C/N rectifier is the mean over the N sets
        instead of a sum (no extra pass over the gates)."""
        b = pooled.shape[0]
        wv = self.wv.weight.view(self.n, self.h, self.dh, -1).permute(1, 3, 0, 2)  # [H, Dk, N, dh]
        v = torch.bmm(pooled.transpose(0, 1), wv.reshape(self.h, -1, self.n * self.dh))
        v = v.view(self.h, b, self.n, self.dh)  # [H, B, N, dh]
        v = v * self.gate_v_mix(pc)[None, :, :, None]
        v = v.mean(2) if self.value_mix_scale == "c_over_n" else v.sum(2)  # [H, B, dh]
        return v.transpose(0, 1).reshape(b, -1)

    def mix_weights(self, pc: torch.Tensor | BucketCode) -> torch.Tensor:
        """``[B, N]``: the weights of Eq. 13 / 14's personalized mixture of value sets, ``g(pc)``
        times :attr:`mix_factor` (in ``(0, C/N)`` under ``c_over_n``)."""
        g = self.gate_v_mix(pc)
        return g * self.mix_factor if self.mix_factor != 1.0 else g

    def value_gates(self, pc: torch.Tensor | BucketCode) -> torch.Tensor:
        """The N value-gate outputs g(pc) in ``(0, C)`` (POSO Fig. 4). The mixture applies them
        times :attr:`mix_factor` (:meth:`mix_weights`), which rescales but does not reshape them."""
        return self.gate_v_mix(pc)


class ActivationUnitAttention(nn.Module):
    """Attention whose score is a small MLP over ``[q, k, q - k, q * k]`` per item (the local
    activation unit of DIN, used by both networks of DMR). Unlike dot-product attention it can
    score relevance that is not a similarity.

    ``forward(query, seq, mask)``: query ``[B, D]`` (one per row) or ``[B, L, D]`` (one per item, DMR's
    position-aware queries), seq ``[B, L, D]``, mask ``[B, L]`` -> ``(pooled [B, D], weights [B, L],
    scores [B, L])``; ``scores`` are the raw, unnormalised scores with padding set to 0 (DMR's
    item-to-item relevance is their sum).
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (80, 40), act: str = "sigmoid") -> None:
        super().__init__()
        if not hidden:
            raise ConfigError("ActivationUnitAttention needs at least one hidden layer. Fix: e.g. hidden=(80, 40)")
        self.first = nn.Linear(4 * dim, hidden[0])
        self.act = activation(act)
        self.rest = MLP(hidden[0], list(hidden[1:]), out_dim=1, act=act)

    def score(self, query: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """Raw scores ``[B, L]``. The first layer on ``[q, k, q - k, q * k]`` is computed as
        ``q (W_q + W_d)^T + k (W_k - W_d)^T + (q * k) W_p^T``: the same function without building the
        4x wider input, and a query shared by every row (DMR's position queries) costs nothing."""
        w = self.first.weight.view(self.first.out_features, 4, -1)  # [H, 4, D]: q, k, q - k, q * k
        q = query.unsqueeze(1) if query.dim() == 2 else query
        h = q @ (w[:, 0] + w[:, 2]).T + seq @ (w[:, 1] - w[:, 2]).T + (q * seq) @ w[:, 3].T + self.first.bias
        return self.rest(self.act(h)).squeeze(-1)

    def forward(self, query: torch.Tensor, seq: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = self.score(query, seq)
        weights = masked_softmax(scores, mask)
        pooled = torch.einsum("bl,bld->bd", weights, seq)
        return pooled, weights, scores * mask.to(scores.dtype)
