"""DEC (Xie et al., ICML 2016, "Unsupervised Deep Embedding for Clustering Analysis") and IDEC
(Guo et al., IJCAI 2017, "Improved Deep Embedded Clustering with Local Structure Preservation"),
the single-view deep clustering baselines of DAUC (KDD'22, Section 4.2, Appendix A.3), on the
side view only.

Both follow :class:`thawrec.models.clustering.DeepClusterer` and train with the shared
:func:`~thawrec.models.clustering.fit_clusterer` loop, in two phases:

1. **Pretraining** (``pretrain_epochs``, 30 in DAUC): an autoencoder ``M-800-600-400`` /
   ``400-600-800-M`` (ReLU hidden layers; the embedding and the output layers are linear, as in
   DEC, so the embedding keeps its full range) is trained on reconstruction.
2. **Clustering** (``cluster_epochs``, 20 in DAUC): at the first clustering epoch the cluster
   centres ``mu_j`` are initialised by k-means on every user's embedding; each user gets the
   Student-t soft assignment ``q_ij ∝ (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2)`` (alpha = 1),
   the target ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')`` with ``f_j = sum_i q_ij``, and
   the loss ``KL(P || Q)`` trains the encoder and the centres. DEC drops the decoder;
   IDEC keeps it: ``L = L_rec + gamma KL(P || Q)``, gamma = 0.1.

Which phase an epoch belongs to: ``phase = "auto"`` (default) reads it from the epoch number
(``epoch < pretrain_epochs`` -> pretraining), so one ``fit_clusterer(model, views,
**model.fit_defaults)`` call (50 epochs, lr 0.001) runs both. Setting ``model.phase`` to
``"pretrain"`` or ``"cluster"`` forces one phase, so a caller can run the phases as two
``fit_clusterer`` calls (each with a fresh Adam, as the original code compiles a new optimiser
for the clustering phase). The centres are initialised at the first clustering epoch either way.

Choices where the papers (or DAUC's description of its baselines) are silent or differ:

- Reconstruction loss: ``recon_loss = "mse"`` (default), the originals' mean squared error, or
  ``"bce"``, the sigmoid cross-entropy of the decoder's logits against the binary side view (the
  Bernoulli likelihood of a multi-hot vector). Both are means over entries, as Keras' ``mse`` in
  IDEC, so IDEC's gamma keeps its meaning. With ``bce`` the side decoder's output bias is set to
  the logit of each column's frequency at the first ``on_epoch_start`` (our addition): started
  from zero logits, the first steps only push every output down to the low install rate, and on a
  planted world with DAUC's structures (1,000 apps, 1,500 users in 10 groups, lr 0.001, batch
  128, one seed) the embedding collapsed: k-means NMI against the groups stayed at 0.01-0.10 over
  12 pretraining epochs, against 0.82-0.95 with ``mse`` and 0.88-1.0 with the initialised ``bce``.
- ``KL(P || Q)`` is summed over clusters and averaged over the batch (Keras' ``kld``, as in
  IDEC's released code).
- The target distribution is refreshed once per epoch, in ``on_epoch_start``, from all users
  (DEC/IDEC refresh it every ``T`` iterations: T = 140 batches on MNIST); the originals' stopping
  rule (fewer than 0.1% of assignments changing) is not used: the caller's epochs decide. The
  share of changed hard assignments is logged and kept in ``label_change``.
- Centres: :func:`thawrec.models.clustering.kmeans` (faiss when installed, one run) instead of
  scikit-learn KMeans with 20 restarts.
- Plain autoencoder pretraining end to end (as IDEC's code), not DEC's greedy layer-wise
  denoising pretraining; no dropout.
- With one ``fit_clusterer`` call the Adam moments carry over from pretraining into clustering
  (see the two-call alternative above).
- ``represent`` is the encoder output (the suite runs k-means on it, as for every method);
  ``assign`` is DEC's own hard assignment, ``argmax_j q_ij``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from thawrec.errors import ConfigError
from thawrec.models.baselines.two_view import (check_dim, check_dims, check_positive, check_recon_loss,
                                               init_logit_bias, reconstruction_loss, resolve_config, view_decoder,
                                               view_encoder)
from thawrec.models.clustering import DeepClusterer, UserViews, embed
from thawrec.registry import register
from thawrec.retrieval.index import kmeans

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------- DEC
def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC's auxiliary target ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')``, ``f_j = sum_i q_ij``
    (the soft cluster frequencies over all users): sharper than ``q``, rows sum to 1, and large
    clusters are down-weighted."""
    w = q.pow(2) / q.sum(0, keepdim=True).clamp_min(1e-12)
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


