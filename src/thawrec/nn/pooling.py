"""Pooling a set of embeddings into one vector.

``AdditiveAttentionPooling`` is MAIL's feature-weighting attention (Eq. 1-2):
``e_i = z^T tanh(W a_i + b)``, ``alpha = softmax(e)``, ``h = sum_i alpha_i a_i``. A mask lets it
pool padded behaviour sequences; a row with nothing to pool gives the zero vector (a new user).

``WeightedAggregation`` is COUPLE's WA (Eq. 3-4, reused for Eq. 11): each of ``m`` vectors is
scored against their mean through a learnt bilinear form, ``d_k = e_k^T M e_mean``,
``a = softmax(d)``, ``out = sum_k a_k e_k``.
"""

from __future__ import annotations

import torch
from torch import nn

from thawrec.nn.attention import masked_softmax


class AdditiveAttentionPooling(nn.Module):
    def __init__(self, dim: int, attn_dim: int = 32) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attn_dim)  # W, b
        self.z = nn.Linear(attn_dim, 1, bias=False)  # z

    def weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n, d]`` (+ mask ``[B, n]``, True = real) -> attention weights ``[B, n]``."""
        e = self.z(torch.tanh(self.proj(x))).squeeze(-1)
        return torch.softmax(e, dim=-1) if mask is None else masked_softmax(e, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n, d] -> [B, d]``."""
        return torch.einsum("bn,bnd->bd", self.weights(x, mask), x)


class WeightedAggregation(nn.Module):
    """COUPLE's weighted aggregation (Eq. 4): ``[B, m, d] -> [B, d]`` with ``M [d, d]`` learnt.
    One vector (``m = 1``) comes back unchanged (its weight is 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.M = nn.Parameter(torch.empty(dim, dim))
        nn.init.xavier_uniform_(self.M)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, m, d] -> a [B, m]``."""
        mean = x.mean(dim=1)
        return torch.softmax(torch.einsum("bkd,de,be->bk", x, self.M, mean), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bk,bkd->bd", self.weights(x), x)
