"""DAUC: dual alignment user clustering for cold-start recommendation (Liu, Bai et al., KDD'22, Sec. 3).

Users are clustered from a *side view* every user has (app usage, multi-hot ``x1 [M]``), but the
clusters should group users who read alike, which only *active* users show (the *target view*,
``x2 [N]``: mean embeddings of clicked and unclicked articles). DAUC learns a side-view
representation aligned with the target view, twice:

- **sample-wise** (news vs. app behaviour, Sec. 3.3): both views of an active user are encoded,
  ``z_v = E_v(x_v)`` (Eq. 1), mapped by one *shared* contrastive encoder ``h_v = f_con(z_v)``
  (Eq. 2), and pulled together against the batch's other users by the multi-view contrastive loss
  (Eq. 3, :func:`~thawrec.nn.contrastive.multiview_contrastive_loss`);
- **distribution-wise** (active vs. cold-start users, Sec. 3.4): an active-user classifier reads
  ``h1`` of *every* user through a gradient reversal layer (Eq. 4-6), so the classifier learns to
  tell active from cold users while the encoders learn to make them indistinguishable (clusters
  fitted on active users' behaviour then transfer to cold users).

Two autoencoders keep each view's own information and prevent collapse (Eq. 8-10): the side
decoder reconstructs ``x1`` of every user (sigmoid cross-entropy, mean over users and the ``M``
apps); the target decoder reconstructs ``x2`` of active users only (squared error summed over the
``N`` dims, mean over the batch's active users; the paper: the article autoencoder "just takes the
active users' reading behavior"). ``L = L_rec + L_con + L_adv`` with equal weights (Eq. 7).

Serving (Fig. 2b): ``represent(x1) = h1 = f_con(E1(x1))`` for any user, active or cold, then
k-means (:func:`thawrec.models.clustering.kmeans`).

Defaults are the paper's (App. A.3): ``E1`` M-800-600-400, ``E2`` N-256-400, decoders mirrored,
``f_con`` 400-400-400, ``tau`` = 0.5, ``lambda`` = 0.5; Adam, lr 1e-4, batch 128,
30 epochs, best epoch by validation (:data:`PAPER_TRAINING`, for :func:`fit_clusterer`). The
paper gives no size for the active-user classifier; ours is linear, 400-2.

Where the paper is silent (each a config key):
- ``activation``: ReLU after every hidden layer; each block's last layer is linear, so ``z`` can
  be any real code for its decoder, the decoders emit logits / real values, and ``h`` is not
  confined to the positive orthant (cosines in [-1, 1], not [0, 1]).
- ``f_con`` begins with the activation: without it, ``E1``'s last linear layer and ``f_con``'s
  first would compose into a single linear map.
- No dropout, no batch norm (none mentioned; BN would also make ``h1`` depend on the batch).
- ``adv_input``: the classifier ``f_adv`` first scales ``h1`` to unit length (``"normalized"``,
  default); ``"raw"`` feeds ``h1`` itself, Eq. 4 read literally. Why: no term bounds the *norm* of
  ``h1`` (Eq. 3 uses cosines; the decoders read ``z1``, not ``h1``), so under the reversed gradient
  the encoder maximises the classifier's cross-entropy most cheaply by inflating ``h1`` along the
  classifier's weights, not by hiding activity. Measured on the planted world of
  ``tests/test_dauc.py`` (3 groups, active users with a shifted side view), 3,000 users, the
  paper's lr 1e-4 and batch 128, 20 epochs: with ``"raw"`` ``L_adv`` climbs from 0.69 to hundreds
  within ~8 epochs, mean ``|h1|`` reaches ~6e4 and k-means on ``h1`` finds activity, not the
  groups (NMI 0.003 vs. groups, 0.43 vs. activity); with ``"normalized"`` ``|h1|`` stays ~2,
  ``L_adv`` stays near ln 2 and NMI vs. groups is 0.99 (0.00 vs. activity). The classifier sees
  the direction of ``h1``, which is also all that Eq. 3 constrains.
- ``init``: ``"default"`` (PyTorch's Linear init, Kaiming-uniform with a = sqrt(5)) or
  ``"xavier"`` (Xavier-uniform weights, zero biases). Default: PyTorch's.
- Ablations (Table 3): ``use_rec`` / ``use_con`` / ``use_adv`` = False give DAUC-no-rec / -no-con /
  -no-adv. A disabled component contributes no term and its modules are not built (no decoders
  for no-rec, no classifier for no-adv; no target encoder when neither rec nor con needs it).
  ``f_con`` stays in every variant so ``represent`` is the same function of the side view.

Training note: the adversarial game is simultaneous gradient descent (classifier) and ascent
(encoders, through the reversal) under one Adam, which need not converge. In the same planted
world (300 users), lr 1e-3 makes it oscillate within 15 epochs (clusters follow activity, NMI vs.
groups ~0.3 over 3 seeds; without ``L_adv`` 1.0); lr 1e-4 gives 1.0 on the same seeds. Over longer
runs at 1e-4 (3,000 users, batch 128, one seed) the linear classifier's game still swings: NMI 0.99
at epochs 6 and 21, 0.33 at epoch 11, then a drift to 0.13 by epoch 56, while
``classifier_hidden=[400]`` stayed >= 0.89 through epoch 41. So keep the paper's lr, pick the
epoch by validation (``fit_clusterer(validate=...)``) as the paper does, and consider a hidden
layer in the classifier.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.errors import ConfigError
from thawrec.models.clustering import DeepClusterer, UserViews
from thawrec.nn.contrastive import multiview_contrastive_loss
from thawrec.nn.grl import GradientReversal
from thawrec.nn.mlp import MLP, activation
from thawrec.registry import register

#: The paper's training settings (App. A.3), to pass to ``fit_clusterer(model, views, **PAPER_TRAINING)``.
PAPER_TRAINING: dict[str, Any] = {"epochs": 30, "batch_size": 128, "lr": 1e-4}

_WIDTH_KEYS = ("side_encoder", "target_encoder", "contrastive")


@register("clusterer", "dauc")
class DAUC(DeepClusterer):
    """DAUC over side views of width ``side_dim`` (M) and target views of width ``target_dim`` (N).

    ``cfg`` overrides :attr:`defaults`. Width lists give every layer after the input, the last one
    being the output: ``side_encoder [800, 600, 400]`` is M-800-600-400.
    """

    defaults: dict[str, Any] = {
        "side_encoder": [800, 600, 400],    # E1: M-800-600-400; D1 mirrors it: 400-600-800-M
        "target_encoder": [256, 400],       # E2: N-256-400; D2 mirrors it: 400-256-N
        "contrastive": [400, 400],          # f_con: 400-400-400, shared by both views
        "classifier_hidden": [],            # f_adv: 400-2 (a linear classifier)
        "activation": "relu",
        "temperature": 0.5,                 # tau of Eq. 3
        "grl_lambda": 0.5,                  # lambda of Eq. 6
        "adv_input": "normalized",          # f_adv reads h1 / |h1| ("raw": h1 itself); see the module doc
        "use_rec": True,
        "use_con": True,
        "use_adv": True,
        "init": "default",
    }

    def __init__(self, side_dim: int, target_dim: int, cfg: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg = _checked_config(side_dim, target_dim, cfg)
        act = cfg["activation"]
        *side_hidden, z_dim = cfg["side_encoder"]
        *target_hidden, z2_dim = cfg["target_encoder"]
        *con_hidden, h_dim = cfg["contrastive"]
        self.side_encoder = MLP(side_dim, side_hidden, out_dim=z_dim, act=act)
        self.f_con = nn.Sequential(activation(act), MLP(z_dim, con_hidden, out_dim=h_dim, act=act))
        self.target_encoder = (MLP(target_dim, target_hidden, out_dim=z2_dim, act=act)
                               if cfg["use_rec"] or cfg["use_con"] else None)
        self.side_decoder = MLP(z_dim, side_hidden[::-1], out_dim=side_dim, act=act) if cfg["use_rec"] else None
        self.target_decoder = MLP(z2_dim, target_hidden[::-1], out_dim=target_dim, act=act) if cfg["use_rec"] else None
        self.grl = GradientReversal(cfg["grl_lambda"]) if cfg["use_adv"] else None
        self.classifier = MLP(h_dim, cfg["classifier_hidden"], out_dim=2, act=act) if cfg["use_adv"] else None
        if cfg["init"] == "xavier":
            _xavier_(self)

    @classmethod
    def from_views(cls, views: UserViews, cfg: dict[str, Any] | None = None) -> DAUC:
        """A DAUC sized for ``views`` (M = side width, N = target width)."""
        return cls(views.side.shape[1], views.target.shape[1], cfg)

    # ------------------------------------------------------------------ serving
    def represent(self, side: torch.Tensor) -> torch.Tensor:
        """``h1 = f_con(E1(x1))``, ``[B, M] -> [B, D_h]``: the side view only, so cold users get one."""
        return self.f_con(self.side_encoder(side))

    def forward(self, side: torch.Tensor) -> torch.Tensor:  # noqa: D102 - the serving path, as represent
        return self.represent(side)

    @torch.no_grad()
    def active_probability(self, side: torch.Tensor) -> torch.Tensor:
        """The classifier's ``p(active | h1)``, ``[B]`` (Eq. 4), without gradients.

        A diagnostic of the distribution-wise alignment: the better ``h1`` hides whether a user is
        active, the closer this stays to the base rate (and its AUC against the truth to 0.5).
        """
        if self.classifier is None:
            raise ConfigError("this DAUC was built with use_adv=False and has no active-user classifier. "
                              "Fix: build it with use_adv=True to read active probabilities")
        return torch.softmax(self._adversary_logits(self.represent(side)), dim=-1)[:, 1]

    def _adversary_logits(self, h1: torch.Tensor) -> torch.Tensor:
        """``f_adv(R_lambda(h1))``, ``[B, 2]``; ``f_adv`` first scales ``h1`` to unit length unless
        ``adv_input = "raw"`` (the direction is all Eq. 3 constrains; see the module doc)."""
        h = self.grl(h1)
        if self.cfg["adv_input"] == "normalized":
            h = F.normalize(h, dim=-1, eps=1e-8)
        return self.classifier(h)

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        """Named terms of Eq. 7 for a batch of users: ``rec_side``, ``rec_target``, ``con``, ``adv``.

        A term is absent when its component is disabled, or when the batch cannot define it:
        ``rec_target`` needs one active user, ``con`` two (a user needs a negative). ``epoch`` is
        unused: DAUC has no schedule.
        """
        side, active = batch["side"], batch["active"].bool()
        z1 = self.side_encoder(side)
        h1 = self.f_con(z1)
        terms: dict[str, torch.Tensor] = {}
        if self.side_decoder is not None:
            terms["rec_side"] = F.binary_cross_entropy_with_logits(self.side_decoder(z1), side)  # Eq. 8
        if self.target_encoder is not None and bool(active.any()):
            terms.update(self._target_terms(batch["target"][active], h1[active]))
        if self.classifier is not None:
            terms["adv"] = F.cross_entropy(self._adversary_logits(h1), active.long())  # Eq. 4-5
        return terms

    def _target_terms(self, target: torch.Tensor, h1_active: torch.Tensor) -> dict[str, torch.Tensor]:
        """``rec_target`` (Eq. 9) and ``con`` (Eq. 3) from the batch's active users only."""
        z2 = self.target_encoder(target)
        terms: dict[str, torch.Tensor] = {}
        if self.target_decoder is not None:
            terms["rec_target"] = (self.target_decoder(z2) - target).pow(2).sum(dim=1).mean()
        if self.cfg["use_con"] and len(target) >= 2:
            terms["con"] = multiview_contrastive_loss(h1_active, self.f_con(z2), self.cfg["temperature"])
        return terms


