"""UIE: User Interest Enhancement on a PLE ranker (Liu et al., KDD 2024, Sec. 3; issue 12).

The ranker is :class:`~thawrec.models.rankers.ple.PLERanker`; UIE adds *enhancement vectors* to
PLE's input (``extra``), built from stream-clustering memories (:class:`~thawrec.nn.memory.
StreamClusterMemory`) that are state, not parameters, and are updated in ``on_batch_end``:

- **Auxiliary user-item model** (Sec. 3.2, "firstly"): a user tower over the user-profile fields
  (default: every embedded field of the ``users`` table, user ID and attributes, Table 1's
  "basic attributes") and an item tower over the item fields (the ``items`` table), both fed the
  *main model's* embeddings with the gradient stopped (``detach``), trained by their own loss
  term ``aux_bce`` (binary cross-entropy of ``<user_vec, item_vec>`` on the consumption label).
  They output ``user_vec`` and ``item_vec`` (width ``aux.dim``, 36 in the paper); the logit has a
  scalar bias besides the inner product (:class:`AuxUserItemModel`). The main
  model reads both vectors with the gradient stopped as well, so the two models share nothing
  but the (detached) embeddings: the aux loss never moves the main model, the main loss never
  moves the towers.
- **UPE** (Sec. 3.2): the user memory (``memory.n_user`` = N centroids of ``user_vec``s) is
  clustered by Eq. 1 from a sample of the rows (``sampling.user_rate``, ~30%, by active type);
  Eq. 2 reads the top-K1 centroids of ``user_vec``, non-positive ones replaced by zero vectors;
  the weighted vector, concatenated with a per-user personal vector (an embedding by user ID,
  ``memory.personal_dim`` = 4), goes through the generalization layer into PLE.
- **UCBE** (Sec. 3.3): for each positive row, the K2 user centroids most relevant to the row's
  ``item_vec``, each replaced by zero when its inner product with the row's ``user_vec`` is not
  positive (``StreamClusterMemory.topk(..., positive_wrt=user_vec)``), move that user's
  personalized enhancement vector (a zero-initialised buffer by user ID) by Eq. 3 with rate eta;
  the vector, looked up by user ID, is a PLE input.
- **UCSE** (Sec. 3.4): the item memory (``memory.n_item`` = M centroids) is clustered by Eq. 1
  from consumption vectors: each behaviour of the consumption sequence (the ``sequence_fields``,
  first ``max_seq_len`` = 100 positions) embedded by the main model, the per-position vectors of
  several aligned fields concatenated (the paper's "video ID, category 1, category 2, tag"),
  from a sample of the rows (``sampling.item_rate``, ~10%). Every behaviour is replaced by its
  most similar centroid theta_j, and Eq. 4 attends over them with the target item's vector
  (the same fields' embeddings of the row's item), :func:`thawrec.nn.attention.masked_softmax`
  over ``theta_j . v_target`` (unscaled, as printed; padding masked). Computed on the real
  behaviours only (:class:`Consumption`: packed positions, each distinct behaviour looked up and
  searched once, the grid cut after the batch's longest history): a 100-slot sequence holds ~7
  real behaviours on the ``uie`` world, and the dense search over every slot (padding included)
  made PLE+UIE train at about 0.25-0.28x PLE's samples/s (``benchmarks/bench_uie.py``, one
  thread), about 0.7x with it; the result is the dense form's up to float rounding.
- **TIE** (Sec. 3.5): the item-side analogues of UPE and UCBE ("similar approaches ... to UPE
  and UCBE", Sec. 4.4): a tail memory of ``item_vec`` centroids read by Eq. 2 with a per-item
  personal vector and its own generalization layer; and a per-item personalized enhancement
  vector moved by Eq. 3 towards the K2 tail centroids most relevant to the ``user_vec`` of each
  positive row, filtered by that row's ``item_vec``. Cumulative exposures per item (training
  rows seen, every label) are counted in a buffer; with ``tail_threshold`` set, only rows whose
  item has fewer exposures get the TIE features (zeros for head items), else every row does.

Switches ``upe``, ``ucbe``, ``ucse``, ``tie`` turn each component (its state, its parameters and
its PLE input) on or off: the rows of Tables 3 and 5 are ``upe`` / ``upe+ucbe`` / all three /
all four. With every switch off the model is PLE (no aux towers, no ``aux_bce``).

Equations, as implemented:

- Eq. 1 and Eq. 2: :mod:`thawrec.nn.memory` (a rate-rho step towards the assigned vectors; the
  softmax over the top-k inner products, zeroed centroids keeping their ``e^0`` share).
- Eq. 3, ``p_i <- argmin_p eta * sum_{j<=K2} ||p - mu_j||^2``, read like Eq. 1 as one gradient
  step of rate eta (the factor 2 absorbed): ``p <- p - eta sum_j (p - mu_j) = (1 - K2 eta) p +
  K2 eta mean_j mu_j``. The zero vectors that replaced filtered centroids are among the
  ``mu_j`` (the paper replaces, it does not drop), so a user whose consumption disagrees with
  the profile is pulled towards zero. ``c`` positive rows of one user in a batch are ``c`` such
  steps taken towards the mean of their targets, ``(1 - K2 eta)^c p + (1 - (1 - K2 eta)^c) m``:
  exact for ``c = 1``, independent of row order, no overshoot (``K2 * eta < 1`` is required).
- Eq. 4: above.

Sampling "by user active type" (``sampling``): the type of a row is a batch column
(``active_type``, default ``avc``, the bucketized accumulated view count every feature map has;
a suite may pass its own, e.g. a per-user low/high-active column). A rate given as a list is a
rate per type (:func:`thawrec.nn.memory.active_type_rates`); a single rate with ``balance`` on
gives, within each batch, every active type present the same expected number of sampled rows
(``rate * B / n_types`` each, a type's rate capped at 1), so heavy users do not dominate the
clusters and about ``rate`` of the rows take part; with ``balance`` off every row has the rate.
The tail memory samples ``sampling.tail_rate`` of the rows uniformly (exposure-weighted: head
items shape the centroids tail items read).

Centroid start (``memory.init``, ``memory.reseed_after``; :mod:`thawrec.nn.memory`): the paper
starts every memory from random centroids ("randomly initialized", Sec. 3.2 and 3.4), the
default ``init: random``, ``reseed_after: None``. With inner-product assignment many random
centroids never win a vector (4-5 of 16 were live on a test world), so two documented departures
are offered, both off by default because the paper states its start and has no re-seeding:
``init: data`` fills each memory from the first sampled vectors of its first update(s)
(k-means++-spread; the memories draw with seeds 0 / 1 / 2 and their fill count, so every rank
and a resumed run draw the same), and ``reseed_after: T`` moves a centroid that won nothing in
``T`` updates onto a recent sampled vector far from the other centroids.

State: every memory, enhancement vector and the exposure counter is a buffer (``state_dict``,
checkpoints, exact resume). Under ``torch.distributed`` the memories all-reduce their update
(the memory block does it) and the per-user / per-item enhancement updates and exposure counts
are gathered from every rank before they are applied, so every rank holds the same state.
Unknown IDs (index 1 of the train-only vocabularies: a new user or item) are never updated, so
their enhancement vectors stay zero, the "no personalisation yet" a cold user should get.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError
from thawrec.models.rankers.ple import PLERanker
from thawrec.nn.attention import masked_softmax
from thawrec.nn.embedding import EmbeddedSequence
from thawrec.nn.collectives import all_gather_rows
from thawrec.nn.memory import INITS, StreamClusterMemory, active_type_rates
from thawrec.nn.mlp import MLP
from thawrec.registry import register

__all__ = ["UIERanker", "AuxUserItemModel", "COMPONENTS"]

COMPONENTS = ("upe", "ucbe", "ucse", "tie")
KNOWN = 2  # train-only vocabularies: 0 = padding, 1 = unknown, 2.. = known values


class AuxUserItemModel(nn.Module):
    """The auxiliary two-tower model of Sec. 3.2: ``user_vec = f_u(user fields)``, ``item_vec =
    f_i(item fields)``, both ``[B, dim]``; ``logit = <user_vec, item_vec> + b`` is trained as a
    click logit. The scalar ``b`` carries the base rate: without it a positive rate well below one
    half is learnt as ``<user_vec, item_vec> < 0`` for most pairs, and the centroids an item
    finds in the user memory (UCBE) would nearly all be negative with the user's own vector and
    be zeroed by the filter."""

    def __init__(self, user_in: int, item_in: int, hidden: list[int], dim: int, act: str = "relu") -> None:
        super().__init__()
        self.user_tower = MLP(user_in, list(hidden), out_dim=dim, act=act)
        self.item_tower = MLP(item_in, list(hidden), out_dim=dim, act=act)
        self.bias = nn.Parameter(torch.zeros(()))
        self.dim = dim

    def forward(self, user_x: torch.Tensor, item_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_tower(user_x), self.item_tower(item_x)

    def logit(self, user_vec: torch.Tensor, item_vec: torch.Tensor) -> torch.Tensor:
        return (user_vec * item_vec).sum(-1) + self.bias


@dataclass
class _Plan:
    """What the config asks for, checked against the feature map (built once, before PLE)."""

    on: dict[str, bool]
    label_task: str
    user_fields: list[str] = field(default_factory=list)
    item_fields: list[str] = field(default_factory=list)
    seq_fields: list[str] = field(default_factory=list)
    seq_targets: list[str] = field(default_factory=list)
    widths: dict[str, int] = field(default_factory=dict)  # PLE input width of each enhancement, in order

    @property
    def aux(self) -> bool:
        return self.on["upe"] or self.on["ucbe"] or self.on["tie"]


@dataclass
class Consumption:
    """UCSE's consumption sequence of one batch, packed: ``mask [B, W]`` (real behaviours; ``W``
    = the batch's longest history, at most ``max_seq_len``), the real positions ``rows`` /
    ``cols`` ``[n]`` in ``mask.nonzero()`` order, the distinct consumption vectors ``unique
    [u, d]`` (detached) and ``inverse [n]``: position ``j`` holds ``unique[inverse[j]]``."""

    mask: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    unique: torch.Tensor
    inverse: torch.Tensor

    @property
    def vectors(self) -> torch.Tensor:
        """``[n, d]``: the vector of every real behaviour (``grid[mask]`` of the padded form)."""
        return self.unique.index_select(0, self.inverse)


def _at(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``x[rows, cols]`` of a 2-D tensor, by ``index_select`` on the flat view (advanced indexing
    is several times slower on CPU); differentiable."""
    return x.reshape(-1).index_select(0, rows * x.shape[1] + cols)


