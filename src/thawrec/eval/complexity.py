"""Params and FLOPs per sample of a model and of its named sub-modules (POSO's Table 1 layout).

FLOPs are counted by torch's FlopCounterMode on a real batch (matrix products: 2 x m x n x k;
element-wise ops such as gate multiplications are not counted, as in most CTR papers) and divided
by the batch size. Embedding tables are reported apart: lookups cost no FLOPs, and their rows
dominate parameter counts without saying anything about a module's design.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module, *, embeddings: bool = False) -> int:
    seen: set[int] = set()
    total = 0
    for m in module.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and not embeddings:
            seen.update(id(p) for p in m.parameters())
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@torch.no_grad()
def cost_table(model: nn.Module, batch: dict[str, torch.Tensor], modules: dict[str, str]) -> list[dict[str, Any]]:
    """Rows ``{"module", "params", "flops_per_sample"}`` for each ``label -> submodule path``
    (``""`` = the whole model, whose row also carries the embedding parameters)."""
    was = model.training
    model.eval()
    n = len(next(iter(batch.values())))
    with FlopCounterMode(display=False) as fc:
        model(batch)
    model.train(was)
    counts = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    root = type(model).__name__
    rows = []
    for label, path in modules.items():
        sub = model.get_submodule(path) if path else model
        key = f"{root}.{path}" if path else "Global"
        row = {"module": label, "params": count_params(sub), "flops_per_sample": _flops(counts, key) / n}
        if not path:
            row["embedding_params"] = count_params(sub, embeddings=True) - row["params"]
        rows.append(row)
    return rows


def _flops(counts: dict[str, int], key: str) -> int:
    """A container without forward (ModuleList / ModuleDict) has no entry of its own: sum its
    direct children instead (summing all descendants would count nested modules twice)."""
    if key in counts:
        return counts[key]
    prefix = key + "."
    return sum(v for k, v in counts.items() if k.startswith(prefix) and "." not in k[len(prefix):])
