"""Losses shared across systems.

``gaussian_mmd``: maximum mean discrepancy between two batches with a Gaussian kernel
``k(p, q) = exp(-||p - q||^2 / (2 sigma^2))`` (MAIL Eq. 5-6, sigma = 1). It is the squared RKHS
distance between the batches' kernel mean embeddings,
``MMD^2 = mean k(P, P) + mean k(Q, Q) - 2 mean k(P, Q)``, every mean over all n^2 pairs. (MAIL's
printed Eq. 5 has 1/n before the first two sums; expanding its own left-hand side
``||1/n sum phi(p) - 1/n sum phi(q)||^2`` gives 1/n^2 for all three, which is what we use.)

Bandwidth: a number, or ``"median"`` (the median heuristic): ``sigma^2 = median / 2`` of the
squared distances between distinct points of the pooled batch ``[P; Q]``, recomputed on every
call and held constant (no gradient flows through it). With it the kernel is
``exp(-||p - q||^2 / median)``: pairs at a typical distance get about ``e^-1``, whatever the
scale and width of the codes. A fixed sigma = 1 on 512-wide codes whose typical squared distance
is in the tens makes every off-diagonal kernel value about zero, and the MMD about ``2/n``
whatever the two batches are: a constant with no gradient worth the name.
"""

from __future__ import annotations

import torch


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigma: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``[n, d] x [m, d] -> [n, m]`` Gaussian kernel matrix."""
    return torch.exp(-_sq_dists(a, b) / (2.0 * sigma * sigma))


def _median_off_diagonal(d2: torch.Tensor) -> torch.Tensor:
    """Median of a square matrix's off-diagonal entries (for a symmetric one: of its distinct
    pairs), without gradient."""
    n = d2.shape[0]
    if n < 2:
        return d2.new_zeros(())
    with torch.no_grad():
        return d2.detach().flatten()[1:].view(n - 1, n + 1)[:, :-1].median()


def _sigma_squared(med: torch.Tensor) -> torch.Tensor:
    return torch.where(med > 0, med / 2.0, torch.ones_like(med))  # all points equal: sigma = 1


def median_bandwidth(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The median heuristic's ``sigma`` for the pooled batch ``[p; q]``: ``sigma^2`` is half the
    median squared distance between distinct points. Computed without gradient; a batch of
    identical points (median 0) gets sigma = 1."""
    z = torch.cat([p, q]).detach()
    return _sigma_squared(_median_off_diagonal(_sq_dists(z, z))).sqrt()


def gaussian_mmd(p: torch.Tensor, q: torch.Tensor, sigma: float | str = 1.0) -> torch.Tensor:
    """Biased MMD^2 estimate between batches ``p [n, d]`` and ``q [m, d]`` (a scalar >= 0).
    ``sigma``: the kernel bandwidth, or ``"median"`` (:func:`median_bandwidth`, per call).

    One kernel matrix over ``z = [p; q]`` and ``w = [1/n, ..., -1/m, ...]``: ``MMD^2 = w^T K w``
    (the three block means of the definition in one quadratic form)."""
    from thawrec.errors import ConfigError

    if p.shape[-1] != q.shape[-1]:
        raise ConfigError(f"MMD needs equal feature sizes, got {p.shape[-1]} and {q.shape[-1]}")
    if isinstance(sigma, str) and sigma != "median":
        raise ConfigError(f"MMD bandwidth must be a number or 'median', got '{sigma}'")
    z = torch.cat([p, q])
    d2 = _sq_dists(z, z).fill_diagonal_(0.0)  # exact zeros (the expansion leaves rounding error there)
    s2 = _sigma_squared(_median_off_diagonal(d2)) if sigma == "median" else float(sigma) ** 2
    k = torch.exp(d2 / (-2.0 * s2))
    n, m = len(p), len(q)
    w = torch.cat([z.new_full((n,), 1.0 / n), z.new_full((m,), -1.0 / m)])
    return (w @ k @ w).clamp_min(0.0)


# --------------------------------------------------------------------------------------------------
# Multi-view clustering baselines of DAUC (issue 5): DCCAE's CCA objective and COMPLETER's
# cross-view contrastive loss. Appended section; the functions above are unchanged.
# --------------------------------------------------------------------------------------------------


