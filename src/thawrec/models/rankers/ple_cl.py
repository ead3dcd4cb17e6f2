"""PLE+CL: PLE with self-supervised contrastive learning by feature masking, for low-active users.

The UIE paper's baseline "PLE with CL" (Liu et al., KDD 2024, Sec. 4.3: "a CL enhancement
component designed for low-active users inspired by [28] based on PLE"), [28] being Yao et al.,
CIKM 2021, "Self-supervised Learning for Large-scale Item Recommendations". Built from that
paper (from our knowledge of it; it is not in the shared papers, and the machine is offline):

- **Two views by feature masking** (Yao et al.'s augmentation). The input features of one example
  are split into two *complementary* halves; view 1 masks one half, view 2 the other, so the two
  views share no masked-in feature. The half is chosen per row:

  - ``masking: "random"`` (RFM): a uniformly random half;
  - ``masking: "correlated"`` (CFM, the variant Yao et al. propose): a seed feature drawn at random, then the
    ``n/2 - 1`` features with the highest mutual information with it, so that correlated features
    are masked together and one view cannot read a masked feature off its correlate. Yao et al.
    pre-compute the MI of every feature pair over the data; here it is estimated online from the
    training batches (``on_batch_end``): each field's value per row is hashed into
    ``mi_buckets`` buckets (a multi-valued field by its first value, a dense feature by its
    within-batch quantile), and the joint counts of every field pair accumulate in the buffer
    ``cl_joint [F, F, H, H]`` (checkpointed, summed over ranks under ``torch.distributed``); the
    plug-in MI of those counts ranks the fields. Before any count (the first batch) CFM is RFM.

  A masked feature is replaced by the zero vector, which is what this library embeds a missing
  value as (padding index 0); Yao et al. use a default embedding for it.
- **The features of the entity** (``fields``). Yao et al.'s SSL task runs on the item tower, which
  reads the item's features only, and every one of them can be masked. The UIE paper points it
  at low-active *users*, so the entity is the user: by default ``fields`` are PLE's inputs of the
  ``users`` table (ID, profile attributes, multi-hot profile) plus the sequence fields (the user's
  behaviour). **Choice**: PLE has no user tower, so the views present PLE with the entity's
  features only: every input column outside ``fields`` is zero in both views (as if missing). With
  the item or context features kept in both views, rows would be told apart by them alone (a
  trivial task); with them masked like the rest, CFM would put the user half and the item half in
  different views and ask the encoder to match a user to the item of the row, which is the
  ranking task, not a self-supervised one. ``fields`` may list any of PLE's inputs.
- **Dropout of multi-valued features** (Yao et al.'s second augmentation): in each view, each
  value of a multi-hot or sequence field among ``fields`` is dropped (set to padding) with
  probability ``value_dropout``, independently per view.
- **Encoder** (Yao et al.: the item tower, shared with the supervised task, ``H = G``): PLE's
  extraction levels, shared with the ranking task: ``z = head(concat_t h_t)`` where ``h_t`` are the
  per-task top-level representations (the towers' inputs) of the masked entity input; so the
  contrastive signal trains the user-side embeddings and PLE's experts. ``head`` is an
  optional projection MLP (``head``: its widths; ``[]`` = none, ``z`` is the representation).
- **Loss**: Yao et al.'s InfoNCE with cosine similarity, temperature ``tau`` and in-batch
  negatives, the other rows' second views (no same-view negatives):
  ``L_self = -1/N sum_i log(e^{s(z_i, z'_i)/tau} / sum_j e^{s(z_i, z'_j)/tau})``, from
  :func:`thawrec.nn.contrastive.multiview_contrastive_loss` with ``same_view_negatives=False``,
  which averages it over the two directions (the views are drawn exchangeably, so this is the
  same objective in expectation; it only halves the variance). The model's loss is PLE's plus
  ``weight * L_self`` (Yao et al.'s ``L = L_main + alpha L_self``), term ``cl_infonce``.
- **Low-active users** (the UIE paper's adaptation): the contrastive batch is the training
  batch's low-active rows (:mod:`thawrec.models.rankers.low_active`, option ``low_active``).
  Yao et al. draw the SSL examples from a distribution different from the main task's (as we
  recall, closer to uniform over items, to reach the long tail); the UIE paper points the same component at low-active
  users, so the low-active rows are that distribution here. Fewer than two such rows: no
  negative, the term is 0 (so is it outside training and with ``weight: 0``). Rows of the same
  user in one batch are negatives of each other (repeated items in Yao et al.'s batches are the
  same); low-active users have few rows, so there are few such pairs.

Nothing of this changes a prediction: the forward pass (eval or train) is PLE's on the unmasked
input; CL only adds a training signal to the shared embeddings and experts. With ``weight: 0``
the views are not even drawn, and a model built with the same seed as a
:class:`~thawrec.models.rankers.ple.PLERanker` holds the same PLE parameters (the head is built
after PLE) and trains exactly like it.

Not yet run under DDP: with a non-empty ``head``, a step without two low-active rows leaves the
head without a gradient, which DDP without ``find_unused_parameters`` refuses.

Config (``ple_cl``): every PLE option, plus

- ``low_active``: ``{"column": "avc", "at_most": 5}`` (see :mod:`~thawrec.models.rankers.low_active`);
- ``cl``: ``{"weight": 0.1, "temperature": 0.1, "masking": "correlated", "fields": None,
  "value_dropout": 0.1, "head": [], "mi_buckets": 16}``. Yao et al. tune ``tau`` and ``alpha``
  per task; these defaults are starting points, not the paper's values. On the tests' small
  synthetic world (2 epochs, 3 seeds) weight 0.1 left the validation AUC 0.003-0.005 below
  PLE's (0.663 vs 0.666-0.668) while the contrastive loss fell; weights 0.3-0.5 cost 0.01-0.04 AUC there (the
  UIE paper itself reports +0.04% AUC for PLE+CL on low-active users).
"""

