"""The two-tower retrieval contract: what COUPLE, DSSM, YouTubeDNN and SASRec implement.

A retriever is a :class:`~thawrec.models.base.RecModel` (the Trainer, checkpoints and the registry
treat it like any ranker) with two extra promises:

- ``user_vectors(batch) -> [B, D]`` reads the row's user-side columns (user id, attributes,
  context, behaviour history), and ``item_vectors(batch) -> [B, D]`` reads **only** the item-side
  columns (:meth:`RetrievalModel.item_fields`: the features whose ``FeatureSpec.table`` is
  ``"items"``). So the item tower can embed a whole catalogue from one row per item, and a
  brand-new item that has only tags / a category still gets a vector.
- Scores are inner products ``<u, v>``. Retrieval exports embeddings and serving puts the item
  vectors in an inner-product index (:class:`thawrec.retrieval.index.VectorIndex`); a score that
  were a sigmoid of some other head would rank differently from what the index returns, so
  ``predict`` returns the same dot product the index ranks by.

Training objective: in-batch sampled softmax over the batch's positive rows (label 1). Each
positive user is scored against every positive item of the batch; its own item (the diagonal) is
the target, the others are negatives. A column whose item equals the row's item on another row
(the same item twice in a batch) is masked, not used as a negative. With ``logq_correction`` the
logit of item ``j`` is lowered by ``log q_j`` (its share among training positives), which undoes
the popularity bias of in-batch negatives (Yi et al., RecSys 2019); the frequencies come from
:meth:`RetrievalModel.set_item_frequencies`. :func:`in_batch_softmax` also takes extra negatives
(COUPLE's FIFO queue of recent items), masked where they hold the row's own item.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError, DataError
from thawrec.models.base import RecModel

__all__ = ["RetrievalModel", "item_side_fields", "in_batch_softmax"]

ITEM_TABLES: tuple[str, ...] = ("items",)


def item_side_fields(feature_map: FeatureMap) -> list[str]:
    """Names of the features an item tower may read: those of the items table. Context and
    behaviour sequences (table ``interactions``) describe the row's user, not the item."""
    return [f.name for f in feature_map.features if f.table in ITEM_TABLES]


