"""The `uie` scenario world and `thawrec bench uie`: the null world differs from the planted one
only in which low-active users click by their cluster's taste; the watch-time column exists under
the scenario only; the low-active definition (~32%) reads the training period only; the suite
writes results.json / report.md with the low-active, high-active and tail groups, the floor and
the ceiling, MDEs, Fig. 3 and the diversity stand-in; the CLI runs it on a scenario world."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from thawrec.cli import app
from thawrec.data.scenarios import scenario_world
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.suites import uie
from thawrec.suites.common.world import load
from thawrec.suites.uie import plan as uie_plan
from thawrec.suites.uie.protocol import prepare, prepare_world, tail_items, user_activity

TINY = {"n_users": 300, "n_items": 300, "n_interactions": 9000}
SMALL_MODEL = {"embedding_dim": 8, "expert_hidden": [16], "tower_hidden": [8]}
SMALL_UIE = {"aux": {"hidden": [16], "dim": 8}, "memory": {"n_user": 16, "n_item": 16, "n_tail": 16,
                                                           "generalization": [8]}}


def test_null_world_differs_only_in_whose_clicks_follow_the_cluster():
    (d0, g0), (d1, g1) = (scenario_world("uie", s, 3, **TINY) for s in (0.0, 1.0))
    a, b = d0.interactions, d1.interactions
    assert a.height == b.height == TINY["n_interactions"]
    assert a.select("user_id", "item_id", "ts", "hour").equals(b.select("user_id", "item_id", "ts", "hour"))
    assert d0.users.equals(d1.users) and d0.items.equals(d1.items)  # same (sparse) profiles, same items
    low = g0["user_is_low_active"]
    assert np.array_equal(low, g1["user_is_low_active"]) and abs(low.mean() - 0.32) < 0.01
    assert g1["user_follows_group_taste"].all() and not g0["user_follows_group_taste"][low].any()
    mech = low[a["user_id"].to_numpy()]  # rows of low-active users: the only ones the strength touches
    p0, p1 = g0["interaction_click_prob"], g1["interaction_click_prob"]
    assert np.array_equal(p0[~mech], p1[~mech]) and not np.allclose(p0[mech], p1[mech])
    for col in ("label", "watch_time"):
        assert np.array_equal(a[col].to_numpy()[~mech], b[col].to_numpy()[~mech])
    # low-active users: fewer events, and most attributes unknown
    attrs = d0.users.sort("user_id").select("age_bucket", "gender", "occupation", "city").to_numpy()
    assert (attrs[low] > 0).mean() < 0.6 * (attrs[~low] > 0).mean()
    assert g0["user_activity"][low].max() <= g0["user_activity"][~low].min()


def test_watch_time_only_under_the_scenario_and_a_valid_consumption_is_over_10_seconds():
    ds, _ = generate(SynthConfig(**TINY))
    assert "watch_time" not in ds.interactions.columns and "user_is_low_active" not in generate(SynthConfig(**TINY))[1]
    assert "watch_time" not in scenario_world("poso", 0.8, 0, n_users=300, n_interactions=9000)[0].interactions.columns
    inter, gt = scenario_world("uie", None, 0, **TINY)
    w, y = inter.interactions["watch_time"].to_numpy(), inter.interactions["label"].to_numpy()
    assert ((w > 10) == (y == 1)).all()
    # longer the more the user likes the topic
    u, i = inter.interactions["user_id"].to_numpy(), inter.interactions["item_id"].to_numpy()
    aff = gt["user_topic_affinity"][u, gt["item_topic"][i]]
    assert np.corrcoef(aff[y == 1], np.log(w[y == 1] - 10))[0, 1] > 0.3
    assert inter.meta["scenario"] == {"name": "uie", "strength": 0.8, "world_seed": 0}


def test_low_active_share_and_training_period_only():
    world = load(None, TINY, "uie", 0.8, 0)
    tasks = prepare_world(world)
    assert tasks.regression == ("watch_time",)
    ctx = prepare(world, tasks, 0, 20, 0.32, 0.1, None)
    info = ctx.split.info
    assert abs(info["low_active_share"] - 0.32) < 0.01 and info["consumptions_low_vs_high"] < 0.6
    assert info["planted_low_active_precision"] > 0.5  # the definition finds the planted sparse users
    cut = info["cut_test_ts"]
    # rewrite the test period (labels, extra consumptions): the definition does not move
    inter = world.ds.interactions
    later = pl.col("ts") >= cut
    flipped = inter.with_columns(label=pl.when(later).then(1 - pl.col("label")).otherwise(pl.col("label")))
    period = flipped.filter(pl.col("ts") < cut)
    world.ds.interactions = flipped
    again = user_activity(world.ds, period)
    assert np.array_equal(again["low"], ctx.users["low"])
    # and the rows' active type follows the users'
    test = ctx.cols["test"]
    low_users = set(ctx.users["users"][ctx.users["low"]].tolist())
    assert all((u in low_users) == bool(t) for u, t in zip(test["_user"][:200], test["_active_type"][:200]))


def test_tail_items_hold_at_most_the_tail_share_of_exposures():
    frame = pl.DataFrame({"item_id": np.repeat(np.arange(10), [50, 30, 10, 4, 3, 2, 1, 0, 0, 0])})
    tail, threshold = tail_items(frame, 10, 0.10)
    assert threshold == 10 and tail.tolist() == [False, False, False] + [True] * 7
    held = np.bincount(frame["item_id"].to_numpy(), minlength=10)[tail].sum() / frame.height
    assert held <= 0.10


def test_plan_entries_build_with_the_papers_values_and_unregistered_baselines_are_skipped():
    from thawrec import registry
    from thawrec.config import resolve_options

    entries = uie_plan.model_plan(["main", "baselines", "fig3"], ["label", "watch_time"], ["watch_time"],
                                  ["hist_items", "hist_cats"])
    by = {e.name: e for e in entries}
    assert list(by)[0] == uie_plan.PLE and by[uie_plan.TIE].baseline == uie_plan.UIE
    m = by[uie_plan.UIE].cfg["memory"]
    assert (m["n_user"], m["n_item"], m["k1"], m["k2"], m["rho"], m["eta"], m["personal_dim"]) == (256, 256, 3, 3, 0.01,
                                                                                                     0.05, 4)
    assert by[uie_plan.UIE].cfg["aux"]["dim"] == 36 and by[uie_plan.UIE].cfg["sequence_fields"] == ["hist_items",
                                                                                                    "hist_cats"]
    assert by[uie_plan.UIE].cfg["sampling"]["active_type"] == "_active_type"
    assert by[uie_plan.CL].cfg["low_active"] == by[uie_plan.TL].cfg["low_active"] == {"column": "_active_type",
                                                                                     "at_most": None}
    assert {by[uie_plan.fig3_name(n)].cfg["memory"]["n_user"] for n in uie_plan.FIG3_N} == set(uie_plan.FIG3_N)
    have = registry.names("ranker")
    for e in entries:
        if e.model is not None and e.model in have:
            cls = registry.get("ranker", e.model)
            resolve_options(cls.__name__, cls.defaults, e.cfg, nested=cls.nested_options)
    kept, skipped = uie_plan.registered(entries, ["ple", "uie"])
    assert set(skipped) == {uie_plan.CL, uie_plan.TL} and "not registered" in skipped[uie_plan.CL]
    assert uie_plan.FLOOR in {e.name for e in kept}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uie")
    payload = uie.run(None, out, [0], train={"epochs": 1, "batch_size": 256}, model=SMALL_MODEL, uie=SMALL_UIE,
                      history_len=12, sections=["main", "baselines", "fig3"], synth=TINY, scenario="uie",
                      diversity_users=40, diversity_candidates=30)
    return out, payload


def test_suite_writes_results_with_groups_floor_ceiling_and_mde(suite_run):
    out, payload = suite_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["groups"] == ["low-active", "high-active", "tail"] and saved["suite"] == "uie"
    assert set(saved["test_counts"]["0"]) == {"low-active", "high-active", "tail"}
    by = {(r["model"], r["group"], r["metric"]): r for r in saved["rows"] if r["task"] == "label"}
    for g in ("low-active", "high-active", "tail"):
        for m in (uie_plan.PLE, uie_plan.UPE, uie_plan.UIE, uie_plan.FLOOR, uie_plan.ORACLE):
            assert (m, g, "auc") in by
        assert by[(uie_plan.ORACLE, g, "auc")]["mean"] > 0.65 and "mde" in by[(uie_plan.UPE, g, "auc")]
        assert by[(uie_plan.UPE, g, "auc")]["mde"] is not None and by[(uie_plan.UPE, g, "auc")]["baseline"] == "PLE"
    tie = by[(uie_plan.TIE, "tail", "auc")]
    assert tie["baseline"] == uie_plan.UIE and tie["delta"] is not None
    assert (uie_plan.UIE, "low-active", "categories@10") in by and (uie_plan.FLOOR, "high-active", "tags@10") in by
    assert saved["tasks"]["regression"] == ["watch_time"] and saved["split"]["0"]["tail_threshold_exposures"] >= 1
    if {"ple_cl", "ple_tl"} <= set(__import__("thawrec.registry", fromlist=["names"]).names("ranker")):
        assert (uie_plan.CL, "low-active", "auc") in by and (uie_plan.TL, "low-active", "auc") in by
    assert saved["fig3"]["N"] == list(uie_plan.FIG3_N) and (out / "fig3_auc_vs_n.png").stat().st_size > 1000
    text = (out / "report.md").read_text()
    for needle in ("Table 2 style", "Table 3 style", "Table 5 style", "Table 4 stand-in", "Fig. 3 style", "MDE pp",
                   "| Popularity (floor) |", "| Oracle (planted click model) |", "### low-active users"):
        assert needle in text, needle


def test_cli_bench_uie_on_the_scenario_world(tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["bench", "uie", "--scenario", "uie", "--strength", "0", "--world-seed", "2",
                                   "--seeds", "1", "--epochs", "1", "--synth-users", "300", "--synth-interactions",
                                   "6000", "--models", "PLE with UPE", "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["world"]["scenario"] == {"name": "uie", "strength": 0.0, "world_seed": 2}
    assert {r["model"] for r in saved["rows"]} == {uie_plan.PLE, uie_plan.UPE, uie_plan.FLOOR, uie_plan.ORACLE}
    assert saved["plan"][uie_plan.UPE]["memory"]["n_user"] == 256  # the paper's values by default
    assert "Table 3 style" in (out / "report.md").read_text()


def test_real_ratings_log_gets_a_second_binary_task_and_no_ceiling(ml100k_mini_dir, tmp_path):
    """On a ratings log without watch time (the ML-100K look-alike): second task favorite (rating
    = 5), the oracle is skipped with a note, the groups are still defined on the training period."""
    payload = uie.run(ml100k_mini_dir, tmp_path / "ml", [0], train={"epochs": 1, "batch_size": 256},
                      model=SMALL_MODEL, uie=SMALL_UIE, history_len=12, variants=[uie_plan.UPE],
                      diversity_users=20, diversity_candidates=30)
    assert payload["tasks"] == {"binary": ["label", "favorite"], "regression": [],
                                "source": "no watch time in the data: second task favorite (rating = 5)"}
    assert uie_plan.ORACLE in payload["skipped"] and uie_plan.FLOOR in {r["model"] for r in payload["rows"]}
    assert abs(payload["split"]["0"]["low_active_share"] - 0.32) < 0.02
    assert "ground truth" in (tmp_path / "ml" / "report.md").read_text()
