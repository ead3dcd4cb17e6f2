"""POSO's personalized gates (Dai et al., Sec. 4): g(x_pc) = C * sigmoid(MLP_2(x_pc)).

The gate is a two-layer MLP with sigmoid outputs, driven only by the personalization code
(e.g. bucketized accumulated view count), so that code cannot be "submerged" by the other
features. C rectifies the scale (Eq. 6): with C = 2 a neutral gate (sigmoid = 0.5) is identity.
"""

from __future__ import annotations

import torch
from torch import nn


class PersonalizedGate(nn.Module):
    def __init__(self, pc_dim: int, out_dim: int, hidden: int | None = None, scale: float = 2.0) -> None:
        super().__init__()
        hidden = hidden or max(out_dim, 16)
        self.net = nn.Sequential(nn.Linear(pc_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.scale = scale

    def forward(self, pc: torch.Tensor) -> torch.Tensor:
        """``[B, pc_dim] -> [B, out_dim]`` in ``(0, C)``."""
        return self.scale * torch.sigmoid(self.net(pc))


class PosoMLP(nn.Module):
    """POSO(MLP), Eq. 11: every layer's activation is masked by its own personalized gate,
    ``x <- C * g_l(pc) ⊙ act(W_l x)``."""

    def __init__(self, in_dim: int, hidden: list[int], pc_dim: int, *, dropout: float = 0.0,
                 scale: float = 2.0) -> None:
        super().__init__()
        dims = [in_dim] + list(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.gates = nn.ModuleList(PersonalizedGate(pc_dim, b, scale=scale) for b in dims[1:])
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, pc: torch.Tensor) -> torch.Tensor:
        for layer, gate in zip(self.layers, self.gates):
            x = self.dropout(gate(pc) * torch.relu(layer(x)))
        return x
