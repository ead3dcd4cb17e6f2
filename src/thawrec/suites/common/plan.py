"""A suite's plan is data: a list of :class:`Entry`, one per model of the paper's tables, in
training order (as FuxiCTR's experiment entries). Nothing here trains anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from thawrec.errors import ConfigError

__all__ = ["Entry", "slug", "select", "supported"]


@dataclass(frozen=True)
class Entry:
    """One model of a plan.

    ``name``: its row in the report; ``model``: the registry name it is built from (None for a
    floor, which is scored, not trained); ``cfg``: its options; ``baseline``: the entry it is
    compared with (paired tests, relative improvement; None = it is a reference itself);
    ``needs``: the trained entry of the same seed it builds on (Meta-Embedding's base);
    ``reader``: ``rows`` or ``episodes`` (meta-learning baselines); ``floor``: the name of a
    floor scorer when ``model`` is None; ``options``: anything else the suite's protocol reads;
    ``requires``: what the data must have for this entry (``user_attributes``, ``ground_truth``): an
    entry the data cannot support is skipped with a note, and the rest runs.
    """

    name: str
    model: str | None = None
    cfg: Mapping[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    needs: str | None = None
    reader: str = "rows"
    floor: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.model is None) == (self.floor is None):
            raise ConfigError(f"plan entry '{self.name}' needs exactly one of model (a registry name) or floor")
        if self.reader not in ("rows", "episodes"):
            raise ConfigError(f"plan entry '{self.name}': reader must be 'rows' or 'episodes', got {self.reader!r}")

    @property
    def reference(self) -> str:
        """The entry whose results this one's are compared with (itself for a reference)."""
        return self.baseline or self.name


def slug(name: str) -> str:
    """A folder-safe form of a model name (``POSO(MHA)`` -> ``poso_mha``)."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def select(plan: list[Entry], wanted: Iterable[str] | None, keep: Iterable[str] = ()) -> list[Entry]:
    """The entries named in ``wanted`` (all if None), plus those in ``keep``, every entry a kept
    one needs or is compared with; plan order. An unknown name is an error listing the valid ones."""
    by = {e.name: e for e in plan}
    if wanted is None:
        return list(plan)
    wanted = list(wanted)
    unknown = [w for w in wanted if w not in by]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}. Fix: choose from {list(by)}")
    chosen = set(wanted) | set(keep)
    grow = True
    while grow:  # close over dependencies: a plan is a handful of entries
        extra = {x for n in chosen for x in (by[n].needs, by[n].baseline) if x and x in by} - chosen
        chosen |= extra
        grow = bool(extra)
    return [e for e in plan if e.name in chosen]


def supported(plan: list[Entry], capabilities: set[str]) -> tuple[list[Entry], dict[str, str]]:
    """The entries the data supports, and for each skipped one why (an entry whose reference or
    dependency is skipped is skipped too)."""
    skipped: dict[str, str] = {}
    for e in plan:
        missing = [r for r in e.requires if r not in capabilities]
        if missing:
            skipped[e.name] = f"the data has no {', '.join(m.replace('_', ' ') for m in missing)}"
        elif e.needs in skipped or e.baseline in skipped:
            skipped[e.name] = f"it builds on or compares with {e.needs or e.baseline}, which is skipped"
    return [e for e in plan if e.name not in skipped], skipped
