"""The PLE ranker (Tang et al., RecSys 2020): UIE's base model, usable on its own.

Every categorical field is embedded and every sequence / multi-hot field sum-pooled (as BaseDNN
does), the field vectors and dense features are concatenated and fed to a :class:`~thawrec.nn.ple.PLE`
block (CGC levels with task-specific and shared experts, a gate per task per level, a tower per
task). ``tasks`` are batch columns, as for every ranker; a task listed in ``regression_tasks``
predicts a real value with a squared-error loss (UIE's watch time), the others are binary with
binary cross-entropy (valid consumption). ``task_weights`` scales a task's loss term (default 1),
since a regression target's scale is the data's, not the model's.

Loss terms: ``bce_<task>`` per binary task, ``mse_<task>`` per regression task. ``predict``
gives probabilities for binary tasks and the raw prediction for regression tasks.

A model that adds features to PLE's input (UIE's enhancement vectors) declares their width with
:meth:`PLERanker.extra_input_dim` and passes them to :meth:`PLERanker.decide` next to
:meth:`PLERanker.represent`'s output.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.nn.embedding import EmbeddedSequence, FeatureEmbedding
from thawrec.nn.ple import PLE, PLEExtraction
from thawrec.registry import register


@register("ranker", "ple")
class PLERanker(RecModel):
    behaviour_pooling = "sum"  # sequence fields are sum-pooled into the input, as in BaseDNN
    defaults: ClassVar[dict[str, Any]] = {
        "embedding_dim": 16,
        "levels": 2,
        "task_experts": 2,  # per task, per level
        "shared_experts": 2,  # per level
        "expert_hidden": [64],
        "tower_hidden": [32],
        "activation": "relu",
        "dropout": 0.0,
        "batch_norm": False,
        "sparse_embeddings": True,
        "tasks": ["label"],
        "regression_tasks": [],  # tasks (of ``tasks``) with a real-valued target and a squared-error loss
        "task_weights": {},  # task -> weight of its loss term; unlisted tasks weigh 1
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        if not self.tasks:
            raise ConfigError("PLERanker: 'tasks' is empty. Fix: list the label columns, e.g. ['label']")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"PLERanker: 'tasks' lists a task twice: {self.tasks}")
        stray = sorted(set(c["regression_tasks"]) - set(self.tasks))
        if stray:
            raise ConfigError(f"PLERanker: regression_tasks {stray} are not among tasks {self.tasks}. "
                              "Fix: list them in 'tasks' too")
        weights = dict(c["task_weights"] or {})
        stray = sorted(set(weights) - set(self.tasks))
        if stray:
            raise ConfigError(f"PLERanker: task_weights names {stray}, not among tasks {self.tasks}")
        bad = {t: w for t, w in weights.items() if not isinstance(w, Real) or isinstance(w, bool) or w < 0}
        if bad:
            raise ConfigError(f"PLERanker: task_weights must be numbers >= 0, got {bad}")
        self.regression: frozenset[str] = frozenset(c["regression_tasks"])
        self.task_weights: dict[str, float] = {t: float(weights.get(t, 1.0)) for t in self.tasks}

        d = c["embedding_dim"]
        self.embedding = FeatureEmbedding(feature_map, d, sparse=c["sparse_embeddings"])
        self.fields = self.embedding.names()
        self.dense_fields = feature_map.names("dense")
        self.input_dim = len(self.fields) * d + sum(feature_map[n].dim for n in self.dense_fields)
        self.ple = PLE(self.input_dim + self.extra_input_dim(), len(self.tasks), levels=c["levels"],
                       n_task_experts=c["task_experts"], n_shared_experts=c["shared_experts"],
                       expert_hidden=c["expert_hidden"], tower_hidden=c["tower_hidden"], out_dim=1,
                       act=c["activation"], dropout=c["dropout"], batch_norm=c["batch_norm"])

    # ------------------------------------------------------------------------------------------
    def extra_input_dim(self) -> int:
        """Width of features a subclass appends to :meth:`represent` before PLE (UIE's
        enhancement vectors). Called once while building, after ``self.cfg`` is resolved."""
        return 0

    def represent(self, batch: dict[str, torch.Tensor],
                  overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> torch.Tensor:
        """Concatenated field vectors and dense features ``[B, input_dim]``. ``overrides`` replaces a
        field's pooled vector ``[B, D]`` or a sequence field's items (sum-pooled here)."""
        overrides = overrides or {}
        parts = [self.embedding.vector(n, batch[n], overrides) for n in self.fields]
        parts += [batch[n].float().reshape(len(batch[n]), -1) for n in self.dense_fields]
        return torch.cat(parts, dim=1)

    def extract(self, x: torch.Tensor) -> PLEExtraction:
        """PLE's per-task representations and gates for an input ``x`` (diagnostics, Fig.-style
        gate plots)."""
        return self.ple.extract(x)

    def decide(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """PLE and the towers: input ``[B, input_dim]`` (+ ``extra [B, extra_input_dim()]``) ->
        one ``[B]`` output per task (a logit for binary tasks, the value for regression tasks)."""
        if extra is not None:
            x = torch.cat([x, extra], dim=1)
        return {t: y.squeeze(-1) for t, y in zip(self.tasks, self.ple(x))}

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        return {"logits": self.decide(self.represent(batch, overrides))}

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``bce_<task>`` (binary) or ``mse_<task>`` (regression) per task, each times its weight."""
        terms = {}
        for t in self.tasks:
            y, pred, w = batch[t].float(), out["logits"][t], self.task_weights[t]
            if t in self.regression:
                terms[f"mse_{t}"] = w * F.mse_loss(pred, y)
            else:
                terms[f"bce_{t}"] = w * F.binary_cross_entropy_with_logits(pred, y)
        return terms

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Probabilities for binary tasks, predicted values for regression tasks."""
        out = self(batch)["logits"]
        return {t: v if t in self.regression else torch.sigmoid(v) for t, v in out.items()}
