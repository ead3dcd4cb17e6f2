"""The two-tower retrieval contract (RetrievalModel), DSSM, and retrieval training / evaluation."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from thawrec.config import TrainConfig
from thawrec.data.preprocess import UNK, FeatureConfig, FeaturePipeline
from thawrec.data.schema import FeatureMap, FeatureSpec
from thawrec.data.splits import leave_one_out
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError, DataError
from thawrec.models.retrieval import RetrievalModel
from thawrec.models.retrievers.dssm import DSSM
from thawrec.registry import build_model, names
from thawrec.train.retrieval import (embed_columns, item_corpus_columns, query_set, retrieval_metrics, retrieve,
                                     train_retriever)

SMALL = {"embedding_dim": 16, "user_hidden": [64], "item_hidden": [64], "out_dim": 32}
N_ITEMS = 200


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=400, n_items=N_ITEMS, n_interactions=12000, seed=1))
    split = leave_one_out(ds.interactions)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 20], "hist_tags": ["tags", 20]}))
    pipe.fit(ds, split.train)
    cols = {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid")}
    return ds, split, pipe, cols, item_corpus_columns(pipe, ds)


def _train(pipe, cols, corpus, seed=0, **cfg):
    torch.manual_seed(seed)
    model = build_model("dssm", pipe.feature_map, {**SMALL, **cfg})
    tc = TrainConfig(epochs=3, batch_size=128, lr=3e-3, progress=False, patience=5, device="cpu", seed=seed)
    return train_retriever(model, cols["train"], cols["valid"], corpus, tc, None, k=20, exclude=cols["train"])


# ---------------------------------------------------------------------------------------------
# (a) DSSM learns: validation recall@20 well above a random ranking
# ---------------------------------------------------------------------------------------------
def test_dssm_beats_random_ranking_and_logq_helps(world):
    _, _, pipe, cols, corpus = world
    qs = query_set(cols["valid"])
    pos = cols["train"]["label"] > 0.5
    seen = np.bincount(cols["train"]["_user"][pos], minlength=int(qs.users.max()) + 1)[qs.users]
    # A uniform random ranking of the unseen items finds the one held-out item with chance K / candidates.
    random_recall = float(np.mean(np.minimum(1.0, 20 / (N_ITEMS - seen))))
    assert 0.09 < random_recall < 0.12

    run = _train(pipe, cols, corpus)
    hist = run.fit.history
    assert len(hist) == 3 and {"valid_recall@20", "valid_hr@20", "valid_ndcg@10", "train_softmax_label"} <= set(hist[0])
    assert run.fit.best_score == max(h["valid_recall@20"] for h in hist)
    assert hist[0]["samples_per_second"] * hist[0]["seconds"] == pytest.approx(pos.sum())  # positives only
    assert run.fit.best_score > 2 * random_recall, hist
    # The returned model is the best epoch's: evaluating it again gives the best score.
    again = retrieval_metrics(run.model, cols["valid"], corpus, (20,), exclude=cols["train"])
    assert again["recall@20"] == pytest.approx(run.fit.best_score)

    # In-batch negatives are drawn by popularity; on this popularity-driven world the logQ
    # correction (Yi et al. 2019) recovers that signal and clearly beats the uncorrected model.
    corrected = _train(pipe, cols, corpus, logq_correction=True)
    assert corrected.fit.best_score > run.fit.best_score + 0.1, (corrected.fit.history, hist)


# ---------------------------------------------------------------------------------------------
# (b), (c) retrieval_metrics on hand-built vectors, with and without exclusions
# ---------------------------------------------------------------------------------------------
# <u, v> = SCORES[ctx, encoded item]: the user vector is row `ctx`, the item vector a one-hot.
SCORES = [[5, 4, 3, 2, 1],   # ctx 0 -> raw items 10, 11, 12, 13, 14
          [1, 2, 3, 4, 5],   # ctx 1 -> 14, 13, 12, 11, 10
          [3, 5, 1, 4, 2],   # ctx 2 -> 11, 13, 10, 14, 12 (user 2's later row: must not be the query)
          [4, 0, 5, 1, 2],   # ctx 3 -> 12, 10, 14, 13, 11
          [0, 0, 0, 0, 9]]   # ctx 4 -> 14 first (user 0's later row: must not be the query)


class TableRetriever(RetrievalModel):
    """A retriever with fixed vectors, so every top-K list is known by hand."""

    def __init__(self, feature_map: FeatureMap, cfg: dict | None = None) -> None:
        super().__init__(feature_map, cfg)
        self.register_buffer("table", torch.tensor(SCORES, dtype=torch.float32))

    def user_vectors(self, batch):
        return self.table[batch["ctx"]]

    def item_vectors(self, batch):
        return F.one_hot(batch["item_id"], 5).float()


def _table_world():
    fm = FeatureMap([FeatureSpec("ctx", "categorical", "interactions", 5),
                     FeatureSpec("item_id", "categorical", "items", 5)])
    # rows out of time order; user 1's row 2 is a negative, user 3 has negatives only
    q = {"_user": np.array([2, 0, 1, 2, 0, 1, 3]),
         "_ts": np.array([5, 1, 2, 3, 4, 6, 1]),
         "ctx": np.array([2, 0, 1, 3, 4, 1, 0]),
         "_item": np.array([10, 11, 13, 12, 14, 14, 10]),
         "item_id": np.array([0, 1, 3, 2, 4, 4, 0]),
         "label": np.array([1, 1, 0, 1, 1, 1, 0], np.float32)}
    corpus = {"item_id": np.arange(5), "_item": np.arange(10, 15)}  # raw ids differ from encoded ids
    return TableRetriever(fm), q, corpus


def test_retrieval_metrics_match_hand_computed_values():
    model, q, corpus = _table_world()
    qs, top = retrieve(model, q, corpus, 5)
    np.testing.assert_array_equal(qs.users, [0, 1, 2])
    np.testing.assert_array_equal(qs.rows, [1, 5, 3])  # earliest positive row of each user
    np.testing.assert_array_equal(top, [[10, 11, 12, 13, 14], [14, 13, 12, 11, 10], [12, 10, 14, 13, 11]])
    # relevant: user 0 {11, 14}, user 1 {14} (its negative row 13 is not relevant), user 2 {10, 12}
    m = retrieval_metrics(model, q, corpus, k_values=(1, 2, 5))
    g = (1 / math.log2(3)) / (1 + 1 / math.log2(3))  # user 0 @2: one hit at position 2 of 2 relevant
    expected = {"recall@1": (0 + 1 + 0.5) / 3, "hr@1": 2 / 3, "ndcg@1": 2 / 3,
                "recall@2": (0.5 + 1 + 1) / 3, "hr@2": 1.0, "ndcg@2": (g + 1 + 1) / 3,
                "recall@5": 1.0, "hr@5": 1.0}
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    # predict is the inner product itself (scores > 1: no sigmoid), and forward divides it by the temperature
    b = {k: torch.as_tensor(v) for k, v in q.items()}
    torch.testing.assert_close(model.predict(b)["label"], torch.tensor([3.0, 4.0, 4.0, 5.0, 9.0, 5.0, 5.0]))
    torch.testing.assert_close(model(b)["logits"]["label"], model.predict(b)["label"] / 0.05)


def test_excluded_items_leave_the_top_k():
    model, q, corpus = _table_world()
    # columns form: only positive rows count (item 99 is a label-0 row), user 3 is not a query
    seen = {"_user": np.array([0, 2, 3, 0]), "_item": np.array([10, 12, 11, 99]),
            "label": np.array([1, 1, 1, 0], np.float32)}
    _, top = retrieve(model, q, corpus, 5, exclude=seen)
    np.testing.assert_array_equal(top, [[11, 12, 13, 14, -1], [14, 13, 12, 11, 10], [10, 14, 13, 11, -1]])
    # the same exclusions as CSR over raw user ids (row u = user u's seen items)
    csr = (np.array([0, 1, 1, 2]), np.array([10, 12]))
    np.testing.assert_array_equal(retrieve(model, q, corpus, 5, exclude=csr)[1], top)
    np.testing.assert_array_equal(retrieve(model, q, corpus, 5, exclude=seen, batch_size=1)[1], top)  # blocks
    m = retrieval_metrics(model, q, corpus, (2,), exclude=seen)
    # @2: user 0 [11, 12] hits 11 first; user 1 [14, 13]; user 2 [10, 14] hits 10 (12 was excluded)
    assert m["recall@2"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1 + 1 / (1 + 1 / math.log2(3))) / 3)
    with pytest.raises(DataError, match="_item"):
        retrieve(model, q, corpus, 2, exclude={"_user": np.array([0])})
    with pytest.raises(DataError, match="no positive row"):
        retrieve(model, {**q, "label": np.zeros(7, np.float32)}, corpus, 2)
    with pytest.raises(DataError, match="twice in the corpus"):
        retrieve(model, q, {"item_id": np.array([0, 1]), "_item": np.array([10, 10])}, 2)


def test_in_batch_softmax_uses_positives_and_masks_duplicate_items():
    model = TableRetriever(_table_world()[0].feature_map, {"temperature": 2.0})
    b = {"ctx": torch.tensor([0, 1, 2, 3]), "item_id": torch.tensor([0, 1, 2, 0]),
         "_item": torch.tensor([10, 11, 12, 10]), "label": torch.tensor([1.0, 1.0, 0.0, 1.0])}
    loss = model.compute_loss(b, model(b))["softmax_label"]
    t = torch.tensor(SCORES, dtype=torch.float64)
    # positive rows 0, 1, 3 with items 0, 1, 0: row 0 / column 2 and row 2 / column 0 hold the same item
    logits = torch.stack([t[0, [0, 1, 0]], t[1, [0, 1, 0]], t[3, [0, 1, 0]]]) / 2.0
    logits[0, 2] = logits[2, 0] = float("-inf")
    want = F.cross_entropy(logits, torch.arange(3))
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    one = {k: v[:1] for k, v in b.items()}  # a single positive: nothing to contrast, still differentiable
    dssm = DSSM(FeatureMap([FeatureSpec("ctx", "categorical", "interactions", 5),
                            FeatureSpec("item_id", "categorical", "items", 5)]), {**SMALL})
    term = dssm.compute_loss(one, dssm(one))["softmax_label"]
    assert float(term.detach()) == 0.0 and term.requires_grad
    term.backward()


# ---------------------------------------------------------------------------------------------
# (d) new items get vectors from their content; the registry builds "dssm"
# ---------------------------------------------------------------------------------------------
def test_new_item_gets_a_content_vector_and_registry_builds_dssm(world):
    ds, split, _, _, _ = world
    new = np.arange(5)  # items 0..4 never occur in this train part: new items
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 20]}))
    pipe.fit(ds, split.train.filter(~pl.col("item_id").is_in(new.tolist())))
    corpus = item_corpus_columns(pipe, ds)
    assert set(corpus) == {"item_id", "category", "year", "tags", "_item"}
    assert (corpus["item_id"][new] == UNK).all() and (corpus["tags"][new] > 0).any(1).all()
    assert "dssm" in names("retriever")
    torch.manual_seed(0)
    model = build_model("dssm", pipe.feature_map, {**SMALL, "use_item_id": False})
    assert isinstance(model, DSSM) and isinstance(model, RetrievalModel)
    assert model.item_fields() == ["item_id", "category", "year", "tags"]
    vec = embed_columns(model, corpus, "item")  # the tower is handed the item-side columns only
    assert vec.shape == (N_ITEMS, SMALL["out_dim"]) and np.isfinite(vec).all()
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    # content, not the id, places an item: new items with different content get different vectors,
    # and re-labelling a known item as unknown changes nothing
    assert np.unique(vec[new].round(5), axis=0).shape[0] > 1
    np.testing.assert_allclose(embed_columns(model, {**corpus, "item_id": np.full(N_ITEMS, UNK)}, "item"),
                               vec, atol=1e-6)
    with_id = build_model("dssm", pipe.feature_map, SMALL)
    assert np.isfinite(embed_columns(with_id, corpus, "item")[new]).all()
    # the untrained content model already retrieves from the whole catalogue, new items included
    _, top = retrieve(model, pipe.transform(ds, split.valid), corpus, 10)
    assert top.shape[1] == 10 and (top >= 0).all()


# ---------------------------------------------------------------------------------------------
# (e) configuration errors name the problem
# ---------------------------------------------------------------------------------------------
def test_config_errors_name_the_bad_option(world):
    fm = world[2].feature_map
    with pytest.raises(ConfigError, match="tempreature"):
        build_model("dssm", fm, {"tempreature": 0.1})
    with pytest.raises(ConfigError, match="tempreature"):
        DSSM(fm, {"tempreature": 0.1})
    with pytest.raises(ConfigError, match="temperature must be"):
        DSSM(fm, {"temperature": 0})
    with pytest.raises(ConfigError, match="pooling"):
        DSSM(fm, {"pooling": "max"})
    only_id = FeatureMap([FeatureSpec("user_id", "categorical", "users", 10),
                          FeatureSpec("item_id", "categorical", "items", 10)])
    with pytest.raises(ConfigError, match="item tower has no input"):
        DSSM(only_id, {"use_item_id": False})
    with pytest.raises(ConfigError, match="not a two-tower retriever"):
        train_retriever(build_model("base_dnn", fm), {}, {}, {}, TrainConfig(), None)
