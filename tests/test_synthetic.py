"""The synthetic world: determinism, schema validity, and every planted structure is really there."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from thawrec.data.schema import read_dataset, validate_dataset
from thawrec.data.synthetic import ATTRS, SynthConfig, generate, load_ground_truth, write_world
from thawrec.errors import ConfigError, DataError

CFG = SynthConfig()


@pytest.fixture(scope="module")
def world():
    return generate(CFG)


def _ctr_by(mask_rows: np.ndarray, label: np.ndarray) -> float:
    return float(label[mask_rows].mean())


def test_deterministic_and_seed_sensitive(world):
    ds, gt = world
    ds2, gt2 = generate(SynthConfig())
    for name in ("interactions", "users", "items"):
        assert getattr(ds, name).equals(getattr(ds2, name)), name
    assert np.array_equal(gt["user_group"], gt2["user_group"])
    ds3, _ = generate(SynthConfig(seed=1))
    assert not ds3.interactions.equals(ds.interactions)


def test_schema_roundtrip_and_ground_truth_files(tmp_path, world):
    cfg = SynthConfig(n_users=800, n_items=400, n_interactions=20_000, seed=3)
    out = write_world(cfg, tmp_path / "w")
    ds = read_dataset(out)  # validates
    mem, gt_mem = generate(cfg)
    assert ds.interactions.equals(mem.interactions)
    assert ds.users.equals(mem.users) and ds.items.equals(mem.items)
    assert ds.meta["synthetic"]["seed"] == 3 and ds.meta["synthetic"]["n_users"] == 800
    assert ds.meta["n_interactions"] == 20_000
    gt = load_ground_truth(out)
    for k in ("user_group", "user_is_new", "user_activity", "item_topic", "item_domain", "item_popularity",
              "group_topic_affinity", "group_app_dist", "interaction_click_prob"):
        assert np.array_equal(gt[k], gt_mem[k]), k
    summary = json.loads((out / "ground_truth.json").read_text())
    assert summary["n_interactions"] == 20_000 and 0 < summary["ctr_all"] < 1
    fm = json.loads((out / "feature_map.json").read_text())
    assert {f["name"] for f in fm["features"]} >= {"user_id", "apps", "tags", "hour", "city"}
    with pytest.raises(DataError):
        load_ground_truth(tmp_path)


def test_exact_size_dtypes_and_ranges(world):
    ds, gt = world
    inter = ds.interactions
    validate_dataset(ds)
    assert inter.height == CFG.n_interactions  # exact, not approximate
    assert ds.users.height == CFG.n_users and ds.items.height == CFG.n_items
    assert inter.schema["label"] == pl.Int8 and inter.schema["domain"] == pl.Int32
    ts = inter["ts"].to_numpy()
    assert (np.diff(ts) >= 0).all(), "rows are sorted by ts"
    assert ts.min() >= CFG.t_start and ts.max() < CFG.t_start + CFG.t_span_days * 86400
    hour = inter["hour"].to_numpy()
    assert hour.min() >= 1 and hour.max() <= 24 and np.array_equal(hour, (ts // 3600) % 24 + 1)
    assert set(np.unique(inter["rating"].to_numpy())) == {1.0, 2.0, 3.0, 4.0, 5.0}
    key = inter["user_id"].to_numpy() * CFG.n_items + inter["item_id"].to_numpy()
    assert len(np.unique(key)) == inter.height, "(user, item) pairs are unique"
    assert ds.meta["filtered"]["duplicate_pairs_kept"] == 0
    act = np.bincount(inter["user_id"].to_numpy(), minlength=CFG.n_users)
    assert np.array_equal(act, gt["user_activity"]) and act.min() >= 1
    dom = gt["item_domain"][inter["item_id"].to_numpy()]
    assert np.array_equal(inter["domain"].to_numpy(), dom)


def test_long_tailed_activity(world):
    _, gt = world
    act = gt["user_activity"]
    assert (act <= 5).mean() > 0.2
    assert act.max() >= 20 * np.median(act)
    assert act.max() >= 200  # a few users with hundreds


def test_power_law_popularity(world):
    ds, gt = world
    counts = np.bincount(ds.interactions["item_id"].to_numpy(), minlength=CFG.n_items)
    top = np.sort(counts)[::-1][: CFG.n_items // 10].sum() / counts.sum()
    assert top > 0.4, top
    # interaction counts follow the planted popularity (rank correlation)
    r = np.corrcoef(np.argsort(np.argsort(counts)), np.argsort(np.argsort(gt["item_popularity"])))[0, 1]
    assert r > 0.6, r
    assert (counts == 0).mean() < 0.5  # a tail, not a void


def test_new_users_are_late_and_different(world):
    ds, gt = world
    inter = ds.interactions
    u, ts, lab = inter["user_id"].to_numpy(), inter["ts"].to_numpy(), inter["label"].to_numpy()
    first = np.full(CFG.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first, u, ts)
    w_start = CFG.t_start + (1 - CFG.new_user_window) * CFG.t_span_days * 86400
    new = gt["user_is_new"]
    assert abs(new.mean() - CFG.new_user_frac) < 0.02
    assert (first[new] >= w_start).all() and (first[~new] < w_start).all()
    assert ds.meta["new_user_window_start_ts"] == int(round(w_start))
    # regular users' events span the whole range
    assert ts[~new[u]].min() < CFG.t_start + 86400 and ts[~new[u]].max() > w_start + 86400
    ctr_new, ctr_reg = _ctr_by(new[u], lab), _ctr_by(~new[u], lab)
    assert ctr_reg - ctr_new > 0.05, (ctr_new, ctr_reg)
    assert 0.1 < lab.mean() < 0.5


def test_preferences_drive_clicks_and_ratings(world):
    ds, gt = world
    inter = ds.interactions
    u, it, lab = inter["user_id"].to_numpy(), inter["item_id"].to_numpy(), inter["label"].to_numpy()
    liked = gt["group_topic_liked"][gt["user_group"][u], gt["item_topic"][it]]
    reg = ~gt["user_is_new"][u]
    assert _ctr_by(reg & liked, lab) > _ctr_by(reg & ~liked, lab) + 0.15
    n_liked = gt["group_topic_liked"].sum(axis=1)
    assert n_liked.min() >= 2 and n_liked.max() <= 3
    # exposures favour liked topics beyond their share of items
    assert liked[reg].mean() > 1.5 * n_liked.mean() / CFG.n_topics
    rating = inter["rating"].to_numpy()
    assert rating[lab == 1].mean() > rating[lab == 0].mean() + 0.5
    assert (lab == 0).mean() > 0.4, "non-clicked exposures are real rows"
    # the oracle click probability ranks clicks well above chance
    p = gt["interaction_click_prob"]
    assert p[lab == 1].mean() > p[lab == 0].mean() + 0.1


def test_attributes_predict_group_but_not_perfectly(world):
    ds, gt = world
    X = ds.users.select(list(ATTRS)).to_numpy()
    y = gt["user_group"]
    assert 0.01 < (X == 0).mean() < 0.06, "a few percent missing"
    assert X.min() >= 0 and (X[:, ATTRS.index("gender")] <= CFG.n_genders).all()
    Xo = OneHotEncoder(handle_unknown="ignore").fit_transform(X)
    n = 4000
    clf = LogisticRegression(max_iter=300).fit(Xo[:n], y[:n])
    acc = clf.score(Xo[n:], y[n:])
    majority = np.bincount(y[n:]).max() / len(y[n:])
    assert acc > max(2.5 / CFG.n_groups, majority + 0.15) and acc < 0.97, (acc, majority)


def _app_matrix(ds) -> sparse.csr_matrix:
    apps = ds.users["apps"]
    lens = apps.list.len().to_numpy()
    vals = apps.explode().to_numpy()
    rows = np.repeat(np.arange(len(lens)), lens)
    return sparse.csr_matrix((np.ones(len(vals)), (rows, vals)), shape=(len(lens), CFG.n_apps + 1))


def test_apps_shift_between_active_and_cold_but_identify_group(world):
    ds, gt = world
    M = _app_matrix(ds)
    lens = np.asarray(M.sum(axis=1)).ravel()
    assert abs(lens.mean() - CFG.apps_per_user) < 1.0
    assert M.max() == 1, "apps of a user are distinct"
    cold, grp = gt["user_is_cold"], gt["user_group"]
    assert np.array_equal(cold, gt["user_clicks"] <= CFG.cold_click_threshold)
    rng = np.random.default_rng(0)
    shift, noise = [], []
    for g in range(CFG.n_groups):
        act_g, cold_g = np.flatnonzero((grp == g) & ~cold), np.flatnonzero((grp == g) & cold)
        if min(len(act_g), len(cold_g)) < 60:
            continue
        k = min(len(cold_g), len(act_g) // 2)
        perm = rng.permutation(act_g)

        def hist(idx):
            h = np.asarray(M[idx].sum(axis=0)).ravel()
            return h / h.sum()

        shift.append(0.5 * np.abs(hist(perm[:k]) - hist(cold_g[:k])).sum())
        noise.append(0.5 * np.abs(hist(perm[:k]) - hist(perm[k : 2 * k])).sum())
    assert len(shift) >= 3
    assert np.mean(shift) > np.mean(noise) + 0.08, (shift, noise)
    n = 4000
    acc = LogisticRegression(max_iter=300).fit(M[:n], grp[:n]).score(M[n:], grp[n:])
    assert acc > 0.8, acc


def test_two_domains_share_the_tag_vocabulary(world):
    ds, gt = world
    items = ds.items
    dom = items["domain"].to_numpy()
    assert abs(dom.mean() - CFG.domain2_frac) < 0.05
    tags = items["tags"]
    lens = tags.list.len().to_numpy()
    assert lens.min() >= 1 and lens.max() <= 4
    assert (tags.list.n_unique() == tags.list.len()).all()
    flat = tags.explode().to_numpy()
    owner_dom = np.repeat(dom, lens)
    t0, t1 = set(flat[owner_dom == 0]), set(flat[owner_dom == 1])
    assert len(t0 & t1) / len(t0 | t1) > 0.8
    assert max(flat) <= CFG.n_tags and min(flat) >= 1
    # tags follow the topic, not the domain: same topic, close tag histograms across domains
    topic = np.repeat(gt["item_topic"], lens)
    tvd = []
    for t in range(CFG.n_topics):
        h = [np.bincount(flat[(topic == t) & (owner_dom == d)], minlength=CFG.n_tags + 1) for d in (0, 1)]
        if min(h[0].sum(), h[1].sum()) >= 80:
            tvd.append(0.5 * np.abs(h[0] / h[0].sum() - h[1] / h[1].sum()).sum())
            other = np.bincount(flat[(topic == (t + 1) % CFG.n_topics) & (owner_dom == 1)], minlength=CFG.n_tags + 1)
            assert 0.5 * np.abs(h[0] / h[0].sum() - other / max(other.sum(), 1)).sum() > tvd[-1]
    assert tvd and np.mean(tvd) < 0.25
    # users interact in both domains
    inter_dom = ds.interactions["domain"].to_numpy()
    assert 0.1 < inter_dom.mean() < 0.6
    assert np.array_equal(items["category"].to_numpy(), gt["item_topic"] + 1)


@pytest.mark.parametrize("bad", [
    dict(n_items=5), dict(new_user_frac=1.5), dict(n_interactions=10), dict(new_user_window=1.0),
    dict(rating_shares=(0.5, 0.5, 0.5, 0.0, 0.0)), dict(n_interactions=10**9),
])
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        generate(SynthConfig(**bad))
