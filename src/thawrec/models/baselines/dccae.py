"""DCCAE (Wang, Arora, Livescu and Bilmes, ICML 2015, "On Deep Multi-View Representation
Learning"), the deep canonically correlated autoencoders, as DAUC's multi-view baseline (KDD'22,
Section 4.2, Appendix A.3).

Two autoencoders with DAUC's structures: the side view ``M-800-600-400`` / ``400-600-800-M`` and
the target view ``N-256-400`` / ``400-256-N`` (ReLU hidden layers, linear codes and outputs, as
DCCAE's linear final layers). The objective is DCCAE's

``L = - corr(f(x1), g(x2)) + lambda (L_rec(x1) + L_rec(x2))``

with DAUC's equal weights (``cca_weight = rec_weight = 1``), lr 1e-4, 30 epochs
(``fit_defaults``). ``corr`` is :func:`thawrec.nn.losses.cca_loss` on the mini-batch: DCCAE's
stochastic optimisation of the total canonical correlation on mini-batches.

Choices where the papers are silent:

- Only the *active* users of a batch have the target view, so the CCA term and the target
  reconstruction use those rows only; the side view is reconstructed for every user (cold users
  included: their representation comes from this encoder). A batch with fewer than 2 active users
  has no CCA term (a covariance needs 2 rows).
- CCA: all ``min(d1, d2) = 400`` canonical correlations are summed (``cca_k = None``; DCCAE's
  total correlation of the ``L`` output dimensions), ridge ``r1 = r2 = 1e-3`` (the value DCCA's
  public implementations use); ``cca_k`` sums the top-k only.
- Batch size: DAUC gives none for DCCAE. With ``n`` active users in a batch at most ``n - 1``
  correlations are non-zero, and when ``n - 1`` is below the code size (400) the sample CCA
  overfits: the correlations approach 1 for any network once the codes' variance outgrows the
  ridge, so the CCA term carries little signal. The model logs a warning once when even the
  largest batch of an epoch had too few active users. Choose ``batch_size`` so that a batch holds
  more active users than the code size (e.g. 1024 when half the users are active).
  ``fit_defaults`` leaves the batch size to the caller (``fit_clusterer``'s default: DAUC's 128).
- Reconstruction: DCCAE's ``(1/N) sum_i ||x_i - p(f(x_i))||^2``, i.e. squared error summed over a
  user's dimensions and averaged over users (as DAUC's target reconstruction), for both views.
  The side view can use the sigmoid cross-entropy instead (``recon_loss = "bce"``, also summed
  over the ``M`` apps, output bias started at the column priors: see
  :mod:`thawrec.models.baselines.dec`).
- ``represent`` is the side-view encoder output (DAUC clusters multi-view baselines on the app
  view only, since cold users lack the target view).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from thawrec.errors import ConfigError
from thawrec.models.baselines.two_view import (TwoViewClusterer, check_positive, check_recon_loss,
                                          reconstruction_loss, view_decoder, view_encoder)
from thawrec.models.clustering import UserViews
from thawrec.nn.losses import cca_loss
from thawrec.registry import register

log = logging.getLogger(__name__)


@register("clusterer", "dccae")
class DCCAE(TwoViewClusterer):
    """Config keys (defaults): ``side_encoder`` [800, 600, 400], ``target_encoder`` [256, 400]
    (decoders mirror them), ``activation`` "relu", ``recon_loss`` "mse" ("bce"), ``cca_r1`` 1e-3,
    ``cca_r2`` 1e-3, ``cca_k`` None (all correlations), ``cca_weight`` 1.0, ``rec_weight`` 1.0,
    ``epochs`` 30, ``lr`` 1e-4."""

    method = "DCCAE"
    defaults: dict[str, Any] = {"side_encoder": [800, 600, 400], "target_encoder": [256, 400], "activation": "relu",
                                "recon_loss": "mse", "cca_r1": 1e-3, "cca_r2": 1e-3, "cca_k": None,
                                "cca_weight": 1.0, "rec_weight": 1.0, "epochs": 30, "lr": 1e-4}

    def __init__(self, side_dim: int, target_dim: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        name = self.method
        d1, d2 = self._configure(side_dim, target_dim, cfg)
        cfg = self.cfg
        self.recon_kind = check_recon_loss(name, cfg["recon_loss"])
        check_positive(name, cfg, "cca_r1", "cca_r2", "lr", "epochs")
        check_positive(name, cfg, "cca_weight", "rec_weight", allow_zero=True)
        k, kmax = cfg["cca_k"], min(d1[-1], d2[-1])
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= kmax):
            raise ConfigError(f"{name}: cca_k = {k!r}. Fix: None (all) or an integer in 1..{kmax} "
                              "(the smaller representation size)")
        act = cfg["activation"]
        self.side_encoder = view_encoder(self.side_dim, d1, act)
        self.side_decoder = view_decoder(d1, self.side_dim, act)
        self.target_encoder = view_encoder(self.target_dim, d2, act)
        self.target_decoder = view_decoder(d2, self.target_dim, act)
        self.cca_dim = kmax if k is None else k
        self._max_active = 0             # most active users in one batch since the last epoch start
        self._warned_small_batch = False
        self.register_buffer("side_bias_ready", torch.tensor(False))

    def on_epoch_start(self, epoch: int, views: UserViews) -> None:
        super().on_epoch_start(epoch, views)
        if 2 <= self._max_active <= self.cca_dim and not self._warned_small_batch:
            self._warned_small_batch = True
            log.warning("DCCAE: the largest batch of the last epoch had %d active users for %d canonical "
                        "correlations; at most %d can be non-zero and the sample CCA overfits (correlations near 1 "
                        "for any network). Fix: use batches with more active users than the code size",
                        self._max_active, self.cca_dim, self._max_active - 1)
        self._max_active = 0

    def loss(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x1 = batch["side"]
        z1 = self.side_encoder(x1)
        terms = {"reconstruction_side": cfg["rec_weight"] * reconstruction_loss(self.side_decoder(z1), x1,
                                                                                self.recon_kind, per_user_sum=True)}
        active = batch["active"].to(z1.device).bool()
        n_active = int(active.sum())
        self._max_active = max(self._max_active, n_active)
        if n_active >= 1:
            x2 = batch["target"].to(z1.device)[active]
            z2 = self.target_encoder(x2)
            terms["reconstruction_target"] = cfg["rec_weight"] * reconstruction_loss(self.target_decoder(z2), x2, "mse",
                                                                                     per_user_sum=True)
            if n_active >= 2:
                terms["cca"] = cfg["cca_weight"] * cca_loss(z1[active], z2, r1=cfg["cca_r1"], r2=cfg["cca_r2"],
                                                            k=cfg["cca_k"])
        return terms