def _checked_config(side_dim: int, target_dim: int, cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``DAUC.defaults`` overridden by ``cfg``, refusing what cannot build a working model."""
    unknown = sorted(set(cfg or {}) - set(DAUC.defaults))
    if unknown:
        raise ConfigError(f"unknown DAUC config keys {unknown}. Fix: use only {sorted(DAUC.defaults)}")
    cfg = {**DAUC.defaults, **(cfg or {})}
    for name, dim in (("side_dim", side_dim), ("target_dim", target_dim)):
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"DAUC {name} must be a positive int, got {dim!r}. Fix: pass the view's width")
    for key in _WIDTH_KEYS:
        widths = cfg[key]
        if not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ConfigError(f"DAUC '{key}' must be a non-empty list of positive ints, got {widths!r}. "
                              f"Fix: e.g. {DAUC.defaults[key]}")
    if not all(isinstance(w, int) and w > 0 for w in cfg["classifier_hidden"]):
        raise ConfigError(f"DAUC 'classifier_hidden' must list positive ints, got {cfg['classifier_hidden']!r}. "
                          "Fix: [] for a linear 400-2 classifier (the default)")
    if cfg["use_con"] and cfg["side_encoder"][-1] != cfg["target_encoder"][-1]:
        raise ConfigError(f"the contrastive encoder is shared by both views, so side_encoder and target_encoder "
                          f"must end in the same width (got {cfg['side_encoder'][-1]} and "
                          f"{cfg['target_encoder'][-1]}). Fix: make their last widths equal (paper: 400)")
    if not (cfg["use_rec"] or cfg["use_con"] or cfg["use_adv"]):
        raise ConfigError("DAUC with use_rec, use_con and use_adv all False has nothing to learn. "
                          "Fix: enable at least one component")
    if cfg["temperature"] <= 0:
        raise ConfigError(f"DAUC temperature must be > 0, got {cfg['temperature']}. Fix: the paper uses 0.5")
    if cfg["adv_input"] not in ("normalized", "raw"):
        raise ConfigError(f"unknown DAUC adv_input '{cfg['adv_input']}'. Fix: choose 'normalized' (stable "
                          "default) or 'raw' (Eq. 4 read literally)")
    if cfg["init"] not in ("default", "xavier"):
        raise ConfigError(f"unknown DAUC init '{cfg['init']}'. Fix: choose 'default' or 'xavier'")
    try:
        activation(cfg["activation"])
    except ConfigError as e:
        raise ConfigError(f"DAUC {e}. Fix: set 'activation' to one of those (default: relu)") from e
    return cfg


def _xavier_(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear layer of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
