"""POSO's personalized gates (Dai et al., Sec. 4): g(x_pc) = C * sigmoid(MLP_2(x_pc)).

The gate is a two-layer MLP with sigmoid outputs, driven only by the personalization code
(e.g. bucketized accumulated view count), so that code cannot be "submerged" by the other
features. C rectifies the scale (Eq. 6): with C = 2 a neutral gate (sigmoid = 0.5) is identity.

Gates of a bucketized code are evaluated per bucket, not per row (:class:`BucketCode`): a gate
sees nothing but the code, and a code such as the AVC bucket takes only V ~ 10-20 values, so
``g(E[idx]) = g(E)[idx]`` runs every gate network on the V rows of the code's embedding table
``E`` once per forward and gathers the batch's rows, instead of running it on B rows. The gates of
a whole model are evaluated together in one pass (:func:`evaluate_gates`) and gathered with one
index lookup. Same function, same parameters; the gather's backward sums the rows of each bucket,
so gradients reach the gate networks and the table exactly as the per-row computation's do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PersonalizedGate(nn.Module):
    def __init__(self, pc_dim: int, out_dim: int, hidden: int | None = None, scale: float = 2.0) -> None:
        super().__init__()
        hidden = hidden or max(out_dim, 16)
        self.net = nn.Sequential(nn.Linear(pc_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        self.scale = scale
        self.out_dim = out_dim

    def evaluate(self, pc: torch.Tensor) -> torch.Tensor:
        """The gate network on explicit codes: ``[R, pc_dim] -> [R, out_dim]`` in ``(0, C)``."""
        return self.scale * torch.sigmoid(self.net(pc))

    def forward(self, pc: torch.Tensor | BucketCode) -> torch.Tensor:
        """``[B, pc_dim] -> [B, out_dim]`` in ``(0, C)``; a :class:`BucketCode` is answered by a
        per-bucket lookup (same values)."""
        if isinstance(pc, BucketCode):
            return pc.gate(self)
        return self.evaluate(pc)


def evaluate_gates(gates: Sequence[PersonalizedGate], pc: torch.Tensor) -> torch.Tensor:
    """Every gate of ``gates`` on the same codes in one network pass: ``[R, pc_dim] ->
    [R, sum(out_dim)]``, the gates' outputs side by side in order.

    The first layers are stacked into one matrix and the second layers form a block-diagonal one,
    so the whole bank is two matrix products whatever the number of gates. The weights are read
    from the gates at call time (no copies are kept), so this stays the gates' own function and
    gradients reach their parameters.
    """
    if len(gates) == 1:
        return gates[0].evaluate(pc)
    first = [g.net[0] for g in gates]
    second = [g.net[2] for g in gates]
    h = torch.relu(F.linear(pc, torch.cat([m.weight for m in first]), torch.cat([m.bias for m in first])))
    z = torch.sigmoid(F.linear(h, torch.block_diag(*[m.weight for m in second]),
                               torch.cat([m.bias for m in second])))
    scales = {float(g.scale) for g in gates}
    if len(scales) == 1:
        return scales.pop() * z
    return z * torch.cat([z.new_full((g.out_dim,), float(g.scale)) for g in gates])


class BucketCode:
    """A personalization code that is a row of a small embedding table: the batch's codes are
    ``table[index]`` (bucketized AVC, is-new-user, item age).

    :class:`PersonalizedGate` answers it by evaluating its network on the ``V`` table rows and
    gathering rows by ``index`` (``g(table)[index] == g(table[index])``): the gate MLP runs on V
    (~10-20) rows instead of B. With ``gates`` given, all of them are evaluated at construction in
    one pass (:func:`evaluate_gates`) and gathered with a single index lookup; any other gate is
    evaluated on first use. Values are cached, so build one code per forward pass (the table's
    values change with every optimizer step).
    """

    def __init__(self, table: torch.Tensor, index: torch.Tensor,
                 gates: Sequence[PersonalizedGate] = ()) -> None:
        self.table, self.index = table, index
        self._values: dict[PersonalizedGate, torch.Tensor] = {}
        self._rows: torch.Tensor | None = None
        gates = [g for g in dict.fromkeys(gates)]  # each gate once, order kept
        if gates:
            bank = evaluate_gates(gates, table).index_select(0, index)  # [B, sum(out)]: one gather
            for g, v in zip(gates, bank.split([g.out_dim for g in gates], dim=1)):
                self._values[g] = v

    def rows(self) -> torch.Tensor:
        """The batch's codes ``table[index]``, ``[B, pc_dim]`` (what a per-row gate would see)."""
        if self._rows is None:
            self._rows = self.table.index_select(0, self.index)
        return self._rows

    def gate(self, gate: PersonalizedGate) -> torch.Tensor:
        """``gate``'s output for every row of the batch, ``[B, out_dim]``."""
        v = self._values.get(gate)
        if v is None:
            v = self._values[gate] = gate.evaluate(self.table).index_select(0, self.index)
        return v


def code_rows(pc: torch.Tensor | BucketCode | None) -> torch.Tensor | None:
    """A personalization code as a plain ``[B, pc_dim]`` tensor (or None)."""
    return pc.rows() if isinstance(pc, BucketCode) else pc


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

    def forward(self, x: torch.Tensor, pc: torch.Tensor | BucketCode) -> torch.Tensor:
        for layer, gate in zip(self.layers, self.gates):
            x = self.dropout(gate(pc) * torch.relu(layer(x)))
        return x
