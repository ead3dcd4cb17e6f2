"""Fit and evaluate two-tower retrievers: item corpora, top-K retrieval, Recall/HR/NDCG@K.

The ranking path (:mod:`thawrec.train.fit`) scores given rows; a retriever instead embeds a whole
item catalogue once, searches it with each user's query vector (:class:`~thawrec.retrieval.index.
VectorIndex`, FAISS when installed) and is judged by which items come back. Protocol of
:func:`retrieval_metrics`:

- one query per user with at least one positive (label 1) row in the query columns, built from
  that user's earliest positive row (by ``_ts``): its history and context are what a serving
  request would carry;
- the user's relevant set is every item of its positive rows in the query columns;
- ``exclude`` (e.g. the training positives) removes items the user has already seen from the
  ranking, so they neither score as hits nor take a slot (the usual protocol);
- Recall@K, HR@K and NDCG@K of the top-K lists (:mod:`thawrec.eval.metrics`).

Everything is vectorised: users come from one lexsort of the positive rows, exclusions are
``query * n_items + item`` keys tested with one ``searchsorted`` per block of queries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import polars as pl
import torch

from thawrec.checks import int_ids, positive_int
from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.schema import Dataset
from thawrec.errors import ConfigError, DataError
from thawrec.eval.metrics import hr_at_k, ndcg_at_k, recall_at_k, to_csr
from thawrec.models.retrieval import RetrievalModel, item_side_fields
from thawrec.retrieval.index import VectorIndex
from thawrec.train import dist as tdist
from thawrec.train.fit import TrainedRun, eval_reader
from thawrec.train.trainer import Trainer, to_device

__all__ = ["QuerySet", "item_corpus_columns", "query_set", "embed_columns", "retrieve", "retrieval_metrics",
           "train_retriever"]

# Items to leave out per user: columns with ``_user``/``_item`` (their positive rows when they carry the
# task's label), a CSR ``(indptr, indices)`` tuple indexed by raw user id, or a scipy sparse matrix.
Exclude = Any
_SEARCH_CELLS = 1 << 22  # query x depth cells of one top-K search block (~32 MB of int64 ids)


# --------------------------------------------------------------------------------------------
# Item corpus
# --------------------------------------------------------------------------------------------
def item_corpus_columns(pipeline: FeaturePipeline, ds: Dataset,
                        items: Iterable[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One row per item (sorted raw ids; all items of ``ds`` by default) with the item-side feature
    columns encoded by the fitted ``pipeline`` and the raw id in ``_item``.

    The pipeline encodes interaction rows, so each item is put in a row of an existing user at the
    log's first timestamp, with every context field and label "missing" (0); only the item-side
    columns are kept, and those depend on the item alone (its items-table row and the vocabularies
    fitted on train: an item never seen in training encodes its id as unknown, 1).
    """
    if not pipeline.vocabs:
        raise ConfigError("item_corpus_columns before the pipeline was fitted. Fix: call pipeline.fit(ds, train) "
                          "or FeaturePipeline.load(dir) first")
    known = np.unique(ds.items["item_id"].to_numpy().astype(np.int64))
    if items is None:
        ids = known
    else:
        given = items if isinstance(items, np.ndarray) else np.fromiter(items, dtype=np.int64)
        ids = np.unique(int_ids(given.ravel(), "items"))
    if len(ids) == 0:
        raise DataError("an empty item corpus", column="items", fix="pass at least one item id")
    absent = ~np.isin(ids, known)
    if absent.any():
        raise DataError(f"{int(absent.sum())} item id(s) have no row in the items table (first: {ids[absent][0]})",
                        file="items.parquet", column="item_id",
                        fix="pass ids of items.parquet (dense ids 0..n_items-1 after import)")
    n = len(ids)
    frame = {"user_id": pl.Series(np.full(n, ds.users["user_id"][0], np.int64)),
             "item_id": pl.Series(ids),
             "ts": pl.Series(np.full(n, int(ds.interactions["ts"].min()), np.int64))}
    for col in pipeline.state.get("context", []):
        frame[col] = pl.Series(np.zeros(n, np.int64))
    for lab in pipeline.cfg.labels:
        frame[lab] = pl.Series(np.zeros(n, np.int8))
    stats = pipeline.last_stats
    cols = pipeline.transform(ds, pl.DataFrame(frame))
    pipeline.last_stats = stats  # the corpus is not a data split: keep the stats of the last real one
    keep = item_side_fields(pipeline.feature_map) + ["_item"]
    return {c: cols[c] for c in keep}


