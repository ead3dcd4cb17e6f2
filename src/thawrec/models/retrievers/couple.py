"""COUPLE: cross-domain user preference learning for cold-start retrieval (Sec. 3, App. A.1.2).

Items are tags. An item is the mean of its first ``n`` tag embeddings (Eq. 1) plus a domain
embedding (BERT-style, Sec. 3.2.1); the item tower reads nothing else (no item id), so an item
never seen in training is encoded from its tags the moment it has them, and gets the same vector
it would have had as a training item. The user tower reads only the user's recent items, each
represented the same way, and combines three preferences:

- **history** ``e_h`` (Sec. 3.2.1, Eq. 2-4): the last ``l`` items (tags + domain + a learnt
  position embedding) through one self-attention block with ``m`` heads (App. A.1.2: hidden 64,
  4 heads) followed by a two-layer FFN; the ``m`` head outputs ``e_{u,k}`` are fused by weighted
  aggregation (WA, Eq. 4: ``d_k = e_{u,k}^T M mean_k e_{u,k}``, softmax, weighted sum);
- **content** ``e_c`` (Sec. 3.2.2, Eq. 5, the frequency encoder): attention of ``e_h`` over all
  ``n x l`` tag occurrences of the sequence, ``h_t = tanh(W_w e_t + b_w)``,
  ``a = softmax(e_h . h_t)``, ``e_c = sum a e_t``. A tag that occurs ``c`` times takes ``c``
  shares of the attention: the same as one softmax over the distinct tags with ``log c`` added
  to each score, which is how repeated tags are "augmented";
- **group** ``e_g`` (Sec. 3.2.3, Eq. 6-10): the hierarchical memory tree
  (:class:`thawrec.nn.memory_tree.HierarchicalMemoryTree`, 1-32-512, Gumbel-softmax routing of
  ``e_h`` with the annealed temperature, top-K leaves, dropout 0.2) with the SRIP orthogonality
  penalty ``L_O = lambda sigma(W^T W - I)`` on its layers (lambda = 0.1), a declared loss term;

and the user vector is ``WA([e_h, e_c, e_g])`` (Eq. 11). Both towers end in an L2 normalisation
(``normalize``): Eq. 12's temperature omega = 0.03 only makes sense for cosine scores (as in MoCo
and CLRec, which Sec. 3.3 follows), and the inner product the index ranks by is then that cosine.

Training (Sec. 3.3): Eq. 12, the softmax of ``e_u . e_i^+ / omega`` against negatives. With
``negatives: queue`` (the paper) the negatives are the batch's other positive items plus a FIFO
queue (:class:`thawrec.nn.queue.FifoQueue`) of the ``queue_size`` (10 x 256) most recent items of
earlier batches: detached, enqueued after each optimizer step (all-gathered under
``torch.distributed``), oldest dequeued; a queued copy of a row's own item is masked. With
``negatives: batch`` (the ablation) only the batch's other items are negatives. ``L = L_N + L_O``;
Adam with ``lr`` 1e-4 (used unless ``lr: null``, then ``TrainConfig.lr``), dimension 64.

Inputs (:class:`thawrec.data.preprocess.FeaturePipeline`): item side ``tags`` (item multi-hot,
``item_multihot_cap`` = n) and ``domain`` (``item_fields=[..., "domain"]``); user side a sequence
from source ``item_tags`` (each past item's n tags, ``[B, l * n]``) and one from source ``domain``
(``[B, l]``), e.g. ``sequences={"hist_item_tags": ["item_tags", l], "hist_domains": ["domain", l]}``.

Our reading where the paper leaves a choice open (each also in the report):

- Eq. 2 yields one vector per head, each in R^d (Table 1): the heads are kept apart, each of width
  d (query/key/value projections d -> d per head), and WA replaces the usual concatenate-and-project.
  The block is SASRec's (residual + LayerNorm around the attention and around the FFN) read at the
  most recent position (SASRec's user state); with one block, no other position reaches it, so
  only that position's query is computed (``TargetAttention`` with the most recent item as query).
- The memory slots are parameters (the rows of each tree layer's fully connected weight), as in
  PreHash which the paper follows; SRIP is applied to those weights. K (top leaves) is not given
  in the paper: ``top_k`` = 8.
- The domain embedding is added to the candidate items too (Sec. 3.2.1 adds it "for training" and
  serves tags only): for candidates of one domain it shifts every score of a user by the same
  amount, so the ranking is the same either way; ``item_domain: false`` drops it.
- With ``normalize`` each preference is L2-normalised before Eq. 11: their raw scales differ by an
  order of magnitude (the LayerNorm'd ``e_h`` has norm ~sqrt(d), ``e_c`` is a mix of tag vectors,
  ``e_g`` a few slots weighted ~1/512 while tau is high), and with raw vectors the bilinear WA
  saturated at init and one preference (sometimes a collapsed one) took the whole user vector.
  So WA's weights, not the scales, decide the mix of three directions scored by cosine.
- Initialisation: TensorFlow's default (Glorot) for the tag table, as the paper; the domain and
  position tables start at zero (Glorot on those small tables gives each row several times a tag
  mean's norm, a user-independent offset that swamped the history in our runs).
- Ablations: ``use_history`` / ``use_content`` / ``use_group`` choose which preferences enter Eq.
  11 (``e_h`` is still computed as the query of the other two when ``use_history`` is off);
  ``use_group: false`` removes the memory tree (and SRIP); ``use_domain: false`` removes every
  domain embedding; ``srip_weight: 0`` removes the orthogonality term (Fig. 5).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.checks import positive_int
from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError, DataError
from thawrec.models.retrieval import RetrievalModel, in_batch_softmax
from thawrec.nn.attention import TargetAttention, masked_softmax
from thawrec.nn.memory_tree import HierarchicalMemoryTree
from thawrec.nn.mlp import MLP
from thawrec.nn.pooling import WeightedAggregation
from thawrec.nn.queue import FifoQueue
from thawrec.registry import register

__all__ = ["Couple", "FrequencyEncoder", "HistoryEncoder"]

NEGATIVES = ("queue", "batch")


def _number(name: str, value: Any, *, low: float, high: float | None = None, low_open: bool = False,
            example: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ConfigError(f"Couple: {name} must be a number in {rng}, got {value!r}. Fix: e.g. {name}: {example}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"Couple: {name} must be true or false, got {value!r}")
    return value


class HistoryEncoder(nn.Module):
    """User history preference (Eq. 2-4): ``items [B, l, d]``, ``mask [B, l]`` (position 0 = the
    most recent item) -> ``(e_h [B, d], heads [B, m, d])``."""

    def __init__(self, dim: int, heads: int, ffn_hidden: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention = TargetAttention(dim, dim, heads=heads, head_dim=dim)  # one d-wide output per head
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = MLP(dim, [ffn_hidden], out_dim=dim, act="relu")
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.aggregate = WeightedAggregation(dim)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, d = items.shape
        query = items[:, 0]
        heads = self.attention(query, items, mask).view(b, self.heads, d)  # e_{u,k} before the FFN
        x = self.norm1(query.unsqueeze(1) + self.dropout(heads))
        x = self.norm2(x + self.dropout(self.ffn(x)))
        return self.aggregate(x), x


class FrequencyEncoder(nn.Module):
    """User content preference (Eq. 5): ``tags [B, T, d]`` (all ``n x l`` tag occurrences),
    ``mask [B, T]``, ``e_h [B, d]`` -> ``e_c [B, d]``; nothing to attend to gives 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)  # W_w, b_w

    def weights(self, tags: torch.Tensor, mask: torch.Tensor, e_h: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.proj(tags))
        return masked_softmax(torch.einsum("btd,bd->bt", h, e_h), mask)

    def forward(self, tags: torch.Tensor, mask: torch.Tensor, e_h: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,btd->bd", self.weights(tags, mask, e_h), tags)


@register("retriever", "couple")
class Couple(RetrievalModel):
    """COUPLE (see the module docstring): items as tags, three user preferences, Eq. 12 with a
    FIFO queue of negatives."""

    aux_loss_terms: ClassVar[tuple[str, ...]] = ("srip",)
    defaults: ClassVar[dict[str, Any]] = {
        **RetrievalModel.defaults,
        "temperature": 0.03,  # omega of Eq. 12
        "embedding_dim": 64,
        "heads": 4,
        "ffn_hidden": 64,
        "attention_dropout": 0.0,
        "tags_field": "tags",
        "domain_field": "domain",
        "history_tags_field": "hist_item_tags",
        "history_domain_field": "hist_domains",
        "use_domain": True,
        "item_domain": True,
        "use_history": True,
        "use_content": True,
        "use_group": True,
        "tree": [1, 32, 512],
        "top_k": 8,
        "tree_dropout": 0.2,
        "gumbel_tau_start": 20.0,
        "gumbel_tau_min": 1.0,
        "gumbel_rate": 1e-5,
        "gumbel_every": 1000,
        "srip_weight": 0.1,
        "srip_iterations": 2,
        "negatives": "queue",
        "queue_size": 2560,  # 10 batches x 256
        "normalize": True,
        "lr": 1e-4,
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)
        c = self.cfg
        if c["logq_correction"]:
            raise ConfigError("Couple: logq_correction is not part of COUPLE's objective (Eq. 12) and its queued "
                              "negatives carry no sampling correction. Fix: set logq_correction: false")
        if c["negatives"] not in NEGATIVES:
            raise ConfigError(f"Couple: unknown negatives {c['negatives']!r}. Fix: use one of {NEGATIVES}")
        for name in ("use_domain", "item_domain", "use_history", "use_content", "use_group", "normalize"):
            _flag(name, c[name])
        if not (c["use_history"] or c["use_content"] or c["use_group"]):
            raise ConfigError("Couple: every preference is switched off. Fix: keep at least one of use_history, "
                              "use_content, use_group")
        dim = positive_int(c["embedding_dim"], "embedding_dim", example=64)
        heads = positive_int(c["heads"], "heads", example=4)
        ffn = positive_int(c["ffn_hidden"], "ffn_hidden", example=64)
        att_drop = _number("attention_dropout", c["attention_dropout"], low=0, high=1, example="0.1")
        tree_drop = _number("tree_dropout", c["tree_dropout"], low=0, high=1, example="0.2")
        self.srip_weight = _number("srip_weight", c["srip_weight"], low=0, example="0.1")
        self.srip_iterations = positive_int(c["srip_iterations"], "srip_iterations", example=2)
        if c["lr"] is not None:
            _number("lr", c["lr"], low=0, low_open=True, example="1e-4")
        self.dim = dim

        # ---- inputs
        fm = feature_map
        self.tags_field, self.domain_field = c["tags_field"], c["domain_field"]
        self.hist_tags_field, self.hist_domain_field = c["history_tags_field"], c["history_domain_field"]
        self._need(self.tags_field, "multihot", "items", "FeatureConfig(item_multihot=['tags']) (the default)")
        self._need(self.hist_tags_field, "sequence", "interactions",
                   f"FeatureConfig(sequences={{'{self.hist_tags_field}': ['item_tags', l]}})")
        hist = fm[self.hist_tags_field]
        self.n_tags = max(int(hist.dim), 1)
        if hist.max_len % self.n_tags:
            raise ConfigError(f"Couple: {self.hist_tags_field} has width {hist.max_len}, not a multiple of its "
                              f"{self.n_tags} tags per item. Fix: build it from the 'item_tags' source")
        self.max_history = hist.max_len // self.n_tags
        self.use_domain = bool(c["use_domain"])
        if self.use_domain:
            self._need(self.domain_field, "categorical", "items",
                       f"FeatureConfig(item_fields=['item_id', '{self.domain_field}']) or use_domain: false")
            self._need(self.hist_domain_field, "sequence", "interactions",
                       f"FeatureConfig(sequences={{..., '{self.hist_domain_field}': ['domain', l]}}) "
                       "or use_domain: false")
            if fm[self.hist_domain_field].max_len != self.max_history:
                raise ConfigError(f"Couple: {self.hist_domain_field} holds {fm[self.hist_domain_field].max_len} "
                                  f"items but {self.hist_tags_field} holds {self.max_history}. "
                                  "Fix: give both sequences the same length l")

        # ---- embeddings: one tag table H_t, one domain table H_d, positions
        # Tags: TensorFlow's default (Glorot) init, as the paper's; domain and position tables start at
        # zero, so the model starts from items as their tags alone (module docstring).
        n_tag_rows = max(fm[self.tags_field].vocab_size, hist.vocab_size, 2)
        self.tag_embedding = nn.Embedding(n_tag_rows, dim, padding_idx=0)
        nn.init.xavier_uniform_(self.tag_embedding.weight)
        if self.use_domain:
            n_dom = max(fm[self.domain_field].vocab_size, fm[self.hist_domain_field].vocab_size, 2)
            self.domain_embedding = nn.Embedding(n_dom, dim, padding_idx=0)
            nn.init.zeros_(self.domain_embedding.weight)
        self.position_embedding = nn.Embedding(self.max_history, dim)
        nn.init.zeros_(self.position_embedding.weight)
        with torch.no_grad():
            self.tag_embedding.weight[0].zero_()

        # ---- user tower
        self.history = HistoryEncoder(dim, heads, ffn, att_drop)
        self.content = FrequencyEncoder(dim) if c["use_content"] else None
        self.tree: HierarchicalMemoryTree | None = None
        if c["use_group"]:
            if not isinstance(c["tree"], (list, tuple)):
                raise ConfigError(f"Couple: tree must be a list of layer sizes, got {c['tree']!r}. Fix: [1, 32, 512]")
            self.tree = HierarchicalMemoryTree(
                dim, list(c["tree"]), positive_int(c["top_k"], "top_k", example=8), tree_drop,
                _number("gumbel_tau_start", c["gumbel_tau_start"], low=0, low_open=True, example="20"),
                _number("gumbel_tau_min", c["gumbel_tau_min"], low=0, low_open=True, example="1"),
                _number("gumbel_rate", c["gumbel_rate"], low=0, example="1e-5"),
                positive_int(c["gumbel_every"], "gumbel_every", example=1000))
        self.preferences = [p for p, on in (("history", c["use_history"]), ("content", c["use_content"]),
                                            ("group", c["use_group"])) if on]
        self.aggregate = WeightedAggregation(dim)  # Eq. 11

        # ---- Eq. 12's negatives
        self.queues: nn.ModuleDict | None = None
        if c["negatives"] == "queue":
            size = positive_int(c["queue_size"], "queue_size", example=2560)
            self.queues = nn.ModuleDict({t: FifoQueue(size, dim) for t in self.tasks})

    def _need(self, name: str, kind: str, table: str, fix: str) -> None:
        fm = self.feature_map
        if name not in fm or fm[name].kind != kind or fm[name].table != table:
            have = f"{fm[name].kind} feature of {fm[name].table}" if name in fm else "absent"
            raise ConfigError(f"Couple: needs '{name}' as a {kind} feature of the {table} table ({have}; feature "
                              f"map: {fm.names()}). Fix: {fix}")

    # ---------------------------------------------------------------- item representation (Eq. 1)
    def _tag_mean(self, tags: torch.Tensor) -> torch.Tensor:
        """``[..., n]`` encoded tags -> mean of the real ones' embeddings ``[..., d]`` (0 if none)."""
        real = (tags > 0).unsqueeze(-1).to(self.tag_embedding.weight.dtype)
        return (self.tag_embedding(tags) * real).sum(-2) / real.sum(-2).clamp(min=1.0)

    def item_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tags (and domain) only: ``AvgPool(tags) + H_d[domain]``, L2-normalised."""
        e = self._tag_mean(batch[self.tags_field])
        if self.use_domain and self.cfg["item_domain"]:
            e = e + self.domain_embedding(batch[self.domain_field])
        return F.normalize(e, dim=-1) if self.cfg["normalize"] else e

    # ---------------------------------------------------------------- user tower
    def preference_vectors(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"history": e_h, "content": e_c, "group": e_g}`` (the enabled ones, and ``e_h`` always),
        each ``[B, d]``."""
        tags = batch[self.hist_tags_field]
        b = len(tags)
        tags = tags.view(b, self.max_history, self.n_tags)
        tag_mask = tags > 0
        items = self._tag_mean(tags)  # [B, l, d]
        mask = tag_mask.any(-1)
        if self.use_domain:
            dom = batch[self.hist_domain_field]
            items = items + self.domain_embedding(dom)
            mask = mask | (dom > 0)
        pos = self.position_embedding.weight[None]
        items = (items + pos) * mask.unsqueeze(-1).to(items.dtype)  # padding positions stay zero
        e_h, _ = self.history(items, mask)
        out = {"history": e_h}
        if self.content is not None:
            flat = tags.view(b, -1)
            out["content"] = self.content(self.tag_embedding(flat), flat > 0, e_h)
        if self.tree is not None:
            out["group"] = self.tree(e_h)
        return out

    def user_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        prefs = self.preference_vectors(batch)
        parts = [prefs[p] for p in self.preferences]
        if self.cfg["normalize"]:
            parts = [F.normalize(x, dim=-1) for x in parts]
        e = self.aggregate(torch.stack(parts, dim=1))
        return F.normalize(e, dim=-1) if self.cfg["normalize"] else e

    # ---------------------------------------------------------------- objective
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        out = super().forward(batch)
        if self.training and self.tree is not None and self.srip_weight > 0:
            out["srip"] = self.srip_weight * self.tree.orthogonality(self.srip_iterations)
        return out

    def _keys(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch.get("_item", batch.get("item_id"))

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``softmax_<task>`` (Eq. 12, against the queue when ``negatives: queue``) and ``srip``
        (``L_O``, when the memory tree and its penalty are on)."""
        u, v, keys = out["user"], out["item"], self._keys(batch)
        terms: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            if t not in batch:
                raise DataError(f"the batch has no label column '{t}'", column=t,
                                fix="keep the task's label column in the training columns")
            pos = batch[t] > 0.5
            neg = neg_keys = None
            if self.queues is not None:
                neg, neg_keys = self.queues[t].contents()
            terms[f"softmax_{t}"] = in_batch_softmax(u[pos], v[pos], self.temperature,
                                                     None if keys is None else keys[pos],
                                                     negatives=neg, negative_keys=neg_keys)
        if self.tree is not None and self.srip_weight > 0:
            terms["srip"] = out["srip"] if "srip" in out else \
                self.srip_weight * self.tree.orthogonality(self.srip_iterations)
        return terms

    def on_batch_end(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        """After the optimizer step: enqueue this batch's positive items (detached; all-gathered
        under torch.distributed), dequeue the oldest; count the step for the Gumbel schedule."""
        if self.queues is not None:
            keys = self._keys(batch)
            for t in self.tasks:
                pos = batch[t] > 0.5
                self.queues[t].push(out["item"][pos], None if keys is None else keys[pos])
        if self.tree is not None:
            self.tree.advance()

    def param_groups(self) -> list[dict[str, Any]]:
        """Every parameter on Adam (App. A.1.2), at ``lr`` unless it is null (then TrainConfig.lr)."""
        groups = super().param_groups()
        if self.cfg["lr"] is not None:
            for g in groups:
                g["lr"] = float(self.cfg["lr"])
        return groups
