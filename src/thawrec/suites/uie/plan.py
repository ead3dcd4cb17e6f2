"""UIE's plan: Table 3 (PLE, PLE with CL, PLE with TL, PLE with UPE, with UPE and UCBE, with UIE),
Table 5 (PLE with UIE and TIE against PLE with UIE, on tail items), Fig. 3 (PLE with UPE for N in
{16, ..., 1024}; section ``fig3``, off by default), the floor (item popularity) and, on synthetic worlds, the
ceiling (the planted click model). Every entry is compared with PLE, except TIE, compared with
PLE with UIE as Table 5 does.

The paper's values are the defaults (Sec. 4.1): N = M = 256 centroids, K1 = K2 = 3, rho = 0.01,
eta = 0.05, memory vectors of 36 (user memory: the aux towers' width), 36 (UCBE's personalized
vectors) and 48 (item memory: UCSE's consumption vector, item + category embeddings of 24 each),
personal vector 4; Adam and batch 512 are the suite's training defaults. UIE's memories sample
rows by the suite's user active type (``_active_type``: low-/high-active on the training
period), balanced between the two types.

TIE gives its features to every item (``tail_threshold`` None): the model's exposure counter counts
every training pass, so an exposure cut would mean a different set of items after each epoch;
Table 5 reads the tail-item rows (the protocol's training-period definition).

PLE with CL and PLE with TL are the registry's ``ple_cl`` and ``ple_tl``; a run where one is not
registered leaves it out with a note (:func:`registered`). The suite gives them the same PLE
options and, as their low-active rows, the suite's own definition (the batch column
``_active_type``, 1 = low-active, as a flag) instead of their per-row view-count proxy.
"""

from __future__ import annotations

from typing import Any

from thawrec.errors import ConfigError
from thawrec.suites.common.plan import Entry

PLE = "PLE"
CL = "PLE with CL"
TL = "PLE with TL"
UPE = "PLE with UPE"
UPE_UCBE = "PLE with UPE and UCBE"
UIE = "PLE with UIE"
TIE = "PLE with UIE and TIE"
FLOOR = "Popularity (floor)"
ORACLE = "Oracle (planted click model)"
TABLE3 = (PLE, CL, TL, UPE, UPE_UCBE, UIE)
TABLE5 = (UIE, TIE)
FIG3_N = (16, 32, 64, 128, 256, 512, 1024)
SECTIONS = ("main", "baselines", "fig3")  # main: UPE, UCBE, UIE, TIE; baselines: CL, TL; fig3: the N sweep
ALWAYS = (PLE, FLOOR, ORACLE)

EMBEDDING_DIM = 24  # UCSE's consumption vector = item + category = 48, the paper's item-memory width
PAPER_UIE: dict[str, Any] = {
    "label_task": "label",
    "max_seq_len": 100,
    "aux": {"dim": 36},
    "memory": {"n_user": 256, "n_item": 256, "n_tail": 256, "k1": 3, "k2": 3, "rho": 0.01, "eta": 0.05,
               "personal_dim": 4},
    "sampling": {"active_type": "_active_type", "user_rate": 0.3, "item_rate": 0.1, "balance": True},
}
LOW_ACTIVE = {"column": "_active_type", "at_most": None}  # PLE+CL / PLE+TL: the suite's low-active users
COMPONENTS: dict[str, dict[str, bool]] = {
    UPE: {"upe": True, "ucbe": False, "ucse": False, "tie": False},
    UPE_UCBE: {"upe": True, "ucbe": True, "ucse": False, "tie": False},
    UIE: {"upe": True, "ucbe": True, "ucse": True, "tie": False},
    TIE: {"upe": True, "ucbe": True, "ucse": True, "tie": True},
}


def fig3_name(n: int) -> str:
    return UPE if n == 256 else f"{UPE}, N={n}"


def model_plan(sections: list[str], tasks: list[str], regression: list[str], sequences: list[str],
               model_cfg: dict[str, Any] | None = None, uie_cfg: dict[str, Any] | None = None) -> list[Entry]:
    """Every entry of a run, in training order. ``sequences``: the consumption sequences UCSE reads
    (item IDs first, then aligned ones)."""
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ConfigError(f"unknown section(s) {bad}. Fix: choose from {list(SECTIONS)}")
    base = {"embedding_dim": EMBEDDING_DIM, "tasks": list(tasks), "regression_tasks": list(regression),
            **(model_cfg or {})}
    uie_over = uie_cfg or {}
    seq = [s for s in ("hist_items", "hist_cats") if s in sequences]

    def uie(name: str, switches: dict[str, bool], baseline: str = PLE, memory: dict[str, Any] | None = None) -> Entry:
        nested = {k: {**PAPER_UIE[k], **uie_over.get(k, {})} for k in ("aux", "memory", "sampling")}
        nested["memory"].update(memory or {})
        flat = {k: v for k, v in uie_over.items() if k not in nested}
        cfg = {**base, **PAPER_UIE, **flat, **nested, "sequence_fields": seq if switches["ucse"] else None,
               **switches}
        return Entry(name, "uie", cfg, baseline=baseline)

    plan: dict[str, Entry] = {PLE: Entry(PLE, "ple", base)}
    if "baselines" in sections:
        low = {"low_active": dict(LOW_ACTIVE)}
        plan[CL] = Entry(CL, "ple_cl", {**base, **low}, baseline=PLE)
        plan[TL] = Entry(TL, "ple_tl", {**base, **low}, baseline=PLE)
    if "main" in sections:
        for name in (UPE, UPE_UCBE, UIE):
            plan[name] = uie(name, COMPONENTS[name])
        plan[TIE] = uie(TIE, COMPONENTS[TIE], baseline=UIE)
    if "fig3" in sections:
        for n in FIG3_N:
            plan.setdefault(fig3_name(n), uie(fig3_name(n), COMPONENTS[UPE], memory={"n_user": n}))
    plan[FLOOR] = Entry(FLOOR, floor="item_popularity", baseline=PLE)
    plan[ORACLE] = Entry(ORACLE, floor="oracle", baseline=PLE, requires=("ground_truth",))
    return list(plan.values())


def registered(plan: list[Entry], rankers: list[str]) -> tuple[list[Entry], dict[str, str]]:
    """The entries whose model is registered, and a note for each one left out (a baseline not
    built yet); an entry that builds on or compares with one left out is left out too."""
    skipped: dict[str, str] = {}
    for e in plan:
        if e.model is not None and e.model not in rankers:
            skipped[e.name] = f"ranker '{e.model}' is not registered in this installation"
        elif e.needs in skipped or e.baseline in skipped:
            skipped[e.name] = f"it builds on or compares with {e.needs or e.baseline}, which is left out"
    return [e for e in plan if e.name not in skipped], skipped
