"""User clustering for cold-start recommendation (DAUC and its baselines): the contracts every
clustering method follows. Training lives in :mod:`thawrec.train.clustering` (models own no loop).

- :class:`UserViews` (from :mod:`thawrec.data.views`): per user, a multi-hot *side view* (DAUC's app
  usage; a proxy elsewhere), a dense *target view* and the ``active`` flag.
- :class:`DeepClusterer`: an ``nn.Module`` whose ``represent(side)`` is the representation the
  clusters are built from (``h(1)``: side view only, so cold users get one too), whose
  ``loss(batch, epoch)`` returns named loss terms, and whose ``on_epoch_start`` may refresh
  non-gradient state (DEC's target distribution). Declared hooks: ``fit_defaults`` (the method's
  own epochs and learning rate), ``has_own_assignment`` + ``assign`` (DEC/IDEC cluster users
  themselves; the others are clustered by k-means on ``represent``).
- :class:`ShallowClusterer`: methods with nothing to train (Random, Profile, k-means on the raw
  side view): ``labels(views, seed)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from thawrec.data.views import UserViews
from thawrec.errors import ConfigError

__all__ = ["UserViews", "DeepClusterer", "ShallowClusterer", "embed"]


class DeepClusterer(nn.Module):
    """Contract of a deep clustering method (DAUC, DEC, IDEC, DCCAE, COMPLETER)."""

    has_own_assignment: ClassVar[bool] = False
    registry_name: ClassVar[str | None] = None

    @classmethod
    def from_views(cls, views: UserViews, cfg: dict[str, Any] | None = None) -> DeepClusterer:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def build(cls, views: UserViews, n_clusters: int, cfg: dict[str, Any] | None = None) -> DeepClusterer:
        """The registry's constructor: sized for ``views``. Methods that do not fix the number of
        clusters themselves (k-means runs on ``represent`` afterwards) ignore ``n_clusters``."""
        return cls.from_views(views, cfg)

    @property
    def fit_defaults(self) -> dict[str, Any]:
        """Epochs and learning rate of the method's paper (DAUC App. A.3: 30 epochs, lr 1e-4)."""
        return {"epochs": 30, "lr": 1e-4}

    def represent(self, side: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[B, M]`` side view -> ``[B, D]`` representation the clusters are built from."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:  # pragma: no cover
        """Named loss terms for a mini-batch (summed by the trainer, each logged)."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, views: UserViews) -> None:
        """Refresh non-gradient state before an epoch (DEC's target distribution). Default: nothing."""

    def assign(self, side: torch.Tensor) -> torch.Tensor:
        """The method's own hard clusters ``[B]`` (only when ``has_own_assignment``)."""
        raise ConfigError(f"{type(self).__name__} has no cluster assignment of its own. "
                          "Fix: cluster its representations with k-means (thawrec.retrieval.index.kmeans)")


class ShallowClusterer:
    """Contract of a clustering method with nothing to train: ``labels(views, seed) -> [U]``."""

    registry_name: ClassVar[str | None] = None

    def __init__(self, n_clusters: int, cfg: dict[str, Any] | None = None) -> None:
        if cfg:
            raise ConfigError(f"{type(self).__name__} takes no options, got {sorted(cfg)}. Fix: pass none")
        self.n_clusters = int(n_clusters)

    @classmethod
    def build(cls, views: UserViews, n_clusters: int, cfg: dict[str, Any] | None = None) -> ShallowClusterer:
        return cls(n_clusters, cfg)

    def labels(self, views: UserViews, seed: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@torch.no_grad()
def embed(model: DeepClusterer, views: UserViews, batch_size: int = 4096) -> np.ndarray:
    """``represent`` of every user's side view, ``[U, D]`` float32, in eval mode."""
    was = model.training
    model.eval()
    out = [model.represent(views.batch(np.arange(s, min(s + batch_size, views.n_users)))["side"]).cpu().numpy()
           for s in range(0, views.n_users, batch_size)]
    model.train(was)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def own_assignment(model: DeepClusterer, views: UserViews, batch_size: int = 4096) -> np.ndarray:
    """Every user's cluster by the method's own ``assign`` (DEC / IDEC), ``[U]`` int64."""
    return np.concatenate([model.assign(views.batch(np.arange(s, min(s + batch_size, views.n_users)))["side"])
                           .cpu().numpy() for s in range(0, views.n_users, batch_size)])
