"""DAUC's offline protocol (Sec. 4, App. A): the worlds and their paper-style settings, the
70/10/20 temporal split, both user views from the training period, the simulated cold start on
ML-100K, and the replay of the validation / test period by cluster CTR (:mod:`thawrec.eval.replay`).

Worlds: the synthetic world (side view = planted app usage; every item is a target; 100 clusters,
K = 50: "industrial-like"), the Taobao display/click proxy (items <= 160 RMB vs dearer, App. A.1
filters; 20 / 20: "Taobao-like"), and an ML-100K proxy (Drama movies are the target domain, the
clicks on other movies the side view; 20 / 20). ML-100K users almost all have > 3 Drama clicks,
so ``cold_frac`` of the users (default 0.3 there) have their *target-domain* training rows
removed: they keep the side view and become the cold-start users (as MAIL makes users new).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from thawrec.data.schema import Dataset
from thawrec.data.splits import temporal_split
from thawrec.data.views import DomainSplit, UserViews, ViewsInfo, apps_split, build_views, genre_split, price_split
from thawrec.suites.common.world import World
from thawrec.eval.replay import ReplayResult, replay_evaluate

log = logging.getLogger(__name__)


@dataclass
class Setting:
    """A world's paper-style DAUC settings: the domain split, clusters, K, the replay window
    (None: the replay's default, 7 days), the share of users made cold by hiding their target
    rows (real data), the Profile attributes, the view filters, and the planted groups (synthetic)."""

    name: str
    ds: Dataset
    split: DomainSplit
    n_clusters: int
    k: int
    window: int | None
    cold_frac: float
    profile: list[str]
    filters: dict[str, int]
    truth: np.ndarray | None = None
    taste: np.ndarray | None = None  # planted topic affinity per user id (synthetic worlds)


def make_setting(world: World, n_clusters: int | None, k: int | None, window: int | None,
                 cold_frac: float | None) -> Setting:
    """The dataset and its paper-style settings (each overridable)."""
    ds = world.ds
    if world.synthetic and "apps" in ds.users.columns:
        w = Setting(world.name, ds, apps_split(ds), 100, 50, None, 0.0,
                    [c for c in ("age_bucket", "gender", "city") if c in ds.users.columns], {},
                    np.asarray(world.gt["user_group"]))
    elif "price" in ds.items.columns:
        w = Setting(world.name, ds, price_split(ds), 20, 20, None, 0.0,
                    [c for c in ("gender", "age_level", "city_level") if c in ds.users.columns],
                    {"min_side_item_clicks": 50, "min_user_side_clicks": 50})
    else:
        ds = _with_age_buckets(ds)
        w = Setting(world.name, ds, genre_split(ds), 20, 20, None, 0.3,
                    [c for c in ("gender", "age_bucket", "occupation") if c in ds.users.columns],
                    {"min_side_item_clicks": 5, "min_user_side_clicks": 3})
    w.n_clusters = n_clusters or w.n_clusters
    w.k = k or w.k
    w.window = window or w.window
    w.cold_frac = w.cold_frac if cold_frac is None else cold_frac
    return w


def _with_age_buckets(ds: Dataset) -> Dataset:
    """MovieLens ages as the 7 buckets of ML-1M (under 18, 18-24, ..., 56+) for Profile."""
    if "age" not in ds.users.columns or "age_bucket" in ds.users.columns:
        return ds
    edges = [18, 25, 35, 45, 50, 56]
    ds.users = ds.users.with_columns(
        age_bucket=pl.col("age").cut(edges, labels=[str(i) for i in range(1, 8)], left_closed=True)
        .cast(pl.Utf8).cast(pl.Int64).fill_null(0))
    return ds


def _hide_target_history(train: pl.DataFrame, target: np.ndarray, users: np.ndarray, frac: float,
                         seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Remove the target-domain training rows of a random ``frac`` of ``users`` (they keep their
    side view): simulated cold-start users. Returns the new train frame and the chosen users."""
    if frac <= 0:
        return train, np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(users, size=int(round(frac * len(users))), replace=False)
    is_target = pl.Series(target)[train["item_id"]].to_numpy() if len(train) else np.zeros(0, bool)
    drop = is_target & np.isin(train["user_id"].to_numpy(), chosen)
    return train.filter(pl.Series(~drop)), np.sort(chosen)


@dataclass
class Prepared:
    """One seed's data: the setting, its training frame (cold users' target rows hidden), both
    views and the replay inputs: target-domain rows of the users in the study per period, and who
    is cold; ``replay``: the replay's options (CTR estimator, window, ...)."""

    setting: Setting
    train: pl.DataFrame
    test_rows: int
    hidden: np.ndarray
    views: UserViews
    vinfo: ViewsInfo
    in_study: np.ndarray
    cold: np.ndarray
    periods: dict[str, pl.DataFrame]
    test_in_target: int
    replay: dict[str, Any]

    @property
    def taste(self) -> np.ndarray:
        if self.setting.taste is None:
            raise ValueError("no planted tastes: only synthetic worlds have them")
        return self.setting.taste

    def evaluate(self, labels: np.ndarray, on: str = "test") -> ReplayResult:
        """Replay Recall/NDCG@K of a clustering (one label per user of the views) on the
        validation period (history = train) or the test period (history = train + validation)."""
        w = self.setting
        cl = np.full(len(self.in_study), -1, np.int64)
        cl[self.views.user_ids] = labels
        opts = {**self.replay, **({"window": w.window} if w.window else {})}
        replay = dict(k=w.k, n_slices=10, cold_users=self.cold, n_clusters=int(labels.max()) + 1, **opts)
        tr, va, te = self.periods["train"], self.periods["valid"], self.periods["test"]
        if on == "valid":
            return replay_evaluate(tr, va, cl, **replay)
        return replay_evaluate(pl.concat([tr, va]), te, cl, **replay)

    def facts(self) -> dict[str, Any]:
        v = self.views
        return {"users_kept": int(v.n_users), "cold_users": int((~v.active).sum()),
                "hidden_target_users": int(len(self.hidden)), "test_rows_target": int(len(self.periods["test"])),
                "test_rows": self.test_rows,
                "test_rows_target_users_filtered": self.test_in_target - int(len(self.periods["test"]))}


def prepare(w: Setting, seed: int, replay: dict[str, Any]) -> Prepared:
    """One seed: the 70/10/20 split, the cold users made by hiding target rows (seed = run seed),
    both views from the training period, and the replay's periods."""
    parts = temporal_split(w.ds.interactions, valid_frac=0.1, test_frac=0.2, mark_new=False)
    kept_users = w.ds.users["user_id"].to_numpy()
    train, hidden = _hide_target_history(parts.train, w.split.target, kept_users, w.cold_frac, seed=seed)
    views, vinfo = build_views(w.ds, train, w.split, profile_fields=w.profile, truth=w.truth, **w.filters)
    in_study = np.zeros(int(w.ds.users["user_id"].max()) + 1, bool)
    in_study[views.user_ids] = True
    target = pl.Series(w.split.target)
    study = pl.Series(in_study)

    def target_rows(f: pl.DataFrame) -> pl.DataFrame:  # the replay recommends target items to kept users
        return f.filter(target[f["item_id"]] & study[f["user_id"]])

    periods = {"train": target_rows(train), "valid": target_rows(parts.valid), "test": target_rows(parts.test)}
    test_in_target = int(target[parts.test["item_id"]].sum())
    log.info("replay test rows: %d of %d are target-domain items; %d of those belong to users outside the study "
             "(filtered from the views) and are not scored", test_in_target, parts.test.height,
             test_in_target - len(periods["test"]))
    cold = np.zeros_like(in_study)
    cold[views.user_ids[~views.active]] = True  # <= 3 target clicks in training
    return Prepared(w, train, parts.test.height, hidden, views, vinfo, in_study, cold, periods, test_in_target,
                    dict(replay))


def describe(p: Prepared) -> str:
    w, r = p.setting, p.replay
    ctr = ("plain CTR (paper-literal)" if r.get("ctr") == "plain" else
           f"CTR shrunk towards the item's global CTR ({r.get('prior_strength')} pseudo-exposures, >= "
           f"{r.get('min_exposures')} exposures in the cluster)" if r.get("ctr") == "global" else f"CTR ({r})")
    window = f"{w.window // 3600} h" if w.window else "7-day"
    extra = ("; windows extended to >= %d events, short lists backfilled from the global ranking"
             % r["min_window_events"] if r.get("min_window_events") and r.get("backfill") else "")
    return (f"DAUC Sec. 4.3: 70/10/20 temporal split; {p.vinfo.description}; {w.n_clusters} clusters; replay in "
            f"10 test slices by {ctr} over a {window} window{extra}, exposed items filtered; Recall@{w.k} / "
            f"NDCG@{w.k}; cold-start = <= 3 target clicks in training")
