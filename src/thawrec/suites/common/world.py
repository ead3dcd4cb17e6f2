"""The world a suite runs on: a dataset folder (real data, or a synthetic world written with its
ground truth), the default synthetic world, or a scenario world (:mod:`thawrec.data.scenarios`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thawrec.data.scenarios import scenario_world
from thawrec.data.schema import Dataset
from thawrec.data.synthetic import load_ground_truth
from thawrec.data.worlds import load_world
from thawrec.errors import ConfigError


@dataclass
class World:
    """``ds`` with its ``name``; ``gt``: the planted ground truth (synthetic worlds only);
    ``scenario``: ``{"name", "strength", "world_seed"}`` when a scenario is planted."""

    ds: Dataset
    name: str
    gt: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None

    @property
    def synthetic(self) -> bool:
        return self.gt is not None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "synthetic": self.synthetic, "scenario": self.scenario,
                "interactions": self.ds.interactions.height, "users": self.ds.users.height,
                "items": self.ds.items.height}

    def capabilities(self) -> set[str]:
        """What plan entries may require of the data (see :func:`thawrec.suites.common.plan.supported`)."""
        caps = {"ground_truth"} if self.gt is not None else set()
        if self.ds.user_attrs:
            caps.add("user_attributes")
        return caps

    def with_oracle(self) -> Dataset:
        """The dataset with the planted click probability as an interactions column ``oracle_p``
        (pass it through the features, never as one): the ceiling of every ranking table."""
        if self.gt is None:
            raise ConfigError("only synthetic worlds have a planted click model")
        p = np.nan_to_num(self.gt["interaction_click_prob"].astype(np.float64), nan=1.0)  # behaviour-log clicks
        self.ds.interactions = self.ds.interactions.with_columns(oracle_p=p)
        return self.ds


def load(data: str | Path | None, synth: dict[str, Any] | None = None, scenario: str | None = None,
         strength: float | None = None, world_seed: int | None = None) -> World:
    """A dataset folder (with ``ground_truth.npz`` if it is a written synthetic world), else the
    synthetic world: the scenario's at ``strength`` if ``scenario`` is given, else the default one."""
    if data is not None:
        if scenario is not None:
            raise ConfigError("--scenario plants a mechanism in the synthetic world; it cannot go with --data. "
                              "Fix: write the world with `thawrec data synth --scenario ...` and pass that folder, "
                              "or drop --data")
        ds, name = load_world(data)
        gt_file = Path(data) / "ground_truth.npz"
        gt = load_ground_truth(gt_file) if gt_file.exists() else None
        sc = (ds.meta.get("scenario") if gt is not None else None)
        return World(ds, name, gt, sc)
    if scenario is not None:
        ds, gt = scenario_world(scenario, strength, world_seed or 0, **(synth or {}))
        return World(ds, ds.meta["name"], gt, ds.meta["scenario"])
    if strength is not None:
        raise ConfigError("--strength needs --scenario. Fix: add --scenario poso|mail|dauc")
    from thawrec.data.synthetic import SynthConfig, generate

    ds, gt = generate(SynthConfig(**{"seed": world_seed or 0, **(synth or {})}))
    return World(ds, "synthetic", gt, None)
