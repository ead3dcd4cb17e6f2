"""Multi-gate Mixture of Experts (Ma et al., KDD'18) and its POSO version (Dai et al., Eq. 17).

MMoE: ``x^t = sum_i softmax(W^t x)_i e_i(x)``, one gate per task (POSO Eq. 1-2).
POSO(MMoE): each expert is also masked by its own personalized gate,
``x^t = sum_i g(pc)_i * softmax(W^t x)_i * e_i(x)``, task gates normalised over all experts.
"""

from __future__ import annotations

import torch
from torch import nn

from thawrec.nn.gating import BucketCode, PersonalizedGate
from thawrec.nn.mlp import MLP


class MMoE(nn.Module):
    """``fast`` (default) applies the personalized gate to the task gates' weights instead of the
    expert outputs: ``sum_i (g^t_i * g(pc)_i) e_i`` is Eq. 17 with the multiplication on ``[B, N]``
    rather than ``[B, N, d_expert]``. ``fast=False`` masks the experts literally (the reference)."""

    def __init__(self, in_dim: int, n_tasks: int, *, n_experts: int = 4, expert_hidden: list[int] | None = None,
                 dropout: float = 0.0, pc_dim: int = 0, scale: float = 2.0, fast: bool = True) -> None:
        super().__init__()
        hidden = list(expert_hidden or [256, 128])
        self.experts = nn.ModuleList(MLP(in_dim, hidden, dropout=dropout) for _ in range(n_experts))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_experts) for _ in range(n_tasks))
        self.poso_gate = PersonalizedGate(pc_dim, n_experts, scale=scale) if pc_dim > 0 else None
        self.out_dim = hidden[-1]
        self.fast = fast

    def forward(self, x: torch.Tensor, pc: torch.Tensor | BucketCode | None = None) -> list[torch.Tensor]:
        """``[B, D] -> T x [B, d_expert]``."""
        e = torch.stack([ex(x) for ex in self.experts], dim=1)  # [B, N, d]
        p = self.poso_gate(pc) if self.poso_gate is not None else None  # [B, N]
        if p is not None and not self.fast:
            e, p = e * p[:, :, None], None
        out = []
        for g in self.task_gates:
            w = torch.softmax(g(x), dim=-1)
            out.append(torch.einsum("bn,bnd->bd", w if p is None else w * p, e))
        return out
