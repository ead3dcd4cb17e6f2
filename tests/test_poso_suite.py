"""The POSO suite's plan and report logic (the end-to-end runs are in test_cli.py)."""

from __future__ import annotations

import pytest

from thawrec.errors import ConfigError
from thawrec.suites import poso


def test_plan_trains_the_base_first_and_reuses_the_main_runs_in_ablations():
    plan = {e.name: e for e in poso.model_plan(["baselines", "pc", "mha"])}
    names = list(plan)
    assert names[0] == poso.BASE  # Meta-Embedding builds on the trained base of the same seed
    assert plan["Meta-Embedding"].needs == poso.BASE and plan["Meta-Embedding"].reader == "episodes"
    assert poso.ALL in plan and "POSO(MHA)" in plan  # the AVC / gated_k rows of Tables 6 and 7
    assert "PC: Accumulated View Count" not in plan and not any("G^k*K; V(i); N=4" in n for n in names)
    assert {plan[b].model for b in poso.BASELINES} == {"melu", "meta_embedding", "mwuf"}
    assert all(plan[f"PC: {label}"].cfg["pc"] == pc for label, pc in poso.PC_ABLATION.items() if pc != "avc")
    assert all(e.baseline == poso.BASE for e in plan.values() if e.name != poso.BASE)
    with pytest.raises(ConfigError, match="unknown section"):
        poso.model_plan(["tables"])


def test_plan_entries_name_registered_models_with_options_they_accept():
    """Every plan entry is built through the registry (no string switches) with valid options."""
    from thawrec import registry
    from thawrec.config import resolve_options

    for e in poso.model_plan(list(poso.SECTIONS)):
        if e.floor:  # floors and ceilings are scored, not built
            continue
        cls = registry.get("ranker", e.model)
        resolve_options(cls.__name__, cls.defaults, e.cfg, nested=cls.nested_options)  # raises on a bad key


def test_items_section_needs_the_new_users_protocol(tmp_path):
    with pytest.raises(ConfigError, match="new-users"):
        poso.run(None, tmp_path, [0], sections=["items"], protocol="movielens",
                 synth={"n_users": 200, "n_items": 100, "n_interactions": 3000})


def test_plan_has_a_floor_and_a_ceiling_and_skips_what_the_data_cannot_support():
    from thawrec.suites.common.plan import supported

    plan = poso.model_plan(["main", "baselines"])
    kept, skipped = supported(plan, set())  # real data without attributes or ground truth
    assert set(skipped) == {"Meta-Embedding", "MWUF", poso.ORACLE} and poso.FLOOR in {e.name for e in kept}
    assert "user attributes" in skipped["MWUF"] and "ground truth" in skipped[poso.ORACLE]


def test_undefined_gauc_is_reported_as_na_not_nan():
    """A group where no test user has both classes has no GAUC: the table says n/a, never nan."""
    from thawrec.eval.report import gains_table

    nan = float("nan")
    rows = [{"model": poso.BASE, "task": "favorite", "group": "new items", "metric": "gauc", "mean": nan, "std": nan,
             "baseline": None},
            {"model": "X", "task": "favorite", "group": "new items", "metric": "gauc", "mean": nan, "std": nan,
             "baseline": poso.BASE, "delta": None, "p_value": None, "mde": None}]
    table = gains_table(rows, "new items", [("favorite", "gauc")], [poso.BASE, "X"])
    assert "nan" not in table and table.count("n/a") == 2
