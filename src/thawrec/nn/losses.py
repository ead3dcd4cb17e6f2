"""Losses shared across systems.

``gaussian_mmd``: maximum mean discrepancy between two batches with a Gaussian kernel
``k(p, q) = exp(-||p - q||^2 / (2 sigma^2))`` (MAIL Eq. 5-6, sigma = 1). It is the squared RKHS
distance between the batches' kernel mean embeddings,
``MMD^2 = mean k(P, P) + mean k(Q, Q) - 2 mean k(P, Q)``, every mean over all n^2 pairs. (MAIL's
printed Eq. 5 has 1/n before the first two sums; expanding its own left-hand side
``||1/n sum phi(p) - 1/n sum phi(q)||^2`` gives 1/n^2 for all three, which is what we use.)
"""

from __future__ import annotations

import torch


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """``[n, d] x [m, d] -> [n, m]`` Gaussian kernel matrix."""
    d2 = (a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)
    return torch.exp(-d2 / (2.0 * sigma * sigma))


def gaussian_mmd(p: torch.Tensor, q: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Biased MMD^2 estimate between batches ``p [n, d]`` and ``q [m, d]`` (a scalar >= 0)."""
    if p.shape[-1] != q.shape[-1]:
        from thawrec.errors import ConfigError

        raise ConfigError(f"MMD needs equal feature sizes, got {p.shape[-1]} and {q.shape[-1]}")
    return (gaussian_kernel(p, p, sigma).mean() + gaussian_kernel(q, q, sigma).mean()
            - 2.0 * gaussian_kernel(p, q, sigma).mean()).clamp_min(0.0)
