"""The base suite's plan: BaseDNN against the ItemPop floor."""

from __future__ import annotations

from typing import Any

from thawrec.suites.common.plan import Entry


def plan(model_cfg: dict[str, Any] | None = None) -> list[Entry]:
    return [Entry("BaseDNN", "base_dnn", model_cfg or {}, baseline="ItemPop"),
            Entry("ItemPop", floor="item_popularity")]
