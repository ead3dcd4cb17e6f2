"""Nearest-neighbour search over vectors: one FAISS wrapper for every place thawrec searches.

:class:`VectorIndex` answers top-k by inner product (two-tower retrieval: COUPLE, DSSM, YouTubeDNN)
or by L2 distance (k-means assignment), exactly (flat index). FAISS is used when installed (the
``retrieval`` extra); otherwise a blocked NumPy search gives the same answers, so the library runs
without it. :func:`kmeans` trains with FAISS (about 4x faster than MiniBatchKMeans on 1M x 64,
DESIGN.md) and assigns through the same index.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from thawrec.checks import positive_int
from thawrec.errors import ConfigError, DataError

__all__ = ["VectorIndex", "kmeans", "have_faiss"]

Metric = Literal["ip", "l2"]
_BLOCK = 1 << 22  # query x item cells per NumPy block (~32 MB of float64 scores)


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"expected a 2-D array of vectors, got shape {x.shape}", column=name,
                        fix="pass [n, dim] float vectors")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"vectors have {x.shape[1]} dims, the index has {dim}", column=name,
                        fix="use the same embedding size for users and items")
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(1))[0])
        raise DataError("non-finite value in a vector", row=row, column=name, fix="check the model's outputs")
    return x


class VectorIndex:
    """Exact top-k search of ``[n, dim]`` vectors by inner product (``"ip"``) or L2 (``"l2"``).

    ``ids`` (optional) maps index rows to external ids (item ids); ``search`` returns them, and
    ``-1`` where fewer than ``k`` vectors exist. ``backend``: ``auto`` (FAISS if installed),
    ``faiss`` or ``numpy``.
    """

    def __init__(self, vectors: np.ndarray, *, metric: Metric = "ip", ids: np.ndarray | None = None,
                 backend: Literal["auto", "faiss", "numpy"] = "auto") -> None:
        if metric not in ("ip", "l2"):
            raise ConfigError(f"unknown metric {metric!r}. Fix: use 'ip' (inner product) or 'l2'")
        if backend == "auto":
            backend = "faiss" if have_faiss() else "numpy"
        if backend not in ("faiss", "numpy"):
            raise ConfigError(f"unknown backend {backend!r}. Fix: use auto, faiss or numpy")
        self.vectors = _matrix(vectors, "vectors")
        self.metric, self.backend = metric, backend
        self.dim = self.vectors.shape[1]
        self.ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        if self.ids is not None and len(self.ids) != len(self.vectors):
            raise DataError(f"{len(self.ids)} ids for {len(self.vectors)} vectors", column="ids",
                            fix="pass one id per vector")
        self._faiss = None
        if backend == "faiss":
            import faiss

            self._faiss = faiss.IndexFlatIP(self.dim) if metric == "ip" else faiss.IndexFlatL2(self.dim)
            self._faiss.add(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [q, k], ids [q, k])``, best first: inner products (higher is better) or squared
        L2 distances (lower is better); ids ``-1`` and scores ``-inf`` / ``inf`` past the end."""
        k = positive_int(k, "k")
        q = _matrix(queries, "queries", self.dim)
        if self._faiss is not None:
            scores, rows = self._faiss.search(q, k)
        else:
            scores, rows = self._numpy_search(q, k)
        if self.ids is not None:
            rows = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)
        return scores, rows.astype(np.int64)

    def _numpy_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.vectors)
        kk = min(k, n)
        fill = -np.inf if self.metric == "ip" else np.inf
        scores = np.full((len(q), k), fill, np.float32)
        rows = np.full((len(q), k), -1, np.int64)
        if kk == 0:
            return scores, rows
        sq = (self.vectors.astype(np.float64) ** 2).sum(1) if self.metric == "l2" else None
        step = max(1, _BLOCK // max(n, 1))
        for s in range(0, len(q), step):  # blocks of queries bound the score matrix, not a row loop
            block = q[s:s + step].astype(np.float64) @ self.vectors.T.astype(np.float64)
            if sq is not None:  # ||q - v||^2 = ||q||^2 - 2 q.v + ||v||^2; negate so larger is better
                block = -((q[s:s + step].astype(np.float64) ** 2).sum(1)[:, None] - 2 * block + sq[None, :])
            part = np.argpartition(-block, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(block), 1))
            top = np.take_along_axis(block, part, axis=1)
            order = np.lexsort((part, -top), axis=1)  # best first; ties by smaller row
            rows[s:s + step, :kk] = np.take_along_axis(part, order, axis=1)
            best = np.take_along_axis(top, order, axis=1)
            scores[s:s + step, :kk] = best if sq is None else -best
        return scores, rows


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, backend: str = "auto", iterations: int = 100,
           batch_size: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """k-means of the rows of ``x``: ``(labels [U], centroids [k, D])``.

    ``backend``: ``faiss`` (Lloyd's algorithm, ``iterations`` rounds; labels by the nearest
    centroid through a :class:`VectorIndex`), ``minibatch`` (scikit-learn MiniBatchKMeans with
    ``batch_size`` and ``max_iter = iterations``, the paper's k-means baseline settings), or
    ``auto`` (faiss if installed).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"k-means needs a non-empty 2-D array, got shape {x.shape}", fix="pass [users, dims]")
    if not 1 <= k <= len(x):
        raise ConfigError(f"k = {k} clusters for {len(x)} users. Fix: choose 1 <= k <= number of users")
    if backend == "auto":
        backend = "faiss" if have_faiss() else "minibatch"
    if backend == "faiss":
        import faiss

        # min_points_per_centroid 1: small user sets are fine to cluster (faiss would warn below 39 per centroid)
        km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False, min_points_per_centroid=1)
        km.train(x)
        _, labels = VectorIndex(km.centroids, metric="l2", backend="faiss").search(x, 1)
        return labels[:, 0], km.centroids.copy()
    if backend == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, batch_size=batch_size, max_iter=iterations, random_state=seed, n_init=3)
        labels = km.fit_predict(x)
        return labels.astype(np.int64), km.cluster_centers_.astype(np.float32)
    raise ConfigError(f"unknown k-means backend '{backend}'. Fix: choose auto, faiss or minibatch")