# --------------------------------------------------------------------------------------------
# Queries, vectors, top-K
# --------------------------------------------------------------------------------------------
@dataclass
class QuerySet:
    """One retrieval query per user: ``users`` (raw ids, sorted), ``rows`` (each user's earliest
    positive row in the query columns) and ``relevant`` (CSR over ``users`` of their positive items)."""

    users: np.ndarray
    rows: np.ndarray
    relevant: tuple[np.ndarray, np.ndarray]

    def __len__(self) -> int:
        return len(self.users)


def _require(cols: Mapping[str, np.ndarray], names: list[str], what: str, fix: str) -> None:
    missing = [c for c in names if c not in cols]
    if missing:
        raise DataError(f"{what} have no column(s) {missing}; found {sorted(cols)}", column=missing[0], fix=fix)


def query_set(query_cols: Mapping[str, np.ndarray], task: str = "label") -> QuerySet:
    """Users with a positive row in ``query_cols``, their query row and relevant items."""
    _require(query_cols, ["_user", "_item", "_ts", task], "query columns",
             "pass columns made by FeaturePipeline.transform (they carry _user, _item, _ts and the labels)")
    pos = np.flatnonzero(np.asarray(query_cols[task]) > 0.5)
    if len(pos) == 0:
        raise DataError(f"no positive row ({task} = 1) in the query columns: nothing to retrieve", column=task,
                        fix="evaluate on a part with clicked rows (e.g. a leave-one-out or temporal valid part)")
    user = np.asarray(query_cols["_user"], np.int64)[pos]
    ts = np.asarray(query_cols["_ts"], np.int64)[pos]
    order = pos[np.lexsort((pos, ts, user))]  # by user, then time, then row: first = earliest positive
    u_sorted = np.asarray(query_cols["_user"], np.int64)[order]
    first = np.r_[True, u_sorted[1:] != u_sorted[:-1]]
    starts = np.flatnonzero(first)
    indptr = np.r_[starts, len(order)].astype(np.int64)
    items = np.asarray(query_cols["_item"], np.int64)[order]
    return QuerySet(users=u_sorted[starts], rows=order[starts], relevant=(indptr, items))


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def embed_columns(model: RetrievalModel, cols: Mapping[str, np.ndarray], side: Literal["user", "item"],
                  batch_size: int = 8192, device: torch.device | str | None = None) -> np.ndarray:
    """float32 ``[n, D]`` vectors of every row of ``cols`` in order, from the user or the item tower
    (dropout off meanwhile). The item tower is handed only the model's item-side columns, so a
    model that peeked at user or context columns there would fail here, not silently in serving."""
    if side not in ("user", "item"):
        raise ConfigError(f"side must be 'user' or 'item', got {side!r}. Fix: pass side='user' or side='item'")
    if side == "item":
        _require(cols, model.item_fields(), "item columns",
                 "build them with thawrec.train.retrieval.item_corpus_columns(pipeline, ds)")
        cols = {c: cols[c] for c in model.item_fields()}
    encode = model.user_vectors if side == "user" else model.item_vectors
    dev = torch.device(device) if device is not None else _model_device(model)
    was = model.training
    model.eval()
    try:
        chunks = [encode(to_device(b, dev)).float().cpu().numpy() for b in eval_reader(dict(cols), batch_size)]
    finally:
        model.train(was)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _exclusion_pairs(exclude: Exclude, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` raw id pairs from columns with ``_user``/``_item`` (their positive rows when
    they carry ``task``), a CSR ``(indptr, indices)`` tuple or a scipy sparse users x items matrix."""
    if isinstance(exclude, Mapping):
        _require(exclude, ["_user", "_item"], "exclude columns",
                 "pass columns with _user and _item (e.g. the transformed train part)")
        keep = np.asarray(exclude[task]) > 0.5 if task in exclude else slice(None)
        return (int_ids(np.asarray(exclude["_user"])[keep], "_user"),
                int_ids(np.asarray(exclude["_item"])[keep], "_item"))
    if hasattr(exclude, "tocsr") or isinstance(exclude, tuple):
        indptr, indices = to_csr(exclude)
        return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr)), indices
    raise ConfigError(f"exclude must be columns with _user/_item, a CSR (indptr, indices) tuple indexed by user "
                      f"id, or a scipy sparse matrix; got {type(exclude).__name__}. Fix: pass the train columns")


def _top_k_excluding(index: VectorIndex, queries: np.ndarray, k: int, n_items: int,
                     excl_keys: np.ndarray, excl_count: np.ndarray, q0: int, width: int) -> np.ndarray:
    """Top-k ids of a block of queries (global query numbers ``q0..``) after dropping excluded
    items: search ``k + (most exclusions in the block)`` deep, drop, keep the first k (``-1`` pad)."""
    extra = int(excl_count.max(initial=0))
    depth = max(k, min(k + extra, n_items))
    _, ids = index.search(queries, depth)
    drop = ids < 0
    if len(excl_keys):
        keys = (np.arange(q0, q0 + len(ids), dtype=np.int64)[:, None] * width + ids)
        where = np.searchsorted(excl_keys, keys).clip(max=len(excl_keys) - 1)
        drop |= (excl_keys[where] == keys) & (ids >= 0)
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept ids first, in rank order
    top = np.take_along_axis(ids, order, axis=1)
    return np.where(np.take_along_axis(drop, order, axis=1), -1, top)


def retrieve(model: RetrievalModel, query_cols: Mapping[str, np.ndarray], corpus_cols: Mapping[str, np.ndarray],
             k: int, *, exclude: Exclude | None = None, task: str = "label", batch_size: int = 8192,
             device: torch.device | str | None = None) -> tuple[QuerySet, np.ndarray]:
    """Top-``k`` raw item ids ``[n_users, k]`` (best first, ``-1`` padding) for the users of
    :func:`query_set`, searched among the corpus items minus each user's ``exclude`` items."""
    if not isinstance(model, RetrievalModel):
        raise ConfigError(f"{type(model).__name__} is not a two-tower retriever (RetrievalModel). "
                          "Fix: evaluate rankers with thawrec.train.fit.score_model")
    k = positive_int(k, "k")
    _require(corpus_cols, model.item_fields() + ["_item"], "corpus columns",
             "build them with thawrec.train.retrieval.item_corpus_columns(pipeline, ds)")
    item_ids = int_ids(np.asarray(corpus_cols["_item"]), "_item")
    srt = np.argsort(item_ids, kind="stable")
    dup = np.flatnonzero(item_ids[srt][1:] == item_ids[srt][:-1])
    if len(dup):
        raise DataError(f"item {item_ids[srt][dup[0]]} appears twice in the corpus", row=int(srt[dup[0] + 1]),
                        column="_item", fix="pass one row per item (item_corpus_columns does)")
    qs = query_set(query_cols, task)
    q_cols = {c: np.asarray(v)[qs.rows] for c, v in query_cols.items()}
    user_vec = embed_columns(model, q_cols, "user", batch_size, device)
    item_vec = embed_columns(model, corpus_cols, "item", batch_size, device)
    index = VectorIndex(item_vec, metric="ip", ids=item_ids)
    width = int(item_ids.max(initial=-1)) + 1
    excl_keys, excl_count = np.zeros(0, np.int64), np.zeros(len(qs), np.int64)
    if exclude is not None:
        eu, ei = _exclusion_pairs(exclude, task)
        width = max(width, int(ei.max(initial=-1)) + 1)
        q = np.searchsorted(qs.users, eu).clip(max=max(len(qs) - 1, 0))
        hit = (qs.users[q] == eu) & np.isin(ei, item_ids)  # only items that could be retrieved count
        excl_keys = np.unique(q[hit] * width + ei[hit])
        excl_count = np.bincount(excl_keys // width, minlength=len(qs))
    deepest = max(k, min(k + int(excl_count.max(initial=0)), len(item_ids)))
    step = max(1, min(int(batch_size), _SEARCH_CELLS // deepest))  # bounds the [block, depth] id matrix
    blocks = [_top_k_excluding(index, user_vec[s:s + step], k, len(item_ids), excl_keys,
                               excl_count[s:s + step], s, width) for s in range(0, len(qs), step)]
    return qs, np.concatenate(blocks)


def retrieval_metrics(model: RetrievalModel, query_cols: Mapping[str, np.ndarray],
                      corpus_cols: Mapping[str, np.ndarray], k_values: Iterable[int] = (10, 50),
                      exclude: Exclude | None = None, batch_size: int = 8192, *, task: str = "label",
                      device: torch.device | str | None = None) -> dict[str, float]:
    """``recall@K``, ``hr@K`` and ``ndcg@K`` for each K, averaged over the users with a positive row
    in ``query_cols`` (protocol in the module docstring)."""
    ks = sorted({positive_int(k, "k") for k in k_values})
    if not ks:
        raise ConfigError("k_values is empty. Fix: pass e.g. k_values=(10, 50)")
    qs, top = retrieve(model, query_cols, corpus_cols, ks[-1], exclude=exclude, task=task,
                       batch_size=batch_size, device=device)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall_at_k(top, qs.relevant, k))
        out[f"hr@{k}"] = float(hr_at_k(top, qs.relevant, k))
        out[f"ndcg@{k}"] = float(ndcg_at_k(top, qs.relevant, k))
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train_retriever(model: RetrievalModel, train_cols: Mapping[str, np.ndarray],
                    valid_cols: Mapping[str, np.ndarray], corpus_cols: Mapping[str, np.ndarray],
                    train_cfg: TrainConfig, run_dir: Path | str | None, k: int = 50,
                    exclude: Exclude | None = None, label: str | None = None, *, task: str = "label",
                    resume: bool = False) -> TrainedRun:
    """Train on the positive rows of ``train_cols`` (the in-batch softmax needs nothing else) with
    early stopping on validation ``recall@{k}`` (``train_cfg.monitor`` is overridden, mode max).

    ``exclude`` is passed to :func:`retrieval_metrics` (typically ``train_cols``: seen items are not
    retrieved again). With ``logq_correction`` the item frequencies come from the train positives.
    """
    if not isinstance(model, RetrievalModel):
        raise ConfigError(f"{type(model).__name__} is not a two-tower retriever (RetrievalModel). "
                          "Fix: train rankers with thawrec.train.fit.train_model")
    k = positive_int(k, "k")
    _require(train_cols, [task], "train columns", "keep the label column in the transformed train part")
    pos = np.asarray(train_cols[task]) > 0.5
    if not pos.any():
        raise DataError(f"no positive row ({task} = 1) in the train columns: the in-batch softmax has no target",
                        column=task, fix="train on a part with clicked rows")
    train_pos = {c: np.asarray(v)[pos] for c, v in train_cols.items()}
    if model.cfg.get("logq_correction"):
        _require(train_pos, ["item_id"], "train columns", "keep item_id among the features for logq_correction")
        model.set_item_frequencies(train_pos["item_id"])
    cfg = replace(train_cfg, monitor=f"recall@{k}", monitor_mode="max")
    info = tdist.current()
    reader = BatchReader(train_pos, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
                         rank=info.rank, world_size=info.world_size, even_shards=info.enabled)
    k_values = sorted({min(10, k), k})

    def evaluate(m: RetrievalModel) -> dict[str, float]:
        return retrieval_metrics(m, valid_cols, corpus_cols, k_values, exclude=exclude, task=task,
                                 batch_size=cfg.eval_batch_size)

    fit = Trainer(cfg, run_dir, label=label or type(model).__name__).fit(model, reader, evaluate, resume=resume)
    return TrainedRun(model, fit)
