"""Progressive Layered Extraction (Tang et al., RecSys 2020): the multi-task block of UIE's ranker.

One extraction level is a Customized Gate Control (CGC) layer: every task has its own experts,
all tasks share a set of shared experts, and task ``t``'s gate is a softmax over its own experts
plus the shared ones, ``h^t = sum_i softmax(W^t x^t)_i e_i(x^t)``. PLE stacks levels
progressively: level ``k`` feeds task ``t``'s experts with task ``t``'s output of level ``k-1``
and the shared experts with the shared output, which comes from a shared gate over *all* experts
of the level (task-specific and shared). The last level has no shared gate (nothing reads it).
A tower per task sits on top.

Unlike MMoE (one set of experts behind every task gate), the task-specific experts keep tasks
that conflict from pulling the same parameters (PLE's "seesaw" fix); the shared gate is how the
levels still exchange what the tasks have in common.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from thawrec.errors import ConfigError
from thawrec.nn.mlp import MLP

__all__ = ["CGC", "PLE", "CGCOutput", "PLEExtraction"]


@dataclass
class CGCOutput:
    """One level's outputs and gate weights (rows sum to 1).

    ``tasks[t]``: ``[B, d]``; ``shared``: ``[B, d]`` or None on a level without a shared gate;
    ``task_gates[t]``: ``[B, n_task_experts + n_shared_experts]`` (task ``t``'s experts first);
    ``shared_gate``: ``[B, n_tasks * n_task_experts + n_shared_experts]`` (task 0's experts, task
    1's, ..., the shared ones) or None.
    """

    tasks: list[torch.Tensor]
    shared: torch.Tensor | None
    task_gates: list[torch.Tensor]
    shared_gate: torch.Tensor | None


@dataclass
class PLEExtraction:
    """The top level's per-task representations (the towers' inputs) and every level's gates."""

    tasks: list[torch.Tensor]
    levels: list[CGCOutput]


def _mix(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` weights x ``[B, n, d]`` expert outputs -> ``[B, d]``."""
    return torch.einsum("bn,bnd->bd", weights, experts)


class CGC(nn.Module):
    """One extraction level: task-specific and shared experts, a softmax gate per task, and
    (``shared_gate=True``, every level but PLE's last) a shared gate over all the level's experts."""

    def __init__(self, in_dim: int, n_tasks: int, *, n_task_experts: int, n_shared_experts: int,
                 expert_hidden: Sequence[int], shared_gate: bool, act: str = "relu", dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ConfigError(f"CGC needs at least one task, got {n_tasks}")
        if n_task_experts < 0 or n_shared_experts < 0 or n_task_experts + n_shared_experts < 1:
            raise ConfigError(f"CGC: expert counts must be >= 0 with at least one per task, got "
                              f"{n_task_experts} task-specific and {n_shared_experts} shared")
        if not expert_hidden:
            raise ConfigError("CGC: expert_hidden must list at least one layer width, e.g. [64]")

        def expert() -> MLP:
            return MLP(in_dim, list(expert_hidden), act=act, dropout=dropout, batch_norm=batch_norm)

        self.n_tasks, self.n_task_experts, self.n_shared_experts = n_tasks, n_task_experts, n_shared_experts
        self.task_experts = nn.ModuleList(nn.ModuleList(expert() for _ in range(n_task_experts))
                                          for _ in range(n_tasks))
        self.shared_experts = nn.ModuleList(expert() for _ in range(n_shared_experts))
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_task_experts + n_shared_experts)
                                        for _ in range(n_tasks))
        self.shared_gate = (nn.Linear(in_dim, n_tasks * n_task_experts + n_shared_experts)
                            if shared_gate else None)
        self.out_dim = int(expert_hidden[-1])

    def forward(self, task_inputs: Sequence[torch.Tensor], shared_input: torch.Tensor) -> CGCOutput:
        """``task_inputs``: ``n_tasks x [B, in_dim]`` (at the first level all are the same ``x``);
        ``shared_input``: ``[B, in_dim]``."""
        if len(task_inputs) != self.n_tasks:
            raise ValueError(f"CGC built for {self.n_tasks} tasks got {len(task_inputs)} task inputs")
        shared = [ex(shared_input) for ex in self.shared_experts]
        own = [[ex(x) for ex in experts] for x, experts in zip(task_inputs, self.task_experts)]
        outs, gates = [], []
        for x, mine, gate in zip(task_inputs, own, self.task_gates):
            w = torch.softmax(gate(x), dim=-1)
            outs.append(_mix(w, torch.stack(mine + shared, dim=1)))
            gates.append(w)
        shared_out = shared_w = None
        if self.shared_gate is not None:
            shared_w = torch.softmax(self.shared_gate(shared_input), dim=-1)
            every = [e for mine in own for e in mine] + shared
            shared_out = _mix(shared_w, torch.stack(every, dim=1))
        return CGCOutput(outs, shared_out, gates, shared_w)


class PLE(nn.Module):
    """``levels`` CGC layers extracted progressively, then a tower per task.

    ``forward(x)`` returns one ``[B, out_dim]`` tensor per task (the towers end in a linear layer
    of width ``out_dim``); ``extract(x)`` returns the towers' inputs and every gate, for
    diagnostics and for models that put their own heads on the extracted representations.
    """

    def __init__(self, in_dim: int, n_tasks: int, *, levels: int = 2, n_task_experts: int = 1,
                 n_shared_experts: int = 1, expert_hidden: Sequence[int] = (64,),
                 tower_hidden: Sequence[int] = (32,), out_dim: int = 1, act: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        if levels < 1:
            raise ConfigError(f"PLE needs at least one extraction level, got levels={levels}")
        if not expert_hidden:
            raise ConfigError("PLE: expert_hidden must list at least one layer width, e.g. [64]")
        dims = [in_dim] + [int(expert_hidden[-1])] * (levels - 1)
        self.levels = nn.ModuleList(
            CGC(d, n_tasks, n_task_experts=n_task_experts, n_shared_experts=n_shared_experts,
                expert_hidden=expert_hidden, shared_gate=k < levels - 1, act=act, dropout=dropout,
                batch_norm=batch_norm)
            for k, d in enumerate(dims))
        top = self.levels[-1].out_dim
        self.towers = nn.ModuleList(MLP(top, list(tower_hidden), out_dim=out_dim, act=act, dropout=dropout,
                                        batch_norm=batch_norm) for _ in range(n_tasks))
        self.n_tasks = n_tasks
        self.out_dim = out_dim

    def extract(self, x: torch.Tensor) -> PLEExtraction:
        """``[B, in_dim]`` -> per-task ``[B, d_expert]`` after the last level, plus every level."""
        task_inputs: list[torch.Tensor] = [x] * self.n_tasks
        shared: torch.Tensor = x
        levels = []
        for level in self.levels:
            out = level(task_inputs, shared)
            levels.append(out)
            task_inputs = out.tasks
            if out.shared is not None:
                shared = out.shared
        return PLEExtraction(task_inputs, levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, in_dim]`` -> ``n_tasks x [B, out_dim]``."""
        return [tower(h) for tower, h in zip(self.towers, self.extract(x).tasks)]