def cca_loss(h1: torch.Tensor, h2: torch.Tensor, *, r1: float = 1e-3, r2: float = 1e-3,
             k: int | None = None) -> torch.Tensor:
    """Negative total canonical correlation between two views (DCCA/DCCAE's objective; Andrew et
    al., ICML 2013; Wang et al., ICML 2015): ``-sum_{i<=k} sigma_i(T)`` with
    ``T = S11^{-1/2} S12 S22^{-1/2}``, the covariances of the centred batches ``h1 [n, d1]`` and
    ``h2 [n, d2]`` (divided by ``n - 1``) and ridge terms ``S11 += r1 I``, ``S22 += r2 I``.

    ``k``: how many of the largest canonical correlations to sum (``None``: all ``min(d1, d2)``,
    the DCCAE paper's total correlation of the ``L`` output dimensions). At most ``n - 1`` of them
    can be non-zero. The loss lies in ``[-k, 0]``; for one dimension it is minus the absolute
    (ridge-shrunk) Pearson correlation.

    Numerics: computed in float64; the whitening uses Cholesky factors, ``T' = L1^{-1} S12 L2^{-T}``,
    which has the same singular values as ``T`` (``L^{-1} = Q S^{-1/2}`` with ``Q`` orthogonal) but a
    backward pass without the ``1 / (lambda_i - lambda_j)`` terms of an eigendecomposition
    (a batch smaller than the dimension leaves many equal eigenvalues, which makes those infinite);
    the singular values come from ``torch.linalg.svdvals``, whose gradient is stable (should LAPACK's
    SVD not converge, the square roots of the eigenvalues of ``T^T T`` are used). Cost: one
    ``d1 x d2`` SVD per call (about 20-40 ms for 400 x 400 on one CPU core).

    Small batches: with ``n - 1 < min(d1, d2)`` the ``n - 1`` sample correlations tend to 1 for any
    network once the representations' variance outgrows the ridge terms (the sample CCA overfits),
    so the objective only carries signal through the ridge; batches with more rows than
    dimensions avoid that.
    """
    from thawrec.errors import ConfigError

    if h1.ndim != 2 or h2.ndim != 2 or h1.shape[0] != h2.shape[0]:
        raise ConfigError(f"CCA needs two [n, d] batches of the same n, got {tuple(h1.shape)} and {tuple(h2.shape)}. "
                          "Fix: pass the two views' representations of the same users")
    n = h1.shape[0]
    if n < 2:
        raise ConfigError(f"CCA needs at least 2 paired rows, got {n}. Fix: use larger batches")
    if r1 < 0 or r2 < 0:
        raise ConfigError(f"CCA ridge terms must be >= 0, got r1={r1}, r2={r2}. Fix: use e.g. 1e-3")
    d = min(h1.shape[1], h2.shape[1])
    if k is not None and not 1 <= k <= d:
        raise ConfigError(f"CCA k = {k} correlations but the views have min(d1, d2) = {d}. Fix: choose 1 <= k <= {d}")
    a = h1.double() - h1.double().mean(0, keepdim=True)
    b = h2.double() - h2.double().mean(0, keepdim=True)
    s11 = a.T @ a / (n - 1) + r1 * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    s22 = b.T @ b / (n - 1) + r2 * torch.eye(b.shape[1], dtype=b.dtype, device=b.device)
    s12 = a.T @ b / (n - 1)
    l1 = torch.linalg.cholesky(s11)
    l2 = torch.linalg.cholesky(s22)
    t = torch.linalg.solve_triangular(l1, s12, upper=False)              # L1^{-1} S12
    t = torch.linalg.solve_triangular(l2, t.T, upper=False).T             # ... L2^{-T}
    try:
        sv = torch.linalg.svdvals(t)                                      # descending
    except torch.linalg.LinAlgError:
        sv = _singular_values_by_eigh(t)
    if k is not None:
        sv = sv[:k]
    return (-sv.sum()).to(h1.dtype)


