"""MAIL's plan: Table 2 (EmbLR, LLAE, BaseDNN, MetaEmb, MAIL-Base, DMR, MAIL-DMR), Table 3's
ablations (MAIL-None/Single/Dual/Base) and the model-agnostic check with the POSO base model as the
ranking tower. Each entry is compared with its own base (Eq. 18's RI)."""

from __future__ import annotations

from typing import Any

from thawrec.suites.common.plan import Entry

EMBLR = {"hidden": [], "dropout": 0.0, "batch_norm": False}
POSO_BASE = {"tower_hidden": [64]}  # the POSO base model (MHA + MMoE), no POSO module
BASES = ("BaseDNN", "EmbLR", "DMR", "POSO-Base")
HEAD_TO_HEAD = (("MAIL-Base", "MetaEmb"), ("MAIL-DMR", "MAIL-Base"))
FLOOR = "Popularity (floor)"
ORACLE = "Oracle (planted click model)"
TRUE_BEHAVIOUR = "BaseDNN + true behaviour (ceiling)"
# every run has them: MetaEmb builds on BaseDNN, LLAE compares with EmbLR; the floor and ceilings frame every table
ALWAYS = ("BaseDNN", "EmbLR", FLOOR, ORACLE, TRUE_BEHAVIOUR)


def model_plan(embedding_dim: int = 32) -> list[Entry]:
    d = {"embedding_dim": embedding_dim}

    def mail(name: str, cfg: dict[str, Any], base: str, ranker: dict[str, Any] | None = None) -> Entry:
        return Entry(name, "mail", {**cfg, "ranker": {**d, **(ranker or {})}}, baseline=base,
                     requires=("user_attributes",))  # the zero-shot tower generates from attributes

    return [
        Entry("BaseDNN", "base_dnn", d),
        Entry("EmbLR", "base_dnn", {**d, **EMBLR}),
        mail("LLAE", {"zst": "llae"}, "EmbLR", EMBLR),
        Entry("MetaEmb", "meta_embedding", {"target": "hist_items", "hide_fields": ["avc"]}, baseline="BaseDNN",
              needs="BaseDNN", reader="episodes", requires=("user_attributes",)),
        mail("MAIL-None", {"zst": "none"}, "BaseDNN"),
        mail("MAIL-Single", {"zst": "single"}, "BaseDNN"),
        mail("MAIL-Dual", {"zst": "dual"}, "BaseDNN"),
        mail("MAIL-Base", {"zst": "base"}, "BaseDNN"),
        Entry("DMR", "dmr", d),
        mail("MAIL-DMR", {"zst": "base", "tower": "dmr"}, "DMR"),
        Entry("POSO-Base", "poso", {**d, **POSO_BASE}),
        mail("MAIL-POSO", {"zst": "base", "tower": "poso"}, "POSO-Base", POSO_BASE),
        Entry(FLOOR, floor="item_popularity", baseline="BaseDNN"),
        Entry(ORACLE, floor="oracle", baseline="BaseDNN", requires=("ground_truth",)),
        Entry(TRUE_BEHAVIOUR, floor="true_behaviour", needs="BaseDNN", baseline="BaseDNN"),
    ]
