"""Scenario worlds plant one paper's mechanism with a strength knob; strength 0 is the null world:
same sizes and draws, mechanism off."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from thawrec.data.scenarios import LIFECYCLE_EVENTS, SCENARIOS, scenario_config, scenario_world
from thawrec.errors import ConfigError

SMALL = {"poso": dict(n_users=1500, n_interactions=150_000), "mail": dict(n_users=2000, n_interactions=60_000),
         "dauc": dict(n_users=1500, n_interactions=60_000)}


def world(name, strength, seed=0):
    return scenario_world(name, strength, seed, **SMALL[name])


def test_poso_null_world_differs_only_in_early_life_clicks():
    (d0, g0), (d1, g1) = world("poso", 0.0), world("poso", 1.0)
    a, b = d0.interactions, d1.interactions
    assert a.select("user_id", "item_id", "ts").equals(b.select("user_id", "item_id", "ts"))
    early = g0["interaction_early_life"]
    assert np.array_equal(early, g1["interaction_early_life"])
    p0, p1 = g0["interaction_click_prob"], g1["interaction_click_prob"]
    assert np.allclose(p0[~early], p1[~early]) and not np.allclose(p0[early], p1[early])
    assert np.array_equal(a["label"].to_numpy()[~early], b["label"].to_numpy()[~early])
    assert (g1["interaction_rank_in_user"][early] < LIFECYCLE_EVENTS).all()


def test_poso_early_life_is_a_small_share_of_tens_of_thousands_of_rows():
    _, gt = scenario_world("poso")  # the default size
    early = gt["interaction_early_life"]
    assert 0.02 <= early.mean() <= 0.05 and early.sum() > 20_000
    join = gt["user_join_ts"]
    assert np.std(join) > 0.25 * (join.max() - join.min())  # users join throughout, not as a late cohort


def test_poso_early_clicks_follow_the_newcomer_taste_not_the_users():
    ds, gt = world("poso", 1.0)
    early = gt["interaction_early_life"]
    topic = gt["item_topic"][ds.interactions["item_id"].to_numpy()]
    y = ds.interactions["label"].to_numpy()
    liked = gt["newcomer_topic_liked"][topic]
    assert y[early & liked].mean() > y[early & ~liked].mean() + 0.1
    # the user's own (group) taste predicts established clicks, not early ones: the ranking changes
    u = ds.interactions["user_id"].to_numpy()
    own = gt["group_topic_affinity"][gt["user_group"][u], topic]
    corr = lambda m: np.corrcoef(own[m], y[m])[0, 1]  # noqa: E731
    assert corr(~early) > 0.15 and abs(corr(early)) < 0.1


def test_mail_behaviour_is_a_separate_earlier_log_and_new_users_have_no_training_rows():
    ds, gt = world("mail", 0.8)
    inter = ds.interactions
    start = ds.meta["labelled_log_start_ts"]
    before = inter.filter(pl.col("ts") < start)
    assert before.height > 0 and (before["label"] == 1).all()
    new = gt["user_is_new"]
    assert not new[before["user_id"].to_numpy()].any()  # new users have no behaviour log
    labelled = inter.filter(pl.col("ts") >= start)
    cut = start + (1 - 3 / 16) * (labelled["ts"].max() - start)
    assert not new[labelled.filter(pl.col("ts") < cut)["user_id"].to_numpy()].any()
    assert new[labelled["user_id"].to_numpy()].any()
    assert len(gt["hidden_behaviour_user"]) > 0 and new[gt["hidden_behaviour_user"]].all()


@pytest.mark.parametrize("strength, informative", [(0.0, False), (1.0, True)])
def test_mail_strength_sets_how_much_attributes_reveal_the_group(strength, informative):
    ds, gt = world("mail", strength)
    users = ds.users.sort("user_id")
    x = np.eye(40)[np.minimum(users.select("age_bucket", "gender", "occupation", "city").to_numpy(), 39)].reshape(len(users), -1)
    acc = cross_val_score(LogisticRegression(max_iter=500), x, gt["user_group"], cv=3).mean()
    chance = np.bincount(gt["user_group"]).max() / len(users)
    assert (acc > chance + 0.2) if informative else (acc < chance + 0.05)


@pytest.mark.parametrize("strength", [0.0, 0.6])
def test_dauc_nuisance_makes_the_apps_reveal_the_phone_brand(strength):
    ds, gt = world("dauc", strength)
    apps = ds.users.sort("user_id")["apps"].to_list()
    x = np.zeros((len(apps), 501))
    for i, a in enumerate(apps):  # a test: small, readable
        x[i, a] = 1
    group_acc = cross_val_score(LogisticRegression(max_iter=300), x, gt["user_group"], cv=3).mean()
    if strength == 0:
        assert "user_brand" not in gt and group_acc > 0.8
    else:
        brand_acc = cross_val_score(LogisticRegression(max_iter=300), x, gt["user_brand"], cv=3).mean()
        assert brand_acc > 0.8  # the nuisance is a strong structure in the side view
    assert gt["user_is_light"].any() and ds.meta["synthetic"]["cold_shift_by"] == "activity"


def test_scenario_options_are_checked_and_recorded(tmp_path):
    with pytest.raises(ConfigError, match="outside"):
        scenario_config("poso", 1.5)
    with pytest.raises(ConfigError, match="unknown scenario"):
        scenario_config("nope")
    with pytest.raises(ConfigError, match="unknown synthetic-world option"):
        scenario_config("poso", n_userz=3)
    ds, _ = world("dauc", 0.0, seed=3)
    assert ds.meta["scenario"] == {"name": "dauc", "strength": 0.0, "world_seed": 3}
    assert set(SCENARIOS) == {"poso", "mail", "dauc", "uie"}


def test_cli_writes_a_scenario_world_with_its_ground_truth(tmp_path):
    from typer.testing import CliRunner

    from thawrec.cli import app
    from thawrec.data.schema import read_dataset
    from thawrec.data.synthetic import load_ground_truth

    res = CliRunner().invoke(app, ["data", "synth", "--scenario", "mail", "--strength", "0", "--seed", "2",
                                   "--users", "500", "--interactions", "20000", "--out", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    ds = read_dataset(tmp_path / "w")
    assert ds.meta["scenario"]["name"] == "mail" and "hidden_behaviour_user" in load_ground_truth(tmp_path / "w")
