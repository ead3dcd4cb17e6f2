"""The clustering baselines of DAUC's Table 2 with nothing to train: Random, Profile and k-means
on the raw side view."""

from __future__ import annotations

import numpy as np

from thawrec.errors import ConfigError
from thawrec.models.clustering import ShallowClusterer, UserViews
from thawrec.registry import register
from thawrec.retrieval.index import kmeans


@register("clusterer", "random")
class RandomClusterer(ShallowClusterer):
    """Each user in a uniformly random cluster (the floor any method must beat)."""

    def labels(self, views: UserViews, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, self.n_clusters, views.n_users)


@register("clusterer", "profile")
class ProfileClusterer(ShallowClusterer):
    """One cluster per observed combination of the user attributes (cartesian product); its
    number of clusters is whatever the product gives, not ``n_clusters``."""

    def labels(self, views: UserViews, seed: int) -> np.ndarray:
        if not views.profile:
            raise ConfigError("the Profile baseline needs user attributes. Fix: import a users table with them")
        keys = np.stack(list(views.profile.values()), axis=1)
        _, labels = np.unique(keys, axis=0, return_inverse=True)
        return labels.ravel().astype(np.int64)


@register("clusterer", "kmeans")
class KMeansClusterer(ShallowClusterer):
    """Mini-batch k-means on the raw side view (batch 10,000, 100 iterations: DAUC's setting)."""

    def labels(self, views: UserViews, seed: int) -> np.ndarray:
        return kmeans(views.side.toarray(), self.n_clusters, seed=seed, backend="minibatch")[0]