def _distinct(ids: list[torch.Tensor], vocab: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct tuples of aligned ID columns ``[n]``: ``(first, inverse)``, ``first [u]`` the
    first position of each distinct tuple, ``inverse [n]`` each position's tuple. The tuple is
    packed into one int64 key when the vocabularies' product allows it (a 1-D unique), else
    ``unique(dim=0)`` over the stacked columns."""
    n = len(ids[0])
    if math.prod(vocab) < 2 ** 62:
        key = ids[0]
        for x, v in zip(ids[1:], vocab[1:]):
            key = key * v + x
        _, inverse = torch.unique(key, return_inverse=True)
    else:
        _, inverse = torch.unique(torch.stack(ids, dim=1), dim=0, return_inverse=True)
    pos = torch.arange(n, device=inverse.device)
    first = torch.full((int(inverse.max()) + 1 if n else 0,), n, dtype=torch.long, device=inverse.device)
    return first.scatter_reduce_(0, inverse, pos, "amin"), inverse


@register("ranker", "uie")
class UIERanker(PLERanker):
    """PLE with UIE's enhancement vectors (see the module docstring).

    ``forward`` returns ``logits`` and, for the loss and ``on_batch_end``, ``user_vec`` /
    ``item_vec`` (aux towers, with gradient), ``consumption`` (UCSE's consumption vectors,
    detached, packed: :class:`Consumption`) and ``enhancements`` (name -> the ``[B, w]`` PLE
    input of each enabled component, in the order they are concatenated). ``on_batch_end`` applies Eq. 1
    and Eq. 3 and keeps what it did in :attr:`last_update`.
    """

    nested_options: ClassVar[tuple[str, ...]] = ("aux", "memory", "sampling")
    aux_loss_terms: ClassVar[tuple[str, ...]] = ("aux_bce",)  # () on an instance without aux towers
    defaults: ClassVar[dict[str, Any]] = {
        **PLERanker.defaults,
        # ablation switches (Tables 3 and 5)
        "upe": True,
        "ucbe": True,
        "ucse": True,
        "tie": False,
        "label_task": None,  # the binary task whose positives are consumptions; None = the first binary task
        "sequence_fields": None,  # UCSE's aligned consumption-sequence fields; None = the first item-ID sequence
        "max_seq_len": 100,
        "tail_threshold": None,  # TIE only for items with fewer cumulative exposures; None = every item
        "aux": {"user_fields": None, "item_fields": None, "hidden": [64], "dim": 36, "weight": 1.0},
        "memory": {"n_user": 256, "n_item": 256, "n_tail": 256, "k1": 3, "k2": 3, "rho": 0.01, "eta": 0.05,
                   "personal_dim": 4, "generalization": [36], "init_std": None, "init": "random",
                   "reseed_after": None},
        "sampling": {"active_type": "avc", "user_rate": 0.3, "item_rate": 0.1, "tail_rate": 0.3,
                     "balance": True},
    }

    def __init__(self, feature_map: FeatureMap, cfg: dict[str, Any] | None = None) -> None:
        super().__init__(feature_map, cfg)  # calls extra_input_dim(), which plans and checks
        p = self.plan
        c, m = self.cfg, self.cfg["memory"]
        act, sparse = c["activation"], c["sparse_embeddings"]
        d_aux, pd = c["aux"]["dim"], m["personal_dim"]
        self.aux: AuxUserItemModel | None = None
        self.user_memory: StreamClusterMemory | None = None
        self.item_memory: StreamClusterMemory | None = None
        self.tail_memory: StreamClusterMemory | None = None
        self.personal: nn.Embedding | None = None
        self.item_personal: nn.Embedding | None = None
        self.upe_layer: MLP | None = None
        self.tie_layer: MLP | None = None
        self.last_update: dict[str, torch.Tensor] = {}
        if p.aux:
            width = self.embedding.dim
            self.aux = AuxUserItemModel(len(p.user_fields) * width, len(p.item_fields) * width,
                                        c["aux"]["hidden"], d_aux, act)
        else:
            self.aux_loss_terms = ()  # type: ignore[misc]  # no aux towers, no aux term
        start = {"init_std": m["init_std"], "init": m["init"], "reseed_after": m["reseed_after"]}
        if p.on["upe"] or p.on["ucbe"]:
            self.user_memory = StreamClusterMemory(m["n_user"], d_aux, rate=m["rho"], seed=0, **start)
        if p.on["upe"]:
            self.personal = self._id_table(feature_map["user_id"].vocab_size, pd, sparse)
            self.upe_layer = MLP(d_aux + pd, list(m["generalization"]), act=act)
        if p.on["ucbe"]:
            self.register_buffer("ucbe_vectors", torch.zeros(feature_map["user_id"].vocab_size, d_aux))
        if p.on["ucse"]:
            self.item_memory = StreamClusterMemory(m["n_item"], p.widths["ucse"], rate=m["rho"], seed=1, **start)
        if p.on["tie"]:
            n_items = feature_map["item_id"].vocab_size
            self.tail_memory = StreamClusterMemory(m["n_tail"], d_aux, rate=m["rho"], seed=2, **start)
            self.item_personal = self._id_table(n_items, pd, sparse)
            self.tie_layer = MLP(d_aux + pd, list(m["generalization"]), act=act)
            self.register_buffer("tie_vectors", torch.zeros(n_items, d_aux))
            self.register_buffer("item_exposures", torch.zeros(n_items, dtype=torch.long))

    # ------------------------------------------------------------------------------ planning
    @staticmethod
    def _id_table(rows: int, dim: int, sparse: bool) -> nn.Embedding:
        table = nn.Embedding(rows, dim, padding_idx=0, sparse=sparse)
        nn.init.normal_(table.weight, std=1e-2)
        with torch.no_grad():
            table.weight[0].zero_()
        return table

    def extra_input_dim(self) -> int:
        """The enhancement vectors' total width; plans the components and checks the config."""
        self.plan = self._make_plan()
        return sum(self.plan.widths.values())

    def _make_plan(self) -> _Plan:
        c, fm = self.cfg, self.feature_map
        name = type(self).__name__
        for k in COMPONENTS:
            if not isinstance(c[k], bool):
                raise ConfigError(f"{name}: '{k}' is an on/off switch, got {c[k]!r}. Fix: true or false")
        on = {k: bool(c[k]) for k in COMPONENTS}
        binary = [t for t in self.tasks if t not in self.regression]
        label = c["label_task"] if c["label_task"] is not None else (binary[0] if binary else None)
        if label is None or label not in binary:
            raise ConfigError(f"{name}: label_task must be a binary task among {binary} (the consumption label whose "
                              f"positives UCBE and the aux model learn from), got {c['label_task']!r}")
        plan = _Plan(on, label)
        m, a, s = c["memory"], c["aux"], c["sampling"]
        for key in ("n_user", "n_item", "n_tail", "k1", "k2", "personal_dim"):
            if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] < 1:
                raise ConfigError(f"{name}: memory.{key} must be an integer >= 1, got {m[key]!r}")
        for key, lo in (("rho", 0.0), ("eta", 0.0)):
            if not isinstance(m[key], Real) or not lo < m[key] <= 1.0:
                raise ConfigError(f"{name}: memory.{key} must lie in (0, 1], got {m[key]!r}")
        if m["k1"] > min(m["n_user"], m["n_tail"]) or m["k2"] > min(m["n_user"], m["n_tail"]):
            raise ConfigError(f"{name}: k1 = {m['k1']} and k2 = {m['k2']} cannot exceed the number of centroids "
                              f"(n_user {m['n_user']}, n_tail {m['n_tail']})")
        if m["k2"] * m["eta"] >= 1.0:
            raise ConfigError(f"{name}: Eq. 3 needs k2 * eta < 1 (one step must not overshoot the centroids), got "
                              f"{m['k2']} * {m['eta']}. Fix: a smaller eta")
        if m["init"] not in INITS:
            raise ConfigError(f"{name}: memory.init must be one of {list(INITS)} ('random': the paper; 'data': "
                              f"filled from the first sampled vectors), got {m['init']!r}")
        r = m["reseed_after"]
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ConfigError(f"{name}: memory.reseed_after must be None (the paper: never) or an integer >= 1 "
                              f"(updates without a win before a centroid is re-seeded), got {r!r}")
        if not m["generalization"]:
            raise ConfigError(f"{name}: memory.generalization must list at least one layer width, e.g. [36]")
        if not isinstance(a["dim"], int) or a["dim"] < 1 or not isinstance(a["weight"], Real) or a["weight"] < 0:
            raise ConfigError(f"{name}: aux.dim must be an integer >= 1 and aux.weight a number >= 0, got "
                              f"{a['dim']!r} and {a['weight']!r}")
        for key in ("user_rate", "item_rate", "tail_rate"):
            r = s[key]
            rates = list(r) if isinstance(r, (list, tuple)) else [r]
            if not rates or any(not isinstance(v, Real) or not 0.0 <= v <= 1.0 for v in rates):
                raise ConfigError(f"{name}: sampling.{key} must be a rate in [0, 1] or a list of them (one per "
                                  f"active type), got {r!r}")
        if not isinstance(s["balance"], bool):
            raise ConfigError(f"{name}: sampling.balance is an on/off switch, got {s['balance']!r}")
        t = s["active_type"]
        if t is not None and not str(t).startswith("_") and t not in fm:
            raise ConfigError(f"{name}: sampling.active_type '{t}' is neither a feature of the map nor a '_' batch "
                              f"column. Fix: 'avc', a column such as '_active_type', or None (no active types)")
        thr = c["tail_threshold"]
        if thr is not None and (not isinstance(thr, Real) or thr <= 0):
            raise ConfigError(f"{name}: tail_threshold must be a positive exposure count or None, got {thr!r}")
        if not isinstance(c["max_seq_len"], int) or c["max_seq_len"] < 1:
            raise ConfigError(f"{name}: max_seq_len must be an integer >= 1, got {c['max_seq_len']!r}")

        embedded = self.embedding.names()
        needs = ["user_id"] if on["upe"] or on["ucbe"] else []
        needs += ["item_id"] if on["tie"] else []
        for f in needs:
            if f not in embedded:
                raise ConfigError(f"{name}: the enabled components need the '{f}' feature (lookups by ID)")
        if plan.aux:
            plan.user_fields = self._fields(a["user_fields"], "users", "aux.user_fields")
            plan.item_fields = self._fields(a["item_fields"], "items", "aux.item_fields")
        gen = int(m["generalization"][-1])
        if on["upe"]:
            plan.widths["upe"] = gen
        if on["ucbe"]:
            plan.widths["ucbe"] = a["dim"]
        if on["ucse"]:
            plan.seq_fields, plan.seq_targets = self._sequence_fields(c["sequence_fields"])
            plan.widths["ucse"] = len(plan.seq_fields) * self.embedding.dim
        if on["tie"]:
            plan.widths["tie_profile"] = gen
            plan.widths["tie_behaviour"] = a["dim"]
        return plan

    def _fields(self, given: list[str] | None, table: str, key: str) -> list[str]:
        embedded = [n for n in self.embedding.names() if self.feature_map[n].kind != "sequence"]
        fields = [n for n in embedded if self.feature_map[n].table == table] if given is None else list(given)
        bad = [f for f in fields if f not in embedded]
        if bad or not fields:
            raise ConfigError(f"{type(self).__name__}: {key} {fields} must name embedded categorical / multi-hot "
                              f"fields (got unknown {bad}); the map has {embedded}")
        return fields

    def _sequence_fields(self, given: list[str] | None) -> tuple[list[str], list[str]]:
        fm, name = self.feature_map, type(self).__name__
        seqs = fm.names("sequence")
        if given is None:
            first = [n for n in seqs if fm[n].shared_with == "item_id"]
            if not first:
                raise ConfigError(f"{name}: UCSE needs a consumption sequence of item IDs, and the map has none "
                                  f"(sequences: {seqs}). Fix: FeatureConfig(sequences={{'hist_items': ['item_id', 100]}})"
                                  " or ucse: false")
            given = first[:1]
        fields = list(given)
        bad = [f for f in fields if f not in seqs]
        if bad or not fields:
            raise ConfigError(f"{name}: sequence_fields {fields} must be sequence features of the map {seqs}")
        targets = [fm[f].shared_with for f in fields]
        if any(t is None or t not in self.embedding.names() for t in targets):
            raise ConfigError(f"{name}: every sequence in {fields} must share its table with a target field "
                              f"(the item's own ID / category), got {targets}")
        if len({fm[f].max_len for f in fields}) > 1:
            raise ConfigError(f"{name}: sequence_fields {fields} must be aligned (one length), got lengths "
                              f"{[fm[f].max_len for f in fields]}")
        return fields, [str(t) for t in targets]

    # ------------------------------------------------------------------------------ forward
    def aux_vectors(self, batch: dict[str, torch.Tensor],
                    overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user_vec, item_vec)`` from the aux towers over the main model's embeddings, which are
        detached: the aux loss never reaches the main model."""
        if self.aux is None:
            raise ConfigError("this UIE model has no auxiliary towers (upe, ucbe and tie are all off)")

        def inputs(fields: list[str]) -> torch.Tensor:
            return torch.cat([self.embedding.vector(n, batch[n], overrides).detach() for n in fields], dim=1)

        return self.aux(inputs(self.plan.user_fields), inputs(self.plan.item_fields))

    def consumption(self, batch: dict[str, torch.Tensor],
                    overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> Consumption:
        """UCSE's consumption vectors, packed (:class:`Consumption`): the real behaviours among
        the first ``max_seq_len`` positions, each the main model's embeddings of its aligned
        fields concatenated, detached (looked up under ``no_grad``).

        Cost: only real positions are looked up, and each distinct behaviour once (its vector is
        a function of its IDs: ``unique`` / ``inverse``); the mask is cut after the batch's
        longest history. Fields given as :class:`EmbeddedSequence` overrides have no IDs: their
        real positions are used as they are, without deduplication."""
        L = self.cfg["max_seq_len"]
        given = overrides or {}
        fields = self.plan.seq_fields
        head = given.get(fields[0])
        mask = head.mask[:, :L] if isinstance(head, EmbeddedSequence) else batch[fields[0]][:, :L] > 0
        real = mask.any(0)
        mask = mask[:, :int(real.nonzero().max()) + 1 if bool(real.any()) else 1]
        rows, cols = mask.nonzero(as_tuple=True)
        with torch.no_grad():
            if any(isinstance(given.get(n), EmbeddedSequence) for n in fields):
                parts = []
                for n in fields:
                    o = given.get(n)
                    parts.append(o.emb[rows, cols] if isinstance(o, EmbeddedSequence)
                                 else self.embedding(n, _at(batch[n], rows, cols)))
                vec = torch.cat(parts, dim=-1)
                inverse = torch.arange(len(rows), device=vec.device)
            else:
                ids = [_at(batch[n], rows, cols) for n in fields]
                first, inverse = _distinct(ids, [self.feature_map[n].vocab_size for n in fields])
                vec = torch.cat([self.embedding(n, x.index_select(0, first)) for n, x in zip(fields, ids)], dim=-1)
        return Consumption(mask, rows, cols, vec.detach(), inverse)

    def consumption_vectors(self, batch: dict[str, torch.Tensor],
                            overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """UCSE's consumption vectors as a padded grid ``[B, W, d_item]`` (zeros at padding) and
        its mask ``[B, W]`` (``W``: the batch's longest history, at most ``max_seq_len``); the
        model itself works on :meth:`consumption`."""
        c = self.consumption(batch, overrides)
        grid = c.unique.new_zeros((*c.mask.shape, c.unique.shape[1]))
        grid[c.rows, c.cols] = c.vectors
        return grid, c.mask

    def ucse_vector(self, c: Consumption, target: torch.Tensor) -> torch.Tensor:
        """Eq. 4 ``[B, d_item]``: each real behaviour replaced by its most similar centroid
        theta_j (searched once per distinct behaviour), ``sum_j softmax_j(theta_j . v_target)
        theta_j`` over the row's real behaviours, zeros for a row without history. Scores on the
        packed positions, the softmax on the ``[B, W]`` grid (padding masked), the weighted sum
        scattered back by row: the dense ``masked_softmax(einsum('bld,bd->bl', theta, target),
        mask)`` form over all ``max_seq_len`` positions, up to float rounding."""
        assert self.item_memory is not None
        theta = self.item_memory.gather(self.item_memory.assign(c.unique).index_select(0, c.inverse))  # [n, d]
        scores = (theta * target.index_select(0, c.rows)).sum(-1)  # theta_j . v_target: gradient to the target
        grid = scores.new_zeros(c.mask.shape).index_put((c.rows, c.cols), scores)
        w = _at(masked_softmax(grid, c.mask), c.rows, c.cols)
        out = torch.zeros(c.mask.shape[0], theta.shape[1], dtype=theta.dtype, device=theta.device)
        return out.index_add(0, c.rows, w.unsqueeze(1) * theta)

    def target_vector(self, batch: dict[str, torch.Tensor],
                      overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> torch.Tensor:
        """Eq. 4's ``v_target`` ``[B, d_item]``: the row's item embedded like a behaviour."""
        return torch.cat([self.embedding.vector(n, batch[n], overrides) for n in self.plan.seq_targets], dim=1)

    def is_tail(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Bool ``[B]``: items with fewer cumulative exposures than ``tail_threshold`` (every item
        when it is None). Needs ``tie``."""
        if not self.plan.on["tie"]:
            raise ConfigError("is_tail needs tie: true (the exposure counter lives with TIE)")
        thr = self.cfg["tail_threshold"]
        if thr is None:
            return torch.ones(item_ids.shape, dtype=torch.bool, device=item_ids.device)
        return self.item_exposures[item_ids] < thr

    def enhance(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        """Every enabled enhancement vector (``enhancements``: name -> ``[B, w]``) and the vectors
        ``on_batch_end`` needs."""
        p, m = self.plan, self.cfg["memory"]
        out: dict[str, Any] = {}
        feats: dict[str, torch.Tensor] = {}
        if self.aux is not None:
            user_vec, item_vec = self.aux_vectors(batch, overrides)
            out["user_vec"], out["item_vec"] = user_vec, item_vec
            u, i = user_vec.detach(), item_vec.detach()  # the main loss does not train the aux towers
        if p.on["upe"]:
            assert self.user_memory is not None and self.personal is not None and self.upe_layer is not None
            weighted = self.user_memory.read(u, m["k1"]).weighted  # Eq. 2
            assert weighted is not None
            feats["upe"] = self.upe_layer(torch.cat([weighted, self.personal(batch["user_id"])], dim=1))
        if p.on["ucbe"]:
            feats["ucbe"] = self.ucbe_vectors.index_select(0, batch["user_id"])
        if p.on["ucse"]:
            cons = self.consumption(batch, overrides)
            feats["ucse"] = self.ucse_vector(cons, self.target_vector(batch, overrides))  # Eq. 4
            out["consumption"] = cons
        if p.on["tie"]:
            assert self.tail_memory is not None and self.item_personal is not None and self.tie_layer is not None
            tail = self.is_tail(batch["item_id"]).to(i.dtype).unsqueeze(1)
            weighted = self.tail_memory.read(i, m["k1"]).weighted
            assert weighted is not None
            prof = self.tie_layer(torch.cat([weighted, self.item_personal(batch["item_id"])], dim=1))
            feats["tie_profile"] = prof * tail
            feats["tie_behaviour"] = self.tie_vectors.index_select(0, batch["item_id"]) * tail
        out["enhancements"] = feats
        return out

    def forward(self, batch: dict[str, torch.Tensor],
                overrides: dict[str, torch.Tensor | EmbeddedSequence] | None = None) -> dict[str, Any]:
        out = self.enhance(batch, overrides)
        feats = out["enhancements"]
        extra = torch.cat(list(feats.values()), dim=1) if feats else None
        out["logits"] = self.decide(self.represent(batch, overrides), extra)
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """PLE's task terms plus ``aux_bce`` (the aux towers' own objective, weight ``aux.weight``)."""
        terms = super().compute_loss(batch, out)
        if self.aux is not None:
            logit = self.aux.logit(out["user_vec"], out["item_vec"])
            y = batch[self.plan.label_task].float()
            terms["aux_bce"] = self.cfg["aux"]["weight"] * F.binary_cross_entropy_with_logits(logit, y)
        return terms

    # ------------------------------------------------------------------------------ state updates
    def sample_rows(self, batch: dict[str, torch.Tensor], rate_key: str) -> torch.Tensor:
        """Bool ``[B]``: the rows that update a memory (``sampling.user_rate`` / ``item_rate`` /
        ``tail_rate``), drawn by active type (module docstring)."""
        s = self.cfg["sampling"]
        y = batch[self.plan.label_task]
        n, dev = len(y), y.device
        rate = s[rate_key]
        col = s["active_type"]
        types = None
        if col is not None and rate_key != "tail_rate":
            if col not in batch:
                raise ConfigError(f"sampling.active_type '{col}' is not a column of the batch. Fix: add it to the "
                                  "data (or set sampling.active_type to None)")
            types = batch[col].long()
        if isinstance(rate, (list, tuple)):
            if types is None:
                raise ConfigError(f"sampling.{rate_key} lists rates per active type but there is no active type")
            rates = active_type_rates(types, list(rate)).to(dev)
        elif s["balance"] and types is not None and n:
            _, inverse, counts = torch.unique(types, return_inverse=True, return_counts=True)
            per_type = (float(rate) * n / (len(counts) * counts.to(torch.float32))).clamp(max=1.0)
            rates = per_type[inverse]
        else:
            rates = torch.full((n,), float(rate), device=dev)
        return torch.rand(n, device=dev) < rates

    @torch.no_grad()
    def _eq3(self, table: torch.Tensor, memory: StreamClusterMemory, query: torch.Tensor, ref: torch.Tensor,
             ids: torch.Tensor) -> torch.Tensor:
        """Eq. 3 on ``table`` (per-user or per-item enhancement vectors) for the given positive rows:
        their K2 centroids most relevant to ``query``, zeroed unless positive with ``ref``, pull
        row ``ids`` of the table (see the module docstring). Returns the updated IDs (a
        collective under ``torch.distributed``)."""
        m = self.cfg["memory"]
        k2, eta = m["k2"], m["eta"]
        known = ids >= KNOWN
        query, ref, ids = query[known], ref[known], ids[known]
        if len(ids):
            targets = memory.topk(query, k2, positive_wrt=ref).centroids.mean(dim=-2)  # [n, d]: mean_j mu_j
        else:
            targets = table.new_zeros((0, table.shape[1]))
        ids, targets = all_gather_rows(ids, targets.to(table.dtype))
        if not len(ids):
            return ids
        uniq, inverse = torch.unique(ids, return_inverse=True)
        sums = table.new_zeros((len(uniq), table.shape[1])).index_add_(0, inverse, targets)
        counts = table.new_zeros(len(uniq)).index_add_(0, inverse, torch.ones_like(targets[:, 0]))
        keep = torch.pow(1.0 - k2 * eta, counts).unsqueeze(1)  # (1 - K2 eta)^c
        table[uniq] = keep * table[uniq] + (1.0 - keep) * sums / counts.unsqueeze(1)
        return uniq

    @torch.no_grad()
    def update_state(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Eq. 3 (UCBE, TIE) and Eq. 1 (every memory) for one training batch; returns what changed:
        ``*_sampled`` (bool ``[B]``), ``user_memory`` / ``tail_memory`` (centroid per row, -1 =
        not sampled), ``item_memory`` (``[B, W]``, on the consumption mask's grid), ``ucbe_users``
        / ``tie_items`` (updated IDs)."""
        p = self.plan
        rec: dict[str, torch.Tensor] = {}
        pos = batch[p.label_task] > 0.5
        if self.aux is not None:
            u, i = out["user_vec"].detach(), out["item_vec"].detach()
        if p.on["ucbe"]:  # before Eq. 1, with the memory the forward pass read
            assert self.user_memory is not None
            rec["ucbe_users"] = self._eq3(self.ucbe_vectors, self.user_memory, i[pos], u[pos], batch["user_id"][pos])
        if self.user_memory is not None:
            rec["user_sampled"] = self.sample_rows(batch, "user_rate")
            rec["user_memory"] = self.user_memory.update(u, rec["user_sampled"])
        if p.on["ucse"]:
            assert self.item_memory is not None
            cons: Consumption = out["consumption"]
            rec["item_sampled"] = sampled = self.sample_rows(batch, "item_rate")
            use = sampled[cons.rows]  # every real behaviour of the sampled rows
            assigned = self.item_memory.update(cons.unique.index_select(0, cons.inverse[use]), 1.0)
            rec["item_memory"] = torch.full(cons.mask.shape, -1, dtype=torch.long, device=assigned.device)
            rec["item_memory"][cons.rows[use], cons.cols[use]] = assigned
        if p.on["tie"]:
            assert self.tail_memory is not None
            items = batch["item_id"]
            rec["tie_items"] = self._eq3(self.tie_vectors, self.tail_memory, u[pos], i[pos], items[pos])
            rec["tail_sampled"] = self.sample_rows(batch, "tail_rate")
            rec["tail_memory"] = self.tail_memory.update(i, rec["tail_sampled"])
            (seen,) = all_gather_rows(items)
            self.item_exposures.index_add_(0, seen, torch.ones_like(seen))
        return rec

    def on_batch_end(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        """The stream-clustering and enhancement-vector updates of one training step."""
        self.last_update = self.update_state(batch, out)
