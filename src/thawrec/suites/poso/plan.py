"""POSO's plan: the base model (Fig. 2), POSO(MLP/MHA/MMoE/All Combined), the Table 2 baselines on
the same base (MeLU, Meta-Embedding, MWUF), and the ablation sections: personalization codes
(Table 6), MHA settings (Table 7), item cold start (Table 3). Every entry is compared with the base,
and every table has its floor (item popularity) and, on synthetic worlds, its ceiling (the planted
click model scoring the test rows)."""

from __future__ import annotations

from typing import Any

from thawrec.errors import ConfigError
from thawrec.suites.common.plan import Entry
from thawrec.suites.poso.protocol import TASKS

BASE = "Base (MHA+MMoE)"
ALL = "POSO(All Combined)"
VARIANTS: dict[str, dict[str, Any]] = {
    BASE: {},
    "POSO(MLP)": {"mlp": True},
    "POSO(MHA)": {"mha": "gated_k"},
    "POSO(MMoE)": {"mmoe": True},
    ALL: {"mlp": True, "mha": "gated_k", "mmoe": True},
}
BASELINES = ["MeLU", "Meta-Embedding", "MWUF"]
# Table 6: POSO (All Combined) with each personalization code; the AVC row is the main ALL run.
PC_ABLATION = {"all features (MoE)": "all", "is-new-user": "is_new", "user ID embedding": "user_id",
               "user ID + item ID embedding": "user_item_id", "Accumulated View Count": "avc"}
# Table 7: POSO (MHA) from full personalization to the lightest; gated_k is the standard POSO(MHA).
# (Labels use ';' rather than the paper's ',' so they survive a comma-separated --models list.)
MHA_SETTINGS = {"Q(i); K(i); V(i); N=4": "full", "Q(i)=Q; K(i); V(i); N=4": "shared_q",
                "Q(i)=Q; K(i)=G^k*K; V(i); N=4": "gated_k", "Q(i)=Q; K(i)=G^k*K; V(i)=G^v*V": "gated_kv"}
# Table 3: item cold start, the same modules with item age as the personalization code (Sec. 4.5).
ITEM_PC = {f"item-age PC: {v}": VARIANTS[v] for v in ("POSO(MLP)", "POSO(MHA)", "POSO(MMoE)", ALL)}
SECTIONS = ("main", "baselines", "pc", "mha", "items")
FLOOR = "Popularity (floor)"
ORACLE = "Oracle (planted click model)"
REFERENCES = (FLOOR, ORACLE)


def model_plan(sections: list[str], model_cfg: dict[str, Any] | None = None) -> list[Entry]:
    """Every model a run trains, in training order (the base first: Meta-Embedding builds on it)."""
    bad = [x for x in sections if x not in SECTIONS]
    if bad:
        raise ConfigError(f"unknown section(s) {bad}. Fix: choose from {list(SECTIONS)}")
    mcfg = {"tasks": TASKS, "pc": "avc", **(model_cfg or {})}

    def poso(name: str, modules: dict[str, Any], pc: str | None = None) -> Entry:
        return Entry(name, "poso", {**mcfg, "pc": pc or mcfg["pc"], "poso": modules},
                     baseline=None if name == BASE else BASE)

    plan: dict[str, Entry] = {BASE: poso(BASE, {})}
    if "main" in sections:
        plan.update({v: poso(v, p) for v, p in VARIANTS.items()})
    if "baselines" in sections:
        plan["MeLU"] = Entry("MeLU", "melu", mcfg, baseline=BASE, reader="episodes")
        plan["Meta-Embedding"] = Entry("Meta-Embedding", "meta_embedding", {}, baseline=BASE, needs=BASE,
                                       reader="episodes", requires=("user_attributes",))
        plan["MWUF"] = Entry("MWUF", "mwuf", mcfg, baseline=BASE, requires=("user_attributes",))
    if "pc" in sections:
        plan.update({f"PC: {label}": poso(f"PC: {label}", VARIANTS[ALL], pc)
                     for label, pc in PC_ABLATION.items() if pc != "avc"})
        plan.setdefault(ALL, poso(ALL, VARIANTS[ALL]))
    if "mha" in sections:
        plan.update({f"MHA: {label}": poso(f"MHA: {label}", {"mha": m})
                     for label, m in MHA_SETTINGS.items() if m != "gated_k"})
        plan.setdefault("POSO(MHA)", poso("POSO(MHA)", VARIANTS["POSO(MHA)"]))
    if "items" in sections:
        plan.update({name: poso(name, p, "item_age") for name, p in ITEM_PC.items()})
    plan[FLOOR] = Entry(FLOOR, floor="item_popularity", baseline=BASE)
    plan[ORACLE] = Entry(ORACLE, floor="oracle", baseline=BASE, requires=("ground_truth",))
    return list(plan.values())
