"""Vocabularies and model inputs, fitted on the TRAIN part only.

Index convention for every categorical, sequence and multi-hot feature:
0 = padding / missing, 1 = unknown (a value never seen in train: the cold start, never a crash),
2..n+1 = the n known values; ``vocab_size = n + 2``. Fitting on train only is what makes a
held-out new user or cold item look new to the model, exactly as it would in production.

:class:`FeaturePipeline` turns (dataset, interaction frame) into a dict of numpy columns that
:class:`thawrec.data.reader.BatchReader` batches. Behaviour sequences and accumulated view
counts come from the FULL interaction log, strictly earlier in time than each row, so a test
row sees the train-time history of its user but never its own future.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.features import (
    HistoryIndex,
    bucketize,
    flatten_tag_history,
    multihot_csr,
    pad_csr,
    past_sequences,
)
from thawrec.data.schema import Dataset, FeatureMap, FeatureSpec, atomic_write_text, first_bad_row
from thawrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD, UNK = 0, 1
ID_FIELDS = ("user_id", "item_id")  # dense ids start at 0, so 0 is a real value there
ZERO_IS_VALUE = ID_FIELDS + ("domain",)  # the dataset's domain 0 (the source domain) is a real value too
# Sequence sources: one value per past item (item_id, category, domain), the past items' tags
# flattened (tags), or each past item's first n tags as a block of n (item_tags: COUPLE's items as tags).
SEQ_SOURCES = ("item_id", "category", "tags", "item_tags", "domain")
DEFAULT_AVC = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233]


def seq_vocab(src: str) -> str:
    """The vocabulary a sequence source is encoded with (``item_tags`` shares the tags one)."""
    return "tags" if src == "item_tags" else src


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------
class Vocabulary:
    """int64 values -> indices (0 pad/missing, 1 unknown, 2.. known), vectorised.

    ``zero_is_missing``: the dataset's code 0 means "missing" for attributes and tags; for
    dense IDs (user_id, item_id) 0 is a real id and gets a real index.
    """

    DENSE_LIMIT = 1 << 22  # use a direct lookup table when the largest value is below this

    def __init__(self, zero_is_missing: bool = True) -> None:
        self.zero_is_missing = zero_is_missing
        self.values = np.empty(0, np.int64)
        self._lut: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.values) + 2

    def fit(self, values: np.ndarray) -> "Vocabulary":
        v = np.asarray(values, dtype=np.int64).ravel()
        keep = v > 0 if self.zero_is_missing else v >= 0
        self.values = np.unique(v[keep])
        self._build()
        return self

    def _build(self) -> None:
        self._lut = None
        if len(self.values) and self.values[-1] < self.DENSE_LIMIT:
            lut = np.full(int(self.values[-1]) + 1, UNK, np.int64)
            lut[self.values] = np.arange(2, len(self.values) + 2, dtype=np.int64)
            self._lut = lut

    def transform(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.int64)
        if self._lut is not None:
            inside = (v >= 0) & (v < len(self._lut))
            out = np.where(inside, self._lut[np.clip(v, 0, len(self._lut) - 1)], UNK)
        elif len(self.values):
            pos = np.searchsorted(self.values, v)
            found = self.values[np.minimum(pos, len(self.values) - 1)] == v
            out = np.where(found, pos + 2, UNK)
        else:
            out = np.full(v.shape, UNK, np.int64)
        if self.zero_is_missing:
            out = np.where(v == 0, PAD, out)
        return out.astype(np.int64, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "zero_is_missing": self.zero_is_missing}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        voc = cls(bool(d.get("zero_is_missing", True)))
        voc.values = np.asarray(d["values"], dtype=np.int64)
        voc._build()
        return voc


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
@dataclass
class FeatureConfig:
    """Which inputs to build. ``None`` means "derive from the dataset" (see field comments)."""

    user_fields: list[str] | None = None  # None: user_id + every user attribute
    item_fields: list[str] | None = None  # None: item_id, category (+ year if present)
    context_fields: list[str] | None = None  # None: the dataset's context columns
    time_features: bool = True  # hour 1..24, weekday 1..7 (UTC) as context categoricals
    sequences: dict[str, list] = field(
        default_factory=lambda: {"hist_items": ["item_id", 30], "hist_tags": ["tags", 30]}
    )
    history_positive_only: bool = True
    item_multihot: list[str] = field(default_factory=lambda: ["tags"])
    user_multihot: list[str] | None = None  # None: ["apps"] if present
    avc_boundaries: list[int] = field(default_factory=lambda: list(DEFAULT_AVC))
    item_age_days: list[int] | None = None  # bucket boundaries in days: adds the "item_age" feature
    labels: list[str] = field(default_factory=lambda: ["label"])
    mask_new_behaviour: bool = False
    history_before_ts: int | None = None  # sequences from events strictly before this time only (a behaviour log)
    passthrough: list[str] = field(default_factory=list)  # frame columns copied as `_<name>`, never features
    item_multihot_cap: int = 16
    user_multihot_cap: int = 64


# --------------------------------------------------------------------------------------------
# Lookups from ids to table rows (dense ids: one array, no join, row order untouched)
# --------------------------------------------------------------------------------------------
def _row_lookup(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of each query id in a table keyed by ``ids``; -1 when absent."""
    ids = np.asarray(ids, dtype=np.int64)
    query = np.asarray(query, dtype=np.int64)
    if len(ids) == 0:
        return np.full(query.shape, -1, np.int64)
    hi = max(int(ids.max()), 0) + 1
    lut = np.full(hi, -1, np.int64)
    lut[ids[ids >= 0]] = np.flatnonzero(ids >= 0)
    inside = (query >= 0) & (query < hi)
    return np.where(inside, lut[np.clip(query, 0, hi - 1)], -1)


