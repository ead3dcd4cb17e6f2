"""MAIL's residual encoder and decoder (Eq. 15-16).

Every hidden layer sees the block's input again (concatenated), as a wide & deep model keeps a
memorising path beside the deep one: with sparse recommendation signals the reconstruction is
easier when the raw input is never more than one layer away.

Encoder (dims ``[1024, 512]`` -> ``out``):
``z1 = act(W1 drop(h))``, ``z2 = act(W2 drop([z1, h]))``, ``p = act(W3 [z2, h])``.
Decoder (dims ``[512, 1024]`` -> ``out``): the same two hidden layers, then a linear output
``a' = W3 [z4, p]`` (no activation: it reconstructs embeddings, which can be negative).

``forward(x, dropout=None)``: dropout follows the module's train/eval mode unless ``dropout``
says otherwise. MAIL trains its reconstruction with dropout on but generates the behaviour the
ranking tower consumes with it off, as at test time, in the same training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Residual(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, int], out_dim: int, dropout: float,
                 out_activation: bool, slope: float) -> None:
        super().__init__()
        h1, h2 = hidden
        self.l1 = nn.Linear(in_dim, h1)
        self.l2 = nn.Linear(h1 + in_dim, h2)
        self.out = nn.Linear(h2 + in_dim, out_dim)
        self.drop = nn.Dropout(dropout)
        self.act = nn.LeakyReLU(slope)
        self.out_activation = out_activation
        self.out_dim = out_dim
        for m in (self.l1, self.l2, self.out):  # MAIL uses Xavier initialisation
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, dropout: bool | None = None) -> torch.Tensor:
        """``dropout``: None follows ``self.training``; True / False forces it on / off."""
        on = self.training if dropout is None else dropout
        p = self.drop.p

        def drop(t: torch.Tensor) -> torch.Tensor:
            return F.dropout(t, p, training=True) if on and p > 0 else t

        z1 = self.act(self.l1(drop(x)))
        z2 = self.act(self.l2(drop(torch.cat([z1, x], dim=-1))))
        y = self.out(torch.cat([z2, x], dim=-1))
        return self.act(y) if self.out_activation else y


class ResidualEncoder(_Residual):
    """Eq. 15: ``h [B, in] -> p [B, out]`` (MAIL: 1024-512-512, dropout 0.5, LeakyReLU)."""

    def __init__(self, in_dim: int, hidden: tuple[int, int] = (1024, 512), out_dim: int = 512,
                 dropout: float = 0.5, slope: float = 0.01) -> None:
        super().__init__(in_dim, hidden, out_dim, dropout, out_activation=True, slope=slope)


class ResidualDecoder(_Residual):
    """Eq. 16: ``p [B, in] -> reconstruction [B, out]`` (MAIL: 512-1024-d, dropout 0.5)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, int] = (512, 1024),
                 dropout: float = 0.5, slope: float = 0.01) -> None:
        super().__init__(in_dim, hidden, out_dim, dropout, out_activation=False, slope=slope)
