"""PLE+TL: PLE with transfer learning from high-active to low-active users.

The UIE paper's baseline "PLE with TL" (Liu et al., KDD 2024, Sec. 4.3: "a TL enhancement
component developed for low-active users inspired by [29] based on PLE"; Sec. 5: [29] "can be used
to transfer knowledge from head items to tail items or high-active users to low-active users"),
[29] being Zhang et al., WWW 2021, "A Model of Two Tales: Dual Transfer Learning Framework for
Improved Long-tail Item Recommendation" (MIRec). That paper is not among the shared papers and
the machine is offline: what follows is built from our knowledge of it, and the places where we
had to choose are marked **choice**.

What MIRec does, for items in a two-tower recommender (as we recall it):

- **Model-level transfer** (after Wang, Ramanan and Hebert, NeurIPS 2017, "Learning to Model the
  Tail"): the parameters a model learns for an entity from *few* examples ("few-shot model") and
  from *many* ("many-shot model") differ systematically. On head items, which have many examples,
  both can be obtained (the few-shot ones by training on a sub-sample), and a *meta-mapping* ``F``
  is learnt by regression from few-shot to many-shot parameters; ``F`` is then applied to tail
  items, whose parameters are few-shot by nature, to predict what they would be with many
  examples. ``F`` is residual, ``F(theta) = theta + g(theta)`` (Wang et al.'s identity-plus-residual
  meta-network), so it starts near the identity.
- **Item-level transfer**: head and tail items are connected through the features they share
  (content features rather than IDs), so that the mapping learnt on head items carries over to
  tail items, whose distribution differs (the UIE paper's objection to TL: "influenced by the
  difference between the source and target data distributions").

Adaptation to users on PLE (the UIE paper: from high- to low-active users):

- **Entities and their parameters.** Users; the per-user parameters are the user's ID embedding
  (``tl.field``, default ``user_id``), the only part of PLE's input learnt per user (profile
  fields are shared by many users). **choice**: MIRec's per-item parameters are the item tower's
  output; PLE has no user tower, its per-user state is the ID vector.
- **Many-shot model**: the main model's ID table (trained on every row). **Few-shot model**: a
  second ID table ``few_shot`` of the same shape, trained on a random ``tl.few_shot_rate`` of the
  high-active rows (default 0.4, Table 2's ratio of low- to high-active consumptions, 0.41, so a
  high-active user's few-shot data looks like a low-active user's), through the main network with
  every other parameter frozen for that pass (term ``tl_few_shot``: PLE's task losses on those rows
  with the few-shot vector in place of the ID vector, ``tl.few_shot_weight`` times; its gradient
  reaches the few-shot table only). **choice**: MIRec trains separate few- and many-shot models; on
  one PLE they differ only in the per-user parameters, which is where the data amount matters,
  and they are trained jointly, in one pass over the data. Low-active rows never train it (their
  own vector is already few-shot).
- **Meta-mapping**: ``F(e, c) = e + g([e; c])``, ``g`` an MLP (``tl.hidden``) whose last layer starts at
  zero (``F`` = identity). ``c`` is the **feature-level transfer**: the vectors of the user's shared
  profile fields (``tl.condition_fields``, default every embedded non-sequence field of the
  ``users`` table but ``tl.field``; ``[]``: none), detached; they are what a high- and a
  low-active user have in common, so conditioning ``F`` on them carries the mapping across (the
  analogue of MIRec's item-level transfer through shared features). ``F`` is learnt by term
  ``tl_meta`` = ``tl.weight`` x the mean over the *distinct* high-active users of the batch whose
  few-shot vector has seen at least ``tl.min_shots`` rows, of the mean squared error between
  ``F(e_few, c)`` and the (stop-gradient) many-shot ``e``. Only that term trains ``F`` (the forward
  uses ``F`` with its parameters detached): the mapping is learnt from high-active users only, as
  MIRec's meta-learner is from head items, and cannot turn into extra capacity for low-active
  rows. **choice**: MIRec (like Wang et al.) may also train ``F`` through the recommendation loss of
  the mapped parameters; we do not (it would make ``weight: 0`` differ from PLE).
- **Application**: on low-active rows (option ``low_active``,
  :mod:`~thawrec.models.rankers.low_active`), in training and prediction, PLE reads ``F(e, c)`` in
  place of the user's ID vector ``e``; the main loss reaches ``e`` through ``F``. High-active rows
  read ``e``.
- Not reproduced: MIRec's sampling schedule for the few-shot model (as we recall it, a curriculum
  over the head/tail mix of the training data); the few-shot rows here are a fixed-rate sample.

With ``tl.weight: 0`` nothing of the transfer is computed and ``F`` stays the identity, so the
predictions equal those of a :class:`~thawrec.models.rankers.ple.PLERanker` built with the same
seed (the extra tables are built after PLE) and trained on the same batches.

State: ``few_shot_counts`` (rows each user's few-shot vector has been trained on; a buffer,
checkpointed, counted over every rank under ``torch.distributed``). Not yet run under DDP: a step
whose batch has no few-shot or no meta row leaves the few-shot table or ``F`` without a gradient,
which DDP without ``find_unused_parameters`` refuses.

On the tests' small synthetic world (2 epochs, 3 seeds) the validation AUC equals PLE's to
within 0.001, and the low-active rows' AUC moved by -0.0003 to +0.006: a small effect, like the
UIE paper's +0.06%.

Config (``ple_tl``): every PLE option, plus

- ``low_active``: ``{"column": "avc", "at_most": 5}``;
- ``tl``: ``{"weight": 1.0, "field": "user_id", "condition_fields": None, "hidden": [32],
  "few_shot_rate": 0.4, "few_shot_weight": 1.0, "min_shots": 2}``.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.rankers.low_active import LOW_ACTIVE_DEFAULTS, check_low_active, low_active_rows
from thawrec.models.rankers.ple import PLERanker
from thawrec.nn.collectives import all_gather_rows
from thawrec.nn.embedding import EmbeddedSequence
from thawrec.nn.mlp import MLP
from thawrec.registry import register

__all__ = ["PLETLRanker", "MetaMapping"]

KNOWN = 2  # train-only vocabularies: 0 = padding, 1 = unknown, 2.. = known values


class MetaMapping(nn.Module):
    """``F(e, c) = e + g([e; c])``: few-shot -> many-shot representation, identity at start (the
    residual MLP's output layer is zero)."""

    def __init__(self, dim: int, cond_dim: int, hidden: list[int], act: str = "relu") -> None:
        super().__init__()
        self.g = MLP(dim + cond_dim, list(hidden), out_dim=dim, act=act)
        last = self.g[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return e + self.g(torch.cat([e, c], dim=1))


@register("ranker", "ple_tl")
class PLETLRanker(PLERanker):
    """PLE with MIRec-style transfer from high- to low-active users (module docstring).

    ``forward`` returns ``logits`` and ``tl_low`` (bool ``[B]``); in training with ``tl.weight > 0``
    also ``tl_few_rows`` (the rows of the few-shot pass), ``tl_few_logits`` and ``tl_meta`` (the
    mapping's predictions, targets and per-row weights)."""

    nested_options: ClassVar[tuple[str, ...]] = ("low_active", "tl")
    aux_loss_terms: ClassVar[tuple[str, ...]] = ("tl_meta", "tl_few_shot")
    defaults: ClassVar[dict[str, Any]] = {
        **PLERanker.defaults,
        "low_active": dict(LOW_ACTIVE_DEFAULTS),
        "tl": {"weight": 1.0, "field": "user_id", "condition_fields": None, "hidden": [32],
               "few_shot_rate": 0.4, "few_shot_weight": 1.0, "min_shots": 2},
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)  # PLE first: the same seed gives PLE's parameters
        name, c = type(self).__name__, self.cfg["tl"]
        check_low_active(name, self.cfg["low_active"], feature_map)
        for key in ("weight", "few_shot_weight", "few_shot_rate"):
            v = c[key]
            if not isinstance(v, Real) or isinstance(v, bool) or v < 0 or (key == "few_shot_rate" and v > 1):
                raise ConfigError(f"{name}: tl.{key} must be a number >= 0{' and <= 1' if key == 'few_shot_rate' else ''}"
                                  f", got {v!r}")
        if not isinstance(c["min_shots"], int) or isinstance(c["min_shots"], bool) or c["min_shots"] < 1:
            raise ConfigError(f"{name}: tl.min_shots must be an integer >= 1, got {c['min_shots']!r}")
        hidden = c["hidden"]
        if not isinstance(hidden, (list, tuple)) or not all(isinstance(w, int) and w > 0 for w in hidden):
            raise ConfigError(f"{name}: tl.hidden must be a list of layer widths, got {hidden!r}")
        single = [n for n in self.fields if feature_map[n].kind == "categorical"]
        field = c["field"]
        if field not in single:
            raise ConfigError(f"{name}: tl.field {field!r} must be an embedded categorical field (the per-user ID "
                              f"whose vector is transferred); the map has {single}")
        if c["condition_fields"] is None:
            cond = [n for n in self.fields if feature_map[n].table == feature_map[field].table
                    and feature_map[n].kind != "sequence" and n != field]
        else:
            cond = list(c["condition_fields"])
        bad = [n for n in cond if n not in self.fields or feature_map[n].kind == "sequence" or n == field]
        if bad:
            raise ConfigError(f"{name}: tl.condition_fields {bad} must be embedded categorical / multi-hot fields other "
                              f"than tl.field; the map has {self.fields}")
        self.field, self.condition_fields = field, cond
        d = self.embedding.dim
        at = self.fields.index(field) * d
        self.field_cols = (at, at + d)  # the field's columns in represent()'s output
        vocab = feature_map[field].vocab_size
        self.few_shot = nn.Embedding(vocab, d, padding_idx=0, sparse=self.cfg["sparse_embeddings"])
        nn.init.normal_(self.few_shot.weight, std=1e-2)  # FeatureEmbedding's initialisation
        with torch.no_grad():
            self.few_shot.weight[0].zero_()
        self.mapping = MetaMapping(d, len(cond) * d, list(hidden), act=self.cfg["activation"])
        self.register_buffer("few_shot_counts", torch.zeros(vocab, dtype=torch.long))

    # ------------------------------------------------------------------------------ transfer
    def condition(self, batch: dict[str, torch.Tensor],
                  overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> torch.Tensor:
        """``[B, len(condition_fields) * D]``: the shared profile fields' vectors, detached."""
        if not self.condition_fields:
            return self.few_shot.weight.new_zeros((len(batch[self.field]), 0))
        return torch.cat([self.embedding.vector(n, batch[n], overrides).detach() for n in self.condition_fields], 1)

    def transfer(self, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``F(e, c)`` with ``F``'s parameters detached (the main loss reaches ``e``, not ``F``)."""
        params = {k: p.detach() for k, p in self.mapping.named_parameters()}
        return functional_call(self.mapping, params, (e, c))

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        ov = dict(overrides or {})
        low = low_active_rows(batch, self.cfg["low_active"])
        e = self.embedding.vector(self.field, batch[self.field], ov)
        c = self.condition(batch, ov)
        out: dict[str, Any] = {"tl_low": low}
        on = self.cfg["tl"]["weight"] > 0
        if on:  # weight 0: F is the identity and never trained, so skipping it changes nothing
            ov[self.field] = torch.where(low[:, None], self.transfer(e, c), e)
        x = self.represent(batch, ov)
        out["logits"] = self.decide(x)
        if self.training and on:
            out.update(self._transfer_terms(batch, low, e, c, x))
        return out

    def _transfer_terms(self, batch: dict[str, torch.Tensor], low: torch.Tensor, e: torch.Tensor, c: torch.Tensor,
                        x: torch.Tensor) -> dict[str, Any]:
        t = self.cfg["tl"]
        ids = batch[self.field]
        high_known = ~low & (ids >= KNOWN)
        # few-shot model: a sample of the high-active rows, the ID vector replaced by the few-shot one,
        # every other input and PLE's parameters frozen for this pass
        few = high_known & (torch.rand(len(ids), device=ids.device) < float(t["few_shot_rate"]))
        out: dict[str, Any] = {"tl_few_rows": few}
        if bool(few.any()):
            a, b = self.field_cols
            xf = x[few].detach()
            xf = torch.cat([xf[:, :a], self.few_shot(ids[few]), xf[:, b:]], dim=1)
            params = {k: p.detach() for k, p in self.ple.named_parameters()}
            ys = functional_call(self.ple, params, (xf,))
            out["tl_few_logits"] = {task: y.squeeze(-1) for task, y in zip(self.tasks, ys)}
        # meta-mapping: distinct high-active users with a trained few-shot vector, F(e_few, c) -> e
        meta = high_known & (self.few_shot_counts[ids] >= int(t["min_shots"]))
        if bool(meta.any()):
            u = ids[meta]
            _, inverse, counts = torch.unique(u, return_inverse=True, return_counts=True)
            weights = 1.0 / (counts[inverse].to(e.dtype) * len(counts))  # each distinct user weighs 1 / n_users
            pred = self.mapping(self.few_shot(u).detach(), c[meta])
            out["tl_meta"] = (pred, e[meta].detach(), weights)
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """PLE's task terms plus ``tl_few_shot`` (the few-shot table's task losses on its sampled
        high-active rows) and ``tl_meta`` (the meta-mapping's regression); each 0 when it has no
        rows, outside training, or with ``tl.weight`` 0."""
        terms = super().compute_loss(batch, out)
        zero = out["logits"][self.tasks[0]].new_zeros(())
        t = self.cfg["tl"]
        few = out.get("tl_few_logits")
        if few is None:
            terms["tl_few_shot"] = zero
        else:
            rows = out["tl_few_rows"]
            sub = {task: batch[task][rows] for task in self.tasks}
            terms["tl_few_shot"] = float(t["few_shot_weight"]) * sum(
                PLERanker.compute_loss(self, sub, {"logits": few}).values())
        meta = out.get("tl_meta")
        if meta is None:
            terms["tl_meta"] = zero
        else:
            pred, target, weights = meta
            terms["tl_meta"] = float(t["weight"]) * (weights * F.mse_loss(pred, target, reduction="none").mean(1)).sum()
        return terms

    @torch.no_grad()
    def on_batch_end(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        """Count the rows each few-shot vector was trained on (every rank's, under DDP)."""
        rows = out.get("tl_few_rows")
        if rows is None:
            return
        (seen,) = all_gather_rows(batch[self.field][rows])
        self.few_shot_counts.index_add_(0, seen, torch.ones_like(seen))