def _gather(col: np.ndarray, rows: np.ndarray, fill: int = 0) -> np.ndarray:
    if len(col) == 0:
        return np.full(rows.shape, fill, np.int64)
    return np.where(rows >= 0, col[np.clip(rows, 0, len(col) - 1)], fill)


def _int_col(df: pl.DataFrame, col: str, file: str) -> np.ndarray:
    s = df[col]
    if not (s.dtype.is_integer() or s.dtype == pl.Boolean):
        raise DataError(f"expected integer codes, got {s.dtype}", file=file, column=col,
                        fix="encode the column to int64 codes (0 = missing) on import")
    return s.fill_null(0).to_numpy().astype(np.int64, copy=False)


def _year_bins(year: np.ndarray) -> np.ndarray:
    return np.where(year > 0, (year // 5) * 5, 0)


def time_features(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour 1..24 and weekday 1..7 (Monday = 1) of Unix seconds."""
    ts = np.asarray(ts, dtype=np.int64)
    hour = (ts // 3600) % 24 + 1
    weekday = (ts // 86400 + 3) % 7 + 1  # 1970-01-01 was a Thursday
    return hour, weekday


# --------------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------------
class FeaturePipeline:
    """Fit vocabularies on the train frame; transform any frame into model-ready numpy columns."""

    def __init__(self, cfg: FeatureConfig | None = None) -> None:
        self.cfg = cfg or FeatureConfig()
        self.vocabs: dict[str, Vocabulary] = {}
        self.feature_map = FeatureMap()
        self.state: dict[str, Any] = {}
        self.last_stats: dict[str, int] = {}

    # ---------------------------------------------------------------- resolution of fields
    def _resolve(self, ds: Dataset) -> dict[str, Any]:
        c = self.cfg
        ucols, icols = ds.users.columns, ds.items.columns
        user_fields = list(c.user_fields) if c.user_fields is not None else ["user_id"] + ds.user_attrs
        item_fields = (list(c.item_fields) if c.item_fields is not None
                       else ["item_id", "category"] + (["year"] if "year" in icols else []))
        context = list(c.context_fields) if c.context_fields is not None else ds.context_cols
        leaked = [f for f in context if f in c.labels]
        if c.context_fields is not None and leaked:
            raise ConfigError(f"label column(s) {leaked} listed as context features: that leaks the target. "
                              "Fix: remove them from FeatureConfig.context_fields")
        context = [f for f in context if f not in c.labels and f not in c.passthrough]  # never an input
        user_mh = list(c.user_multihot) if c.user_multihot is not None else (["apps"] if "apps" in ucols else [])
        item_mh = list(c.item_multihot)
        for f in user_fields + user_mh:
            if f not in ucols:
                raise ConfigError(f"user feature '{f}' is not a users column {ucols}. "
                                  "Fix: remove it from user_fields/user_multihot or import it")
        for f in item_fields + item_mh:
            if f not in icols:
                raise ConfigError(f"item feature '{f}' is not an items column {icols}. "
                                  "Fix: remove it from item_fields/item_multihot or import it")
        for name, spec in c.sequences.items():
            if len(spec) != 2 or spec[0] not in SEQ_SOURCES or int(spec[1]) < 1:
                raise ConfigError(f"sequence '{name}' = {spec} is invalid. "
                                  f"Fix: use [source, max_len] with source in {SEQ_SOURCES}, max_len >= 1")
        all_names = user_fields + item_fields + context + user_mh + item_mh + list(c.sequences)
        dup = {n for n in all_names if all_names.count(n) > 1}
        if dup:
            raise ConfigError(f"feature name(s) {sorted(dup)} used twice. Fix: list each field once")
        return dict(user_fields=user_fields, item_fields=item_fields, context=context,
                    user_multihot=user_mh, item_multihot=item_mh)

    # ---------------------------------------------------------------- raw (pre-vocab) values
    def _raw(self, ds: Dataset, frame: pl.DataFrame, r: dict[str, Any], file: str) -> dict[str, Any]:
        """Per-row raw values of every categorical field and the table rows of each frame row."""
        for col in ("user_id", "item_id", "ts"):
            if col not in frame.columns:
                raise DataError(f"frame has no '{col}' column; found {frame.columns}", file=file, column=col,
                                fix="pass an interaction frame (a split part) with user_id, item_id, ts")
            row = first_bad_row(frame[col].is_null())
            if row is not None:
                raise DataError(f"missing {col}", file=file, row=row, column=col, fix="fill or remove the row")
        user = frame["user_id"].to_numpy().astype(np.int64, copy=False)
        item = frame["item_id"].to_numpy().astype(np.int64, copy=False)
        ts = frame["ts"].to_numpy().astype(np.int64, copy=False)
        urow = _row_lookup(_int_col(ds.users, "user_id", "users"), user)
        irow = _row_lookup(_int_col(ds.items, "item_id", "items"), item)
        raw: dict[str, np.ndarray] = {}
        for f in r["user_fields"]:
            raw[f] = user if f == "user_id" else _gather(_int_col(ds.users, f, "users"), urow)
        for f in r["item_fields"]:
            if f == "item_id":
                raw[f] = item
            else:
                v = _gather(_int_col(ds.items, f, "items"), irow)
                raw[f] = _year_bins(v) if f == "year" else v
        for f in r["context"]:
            if f not in frame.columns:
                raise DataError(f"context column '{f}' missing from the frame", file=file, column=f,
                                fix="keep the dataset's context columns in every split part")
            raw[f] = _int_col(frame, f, file)
        if self.cfg.time_features:
            raw["hour"], raw["weekday"] = time_features(ts)
        return dict(raw=raw, user=user, item=item, ts=ts, urow=urow, irow=irow,
                    n_missing_user=int((urow < 0).sum()), n_missing_item=int((irow < 0).sum()))

    # ---------------------------------------------------------------- fit
    def fit(self, ds: Dataset, train: pl.DataFrame) -> "FeaturePipeline":
        """Vocabularies from the train rows (joined with their users/items) only."""
        if train.height == 0:
            raise ConfigError("cannot fit features on an empty train frame. Fix: check the split parameters")
        r = self._resolve(ds)
        x = self._raw(ds, train, r, "<train>")
        vocabs: dict[str, Vocabulary] = {}
        for name, v in x["raw"].items():
            vocabs[name] = Vocabulary(zero_is_missing=name not in ZERO_IS_VALUE).fit(v)
        train_users = np.unique(x["urow"][x["urow"] >= 0])
        train_items = np.unique(x["irow"][x["irow"] >= 0])
        max_lens: dict[str, int] = {}
        for table, fields, rows, cap in (
            (ds.users, r["user_multihot"], train_users, self.cfg.user_multihot_cap),
            (ds.items, r["item_multihot"], train_items, self.cfg.item_multihot_cap),
        ):
            for f in fields:
                indptr, indices = multihot_csr(table[f])
                lens = np.diff(indptr)
                max_lens[f] = int(max(1, min(int(lens.max()) if len(lens) else 1, cap)))
                # values of the train rows' joined lists, vectorised: mask CSR entries by row
                row_of = np.repeat(np.arange(len(lens)), lens)
                in_train = np.zeros(len(lens), bool)
                in_train[rows] = True
                sel = indices[in_train[row_of]]
                vocabs[f] = Vocabulary(zero_is_missing=True).fit(sel)
        # Sequence sources need a vocabulary even when they are not fields themselves.
        strides: dict[str, int] = {}
        for _, (src, _) in self.cfg.sequences.items():
            if src == "item_tags":  # n tags per past item: the cap of the items' tag lists
                lens = np.diff(multihot_csr(ds.items["tags"])[0])
                strides[src] = int(max(1, min(int(lens.max()) if len(lens) else 1, self.cfg.item_multihot_cap)))
            key = seq_vocab(src)
            if key in vocabs:
                continue
            if src == "item_id":
                vocabs[key] = Vocabulary(zero_is_missing=False).fit(x["item"])
            elif src == "category":
                vocabs[key] = Vocabulary().fit(_gather(_int_col(ds.items, "category", "items"), x["irow"]))
            elif src == "domain":
                dom = _int_col(ds.items, "domain", "items")
                vocabs[key] = Vocabulary(zero_is_missing=False).fit(dom[x["irow"][x["irow"] >= 0]])
            else:  # tags, item_tags
                indptr, indices = multihot_csr(ds.items["tags"])
                lens = np.diff(indptr)
                in_train = np.zeros(len(lens), bool)
                in_train[train_items] = True
                vocabs[key] = Vocabulary().fit(indices[in_train[np.repeat(np.arange(len(lens)), lens)]])
        self.vocabs = vocabs
        self.state = dict(r, max_lens=max_lens, seq_strides=strides)
        self.feature_map = self._build_feature_map()
        log.info("fitted %d vocabularies on %d train rows", len(vocabs), train.height)
        return self

    def _build_feature_map(self) -> FeatureMap:
        s, fm = self.state, FeatureMap()
        for f in s["user_fields"]:
            fm.add(FeatureSpec(f, "categorical", "users", self.vocabs[f].size))
        for f in s["item_fields"]:
            fm.add(FeatureSpec(f, "categorical", "items", self.vocabs[f].size))
        ctx = s["context"] + (["hour", "weekday"] if self.cfg.time_features else [])
        for f in ctx:
            fm.add(FeatureSpec(f, "categorical", "interactions", self.vocabs[f].size))
        fm.add(FeatureSpec("avc", "categorical", "interactions", len(self.cfg.avc_boundaries) + 2))
        if self.cfg.item_age_days:
            fm.add(FeatureSpec("item_age", "categorical", "interactions", len(self.cfg.item_age_days) + 2))
        for f in s["user_multihot"]:
            fm.add(FeatureSpec(f, "multihot", "users", self.vocabs[f].size, max_len=s["max_lens"][f]))
        for f in s["item_multihot"]:
            fm.add(FeatureSpec(f, "multihot", "items", self.vocabs[f].size, max_len=s["max_lens"][f]))
        for name, (src, L) in self.cfg.sequences.items():
            key = seq_vocab(src)
            shared = key if key in fm else None
            stride = int(s.get("seq_strides", {}).get(src, 1))  # values per past item (item_tags: n)
            fm.add(FeatureSpec(name, "sequence", "interactions", self.vocabs[key].size, max_len=int(L) * stride,
                               dim=stride, shared_with=shared))
        return fm

    # ---------------------------------------------------------------- transform
    def transform(self, ds: Dataset, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        """Encode every feature of ``frame`` (row order kept, no row dropped)."""
        if not self.vocabs:
            raise ConfigError("FeaturePipeline.transform before fit. Fix: call fit(ds, train) or load(dir)")
        s, cfg, file = self.state, self.cfg, "<frame>"
        x = self._raw(ds, frame, s, file)
        n = frame.height
        out: dict[str, np.ndarray] = {}
        for name, v in x["raw"].items():
            out[name] = self.vocabs[name].transform(v)
        is_new = (frame["is_new_user"].fill_null(False).to_numpy().astype(bool)
                  if "is_new_user" in frame.columns else np.zeros(n, bool))
        masked = is_new if cfg.mask_new_behaviour else np.zeros(n, bool)

        # Accumulated view count over ALL the user's earlier events (every label).
        inter = ds.interactions
        h_user = inter["user_id"].to_numpy().astype(np.int64, copy=False)
        h_ts = inter["ts"].to_numpy().astype(np.int64, copy=False)
        _, avc = HistoryIndex(h_user, h_ts).past(x["user"], x["ts"])
        avc = np.where(masked, 0, avc).astype(np.int64)
        out["avc"] = bucketize(avc, cfg.avc_boundaries)
        if cfg.item_age_days:
            out["item_age"], out["_item_age_days"] = self._item_age(inter, x["item"], x["ts"])

        for table, fields, rows in ((ds.users, s["user_multihot"], x["urow"]),
                                    (ds.items, s["item_multihot"], x["irow"])):
            for f in fields:
                indptr, indices = multihot_csr(table[f])
                padded = pad_csr(indptr, self.vocabs[f].transform(indices), s["max_lens"][f])
                out[f] = np.where((rows >= 0)[:, None], padded[np.clip(rows, 0, len(padded) - 1)], PAD)

        if cfg.sequences:
            out.update(self._sequences(ds, x, masked))
        for lab in cfg.labels:
            if lab not in frame.columns:
                raise DataError(f"label column '{lab}' not in the frame {frame.columns}", file=file, column=lab,
                                fix="add the label column or change FeatureConfig.labels")
            row = first_bad_row(frame[lab].is_null())
            if row is not None:
                raise DataError("missing label", file=file, row=row, column=lab, fix="fill or remove the row")
            out[lab] = frame[lab].to_numpy().astype(np.float32)
        out["_user"], out["_item"], out["_ts"], out["_avc"], out["_is_new"] = (
            x["user"].copy(), x["item"].copy(), x["ts"].copy(), avc, is_new)
        if "is_new_item" in frame.columns:
            out["_is_new_item"] = frame["is_new_item"].fill_null(False).to_numpy().astype(bool)
        for col in cfg.passthrough:
            if col not in frame.columns:
                raise DataError(f"passthrough column '{col}' is not in the frame {frame.columns}", file=file,
                                column=col, fix="add it to the interactions before splitting, or drop it")
            out[f"_{col}"] = frame[col].to_numpy()
        self.last_stats = dict(rows=n, rows_unknown_user_table=x["n_missing_user"],
                               rows_unknown_item_table=x["n_missing_item"], rows_masked=int(masked.sum()))
        if x["n_missing_user"] or x["n_missing_item"]:
            log.warning("%d rows have no users row and %d no items row: their attributes are 'missing' (0)",
                        x["n_missing_user"], x["n_missing_item"])
        return out

    def _item_age(self, inter: pl.DataFrame, item: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Item age at each row (POSO Sec. 4.5's video age), in days since the item's first event in
        the log (its upload, as far as the data can tell); bucketized by ``item_age_days``."""
        first = inter.group_by("item_id").agg(pl.col("ts").min())
        ids = first["item_id"].to_numpy().astype(np.int64)
        row = _row_lookup(ids, item)
        born = np.where(row >= 0, first["ts"].to_numpy().astype(np.int64)[np.clip(row, 0, None)], ts)
        days = np.maximum(ts - born, 0) // 86_400
        return bucketize(days, self.cfg.item_age_days), days

    def _sequences(self, ds: Dataset, x: dict[str, Any], masked: np.ndarray) -> dict[str, np.ndarray]:
        inter = ds.interactions
        if self.cfg.history_positive_only:
            inter = inter.filter(pl.col("label") == 1)
        if self.cfg.history_before_ts is not None:  # behaviour from an earlier log only (MAIL)
            inter = inter.filter(pl.col("ts") < int(self.cfg.history_before_ts))
        h_user = inter["user_id"].to_numpy().astype(np.int64, copy=False)
        h_ts = inter["ts"].to_numpy().astype(np.int64, copy=False)
        h_item = inter["item_id"].to_numpy().astype(np.int64, copy=False)
        index = HistoryIndex(h_user, h_ts)
        past = index.past(x["user"], x["ts"])  # one search shared by every sequence
        item_ids = _int_col(ds.items, "item_id", "items")
        n_items = int(item_ids.max()) + 1 if len(item_ids) else 0
        h_irow = _row_lookup(item_ids, h_item)
        out: dict[str, np.ndarray] = {}
        for name, (src, L) in self.cfg.sequences.items():
            L = int(L)
            voc = self.vocabs[seq_vocab(src)]
            if src == "item_tags":
                rows, _ = past_sequences(x["user"], x["ts"], h_user, h_ts, h_irow + 1, L, index=index, past=past)
                seq = self._item_tag_blocks(ds, voc, rows)
            elif src == "tags":
                indptr, indices = multihot_csr(ds.items["tags"])
                # Re-key the CSR by item id (rows of items.parquet may be in any order).
                lens = np.zeros(n_items, np.int64)
                lens[item_ids] = np.diff(indptr)
                by_id = np.concatenate([[0], np.cumsum(lens)])
                order = np.argsort(item_ids, kind="stable")
                starts = indptr[:-1][order]
                ln = np.diff(indptr)[order]
                take = np.repeat(starts - by_id[:-1][item_ids[order]], ln) + np.arange(int(ln.sum()))
                enc = voc.transform(indices[take])
                seq = flatten_tag_history(x["user"], x["ts"], h_user, h_ts, h_item, by_id, enc, L,
                                          index=index, past=past)
            else:
                if src == "item_id":
                    vals = voc.transform(h_item)
                elif src == "domain":  # an event whose item has no items row: domain unknown (1)
                    vals = np.where(h_irow >= 0, voc.transform(_gather(_int_col(ds.items, "domain", "items"), h_irow)),
                                    UNK)
                else:
                    vals = voc.transform(_gather(_int_col(ds.items, "category", "items"), h_irow))
                seq, _ = past_sequences(x["user"], x["ts"], h_user, h_ts, vals, L, index=index, past=past)
            out[name] = np.where(masked[:, None], PAD, seq)
        return out

    def _item_tag_blocks(self, ds: Dataset, voc: Vocabulary, rows: np.ndarray) -> np.ndarray:
        """``rows [N, L]`` (items-table row + 1 of each past item, most recent first; 0 = none) ->
        ``[N, L * n]``: each past item as the block of its first ``n`` encoded tags (0-padded), as
        COUPLE represents an item (Eq. 1). The tags come from the items table, so a past item never
        seen in training still has its content."""
        n = int(self.state["seq_strides"]["item_tags"])
        indptr, indices = multihot_csr(ds.items["tags"])
        blocks = np.zeros((len(indptr), n), np.int64)  # row 0: padding; row r + 1: items row r
        blocks[1:] = pad_csr(indptr, voc.transform(indices), n)
        return blocks[rows].reshape(len(rows), rows.shape[1] * n)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """feature_map.json + vocabs.npz + config.json: enough to transform identically later."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.feature_map.save(path / "feature_map.json")
        tmp = path / "vocabs.tmp.npz"
        np.savez(tmp, **{k: v.values for k, v in self.vocabs.items()})
        tmp.replace(path / "vocabs.npz")
        zero = {k: v.zero_is_missing for k, v in self.vocabs.items()}
        atomic_write_text(path / "config.json", json.dumps(
            {"config": asdict(self.cfg), "state": self.state, "zero_is_missing": zero}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeaturePipeline":
        path = Path(path)
        for f in ("config.json", "vocabs.npz", "feature_map.json"):
            if not (path / f).exists():
                raise DataError(f"missing {f}: not a saved FeaturePipeline", file=str(path / f),
                                fix="point at the folder written by FeaturePipeline.save")
        meta = json.loads((path / "config.json").read_text())
        pipe = cls(FeatureConfig(**meta["config"]))
        pipe.state = meta["state"]
        with np.load(path / "vocabs.npz") as z:
            pipe.vocabs = {k: Vocabulary.from_dict({"values": z[k], "zero_is_missing": meta["zero_is_missing"][k]})
                           for k in z.files}
        pipe.feature_map = FeatureMap.load(path / "feature_map.json")
        return pipe
