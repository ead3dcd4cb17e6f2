"""COMPLETER (Lin, Gou, Liu, Li, Lv and Peng, CVPR 2021, "COMPLETER: Incomplete Multi-view
Clustering via Contrastive Prediction") as DAUC's multi-view baseline (KDD'22, Section 4.2,
Appendix A.3).

- Two autoencoders with DAUC's structures: side ``M-800-600-400`` / ``400-600-800-M``, target
  ``N-256-400`` / ``400-256-N``. As in COMPLETER's released code the hidden layers are
  Linear -> BatchNorm -> ReLU and each encoder ends in a **softmax**: the latent code is a
  distribution over 400 "pseudo-clusters", which the contrastive loss needs.
- Cross-view contrastive loss :func:`thawrec.nn.losses.completer_contrastive_loss` with
  alpha = 9 (DAUC's tuned value), weight 1.
- Dual prediction: two networks ``400-256-400`` (Linear -> BatchNorm -> ReLU -> Linear -> softmax,
  as the released code), side -> target code and target -> side code, each scored by the mean
  squared error against the other view's code (no stop-gradient, as the released code), from
  epoch ``pred_start_epoch = 10`` on (0-based: the first 10 epochs train L_cl + L_rec only, the
  released code's ``epoch >= start_dual_prediction``).
- ``L = L_cl + 0.1 L_rec + 0.1 L_pre`` (``rec_weight``, ``pred_weight``), lr 1e-4, 30 epochs
  (``fit_defaults``).

Choices where the papers are silent or our data differ:

- Pairs: only the *active* users of a batch have the target view, so the contrastive and
  prediction terms and the target reconstruction use those rows (COMPLETER trains on the complete
  pairs); the side view is reconstructed for every user of the batch (cold users included),
  encoded in one pass so BatchNorm sees the whole batch. A batch with fewer than 2 active users
  has only the side reconstruction, and a batch of one user no term (BatchNorm needs 2 rows).
- Decoder outputs are linear (the released code puts BatchNorm + ReLU on the output too, for
  min-max scaled inputs; the target view, mean item embeddings, can be negative). Side view:
  the original's squared error (``recon_loss = "mse"``) or the sigmoid cross-entropy of logits
  (``"bce"``, output bias started at the column priors: see :mod:`thawrec.models.baselines.dec`);
  target view: squared error.
- ``represent`` is the side-view latent code, after the softmax (what COMPLETER clusters on),
  evaluated with BatchNorm's running statistics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.errors import ConfigError
from thawrec.models.baselines.two_view import (TwoViewClusterer, check_dims, check_positive, check_recon_loss,
                                          reconstruction_loss, view_decoder, view_encoder)
from thawrec.nn.losses import completer_contrastive_loss
from thawrec.nn.mlp import MLP
from thawrec.registry import register


@register("clusterer", "completer")
class COMPLETER(TwoViewClusterer):
    """Config keys (defaults): ``side_encoder`` [800, 600, 400], ``target_encoder`` [256, 400]
    (decoders mirror them; the two codes must have the same size), ``predictor_hidden`` [256],
    ``activation`` "relu", ``batch_norm`` True, ``recon_loss`` "mse" ("bce"), ``alpha`` 9.0,
    ``rec_weight`` 0.1, ``pred_weight`` 0.1, ``pred_start_epoch`` 10, ``epochs`` 30, ``lr`` 1e-4."""

    method = "COMPLETER"
    defaults: dict[str, Any] = {"side_encoder": [800, 600, 400], "target_encoder": [256, 400],
                                "predictor_hidden": [256], "activation": "relu", "batch_norm": True,
                                "recon_loss": "mse", "alpha": 9.0, "rec_weight": 0.1, "pred_weight": 0.1,
                                "pred_start_epoch": 10, "epochs": 30, "lr": 1e-4}

    def __init__(self, side_dim: int, target_dim: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        name = self.method
        d1, d2 = self._configure(side_dim, target_dim, cfg)
        cfg = self.cfg
        hid = check_dims(name, "predictor_hidden", cfg["predictor_hidden"])
        if d1[-1] != d2[-1]:
            raise ConfigError(f"{name}: the two latent codes differ in size ({d1[-1]} vs {d2[-1]}); the contrastive "
                              "loss and the dual prediction need one size. Fix: end side_encoder and target_encoder "
                              "with the same number (DAUC: 400)")
        self.recon_kind = check_recon_loss(name, cfg["recon_loss"])
        check_positive(name, cfg, "lr", "epochs")
        check_positive(name, cfg, "alpha", "rec_weight", "pred_weight", "pred_start_epoch", allow_zero=True)
        if not isinstance(cfg["batch_norm"], bool):
            raise ConfigError(f"{name}: batch_norm must be true or false, got {cfg['batch_norm']!r}. "
                              "Fix: true (the original)")
        act, bn, latent = cfg["activation"], cfg["batch_norm"], d1[-1]
        self.side_encoder = nn.Sequential(view_encoder(self.side_dim, d1, act, bn), nn.Softmax(dim=1))
        self.side_decoder = view_decoder(d1, self.side_dim, act, bn)
        self.target_encoder = nn.Sequential(view_encoder(self.target_dim, d2, act, bn), nn.Softmax(dim=1))
        self.target_decoder = view_decoder(d2, self.target_dim, act, bn)
        self.side_to_target = nn.Sequential(MLP(latent, hid, out_dim=latent, act=act, batch_norm=bn), nn.Softmax(dim=1))
        self.target_to_side = nn.Sequential(MLP(latent, hid, out_dim=latent, act=act, batch_norm=bn), nn.Softmax(dim=1))
        self.register_buffer("side_bias_ready", torch.tensor(False))


    def loss(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x1 = batch["side"]
        if cfg["batch_norm"] and self.training and len(x1) < 2:
            return {}  # BatchNorm cannot normalise a single row (a last batch of one); fit_clusterer skips it
        z1 = self.side_encoder(x1)
        terms = {"reconstruction_side": cfg["rec_weight"] * reconstruction_loss(self.side_decoder(z1), x1,
                                                                                self.recon_kind)}
        active = batch["active"].to(z1.device).bool()
        if int(active.sum()) < 2:
            return terms
        x2 = batch["target"].to(z1.device)[active]
        z2 = self.target_encoder(x2)
        za = z1[active]
        terms["contrastive"] = completer_contrastive_loss(za, z2, alpha=float(cfg["alpha"]))
        terms["reconstruction_target"] = cfg["rec_weight"] * F.mse_loss(self.target_decoder(z2), x2)
        if epoch >= cfg["pred_start_epoch"]:
            terms["prediction"] = cfg["pred_weight"] * (F.mse_loss(self.side_to_target(za), z2)
                                                        + F.mse_loss(self.target_to_side(z2), za))
        return terms