def _singular_values_by_eigh(t: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
    """Fallback when LAPACK's SVD does not converge (it can, rarely, on matrices with many equal
    singular values): ``sqrt`` of the eigenvalues of the smaller Gram matrix, descending; values
    below ``sqrt(tol)`` count as 0 (no gradient, so the square root's slope stays bounded)."""
    import logging

    logging.getLogger(__name__).warning("cca_loss: SVD did not converge; using the eigenvalues of T^T T instead")
    g = t.T @ t if t.shape[1] <= t.shape[0] else t @ t.T
    lam = torch.linalg.eigvalsh(g).flip(0)
    keep = lam > tol
    return torch.where(keep, torch.sqrt(torch.where(keep, lam, torch.ones_like(lam))), torch.zeros_like(lam))


def completer_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, *, alpha: float = 9.0,
                               eps: float = 2.220446049250313e-16) -> torch.Tensor:
    """COMPLETER's cross-view contrastive loss (Lin et al., CVPR 2021, Eq. 3-4), the negative
    mutual information of the two views' latent "cluster" distributions with entropy weight alpha.

    ``z1, z2 [n, D]``: the two views' latent codes of the same ``n`` samples, each row a
    probability vector (COMPLETER's encoders end in a softmax). The joint distribution is
    ``P = sum_n z1_n z2_n^T``, symmetrised ``(P + P^T) / 2`` and normalised to sum 1; with its
    marginals ``P_d = sum_d' P_dd'`` and ``P_d' = sum_d P_dd'``:

    ``L = - sum_{d,d'} P_dd' (ln P_dd' - (alpha + 1) ln P_d - (alpha + 1) ln P_d')``

    (alpha = 9 in COMPLETER and in DAUC's tuning). As in the authors' code, entries of ``P`` and of
    the marginals below ``eps`` (Python's float epsilon) are replaced by ``eps`` (no gradient
    through those entries).
    """
    from thawrec.errors import ConfigError

    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ConfigError(f"COMPLETER's contrastive loss needs two [n, D] batches of the same shape, got "
                          f"{tuple(z1.shape)} and {tuple(z2.shape)}. "
                          "Fix: pass both views' latent codes of the same samples")
    p = z1.T @ z2                                   # sum_n z1_n z2_n^T, [D, D]
    p = (p + p.T) / 2
    p = p / p.sum()
    p_d = p.sum(1, keepdim=True).clamp_min(eps)     # [D, 1]
    p_e = p.sum(0, keepdim=True).clamp_min(eps)     # [1, D]
    p = p.clamp_min(eps)
    return -(p * (torch.log(p) - (alpha + 1) * torch.log(p_d) - (alpha + 1) * torch.log(p_e))).sum()


def srip_penalty(weight: torch.Tensor, iterations: int = 2, eps: float = 1e-12) -> torch.Tensor:
    """SRIP (Bansal et al., NeurIPS 2018; COUPLE Eq. 9-10): ``sigma(W^T W - I)``, the spectral
    norm of the Gram matrix's distance from the identity, by power iteration.

    Starting from a random ``v``, ``iterations`` times ``u <- A v``, ``v <- A u`` with
    ``A = W^T W - I``; then ``sigma ~ ||v|| / ||u||`` (COUPLE Eq. 10, 2 iterations by default).
    ``v`` is rescaled to unit length before each iteration, which leaves the ratio unchanged.
    Gradients flow through the iteration, as in SRIP's reference code. ``A`` is symmetric, so the
    ratio estimates its largest absolute eigenvalue.

    The Gram matrix is taken on the smaller side of ``weight [r, c]``: ``W^T W`` (c x c) when
    ``r >= c``, else ``W W^T`` (r x r). Only that side can equal the identity (the other has rank
    at most ``min(r, c)``, so ``A`` would keep eigenvalues -1 whose eigenvectors lie in the null
    space of ``W``, where the penalty has no gradient): the penalty is then 0 exactly for a
    (semi-)orthogonal matrix (orthonormal rows or columns) and positive otherwise.
    """
    if weight.dim() != 2:
        raise ValueError(f"srip_penalty expects a 2-D weight, got shape {tuple(weight.shape)}")
    w = weight if weight.shape[0] >= weight.shape[1] else weight.T
    a = w.T @ w - torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
    v = torch.randn(w.shape[1], dtype=w.dtype, device=w.device)
    u = v
    for _ in range(max(int(iterations), 1)):
        v = v / v.norm().clamp_min(eps)  # keeps long iterations finite; the ratio below is scale-free
        u = a @ v
        v = a @ u
    return v.norm() / u.norm().clamp_min(eps)