from __future__ import annotations

from numbers import Real
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.rankers.low_active import LOW_ACTIVE_DEFAULTS, check_low_active, low_active_rows
from thawrec.models.rankers.ple import PLERanker
from thawrec.nn.contrastive import multiview_contrastive_loss
from thawrec.nn.embedding import EmbeddedSequence
from thawrec.nn.mlp import MLP
from thawrec.registry import register

__all__ = ["PLECLRanker"]

_HASH = 1_000_003  # multiplier that spreads consecutive IDs over the MI buckets


@register("ranker", "ple_cl")
class PLECLRanker(PLERanker):
    """PLE plus Yao et al.'s feature-masking contrastive loss on low-active rows (module docstring).

    ``forward`` in training mode with ``cl.weight > 0`` adds ``cl_rows`` (bool ``[B]``, the
    low-active rows) and, when there are two or more, ``cl_z`` (the two views' ``[n, d]``
    encodings); ``compute_loss`` adds ``cl_infonce``.
    """

    nested_options: ClassVar[tuple[str, ...]] = ("low_active", "cl")
    aux_loss_terms: ClassVar[tuple[str, ...]] = ("cl_infonce",)
    defaults: ClassVar[dict[str, Any]] = {
        **PLERanker.defaults,
        "low_active": dict(LOW_ACTIVE_DEFAULTS),
        "cl": {"weight": 0.1, "temperature": 0.1, "masking": "correlated", "fields": None,
               "value_dropout": 0.1, "head": [], "mi_buckets": 16},
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)  # PLE first: the same seed gives PLE's parameters
        name, c = type(self).__name__, self.cfg["cl"]
        check_low_active(name, self.cfg["low_active"], feature_map)
        for key in ("weight", "value_dropout"):
            v = c[key]
            if not isinstance(v, Real) or isinstance(v, bool) or v < 0 or (key == "value_dropout" and v >= 1):
                raise ConfigError(f"{name}: cl.{key} must be a number >= 0{' and < 1' if key != 'weight' else ''}, "
                                  f"got {v!r}")
        t = c["temperature"]
        if not isinstance(t, Real) or isinstance(t, bool) or t <= 0:
            raise ConfigError(f"{name}: cl.temperature must be > 0, got {t!r}. Fix: e.g. 0.1")
        if c["masking"] not in ("random", "correlated"):
            raise ConfigError(f"{name}: cl.masking must be 'random' (RFM) or 'correlated' (CFM), got {c['masking']!r}")
        h = c["mi_buckets"]
        if not isinstance(h, int) or isinstance(h, bool) or h < 2:
            raise ConfigError(f"{name}: cl.mi_buckets must be an integer >= 2, got {h!r}")
        head = c["head"]
        if not isinstance(head, (list, tuple)) or not all(isinstance(w, int) and w > 0 for w in head):
            raise ConfigError(f"{name}: cl.head must be a list of layer widths ([] = no projection head), got {head!r}")

        inputs = self.fields + self.dense_fields
        given = c["fields"]
        if given is None:
            given = [f for f in inputs if feature_map[f].table == "users" or feature_map[f].kind == "sequence"]
        self.cl_fields: list[str] = list(given)
        bad = [f for f in self.cl_fields if f not in inputs]
        if bad or len(self.cl_fields) < 2 or len(set(self.cl_fields)) != len(self.cl_fields):
            raise ConfigError(f"{name}: cl.fields must list at least two distinct input fields of PLE (unknown: "
                              f"{bad}); the inputs are {inputs}")
        # the PLE input column -> index of its field in cl_fields (-1: not the entity's, zero in both views)
        col_field: list[int] = []
        for f in inputs:
            width = self.embedding.dim if f in self.fields else feature_map[f].dim
            col_field += [self.cl_fields.index(f) if f in self.cl_fields else -1] * width
        self.register_buffer("cl_columns", torch.tensor(col_field, dtype=torch.long), persistent=False)
        self.multi_valued = [f for f in self.cl_fields
                             if f in self.fields and feature_map[f].kind in ("multihot", "sequence")]

        d_rep = len(self.tasks) * int(self.cfg["expert_hidden"][-1])
        self.cl_head: nn.Module = (MLP(d_rep, list(head[:-1]), out_dim=head[-1], act=self.cfg["activation"])
                                   if head else nn.Identity())
        n = len(self.cl_fields)
        self.register_buffer("cl_joint", torch.zeros(n, n, h, h, dtype=torch.long))

    # ------------------------------------------------------------------------------ augmentation
    def mutual_information(self) -> torch.Tensor:
        """``[F, F]`` plug-in mutual information (nats) between the ``cl.fields`` from the hashed
        joint counts seen so far (zeros before any)."""
        j = self.cl_joint.double()
        p = j / j.sum(dim=(-1, -2), keepdim=True).clamp(min=1)
        outer = p.sum(-1, keepdim=True) * p.sum(-2, keepdim=True)
        pos = p > 0
        terms = torch.where(pos, p * torch.log(torch.where(pos, p, 1.0) / torch.where(pos, outer, 1.0)), 0.0)
        return terms.sum(dim=(-1, -2)).float()

    def field_masks(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """Bool ``[n, F]`` over ``cl.fields``: True = masked in view 1; view 2 masks the complement.
        ``floor(F / 2)`` fields per row: a random half (RFM) or a random seed field and its most
        mutually informative fields (CFM)."""
        dev = device if device is not None else self.cl_columns.device
        n_fields = len(self.cl_fields)
        score = torch.rand(n, n_fields, device=dev)  # RFM, and CFM's tie-break
        if self.cfg["cl"]["masking"] == "correlated":
            seed = torch.randint(n_fields, (n,), device=dev)
            score = self.mutual_information().to(dev)[seed] + 1e-6 * score
            score = score.scatter(1, seed[:, None], float("inf"))
        top = score.topk(n_fields // 2, dim=1).indices
        return torch.zeros(n, n_fields, dtype=torch.bool, device=dev).scatter_(1, top, True)

    def _drop_values(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A shallow copy of ``batch`` with each value of the multi-valued ``cl.fields`` dropped
        (set to padding) with probability ``cl.value_dropout``."""
        p = float(self.cfg["cl"]["value_dropout"])
        if p <= 0 or not self.multi_valued:
            return batch
        out = dict(batch)
        for f in self.multi_valued:
            ids = batch[f]
            out[f] = ids.masked_fill((torch.rand(ids.shape, device=ids.device) < p) & (ids > 0), 0)
        return out

    def views(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two augmented PLE inputs ``[n, input_dim]`` of every row of ``batch`` (complementary
        field masks, values dropped per view, columns outside ``cl.fields`` zero) and the mask
        ``[n, F]`` of view 1 over ``cl.fields``."""
        n = len(next(iter(batch.values())))
        masked = self.field_masks(n, self.cl_columns.device)
        cols, entity = self.cl_columns.clamp(min=0), self.cl_columns >= 0
        xs = []
        for m in (masked, ~masked):
            keep = (~m)[:, cols] & entity  # [n, input_dim]
            x = self.represent(self._drop_values(batch))
            xs.append(x * keep.to(x.dtype))
        return xs[0], xs[1], masked

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The contrastive representation of a PLE input: the projection head over the
        concatenated per-task top-level representations of PLE's extraction."""
        return self.cl_head(torch.cat(self.extract(x).tasks, dim=1))

    # ------------------------------------------------------------------------------ forward / loss
    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        out = super().forward(batch, overrides)
        if self.training and self.cfg["cl"]["weight"] > 0:
            low = low_active_rows(batch, self.cfg["low_active"])
            out["cl_rows"] = low
            if int(low.sum()) >= 2:
                x1, x2, _ = self.views({k: v[low] for k, v in batch.items()})
                out["cl_z"] = (self.encode(x1), self.encode(x2))
        return out

    def contrastive_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Yao et al.'s in-batch InfoNCE between two views' encodings (unweighted)."""
        return multiview_contrastive_loss(z1, z2, float(self.cfg["cl"]["temperature"]), same_view_negatives=False)

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """PLE's task terms plus ``cl_infonce`` = ``cl.weight`` x InfoNCE over the low-active rows'
        two views (0 without two such rows, outside training, or with weight 0)."""
        terms = super().compute_loss(batch, out)
        z = out.get("cl_z")
        if z is None:
            terms["cl_infonce"] = out["logits"][self.tasks[0]].new_zeros(())
        else:
            terms["cl_infonce"] = float(self.cfg["cl"]["weight"]) * self.contrastive_loss(*z)
        return terms

    # ------------------------------------------------------------------------------ state
    def field_codes(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, F]`` bucket (``0 .. mi_buckets - 1``) of each ``cl.fields`` value per row: IDs
        hashed (a multi-valued field by its first value), dense features by within-batch quantile."""
        h = int(self.cfg["cl"]["mi_buckets"])
        codes = []
        for f in self.cl_fields:
            v = batch[f]
            if f in self.fields:
                ids = v.long() if v.dim() == 1 else v.long()[:, 0]
                codes.append(torch.remainder(ids * _HASH, h))
            else:
                first = v.float().reshape(len(v), -1)[:, 0]
                rank = first.argsort().argsort()
                codes.append(rank * h // max(len(first), 1))
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def on_batch_end(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        """CFM's MI estimate: add the batch's joint counts of every field pair (all rows: MI is a
        property of the data, not of the low-active rows)."""
        if self.cfg["cl"]["masking"] != "correlated" or self.cfg["cl"]["weight"] <= 0:
            return
        codes = self.field_codes(batch)  # [B, F]
        n_fields, h = self.cl_joint.shape[0], self.cl_joint.shape[-1]
        pair = torch.arange(n_fields * n_fields, device=codes.device).view(n_fields, n_fields)
        flat = (pair[None] * h + codes[:, :, None]) * h + codes[:, None, :]  # [B, F, F]
        inc = torch.bincount(flat.reshape(-1), minlength=self.cl_joint.numel())
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(inc)
        self.cl_joint += inc.view_as(self.cl_joint)