@register("clusterer", "dec")
class DEC(DeepClusterer):
    """DEC on the side view; ``k`` clusters. See the module docstring for the two phases.

    Config keys (defaults): ``encoder`` [800, 600, 400] (the decoder mirrors it), ``activation``
    "relu", ``recon_loss`` "mse" ("bce"), ``pretrain_epochs`` 30, ``cluster_epochs`` 20, ``alpha``
    1.0 (Student-t degrees of freedom), ``lr`` 0.001, ``kmeans_backend`` "auto", ``kmeans_seed`` 0;
    IDEC adds ``gamma`` 0.1.
    """

    method = "DEC"
    keeps_decoder = False
    has_own_assignment = True  # argmax of the soft assignment; the suite keeps it instead of k-means
    defaults: dict[str, Any] = {"encoder": [800, 600, 400], "activation": "relu", "recon_loss": "mse",
                                "pretrain_epochs": 30, "cluster_epochs": 20, "alpha": 1.0, "lr": 1e-3,
                                "kmeans_backend": "auto", "kmeans_seed": 0}

    def __init__(self, side_dim: int, k: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        name = self.method
        self.cfg = cfg = resolve_config(name, self.defaults, cfg)
        self.side_dim = check_dim(name, "side_dim", side_dim)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"{name}: k = {k!r} clusters. "
                              "Fix: pass a positive integer (DAUC: 100 Industrial, 20 Taobao)")
        self.k = int(k)
        dims = check_dims(name, "encoder", cfg["encoder"])
        self.recon_kind = check_recon_loss(name, cfg["recon_loss"])
        check_positive(name, cfg, "alpha", "lr", "cluster_epochs")
        check_positive(name, cfg, "pretrain_epochs", allow_zero=True)
        for key in ("pretrain_epochs", "cluster_epochs", "kmeans_seed"):
            if not isinstance(cfg[key], (int, np.integer)) or isinstance(cfg[key], bool):
                raise ConfigError(f"{name}: '{key}' must be an integer, got {cfg[key]!r}. "
                                  f"Fix: e.g. {self.defaults[key]}")
        if cfg["kmeans_backend"] not in ("auto", "faiss", "minibatch"):
            raise ConfigError(f"{name}: unknown kmeans_backend {cfg['kmeans_backend']!r}. "
                              "Fix: choose auto, faiss or minibatch")
        self.alpha = float(cfg["alpha"])
        self.pretrain_epochs = int(cfg["pretrain_epochs"])
        self.encoder = view_encoder(self.side_dim, dims, cfg["activation"])
        self.decoder = view_decoder(dims, self.side_dim, cfg["activation"])
        self.centres = nn.Parameter(torch.zeros(self.k, dims[-1]))
        self.register_buffer("centres_ready", torch.tensor(False))
        self.register_buffer("side_bias_ready", torch.tensor(False))
        # p for every user of the views given to on_epoch_start; not saved with the weights
        self.register_buffer("target_p", torch.zeros(0, self.k), persistent=False)
        self._phase = "auto"
        self._last_labels: torch.Tensor | None = None
        self.label_change: float | None = None

    @classmethod
    def from_views(cls, views: UserViews, k: int, cfg: dict[str, Any] | None = None) -> DEC:
        return cls(views.side.shape[1], k, cfg)

    @classmethod
    def build(cls, views: UserViews, n_clusters: int, cfg: dict[str, Any] | None = None) -> DEC:
        return cls.from_views(views, n_clusters, cfg)

    # ---- configuration of the training loop
    @property
    def fit_defaults(self) -> dict[str, Any]:
        """Keyword arguments for ``fit_clusterer`` that reproduce DAUC's setting (both phases)."""
        return {"epochs": self.pretrain_epochs + int(self.cfg["cluster_epochs"]), "lr": float(self.cfg["lr"])}

    @property
    def clustering_weight(self) -> float:
        return 1.0

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        if value not in ("auto", "pretrain", "cluster"):
            raise ConfigError(f"{self.method}: phase {value!r}. Fix: choose 'auto' (by epoch), 'pretrain' or 'cluster'")
        self._phase = value

    def phase_at(self, epoch: int) -> str:
        if self._phase != "auto":
            return self._phase
        return "pretrain" if epoch < self.pretrain_epochs else "cluster"

    # ---- the model
    def represent(self, side: torch.Tensor) -> torch.Tensor:
        return self.encoder(side)

    def log_soft_assign(self, z: torch.Tensor) -> torch.Tensor:
        """``log q [B, k]``: Student-t kernel between embeddings and centres, normalised per row."""
        d2 = (z.pow(2).sum(1, keepdim=True) + self.centres.pow(2).sum(1)[None, :]
              - 2.0 * z @ self.centres.T).clamp_min(0.0)
        logits = -(self.alpha + 1.0) / 2.0 * torch.log1p(d2 / self.alpha)
        return torch.log_softmax(logits, dim=1)

    def soft_assign(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_soft_assign(z).exp()

    @torch.no_grad()
    def assign(self, side: torch.Tensor) -> torch.Tensor:
        """DEC's hard cluster of each user, ``argmax_j q_ij`` (``[B]`` int64)."""
        self._require_centres("assign users")
        was = self.training
        self.eval()
        out = self.log_soft_assign(self.encoder(side)).argmax(1)
        self.train(was)
        return out

    def _require_centres(self, what: str) -> None:
        if not bool(self.centres_ready):
            raise ConfigError(f"{self.method}: cannot {what} before the cluster centres are initialised. "
                              "Fix: train through a clustering epoch (fit_clusterer runs on_epoch_start, which "
                              "initialises them by k-means at the first clustering epoch)")

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, views: UserViews) -> None:
        if self.recon_kind == "bce":
            init_logit_bias(self.decoder[-1], views, self.side_bias_ready)
        if self.phase_at(epoch) != "cluster":
            return
        z = torch.from_numpy(embed(self, views)).to(self.centres.device)
        if not bool(self.centres_ready):
            _, centres = kmeans(z.cpu().numpy(), self.k, seed=int(self.cfg["kmeans_seed"]),
                                backend=self.cfg["kmeans_backend"])
            self.centres.copy_(torch.from_numpy(centres).to(self.centres))
            self.centres_ready.fill_(True)
            self._last_labels = None
            log.info("%s: cluster centres initialised by k-means on %d embeddings (epoch %d)",
                     self.method, len(z), epoch + 1)
        q = self.soft_assign(z)
        labels = q.argmax(1)
        if self._last_labels is not None and len(self._last_labels) == len(labels):
            self.label_change = float((labels != self._last_labels).float().mean())
            log.info("%s: %.4f of the hard assignments changed since the last refresh", self.method, self.label_change)
        self._last_labels = labels
        self.target_p = target_distribution(q)

    def loss(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        x = batch["side"]
        z = self.encoder(x)
        phase = self.phase_at(epoch)
        terms: dict[str, torch.Tensor] = {}
        if phase == "pretrain" or self.keeps_decoder:
            terms["reconstruction"] = reconstruction_loss(self.decoder(z), x, self.recon_kind)
        if phase == "cluster":
            self._require_centres("compute the clustering loss")
            idx = batch["index"].to(self.target_p.device)
            if len(self.target_p) == 0 or int(idx.max()) >= len(self.target_p):
                raise ConfigError(f"{self.method}: no target distribution for these users. Fix: call "
                                  "on_epoch_start(epoch, views) with the views the batches come from "
                                  "(fit_clusterer does)")
            p = self.target_p[idx]
            kl = (p * (torch.log(p.clamp_min(1e-12)) - self.log_soft_assign(z))).sum(1).mean()
            terms["clustering"] = self.clustering_weight * kl
        return terms


@register("clusterer", "idec")
class IDEC(DEC):
    """IDEC: DEC that keeps the decoder in the clustering phase, ``L = L_rec + gamma KL(P || Q)``
    (gamma = 0.1, DAUC's "coefficient of clustering loss"). Config keys: DEC's plus ``gamma``."""

    method = "IDEC"
    keeps_decoder = True
    defaults: dict[str, Any] = {**DEC.defaults, "gamma": 0.1}

    def __init__(self, side_dim: int, k: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(side_dim, k, cfg)
        check_positive(self.method, self.cfg, "gamma", allow_zero=True)

    @property
    def clustering_weight(self) -> float:
        return float(self.cfg["gamma"])
