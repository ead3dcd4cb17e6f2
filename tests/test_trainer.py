"""Trainer: learning happens, early stopping, exact resume, per-group objectives, checkpoints."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from thawrec.data.reader import BatchReader
from thawrec.data.schema import FeatureMap, FeatureSpec
from thawrec.errors import ConfigError
from thawrec.eval.metrics import auc
from thawrec.models.base import RecModel
from thawrec.models.rankers.base_dnn import BaseDNN
from thawrec.train.checkpoint import load_checkpoint
from thawrec.config import TrainConfig
from thawrec.train.trainer import Trainer, predict


def planted(n: int = 4000, seed: int = 0) -> tuple[FeatureMap, dict[str, np.ndarray]]:
    """Users of 2 kinds like items of 2 kinds: a signal an embedding model must find."""
    rng = np.random.default_rng(seed)
    u = rng.integers(2, 62, n)
    i = rng.integers(2, 42, n)
    hist = rng.integers(0, 42, (n, 5))
    p = np.where((u % 2) == (i % 2), 0.85, 0.15)
    y = (rng.random(n) < p).astype(np.float32)
    fm = FeatureMap([FeatureSpec("user_id", "categorical", "users", 62),
                     FeatureSpec("item_id", "categorical", "items", 42),
                     FeatureSpec("hist", "sequence", "interactions", 42, max_len=5, shared_with="item_id")])
    cols = {"user_id": u, "item_id": i, "hist": hist, "label": y, "_user": u}
    return fm, cols


def small_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 256, "lr": 3e-3, "progress": False, "patience": 5,
                          "device": "cpu", **kw})


def make_eval(valid):
    def evaluate(model):
        reader = BatchReader(valid, batch_size=2048, shuffle=False, rank=0, world_size=1)
        p = predict(model, reader, torch.device("cpu"))["label"]
        return {"auc": auc(valid["label"], p)}
    return evaluate


def model_for(fm: FeatureMap) -> BaseDNN:
    torch.manual_seed(0)
    return BaseDNN(fm, {"embedding_dim": 8, "hidden": [32, 16], "dropout": 0.1})


def test_base_dnn_learns_planted_signal(tmp_path):
    fm, cols = planted()
    valid = planted(seed=1)[1]
    reader = BatchReader(cols, batch_size=256, shuffle=True, seed=0, rank=0, world_size=1)
    res = Trainer(small_cfg(epochs=8, lr=1e-2), tmp_path).fit(model_for(fm), reader, make_eval(valid))
    assert res.best_score > 0.75, res.history
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    with open(tmp_path / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(res.history) and "valid_auc" in rows[0] and "train_bce_label" in rows[0]


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    fm, cols = planted()
    valid = planted(seed=1)[1]

    def run(dir_, epochs, resume=False, model=None):
        reader = BatchReader(cols, batch_size=256, shuffle=True, seed=3, rank=0, world_size=1)
        m = model or model_for(fm)
        return m, Trainer(small_cfg(epochs=epochs, seed=3), dir_).fit(m, reader, make_eval(valid), resume=resume)

    m_full, full = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)  # "crash" after one epoch
    m_res, resumed = run(tmp_path / "b", 3, resume=True)
    assert [h["valid_auc"] for h in full.history] == [h["valid_auc"] for h in resumed.history]
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    for (k, a), (_, b) in zip(m_full.state_dict().items(), m_res.state_dict().items()):
        assert torch.equal(a, b), k


def test_early_stopping_and_best_weights(tmp_path):
    fm, cols = planted(n=600)
    scores = iter([0.6, 0.7, 0.65, 0.64, 0.9, 0.9])

    def evaluate(model):  # a scripted validation curve: best at epoch 1, then two worse epochs
        return {"auc": next(scores)}

    reader = BatchReader(cols, batch_size=256, shuffle=True, seed=0, rank=0, world_size=1)
    res = Trainer(small_cfg(epochs=6, patience=2), tmp_path).fit(model_for(fm), reader, evaluate)
    assert res.best_epoch == 1 and len(res.history) == 4 and res.best_score == 0.7
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ck["best_epoch"] == 1 and ck["epoch"] == 3


def test_resume_without_checkpoint_says_how_to_fix(tmp_path):
    fm, cols = planted(n=300)
    reader = BatchReader(cols, batch_size=256, rank=0, world_size=1)
    with pytest.raises(ConfigError, match="drop --resume"):
        Trainer(small_cfg(), tmp_path).fit(model_for(fm), reader, make_eval(cols), resume=True)


def test_unknown_train_option_is_a_config_error():
    with pytest.raises(ConfigError, match="train: unknown option"):
        TrainConfig.from_dict({"epoch": 3})


class TwoObjectives(RecModel):
    """An 'aux' part trained only on its own loss, reading (never changing) the shared embedding."""

    def __init__(self, fm):
        super().__init__(fm, {"tasks": ["label"]})
        self.emb = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 1)
        self.aux = torch.nn.Linear(4, 4)

    def forward(self, batch):
        e = self.emb(batch["user_id"])
        return {"logits": {"label": self.head(e).squeeze(-1)}, "e": e}

    def compute_loss(self, batch, out):
        terms = super().compute_loss(batch, out)
        terms["aux"] = F.mse_loss(self.aux(out["e"]), torch.ones_like(out["e"]))
        return terms

    def param_groups(self):
        return [{"name": "aux", "params": list(self.aux.parameters()), "optimizer": "adam", "loss": ["aux"]},
                {"name": "main", "params": list(self.emb.parameters()) + list(self.head.parameters()),
                 "optimizer": "adam", "loss": ["bce_label"]}]


def test_param_groups_get_gradients_of_their_own_objective_only():
    fm = FeatureMap([FeatureSpec("user_id", "categorical", "users", 10)])
    torch.manual_seed(0)
    m = TwoObjectives(fm)
    batch = {"user_id": torch.arange(8) % 10, "label": torch.tensor([0, 1] * 4, dtype=torch.float32)}
    out = m(batch)
    terms = m.compute_loss(batch, out)
    groups = m.param_groups()
    by_loss = {("aux",): [0], ("bce_label",): [1]}
    Trainer._backward_per_group(groups, by_loss, terms, sum(terms.values()))
    expected = torch.autograd.grad(m.compute_loss(batch, m(batch))["bce_label"], m.emb.weight)[0]
    assert torch.allclose(m.emb.weight.grad, expected)  # aux loss did not leak into the embedding
    assert m.aux.weight.grad is not None and m.aux.weight.grad.abs().sum() > 0
