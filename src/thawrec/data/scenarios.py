"""Scenario worlds: the synthetic world with one paper's mechanism planted at a given strength.

A method can only show a gain where the mechanism it exploits exists. Each scenario plants one
paper's mechanism in :mod:`thawrec.data.synthetic` with a strength knob in [0, 1]; strength 0 is
the *null world*: the same sizes, the same random draws for everything else, mechanism off. A
method should win on its scenario and not on the null. Every scenario is defined here once, from
the paper; runs choose a strength and a world seed, never the world's rules.

- ``poso`` (POSO, Kuaishou): a *lifecycle* shift. Every user joins at some point of the period
  (so a young account means the same thing in training and test) and the first
  ``LIFECYCLE_EVENTS`` events of every account follow a different click model: the user's own
  topic affinity is replaced, in proportion ``strength``, by a newcomer taste shared by all young
  accounts. That changes the ranking within a user's early rows (a constant CTR offset would not:
  GAUC cannot see it). Early-life rows are a small minority of the training rows (about 4%) but
  tens of thousands of rows, the "submergence" POSO is about. Groups: ``early`` (a test user's
  first events) and ``established``.
- ``mail`` (MAIL, NetEase): behaviour comes from a separate, earlier log (30 days before the
  labelled log: clicks drawn from each user's own affinity), not from the labelled rows; new users
  (40%) have no behaviour log and join only in the last 3/16 of the labelled period (no training
  rows); user attributes carry the interest group with informativeness ``strength`` (each attribute
  is drawn from its group's distribution with probability ``strength``, else uniformly). The ranker
  gets no user ID, so no group signal the zero-shot tower cannot see. Groups ``new`` / ``old``.
- ``dauc`` (DAUC, Tencent): the side view (apps) mixes interest-driven apps with a nuisance
  structure unrelated to interests (each user's phone brand's preinstalled apps) in proportion
  ``strength``; new users' target clicks follow their interests as everyone's do; light phone users
  (few events in all, known before any click) have shifted apps, so the active/cold shift needs no
  look-ahead. Group ``cold`` (at most 3 target clicks in training).
- ``uie`` (UIE, Tencent, KDD'24): users in taste clusters (16 interest groups over 24 topics, each
  group liking 2-3 of them); the 32% least active users are planted low-active (a quarter of the
  others' events on average; each attribute missing with probability 0.6: a sparse profile), all
  users active over the whole 12 days (so the training period's counts tell the low-active apart:
  the suite's definition finds about 75% of them; log-normal activity with sigma 0.8, narrower
  than the default world's 1.8); high-active users click by their cluster's shared taste (plus
  personal noise) and reveal it; a share ``strength`` of the low-active users click by their
  cluster's taste too, the rest by an independent taste of their own, shared with nobody (0: no
  low-active user's clicks follow their cluster: the null world). The default 0.8 plants the
  mechanism for most low-active users but not all, as the other scenarios' defaults do; it was
  set before any model ran on the world. Valid consumption (label) = a watch over 10 s; the interactions
  carry ``watch_time`` (seconds, longer the more the user likes the topic), UIE's second task.
  Groups ``low-active`` / ``high-active`` (and ``tail`` items), defined by the suite on the
  training period.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from thawrec.data.schema import Dataset
from thawrec.data.synthetic import SynthConfig, generate, write_generated
from thawrec.errors import ConfigError

__all__ = ["Scenario", "SCENARIOS", "scenario_config", "scenario_world", "write_scenario_world", "LIFECYCLE_EVENTS"]

LIFECYCLE_EVENTS = 5  # POSO scenario: events 0..4 of an account (AVC buckets 1-4) are early life


@dataclass(frozen=True)
class Scenario:
    """One paper's mechanism: its documented default strength, the user groups its tables report,
    and how a strength and a world seed become a :class:`SynthConfig`."""

    name: str
    paper: str
    default_strength: float
    groups: tuple[str, ...]
    build: Callable[[float], dict[str, Any]]

    def config(self, strength: float | None = None, world_seed: int = 0, **overrides: Any) -> SynthConfig:
        s = self.default_strength if strength is None else float(strength)
        if not 0.0 <= s <= 1.0:
            raise ConfigError(f"--strength {s} for scenario '{self.name}' is outside [0, 1]. "
                              f"Fix: 0 is the null world, {self.default_strength} the documented default")
        known = {f.name for f in fields(SynthConfig)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown synthetic-world option(s) {bad}. Fix: use SynthConfig fields")
        return replace(SynthConfig(), **{**self.build(s), "seed": int(world_seed), **overrides})


def _poso(s: float) -> dict[str, Any]:
    return dict(n_users=5000, n_items=3000, n_interactions=500_000, join_mode="uniform", new_user_frac=0.0,
                lifecycle_events=LIFECYCLE_EVENTS, lifecycle_strength=s, lifecycle_topics=3, t_span_days=120.0)


def _mail(s: float) -> dict[str, Any]:
    return dict(n_users=10_000, n_items=3000, n_interactions=300_000, new_user_frac=0.4, new_user_window=0.1875,
                new_user_affinity_scale=1.0, new_user_pop_mix=0.5, new_user_ctr_shift=0.0, new_user_pop_boost=1.0,
                attr_noise=1.0 - s, behaviour_log_days=30.0, behaviour_events=30.0)


def _dauc(s: float) -> dict[str, Any]:
    return dict(n_users=6000, n_items=3000, n_interactions=300_000, new_user_affinity_scale=1.0,
                new_user_pop_mix=0.5, new_user_ctr_shift=0.0, new_user_pop_boost=1.0, nuisance_strength=s,
                cold_shift_by="activity", light_user_events=20)


def _uie(s: float) -> dict[str, Any]:
    return dict(n_users=8000, n_items=3000, n_interactions=400_000, n_groups=16, n_topics=24, new_user_frac=0.0,
                join_mode="always", activity_sigma=0.8, t_span_days=12.0, cold_shift_by="activity",
                low_active_frac=0.32, low_active_attr_missing=0.6,
                low_active_taste_shared=s, watch_time=True)


SCENARIOS: dict[str, Scenario] = {
    "poso": Scenario("poso", "POSO (Dai et al.)", 0.8, ("early", "established"), _poso),
    "mail": Scenario("mail", "MAIL (Feng et al.)", 0.8, ("new", "old"), _mail),
    "dauc": Scenario("dauc", "DAUC (Liu, Bai et al., KDD'22)", 0.6, ("cold-start",), _dauc),
    "uie": Scenario("uie", "UIE (Liu, Wang et al., KDD'24)", 0.8, ("low-active", "high-active", "tail"), _uie),
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario '{name}'. Fix: choose one of {sorted(SCENARIOS)}") from None


def scenario_config(name: str, strength: float | None = None, world_seed: int = 0, **overrides: Any) -> SynthConfig:
    """The :class:`SynthConfig` of scenario ``name`` at ``strength`` (None: its default)."""
    return get(name).config(strength, world_seed, **overrides)


def scenario_world(name: str, strength: float | None = None, world_seed: int = 0,
                   **overrides: Any) -> tuple[Dataset, dict[str, Any]]:
    """The dataset and ground truth of scenario ``name``; ``meta["scenario"]`` records it."""
    cfg = scenario_config(name, strength, world_seed, **overrides)
    ds, gt = generate(cfg)
    ds.meta["scenario"] = {"name": name, "strength": cfg_strength(name, cfg), "world_seed": cfg.seed}
    ds.meta["name"] = f"{name} scenario (strength {cfg_strength(name, cfg):g}, world seed {cfg.seed})"
    return ds, gt


def write_scenario_world(name: str, strength: float | None, world_seed: int, out: str | Path,
                         **overrides: Any) -> Path:
    """Generate scenario ``name`` and write it with its ground truth (``thawrec data synth --scenario``)."""
    ds, gt = scenario_world(name, strength, world_seed, **overrides)
    return write_generated(ds, gt, out)


def cfg_strength(name: str, cfg: SynthConfig) -> float:
    """The strength a config plants (read back from the knob the scenario sets)."""
    return {"poso": cfg.lifecycle_strength, "mail": 1.0 - cfg.attr_noise, "dauc": cfg.nuisance_strength,
            "uie": cfg.low_active_taste_shared}[name]
