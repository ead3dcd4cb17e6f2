"""Multi-view contrastive loss (DAUC Eq. 3).

For ``B`` users seen in two views, ``h1 [B, D]`` and ``h2 [B, D]`` (row ``i`` of each is the same
user), with cosine similarities ``d^(u)(v)_ij = cos(h^(u)_i, h^(v)_j)`` and temperature ``tau``:

    L = -1/(2B) sum_i [ log( e^{d12_ii/tau} / (sum_{j!=i} e^{d11_ij/tau} + sum_j e^{d12_ij/tau}) )
                      + log( e^{d21_ii/tau} / (sum_{j!=i} e^{d22_ij/tau} + sum_j e^{d21_ij/tau}) ) ]

The positive pair is the same user's two views; the negatives are every *other* user of the batch,
in the same view (``j != i``) and in the other view. The inter-view sum runs over all ``j``, so the
positive itself is part of its denominator (as in SimCLR's NT-Xent, which this is, with the two
views as the two augmentations). Each log term is ``d_pos/tau - logsumexp(row)`` of a ``[B, 2B]``
similarity matrix ``[d11 with its diagonal masked | d12]``: numerically stable at any ``tau``.

The paper writes the sums over all ``U_a`` active users and notes that the loss "can be
efficiently optimized by mini-batch training and negative sampling": the mini-batch is the
sample, i.e. the negatives of a user are the other users of the same batch, and ``B`` replaces
``U_a``. Larger batches give more (and harder) negatives.

``same_view_negatives=False`` drops the intra-view block: each row's logits are then only the
inter-view similarities ``d12_i. / tau``, i.e. the in-batch softmax InfoNCE of Yao et al. (CIKM
2021, "Self-supervised Learning for Large-scale Item Recommendations", Eq. 3 there),
``-1/B sum_i log( e^{s(z_i, z'_i)/tau} / sum_j e^{s(z_i, z'_j)/tau} )`` with cosine ``s``,
averaged over the two directions (PLE+CL, :mod:`thawrec.models.rankers.ple_cl`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from thawrec.errors import ConfigError

_EPS = 1e-8  # cosine of an all-zero vector is taken as 0 instead of NaN


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[n, D] x [m, D] -> [n, m]`` cosine similarities."""
    return F.normalize(a, dim=-1, eps=_EPS) @ F.normalize(b, dim=-1, eps=_EPS).T


def _one_direction(anchor: torch.Tensor, other: torch.Tensor, temperature: float,
                   same_view_negatives: bool = True) -> torch.Tensor:
    """Per-user ``-log`` term of Eq. 3 with ``anchor`` as the first view: ``[B]``.

    Row ``i`` of the logits is ``[d(aa)_i, d(ao)_i] / tau`` with ``d(aa)_ii`` masked to ``-inf``
    (``j != i`` within the view); the positive ``d(ao)_ii`` stays in the row (the inter-view sum
    includes ``j = i``). Without ``same_view_negatives`` the row is ``d(ao)_i / tau`` alone.
    """
    # ``same`` before ``cross``: the order fixes how autograd sums the two gradient paths into
    # ``anchor``, and with it the last bits of DAUC's training (tests/test_suite_regression.py).
    same = cosine_matrix(anchor, anchor) if same_view_negatives else None
    cross = cosine_matrix(anchor, other)
    if same is not None:
        eye = torch.eye(len(anchor), dtype=torch.bool, device=anchor.device)
        logits = torch.cat([same.masked_fill(eye, float("-inf")), cross], dim=1) / temperature
    else:
        logits = cross / temperature
    return torch.logsumexp(logits, dim=1) - cross.diagonal() / temperature


def multiview_contrastive_loss(h1: torch.Tensor, h2: torch.Tensor, temperature: float = 0.5, *,
                               same_view_negatives: bool = True) -> torch.Tensor:
    """DAUC Eq. 3 over a batch: ``h1``, ``h2`` are ``[B, D]`` views of the same ``B`` users; a scalar.

    Averaged over the ``B`` users and the two directions (the ``1/(2 U_a)`` factor). ``temperature``
    ``tau`` = 0.5 is the paper's choice among {1.0, 0.5, 0.1, 0.01}. With ``B = 1`` there is no
    negative and the loss is 0; callers should skip such batches (DAUC needs two active users).
    ``same_view_negatives=False``: cross-view negatives only (Yao et al.'s InfoNCE, module docstring).
    """
    if h1.ndim != 2 or h1.shape != h2.shape:
        raise ConfigError(f"multi-view contrastive loss needs two [B, D] views of equal shape, got "
                          f"{tuple(h1.shape)} and {tuple(h2.shape)}. Fix: encode the same users in both "
                          "views into the same dimension (DAUC shares f_con between the views)")
    if temperature <= 0:
        raise ConfigError(f"contrastive temperature must be > 0, got {temperature}. Fix: use e.g. 0.5")
    return 0.5 * (_one_direction(h1, h2, temperature, same_view_negatives).mean()
                  + _one_direction(h2, h1, temperature, same_view_negatives).mean())
