"""Vocabularies (train-only, unknown -> 1, missing -> 0), sequences, avc buckets, the pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from thawrec.data.features import (
    accumulated_counts,
    bucketize,
    dense_from_lists,
    flatten_tag_history,
    multihot_csr,
    pad_lists,
    past_sequences,
)
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline, Vocabulary, time_features
from thawrec.data.schema import Dataset, encode_codes, encode_dense, encode_list_codes
from thawrec.data.splits import mask_new_users, temporal_split
from thawrec.errors import ConfigError, DataError


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def tiny(n: int = 300, n_users: int = 12, n_items: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ts = rng.integers(1_600_000_000, 1_600_000_000 + 40, n).astype(np.int64)  # many ties
    # the last 3 items only appear late, so a temporal split has items unseen in train
    item = np.where(ts >= 1_600_000_036, rng.integers(0, n_items, n), rng.integers(0, n_items - 3, n))
    inter = pl.DataFrame({
        "user_id": rng.integers(0, n_users, n).astype(np.int64),
        "item_id": item.astype(np.int64),
        "ts": ts,
        "label": pl.Series(rng.integers(0, 2, n), dtype=pl.Int8),
        "domain": pl.Series(np.zeros(n), dtype=pl.Int32),
    })
    users = pl.DataFrame({"user_id": np.arange(n_users, dtype=np.int64),
                          "gender": rng.integers(0, 3, n_users).astype(np.int64),
                          "apps": [list(rng.choice(np.arange(1, 9), rng.integers(0, 4), replace=False))
                                   for _ in range(n_users)]},
                         schema_overrides={"apps": pl.List(pl.Int64)})
    items = pl.DataFrame({"item_id": np.arange(n_items, dtype=np.int64)[::-1].copy(),  # rows not in id order
                          "tags": [list(rng.choice(np.arange(1, 11), rng.integers(0, 4), replace=False))
                                   for _ in range(n_items)],
                          "category": rng.integers(0, 5, n_items).astype(np.int64),
                          "domain": pl.Series(np.zeros(n_items), dtype=pl.Int32),
                          "year": rng.choice([0, 1991, 1994, 1999, 2003], n_items).astype(np.int64)},
                         schema_overrides={"tags": pl.List(pl.Int64)})
    return Dataset(inter, users, items)


def load_ml100k(path: Path) -> Dataset:
    try:
        from thawrec.data.sources import load_source

        return load_source("recbole", path)
    except ImportError:  # the sources module is someone else's; build it from the atomic files
        def read(name: str) -> pl.DataFrame:  # everything as text first: years hold junk like "V"
            df = pl.read_csv(path / name, separator="\t", quote_char=None, infer_schema=False)
            return df.rename({c: c.split(":")[0] for c in df.columns})

        inter, users, items = read("ml-100k.inter"), read("ml-100k.user"), read("ml-100k.item")
        uid, uvoc = encode_dense(users["user_id"])
        iid, ivoc = encode_dense(items["item_id"])
        tags, _ = encode_list_codes(items["class"].str.split(" "))
        u = pl.DataFrame({"user_id": uid, "gender": encode_codes(users["gender"])[0],
                          "occupation": encode_codes(users["occupation"])[0]})
        it = pl.DataFrame({"item_id": iid, "tags": tags, "category": tags.list.first().fill_null(0),
                           "domain": pl.Series(np.zeros(len(iid)), dtype=pl.Int32)})
        umap = dict(zip(uvoc, range(len(uvoc))))
        imap = dict(zip(ivoc, range(len(ivoc))))
        x = pl.DataFrame({
            "user_id": inter["user_id"].replace_strict(umap, return_dtype=pl.Int64),
            "item_id": inter["item_id"].replace_strict(imap, return_dtype=pl.Int64),
            "ts": inter["timestamp"].cast(pl.Float64).cast(pl.Int64),
            "label": (inter["rating"].cast(pl.Float64) >= 4).cast(pl.Int8),
        })
        return Dataset(x, u, it)


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("big", [False, True])
def test_vocabulary_unknown_missing_roundtrip(big):
    off = 10**12 if big else 0  # big values take the searchsorted path, small the lookup table
    v = Vocabulary().fit(np.array([5, 3, 3, 0, 9]) + np.where(np.array([5, 3, 3, 0, 9]) > 0, off, 0))
    assert v.size == 5
    q = np.array([0, 3 + off, 5 + off, 9 + off, 4 + off, 10**15, -2])
    assert v.transform(q).tolist() == [0, 2, 3, 4, 1, 1, 1]
    v2 = Vocabulary.from_dict(v.to_dict())
    assert np.array_equal(v2.transform(q), v.transform(q))
    ids = Vocabulary(zero_is_missing=False).fit(np.array([0, 1, 2]))
    assert ids.transform(np.array([0, 2, 7])).tolist() == [2, 4, 1]  # id 0 is a real id


def test_vocab_fitted_on_train_only():
    ds = tiny()
    sp = temporal_split(ds.interactions)
    pipe = FeaturePipeline(FeatureConfig(sequences={})).fit(ds, sp.train)
    out = pipe.transform(ds, sp.test)
    train_items = set(sp.train["item_id"].to_list())
    only_test = ~sp.test["item_id"].is_in(list(train_items)).to_numpy()
    assert only_test.any()
    assert (out["item_id"][only_test] == 1).all() and (out["item_id"][~only_test] >= 2).all()
    assert pipe.vocabs["item_id"].size == len(train_items) + 2
    assert pipe.feature_map["item_id"].vocab_size == len(train_items) + 2


# --------------------------------------------------------------------------------------------
# sequence helpers, brute force
# --------------------------------------------------------------------------------------------
def test_past_sequences_brute_force():
    rng = np.random.default_rng(4)
    hu, ht = rng.integers(0, 5, 80), rng.integers(0, 15, 80)
    hv = rng.integers(1, 100, 80)
    qu, qt = rng.integers(0, 7, 50), rng.integers(-2, 18, 50)
    L = 6
    seq, cnt = past_sequences(qu, qt, hu, ht, hv, L)
    for r in range(len(qu)):
        m = np.flatnonzero((hu == qu[r]) & (ht < qt[r]))
        m = m[np.lexsort((m, ht[m]))]  # by ts, ties in input order
        exp = hv[m][::-1][:L]
        assert cnt[r] == len(m)
        assert seq[r, : len(exp)].tolist() == exp.tolist()
        assert (seq[r, len(exp):] == 0).all()


def test_flatten_tag_history_brute_force():
    rng = np.random.default_rng(5)
    tags = [list(rng.integers(1, 9, rng.integers(0, 4))) for _ in range(6)]
    indptr = np.concatenate([[0], np.cumsum([len(t) for t in tags])])
    indices = np.array([x for t in tags for x in t], dtype=np.int64)
    hu, ht, hi = rng.integers(0, 3, 40), rng.integers(0, 10, 40), rng.integers(0, 6, 40)
    qu, qt = rng.integers(0, 3, 30), rng.integers(0, 12, 30)
    L = 7
    out = flatten_tag_history(qu, qt, hu, ht, hi, indptr, indices, L)
    for r in range(len(qu)):
        m = np.flatnonzero((hu == qu[r]) & (ht < qt[r]))
        m = m[np.lexsort((m, ht[m]))]
        flat = [x for e in m for x in tags[hi[e]]][::-1][:L]
        assert out[r, : len(flat)].tolist() == flat and (out[r, len(flat):] == 0).all()


def test_avc_buckets_and_counts():
    b = [1, 2, 3, 5, 8]
    assert bucketize(np.array([0, 1, 2, 3, 4, 5, 7, 8, 1000]), b).tolist() == [1, 2, 3, 4, 4, 5, 5, 6, 6]
    u, t = np.array([0, 0, 0, 1, 0]), np.array([5, 5, 6, 1, 9])
    assert accumulated_counts(u, t).tolist() == [0, 0, 2, 0, 3]
    with pytest.raises(ConfigError):
        bucketize(np.array([1]), [3, 2])


def test_list_helpers():
    s = pl.Series("t", [[1, 2, 3], [], None, [7]], dtype=pl.List(pl.Int64))
    indptr, idx = multihot_csr(s)
    assert indptr.tolist() == [0, 3, 3, 3, 4] and idx.tolist() == [1, 2, 3, 7]
    assert pad_lists(s, 2).tolist() == [[1, 2], [0, 0], [0, 0], [7, 0]]
    assert pad_lists(s.slice(1, 3), 2).tolist() == [[0, 0], [0, 0], [7, 0]]
    d = dense_from_lists(s, 8)
    assert d.dtype == np.float32 and d.sum() == 4 and d[0, 1] == 1 and d[3, 7] == 1
    with pytest.raises(DataError):
        dense_from_lists(s, 5)
    with pytest.raises(ConfigError):
        dense_from_lists(s, 100_000)


def test_time_features_utc():
    # 2021-01-04 was a Monday; 13:30 UTC
    hour, wd = time_features(np.array([1609767000]))
    assert hour.tolist() == [14] and wd.tolist() == [1]


# --------------------------------------------------------------------------------------------
# the pipeline on a tiny dataset
# --------------------------------------------------------------------------------------------
def test_pipeline_sequences_strictly_earlier_positive_only():
    ds = tiny()
    sp = temporal_split(ds.interactions)
    cfg = FeatureConfig(sequences={"hist_items": ["item_id", 5], "hist_cats": ["category", 5]})
    pipe = FeaturePipeline(cfg).fit(ds, sp.train)
    frame = sp.test
    out = pipe.transform(ds, frame)
    inter = ds.interactions
    hu, ht, hi, hl = (inter[c].to_numpy() for c in ("user_id", "ts", "item_id", "label"))
    cat_of = dict(zip(ds.items["item_id"].to_list(), ds.items["category"].to_list()))
    iv, cv = pipe.vocabs["item_id"], pipe.vocabs["category"]
    for r, (u, t) in enumerate(zip(frame["user_id"].to_list(), frame["ts"].to_list())):
        m = np.flatnonzero((hu == u) & (ht < t) & (hl == 1))
        m = m[np.lexsort((m, ht[m]))][::-1][:5]
        assert out["hist_items"][r, : len(m)].tolist() == iv.transform(hi[m]).tolist()
        assert (out["hist_items"][r, len(m):] == 0).all()
        cats = cv.transform(np.array([cat_of[i] for i in hi[m]], dtype=np.int64))
        assert out["hist_cats"][r, : len(m)].tolist() == cats.tolist()
        assert out["_avc"][r] == int(((hu == u) & (ht < t)).sum())  # every label counts for avc
    assert np.array_equal(out["avc"], bucketize(out["_avc"], cfg.avc_boundaries))
    fm = pipe.feature_map
    assert fm["hist_items"].shared_with == "item_id" and fm["hist_items"].kind == "sequence"
    assert fm["hist_cats"].shared_with == "category"


def test_pipeline_shapes_dtypes_and_featuremap():
    ds = tiny()
    sp = temporal_split(ds.interactions)
    pipe = FeaturePipeline().fit(ds, sp.train)
    out = pipe.transform(ds, sp.valid)
    n = sp.valid.height
    fm = pipe.feature_map
    for f in fm.features:
        a = out[f.name]
        assert a.dtype == np.int64 and len(a) == n
        assert a.min() >= 0 and a.max() < f.vocab_size, f.name
        if f.kind in ("sequence", "multihot"):
            assert a.shape == (n, f.max_len)
    assert set(fm.names()) >= {"user_id", "gender", "item_id", "category", "year", "hour", "weekday", "avc",
                               "apps", "tags", "hist_items", "hist_tags"}
    assert fm["hist_tags"].shared_with == "tags" and fm["tags"].max_len == 3 and fm["apps"].max_len == 3
    assert out["label"].dtype == np.float32 and out["_is_new"].dtype == bool
    assert np.array_equal(out["_user"], sp.valid["user_id"].to_numpy())  # row order kept
    # items' rows are stored in reverse id order: tags must still follow item ids
    tag_of = dict(zip(ds.items["item_id"].to_list(), ds.items["tags"].to_list()))
    tv = pipe.vocabs["tags"]
    for r, i in enumerate(out["_item"][:20]):
        exp = tv.transform(np.array(tag_of[int(i)], dtype=np.int64))
        assert out["tags"][r, : len(exp)].tolist() == exp.tolist()


def test_mask_new_behaviour_empties_sequences(tmp_path):
    ds = tiny()
    sp = mask_new_users(temporal_split(ds.interactions, mark_new=False), frac=0.4, seed=1)
    pipe = FeaturePipeline(FeatureConfig(mask_new_behaviour=True)).fit(ds, sp.train)
    out = pipe.transform(ds, sp.test)
    new = sp.test["is_new_user"].to_numpy()
    assert new.any() and (~new).any()
    assert (out["hist_items"][new] == 0).all() and (out["hist_tags"][new] == 0).all()
    assert (out["avc"][new] == 1).all() and (out["_avc"][new] == 0).all()
    assert (out["hist_items"][~new] > 0).any()
    assert np.array_equal(out["_is_new"], new)
    # save / load gives identical outputs
    FeaturePipeline.load(pipe.save(tmp_path / "fp"))
    again = FeaturePipeline.load(tmp_path / "fp").transform(ds, sp.test)
    for k in out:
        assert np.array_equal(out[k], again[k]), k


def test_pipeline_errors():
    ds = tiny()
    with pytest.raises(ConfigError, match="Fix"):
        FeaturePipeline(FeatureConfig(user_fields=["nope"])).fit(ds, ds.interactions)
    with pytest.raises(ConfigError, match="Fix"):
        FeaturePipeline(FeatureConfig(sequences={"s": ["rating", 3]})).fit(ds, ds.interactions)
    pipe = FeaturePipeline().fit(ds, ds.interactions)
    with pytest.raises(DataError, match="label"):
        pipe.transform(ds, ds.interactions.drop("label"))
    bad = ds.interactions.with_columns(ts=pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise("ts"))
    with pytest.raises(DataError, match="row 7"):
        pipe.transform(ds, bad)


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------
def test_pipeline_on_real_ml100k(ml100k_dir):
    t0 = time.perf_counter()
    ds = load_ml100k(ml100k_dir)
    sp = temporal_split(ds.interactions)
    pipe = FeaturePipeline().fit(ds, sp.train)
    outs = {k: pipe.transform(ds, df) for k, df in sp.parts().items()}
    elapsed = time.perf_counter() - t0
    assert sum(len(o["_user"]) for o in outs.values()) == ds.interactions.height == 100_000
    for k, o in outs.items():
        n = sp.parts()[k].height
        assert o["hist_items"].shape == (n, 30) and o["hist_tags"].shape == (n, 30)
        assert all(len(v) == n for v in o.values())
    # every test user with earlier positives has a non-empty history
    o = outs["test"]
    assert (o["hist_items"][:, 0] > 0).mean() > 0.5
    assert elapsed < 10, elapsed


def test_extra_label_columns_are_never_features():
    """Regression: task columns added to interactions (POSO's favorite/satisfied) must not leak
    in as context features."""
    import polars as pl

    from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
    from thawrec.data.synthetic import SynthConfig, generate

    ds, _ = generate(SynthConfig(n_users=200, n_items=100, n_interactions=3000, seed=3))
    ds.interactions = ds.interactions.with_columns(fav=(pl.col("rating") >= 5).cast(pl.Int8))
    pipe = FeaturePipeline(FeatureConfig(labels=["label", "fav"])).fit(ds, ds.interactions)
    assert "fav" not in pipe.feature_map and "label" not in pipe.feature_map
    cols = pipe.transform(ds, ds.interactions)
    assert cols["fav"].dtype.kind == "f"


def test_item_age_is_days_since_the_items_first_event_bucketized():
    from thawrec.data.synthetic import SynthConfig, generate

    ds, _ = generate(SynthConfig(n_users=300, n_items=100, n_interactions=6000, seed=5))
    inter = ds.interactions
    pipe = FeaturePipeline(FeatureConfig(item_age_days=[1, 7, 30])).fit(ds, inter)
    cols = pipe.transform(ds, inter)
    assert pipe.feature_map["item_age"].vocab_size == 5
    first = inter.group_by("item_id").agg(pl.col("ts").min().alias("born"))
    born = inter.join(first, on="item_id", how="left")["born"].to_numpy()
    expect = (inter["ts"].to_numpy() - born) // 86_400
    np.testing.assert_array_equal(cols["_item_age_days"], expect)
    np.testing.assert_array_equal(cols["item_age"], np.searchsorted([1, 7, 30], expect, side="right") + 1)
    assert "item_age" not in FeaturePipeline().fit(ds, inter).feature_map  # only when asked for