def in_batch_softmax(u: torch.Tensor, v: torch.Tensor, temperature: float,
                     item_keys: torch.Tensor | None = None,
                     log_q: torch.Tensor | None = None,
                     negatives: torch.Tensor | None = None,
                     negative_keys: torch.Tensor | None = None,
                     negative_log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``softmax(u @ v.T / temperature)`` with the diagonal as target.

    ``item_keys [P]`` identifies each column's item: an off-diagonal column holding the row's own
    item is masked (it is not a negative). ``log_q [P]`` is subtracted from every column's logit
    (logQ correction). Fewer than two rows leave nothing to contrast: the loss is an exact zero
    that still belongs to the graph, so ``backward`` works on any batch.

    ``negatives [N, D]`` are extra columns after the batch's own (e.g. a FIFO queue of recent
    items, :class:`thawrec.nn.queue.FifoQueue`): every row is scored against them too. A negative
    whose ``negative_keys`` entry equals the row's ``item_keys`` (the row's own positive item,
    queued earlier) is masked, so a positive is never scored against itself; keys < 0 match
    nothing. ``negative_log_q [N]`` is their logQ correction. With extra negatives one row is
    enough to contrast.
    """
    n_extra = 0 if negatives is None else len(negatives)
    if len(u) < (1 if n_extra else 2):
        return (u.sum() + v.sum()) * 0.0
    logits = u @ v.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    if item_keys is not None:
        same = item_keys[:, None] == item_keys[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    if n_extra:
        extra = u @ negatives.to(u.dtype).T / temperature
        if negative_log_q is not None:
            extra = extra - negative_log_q[None, :]
        if item_keys is not None and negative_keys is not None:
            own = (item_keys[:, None] == negative_keys[None, :]) & (negative_keys[None, :] >= 0)
            extra = extra.masked_fill(own, float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    target = torch.arange(len(u), device=u.device)
    return F.cross_entropy(logits, target)


class RetrievalModel(RecModel):
    """Base class of two-tower retrievers: a user tower and an item tower in one inner-product space.

    Subclasses implement :meth:`user_vectors` and :meth:`item_vectors` and extend ``defaults``
    (``{**RetrievalModel.defaults, ...}``). ``forward`` returns ``{"user": u, "item": v,
    "logits": {task: <u, v> / temperature}}``; ``compute_loss`` returns ``softmax_<task>`` per task.
    """

    defaults: ClassVar[dict[str, Any]] = {
        "tasks": ["label"],
        "temperature": 0.05,
        "logq_correction": False,
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        t = self.cfg["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ConfigError(f"{type(self).__name__}: temperature must be a number > 0, got {t!r}. "
                              "Fix: e.g. temperature: 0.05 (smaller = sharper softmax)")
        self.temperature = float(t)
        if self.cfg["logq_correction"] and "item_id" not in feature_map:
            raise ConfigError(f"{type(self).__name__}: logq_correction needs the item_id feature to count "
                              "item frequencies. Fix: keep item_id in FeatureConfig.item_fields or set "
                              "logq_correction: false")
        n_ids = feature_map["item_id"].vocab_size if "item_id" in feature_map else 0
        # log q per encoded item id; zeros (no correction) until set_item_frequencies is called
        self.register_buffer("item_log_q", torch.zeros(n_ids))
        self._item_fields = item_side_fields(feature_map)
        self._user_fields = [f.name for f in feature_map.features if f.table not in ITEM_TABLES]

    # ---------------------------------------------------------------- the two towers
    def item_fields(self) -> list[str]:
        """Columns :meth:`item_vectors` may read (the items table's features). A corpus of one row
        per item needs these columns only (``thawrec.train.retrieval.item_corpus_columns``)."""
        return list(self._item_fields)

    def user_fields(self) -> list[str]:
        """Columns :meth:`user_vectors` may read: user attributes, context and behaviour history."""
        return list(self._user_fields)

    def user_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """``[B, D]`` query vectors from each row's user-side columns."""
        raise NotImplementedError

    def item_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """``[B, D]`` item vectors from the item-side columns only (:meth:`item_fields`)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- RecModel contract
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        u, v = self.user_vectors(batch), self.item_vectors(batch)
        score = (u * v).sum(-1) / self.temperature
        return {"user": u, "item": v, "logits": {t: score for t in self.tasks}}

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """In-batch softmax over the positive rows of each task (``softmax_<task>``)."""
        u, v = out["user"], out["item"]
        keys = batch.get("_item", batch.get("item_id"))
        terms = {}
        for t in self.tasks:
            if t not in batch:
                raise DataError(f"the batch has no label column '{t}'", column=t,
                                fix="keep the task's label column in the training columns")
            pos = batch[t] > 0.5
            log_q = None
            if self.cfg["logq_correction"]:
                log_q = self.item_log_q[batch["item_id"][pos]]
            terms[f"softmax_{t}"] = in_batch_softmax(u[pos], v[pos], self.temperature,
                                                     None if keys is None else keys[pos], log_q)
        return terms

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inner product ``<u, v>`` per task: the score the item index ranks by (no sigmoid)."""
        u, v = self.user_vectors(batch), self.item_vectors(batch)
        score = (u * v).sum(-1)
        return {t: score for t in self.tasks}

    # ---------------------------------------------------------------- logQ correction
    def set_item_frequencies(self, item_ids: np.ndarray) -> None:
        """Item sampling shares from the encoded ``item_id`` column of the training positives: the
        chance an item shows up as an in-batch negative. Add-one smoothed, so an item never seen
        in training keeps a finite correction."""
        if self.item_log_q.numel() == 0:
            raise ConfigError(f"{type(self).__name__}: no item_id feature to count frequencies of. "
                              "Fix: keep item_id in the features or set logq_correction: false")
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        n = self.item_log_q.numel()
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            row = int(np.flatnonzero((ids < 0) | (ids >= n))[0])
            raise DataError(f"encoded item id {ids[row]} outside the item_id vocabulary [0, {n})", row=row,
                            column="item_id", fix="pass the item_id column encoded by the same FeaturePipeline")
        counts = np.bincount(ids, minlength=n).astype(np.float64) + 1.0
        log_q = np.log(counts) - math.log(counts.sum())
        self.item_log_q.copy_(torch.from_numpy(log_q).to(self.item_log_q))
