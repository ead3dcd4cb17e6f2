"""The planted-structure synthetic cold-start world.

Why: every cold-start paper thawrec reproduces needs a mechanism to exploit, and tests need ground
truth to check that a model (or a split) found it. Real datasets give neither on a laptop in
seconds. This module draws a seeded world, with numpy only and no Python loop over users, items or
rows, and returns a canonical :class:`~thawrec.data.schema.Dataset` plus ground-truth arrays.

Planted structure (what each paper can find)
- Users belong to latent interest groups (unequal shares). Attributes ``age_bucket``, ``gender``,
  ``occupation``, ``city`` are drawn from group-specific distributions, replaced by a uniform draw
  with probability ``attr_noise`` and missing (code 0) with probability ``attr_missing`` -> they
  predict the group well above chance but not perfectly (MAIL).
- Items have a topic (``category = topic + 1``), 1..4 tags drawn without replacement from a
  topic-specific distribution over ONE tag vocabulary shared by both domains (COUPLE), a domain
  (1 with probability ``domain2_frac``), a year, and a Zipf popularity weight (UIE tail items).
- Each group likes 2-3 topics strongly (``group_topic_affinity``); a user's affinity is the group
  row (scaled down for new users) plus personal noise. An exposure's item is drawn from a mixture
  of global popularity and the group's preferred topics; its click probability is
  ``sigmoid(base + affinity_weight*aff(u, topic) + pop_weight*logpop_std + user_bias + item_bias
  + N(0, click_noise))``; ``label`` is the Bernoulli click, so label-0 rows are real non-clicked
  exposures. ``rating`` 1..5 cuts the same latent score (plus noise) at quantiles given by
  ``rating_shares`` so "rating >= 4" and "rating == 5" tasks make sense (POSO).
- Events per user are log-normal (long tail, capped at ``max_user_item_frac * n_items``); the total
  is EXACTLY ``n_interactions``; every user has at least one event.
- ``new_user_frac`` of users are NEW: their first event lies in the last ``new_user_window`` of the
  time range (regular users' first event lies before it, so a time-window split recovers exactly
  the planted new users), they are active only for that window (activity scaled by the window),
  their exposures are more popularity-driven, their click base rate is shifted by
  ``new_user_ctr_shift`` and their group affinity is scaled by ``new_user_affinity_scale`` (POSO's
  "submerged" new users).
- Side view ``apps`` (list of app codes >= 1): drawn from a group-specific app distribution; for
  cold users (<= ``cold_click_threshold`` clicks) it is mixed with a shared "light user"
  distribution with weight ``cold_app_shift`` (DAUC's active/cold view shift).
- Context column ``hour`` = hour of day of ``ts`` + 1 (1..24).
- Off by default (UIE's scenario): the ``low_active_frac`` least active users are LOW-ACTIVE
  (attributes mostly missing; ``low_active_taste_shared`` of them click by their group's shared
  taste, the rest by a taste of their own), and ``watch_time`` adds a seconds-watched column.

Rows of ``interactions`` are sorted by ``ts`` (stable). Timestamps are int seconds in
``[t_start, t_start + t_span_days * 86400)``. A (user, item) pair is made unique by re-drawing
repeated pairs (``dedup_rounds`` from ever flatter popularity, so heavy users dig into the tail,
then uniform draws); any pair still repeated is kept and counted in
``meta["filtered"]["duplicate_pairs_kept"]`` (0 at the defaults). Because of the re-draws, the
interaction counts per item are flatter than the raw Zipf weights (``item_popularity``), but still
long-tailed.

Ground truth (``generate``'s second value; ``ground_truth.npz`` on disk), indexed by user id,
item id, group, topic or domain: user_group, user_is_new, user_activity (events), user_clicks,
user_is_cold, user_join_ts (= first event), user_bias, user_affinity_scale; item_topic,
item_domain, item_popularity (Zipf weight, sums to 1), item_pop_rank, item_bias, item_year;
user_is_low_active, user_follows_group_taste, user_own_taste (UIE's scenario only);
group_share, group_topic_affinity, group_topic_liked, group_topic_exposure (P(topic | group) of a
preference exposure), topic_tag_dist, domain_topic_dist, group_app_dist, cold_app_dist,
app_popularity, group_attr_<attr> (group x code distribution before noise; column j is code j+1);
interaction_click_prob (aligned with the rows of ``interactions``: the oracle score).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from thawrec.data.schema import Dataset, atomic_write_text, write_dataset
from thawrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ATTRS = ("age_bucket", "gender", "occupation", "city")
DAY = 86_400
UNIFORM_ROUNDS = 20  # extra uniform re-draw rounds for the last repeated pairs (heavy users)


@dataclass
class SynthConfig:
    """Every knob of the synthetic world. Defaults: a small world that trains in seconds."""

    n_users: int = 6000
    """Number of users (user_id 0..n_users-1)."""
    n_items: int = 3000
    """Number of items (item_id 0..n_items-1); must be >= n_topics."""
    n_interactions: int = 300_000
    """Exact number of interaction rows (exposures); must be in [n_users, n_users * cap]."""
    n_groups: int = 8
    """Latent user interest groups."""
    group_concentration: float = 3.0
    """Dirichlet concentration of the group shares: lower = more unequal shares."""
    n_topics: int = 16
    """Item topics; ``category = topic + 1``."""
    topics_liked_min: int = 2
    """Each group likes between topics_liked_min ..."""
    topics_liked_max: int = 3
    """... and topics_liked_max topics strongly."""
    affinity_liked: float = 1.5
    """Mean group affinity (logit units) for a liked topic."""
    affinity_other: float = -0.5
    """Mean group affinity for any other topic."""
    affinity_sigma: float = 0.3
    """Spread of the group affinity around those means."""
    personal_sigma: float = 0.4
    """User-level affinity noise added to the group row (per user x topic)."""
    n_tags: int = 64
    """Size of the tag vocabulary shared by both domains (codes 1..n_tags)."""
    tags_per_item_min: int = 1
    """Each item has between tags_per_item_min ..."""
    tags_per_item_max: int = 4
    """... and tags_per_item_max distinct tags."""
    tag_concentration: float = 0.1
    """Dirichlet concentration of each topic's tag distribution: lower = sharper topics."""
    n_apps: int = 500
    """Size of the app vocabulary of the ``apps`` side view (codes 1..n_apps)."""
    apps_per_user: float = 20.0
    """Mean number of distinct apps per user (1 + Poisson; fewer only if a user's distribution runs out)."""
    app_concentration: float = 0.1
    """Dirichlet concentration of each group's own app distribution."""
    app_global_weight: float = 0.3
    """Weight of the global (Zipf) app popularity mixed into every group's app distribution."""
    cold_app_shift: float = 0.3
    """Weight of the shared light-user app distribution mixed into cold users' app distribution."""
    cold_click_threshold: int = 3
    """Users with at most this many clicks are cold (for the app shift and the ground truth)."""
    popularity_exponent: float = 1.1
    """Zipf exponent of item popularity: weight of the item of popularity rank r is r**-exponent."""
    pop_mix: float = 0.5
    """Share of a regular user's exposures drawn by global popularity (rest: preferred topics)."""
    new_user_pop_mix: float = 0.8
    """Same share for new users (the system knows little about them)."""
    exposure_temperature: float = 1.0
    """Preference exposures pick topic t with probability ~ exp(temperature * group affinity)."""
    activity_sigma: float = 1.8
    """Sigma of the log-normal events-per-user distribution (long tail)."""
    max_user_item_frac: float = 0.2
    """Cap on one user's events as a share of n_items (keeps (user, item) pairs unique)."""
    base_logit: float = -1.0
    """Click logit intercept."""
    affinity_weight: float = 1.0
    """Weight of the user-topic affinity in the click logit."""
    popularity_weight: float = 0.4
    """Weight of the log-popularity in the click logit (standardised, centred on a typical exposure)."""
    user_bias_sigma: float = 0.5
    """Spread of the per-user click bias."""
    item_bias_sigma: float = 0.3
    """Spread of the per-item click bias."""
    click_noise: float = 0.5
    """Per-exposure noise in the click logit."""
    rating_noise: float = 0.5
    """Extra noise between the click logit and the rating."""
    rating_shares: tuple[float, float, float, float, float] = (0.10, 0.15, 0.30, 0.27, 0.18)
    """Target share of ratings 1..5 (quantile cut points of the rating score)."""
    new_user_frac: float = 0.1
    """Share of users that are NEW."""
    new_user_window: float = 0.2
    """New users' first event lies in the last new_user_window of the time range."""
    new_user_ctr_shift: float = -0.8
    """Shift of new users' click logit (their base rate differs)."""
    new_user_affinity_scale: float = 0.3
    """New users' group affinity is multiplied by this (weaker group preference)."""
    new_user_pop_boost: float = 1.0
    """New users' popularity weight in the click logit is multiplied by this."""
    domain2_frac: float = 0.3
    """Share of items in domain 1 (the rest in domain 0); domains share the tag vocabulary."""
    domain_topic_concentration: float = 2.0
    """Dirichlet concentration of each domain's topic mix (domains differ in content, not tags)."""
    n_age_buckets: int = 7
    """Codes of age_bucket (1..n)."""
    n_genders: int = 2
    """Codes of gender."""
    n_occupations: int = 21
    """Codes of occupation."""
    n_cities: int = 30
    """Codes of city."""
    attr_concentration: float = 0.5
    """Dirichlet concentration of each group's attribute distributions."""
    attr_noise: float = 0.3
    """Probability that an attribute is drawn uniformly instead of from the group's distribution."""
    attr_missing: float = 0.03
    """Probability that an attribute is missing (code 0)."""
    year_min: int = 1995
    """Item years are uniform in [year_min, year_max]."""
    year_max: int = 2024
    """Last item year."""
    t_start: int = 1_700_000_000
    """First second of the time range (Unix seconds)."""
    t_span_days: float = 60.0
    """Length of the time range in days."""
    dedup_rounds: int = 8
    """Rounds of re-drawing repeated (user, item) pairs from ever flatter popularity; then up to
    UNIFORM_ROUNDS uniform re-draws until every pair is unique."""
    # ---- scenario mechanisms (thawrec.data.scenarios); every one is off by default ----------------
    join_mode: str = "cohort"
    """``cohort``: regular users join before the last ``new_user_window``, new users in it (the
    default world). ``uniform``: every user joins at a uniform time over the whole range and is
    active from then on (events in proportion to the time left), so every user has a lifecycle and
    a young account means the same thing in any period (POSO's scenario). ``always``: every user is
    active over the whole range (all events, the first included, uniform over it), so a user's share
    of events in any period is the same and only the activity level tells users apart (UIE's
    scenario)."""
    lifecycle_events: int = 0
    """A user's first ``lifecycle_events`` events are early-life events (0: no lifecycle shift)."""
    lifecycle_strength: float = 0.0
    """Early-life events follow a different click model: the user's topic affinity is replaced, in
    this proportion, by a newcomer taste shared by all new accounts (0: the null world)."""
    lifecycle_topics: int = 3
    """Topics the newcomer taste likes (the others it dislikes)."""
    behaviour_log_days: float = 0.0
    """Days of a separate behaviour log before ``t_start``: clicks of every old user drawn from their
    own affinity; new users have none (MAIL's scenario; 0: no such log)."""
    behaviour_events: float = 30.0
    """Mean number of behaviour-log clicks per old user (1 + Poisson)."""
    nuisance_strength: float = 0.0
    """Share of each user's apps drawn from a nuisance structure unrelated to interests: the
    preinstalled apps of the user's phone brand (DAUC's scenario; 0: apps follow interests only)."""
    n_brands: int = 6
    """Phone brands of the nuisance structure (each user has one, independent of the groups)."""
    cold_shift_by: str = "clicks"
    """What makes a user's apps shift towards the light-user distribution: ``clicks`` (at most
    ``cold_click_threshold`` clicks over the whole log: looks ahead) or ``activity`` (a light phone
    user: at most ``light_user_events`` events in total, known before any click)."""
    light_user_events: int = 20
    """With ``cold_shift_by="activity"``: users with at most this many events are light users."""
    low_active_frac: float = 0.0
    """Share of users planted LOW-ACTIVE (UIE's scenario; 0: none): the least active users (fewest
    events; ties at random), each of whose attributes is missing with ``low_active_attr_missing``
    and whose clicks follow their interest group's shared taste only in proportion
    ``low_active_taste_shared``. Drawn from a third random stream, so everything else is unchanged."""
    low_active_attr_missing: float = 0.6
    """Probability that a low-active user's attribute is missing (UIE Table 2: low-active users have
    about half the profile features of the others)."""
    low_active_taste_shared: float = 1.0
    """Share of low-active users whose click taste is their group's (group row + personal noise, as
    every other user's); the rest have an independent taste of their own, shared with nobody, drawn
    like a group row (UIE's scenario strength; 0: no low-active user's clicks follow their cluster)."""
    watch_time: bool = False
    """Add ``watch_time`` (seconds) to the interactions: a valid consumption (label 1) is a watch of
    more than 10 s, ``10 + exp(N(log 20 + 0.5 * affinity, 0.5))`` (longer the more the user likes the
    topic), a non-consumption a watch of U(0, 10) s (UIE's watch-time task; third random stream)."""
    seed: int = 0
    """Seed of the single numpy Generator: same config -> identical tables."""

    def validate(self) -> None:
        """Raise ConfigError on a knob that cannot produce a valid world."""

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"SynthConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("n_users", "n_items", "n_groups", "n_topics", "n_tags", "n_apps", "n_age_buckets",
                     "n_genders", "n_occupations", "n_cities"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if self.n_items < self.n_topics:
            raise bad("n_items", f"must be >= n_topics ({self.n_topics}) so every topic has an item")
        if not 1 <= self.topics_liked_min <= self.topics_liked_max <= self.n_topics:
            raise bad("topics_liked_max", "need 1 <= topics_liked_min <= topics_liked_max <= n_topics")
        if not 1 <= self.tags_per_item_min <= self.tags_per_item_max <= self.n_tags:
            raise bad("tags_per_item_max", "need 1 <= tags_per_item_min <= tags_per_item_max <= n_tags")
        for name in ("new_user_frac", "attr_noise", "attr_missing", "cold_app_shift", "domain2_frac",
                     "pop_mix", "new_user_pop_mix", "app_global_weight"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if not 0.0 < self.new_user_window < 1.0:
            raise bad("new_user_window", "must be in (0, 1)")
        if not 0.0 < self.max_user_item_frac <= 1.0:
            raise bad("max_user_item_frac", "must be in (0, 1]")
        cap = self.user_event_cap()
        if not self.n_users <= self.n_interactions <= self.n_users * cap:
            raise bad("n_interactions", f"must be in [n_users, n_users * {cap}] (one event per user at least, "
                                        f"at most max_user_item_frac * n_items each)")
        if self.t_span_days <= 0 or self.t_start < 0 or self.t_start + self.t_span_days * DAY >= 4_102_444_800:
            raise bad("t_span_days", "the time range must lie in [1970, 2100) with a positive span")
        shares = np.asarray(self.rating_shares, dtype=float)
        if shares.shape != (5,) or (shares < 0).any() or abs(shares.sum() - 1.0) > 1e-6:
            raise bad("rating_shares", "need 5 non-negative shares summing to 1")
        for name in ("group_concentration", "tag_concentration", "app_concentration", "attr_concentration",
                     "domain_topic_concentration", "apps_per_user", "activity_sigma"):
            if float(getattr(self, name)) <= 0:
                raise bad(name, "must be > 0")
        if self.year_min > self.year_max or self.year_min < 1:
            raise bad("year_min", "need 1 <= year_min <= year_max")
        if self.join_mode not in ("cohort", "uniform", "always"):
            raise bad("join_mode", "must be 'cohort', 'uniform' or 'always'")
        for name in ("low_active_frac", "low_active_attr_missing", "low_active_taste_shared"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.cold_shift_by not in ("clicks", "activity"):
            raise bad("cold_shift_by", "must be 'clicks' or 'activity'")
        for name in ("lifecycle_strength", "nuisance_strength"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if self.lifecycle_events < 0 or not 1 <= self.lifecycle_topics <= self.n_topics:
            raise bad("lifecycle_topics", "need lifecycle_events >= 0 and 1 <= lifecycle_topics <= n_topics")
        if self.behaviour_log_days < 0 or self.behaviour_events < 0 or self.n_brands < 1:
            raise bad("behaviour_log_days", "need behaviour_log_days >= 0, behaviour_events >= 0, n_brands >= 1")
        if self.behaviour_log_days and self.t_start - self.behaviour_log_days * DAY < 0:
            raise bad("behaviour_log_days", "the behaviour log would start before 1970")

    def user_event_cap(self) -> int:
        return max(1, int(self.max_user_item_frac * self.n_items))


# --------------------------------------------------------------------------------------------
# Vectorised sampling helpers
# --------------------------------------------------------------------------------------------
def _row_sampler(probs: np.ndarray) -> np.ndarray:
    """Flattened per-row CDFs shifted by the row index, for :func:`_draw_rows`.

    Row ``r`` occupies ``[r, r+1]`` on one increasing axis, so a draw for many rows at once is a
    single ``searchsorted`` of ``row + U(0,1)``.
    """
    p = np.asarray(probs, dtype=np.float64)
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    return (cdf + np.arange(p.shape[0])[:, None]).ravel()


def _search(flat: np.ndarray, v: np.ndarray, per_unit: int | None = None) -> np.ndarray:
    """``np.searchsorted(flat, v, side="right")`` for an increasing ``flat`` on ``[0, R]``, via a
    guide table (Chen's method): why: a binary search of millions of random needles misses the
    cache at every step; a bucket lookup plus a step or two is several times faster. Exact."""
    n = len(flat)
    if len(v) < 50_000:
        return np.searchsorted(flat, v, side="right")
    m = per_unit or max(1, int(2 * n / max(flat[-1], 1.0)))
    top = int(np.ceil(flat[-1])) + 1
    guide = np.searchsorted(flat, np.arange(top * m + 1) / m, side="right")
    pos = guide[np.clip((v * m).astype(np.int64), 0, top * m)]
    idx = np.arange(len(v))
    for _ in range(4):  # a few vectorised steps forward; the rare long buckets fall back below
        p = pos[idx]
        adv = (p < n) & (flat[np.minimum(p, n - 1)] <= v[idx])
        idx = idx[adv]
        if len(idx) == 0:
            return pos
        pos[idx] += 1
    pos[idx] = np.searchsorted(flat, v[idx], side="right")
    return pos


def _draw_rows(flat_cdf: np.ndarray, k: int, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category (0..k-1) per entry of ``rows`` from that row's distribution."""
    pos = _search(flat_cdf, rows + rng.random(len(rows)), per_unit=2 * k)
    return np.clip(pos - rows * k, 0, k - 1)


def _draw(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws from one distribution by inverse CDF."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    return np.minimum(_search(cdf / cdf[-1], rng.random(n)), len(cdf) - 1)


def _list_series(name: str, offsets: np.ndarray, values: np.ndarray) -> pl.Series:
    """A polars list<int64> column from flat values + offsets (no per-row Python objects)."""
    arr = pa.LargeListArray.from_arrays(pa.array(offsets.astype(np.int64)), pa.array(values.astype(np.int64)))
    return pl.Series(name, arr, dtype=pl.List(pl.Int64))


# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------
def _users(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    U, G, T = cfg.n_users, cfg.n_groups, cfg.n_topics
    share = rng.dirichlet(np.full(G, cfg.group_concentration))
    group = _draw(share, U, rng)
    is_new = rng.random(U) < cfg.new_user_frac
    # Group x topic affinity: each group likes 2-3 random topics strongly.
    rank = np.argsort(np.argsort(rng.random((G, T)), axis=1), axis=1)
    n_liked = rng.integers(cfg.topics_liked_min, cfg.topics_liked_max + 1, size=G)
    liked = rank < n_liked[:, None]
    aff = np.where(liked, cfg.affinity_liked, cfg.affinity_other) + rng.normal(0, cfg.affinity_sigma, (G, T))
    scale = np.where(is_new, cfg.new_user_affinity_scale, 1.0)
    user_aff = (scale[:, None] * aff[group] + rng.normal(0, cfg.personal_sigma, (U, T))).astype(np.float32)
    out = dict(user_group=group, user_is_new=is_new, group_share=share, group_topic_affinity=aff,
               group_topic_liked=liked, user_affinity_scale=scale, _user_aff=user_aff,
               user_bias=rng.normal(0, cfg.user_bias_sigma, U))
    # Attributes: group-specific distribution, uniform with prob attr_noise, missing with attr_missing.
    sizes = dict(age_bucket=cfg.n_age_buckets, gender=cfg.n_genders, occupation=cfg.n_occupations,
                 city=cfg.n_cities)
    for name in ATTRS:
        k = sizes[name]
        dist = rng.dirichlet(np.full(k, cfg.attr_concentration), size=G)
        code = _draw_rows(_row_sampler(dist), k, group, rng)
        noisy = rng.random(U) < cfg.attr_noise
        code = np.where(noisy, rng.integers(0, k, U), code) + 1
        code[rng.random(U) < cfg.attr_missing] = 0
        out[name] = code.astype(np.int64)
        out[f"group_attr_{name}"] = dist
    return out


def _items(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, T, K = cfg.n_items, cfg.n_topics, cfg.n_tags
    domain = (rng.random(n) < cfg.domain2_frac).astype(np.int32)
    dom_topic = rng.dirichlet(np.full(T, cfg.domain_topic_concentration), size=2)
    topic = _draw_rows(_row_sampler(dom_topic), T, domain.astype(np.int64), rng)
    topic[rng.choice(n, T, replace=False)] = rng.permutation(T)  # every topic has an item
    # Tags: Gumbel top-k without replacement from the topic's distribution over the SHARED vocab.
    tag_dist = rng.dirichlet(np.full(K, cfg.tag_concentration), size=T)
    logp = np.log(np.maximum(tag_dist, 1e-300))
    kmax = cfg.tags_per_item_max
    n_tags = rng.integers(cfg.tags_per_item_min, kmax + 1, size=n)
    tag_vals = np.empty((n, kmax), dtype=np.int64)
    for t in range(T):  # loop over topics only: bounds the n x K Gumbel matrix per topic
        idx = np.flatnonzero(topic == t)
        g = logp[t][None, :] + rng.gumbel(size=(len(idx), K))
        tag_vals[idx] = np.argsort(-g, axis=1)[:, :kmax] + 1
    keep = np.arange(kmax)[None, :] < n_tags[:, None]
    tag_offsets = np.r_[0, np.cumsum(n_tags)]
    # Zipf popularity over a random rank order.
    ranks = rng.permutation(n)
    pop = (ranks + 1.0) ** (-cfg.popularity_exponent)
    pop /= pop.sum()
    lp = np.log(pop)
    # Centred on the popularity-weighted mean, i.e. on a typical EXPOSED item, so that the base
    # logit (not the popularity mix) sets the click rate.
    lp_std = (lp - (pop * lp).sum()) / (lp.std() + 1e-12)
    return dict(item_topic=topic.astype(np.int64), item_domain=domain, item_popularity=pop,
                item_pop_rank=ranks, item_bias=rng.normal(0, cfg.item_bias_sigma, n),
                item_year=rng.integers(cfg.year_min, cfg.year_max + 1, n).astype(np.int64),
                topic_tag_dist=tag_dist, domain_topic_dist=dom_topic, _lp_std=lp_std,
                _tag_values=tag_vals[keep], _tag_offsets=tag_offsets)


def _activity(cfg: SynthConfig, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Events per user: 1 + log-normal share of the rest (times ``scale``, the share of the time
    range the user is active), capped, summing EXACTLY to n_interactions."""
    U, N, cap = cfg.n_users, cfg.n_interactions, cfg.user_event_cap()
    w = rng.lognormal(0.0, cfg.activity_sigma, U) * scale
    jitter = rng.random(U)

    def counts(s: float) -> np.ndarray:
        return np.minimum(cap, 1 + np.floor(s * w + jitter)).astype(np.int64)

    lo, hi = 0.0, 1.0
    while counts(hi).sum() < N and hi < 1e18:
        hi *= 2.0
    for _ in range(60):  # bisection on the scale; each step is one vectorised pass
        mid = 0.5 * (lo + hi)
        if counts(mid).sum() < N:
            lo = mid
        else:
            hi = mid
    c = counts(lo)
    diff = N - int(c.sum())  # >= 0 and small: hand out single events, heaviest weights first
    if diff > 0:
        room = np.flatnonzero(c < cap)
        pick = room[np.argsort(-(w[room] * jitter[room]), kind="stable")[:diff]]
        c[pick] += 1
    if int(c.sum()) != N:  # cannot happen when validate() passed
        raise ConfigError(f"could not allocate exactly {N} events over {U} users (cap {cap})")
    return c


def _exposures(cfg: SynthConfig, users: dict, items: dict, counts: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Item of every event: popularity with prob pop_mix (new users: new_user_pop_mix), otherwise
    a group-preferred topic then an item of that topic by popularity. Repeated pairs re-drawn."""
    T = cfg.n_topics
    u = np.repeat(np.arange(cfg.n_users, dtype=np.int64), counts)
    g = users["user_group"][u]
    pop, topic = items["item_popularity"], items["item_topic"]
    by_topic = np.argsort(topic, kind="stable")  # items grouped by topic
    t_sorted = topic[by_topic]
    t_start = np.searchsorted(t_sorted, np.arange(T), side="left")
    t_end = np.searchsorted(t_sorted, np.arange(T), side="right")
    topic_cdf = _row_sampler(np.exp(cfg.exposure_temperature * users["group_topic_affinity"]))
    items["group_topic_exposure"] = np.diff(
        np.c_[np.zeros(cfg.n_groups), topic_cdf.reshape(cfg.n_groups, T) - np.arange(cfg.n_groups)[:, None]],
        axis=1)
    mix = np.where(users["user_is_new"], cfg.new_user_pop_mix, cfg.pop_mix)

    def cdfs(power: float) -> tuple[np.ndarray, np.ndarray]:
        """Global CDF and within-topic CDFs (topic t on [t, t+1]) of popularity ** power."""
        w = pop ** power
        w_sorted = w[by_topic]
        cum = np.r_[0.0, np.cumsum(w_sorted)]
        before, mass = cum[t_start], cum[t_end] - cum[t_start]
        within = (cum[1:] - before[t_sorted]) / mass[t_sorted] + t_sorted
        glob = np.cumsum(w)
        return glob / glob[-1], within

    def draw(rows: np.ndarray, power: float | None) -> np.ndarray:
        """Mixture draw for event ``rows``; power=None: uniform over all items."""
        if power is None:
            return rng.integers(0, cfg.n_items, len(rows))
        glob, within = cdfs(power)
        by_pop = rng.random(len(rows)) < mix[u[rows]]
        out = np.minimum(_search(glob, rng.random(len(rows))), cfg.n_items - 1)
        pref = np.flatnonzero(~by_pop)
        t = _draw_rows(topic_cdf, T, g[rows[pref]], rng)
        pos = _search(within, t + rng.random(len(pref)))
        out[pref] = by_topic[np.clip(pos, t_start[t], t_end[t] - 1)]
        return out

    it = draw(np.arange(len(u)), 1.0)
    # Repeated (user, item) pairs: keep the first, re-draw the rest from a flatter popularity
    # (heavy users dig into the tail), the last round uniformly. Only the re-drawn rows are touched.
    n_items = np.int64(cfg.n_items)
    key = u * n_items + it
    order = np.argsort(key, kind="stable")
    sk = key[order]
    dup = np.r_[False, sk[1:] == sk[:-1]]
    redo = order[dup]
    kept = sk[~dup]  # sorted unique keys of the rows we keep
    R = cfg.dedup_rounds
    for r in range(R + UNIFORM_ROUNDS):
        if len(redo) == 0:
            break
        power = None if r >= R - 1 else max(0.0, 1.0 - (r + 1) / max(R - 2, 1))
        it[redo] = draw(redo, power)
        k = u[redo] * n_items + it[redo]
        pos = np.minimum(np.searchsorted(kept, k), len(kept) - 1)
        ok_idx = np.flatnonzero(kept[pos] != k)
        uk, first = np.unique(k[ok_idx], return_index=True)
        accept = np.zeros(len(redo), dtype=bool)
        accept[ok_idx[first]] = True
        kept = np.insert(kept, np.searchsorted(kept, uk), uk)  # O(N) merge, stays sorted
        log.debug("dedup round %d (power %s): %d accepted, %d left", r, power, int(accept.sum()),
                  int((~accept).sum()))
        redo = redo[~accept]
    n_dup = int(len(redo))
    if n_dup:
        log.warning("synthetic: %d repeated (user, item) pairs kept after %d re-draw rounds", n_dup,
                    cfg.dedup_rounds + UNIFORM_ROUNDS)
    return u, it, n_dup


def _apps(cfg: SynthConfig, users: dict, is_cold: np.ndarray, rng: np.random.Generator,
          srng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Distinct apps per user from the group's app distribution, shifted for cold users, and mixed
    with the user's phone brand's preinstalled apps in proportion ``nuisance_strength``."""
    U, G, A = cfg.n_users, cfg.n_groups, cfg.n_apps
    zipf = (rng.permutation(A) + 1.0) ** -1.0
    zipf /= zipf.sum()
    own = rng.dirichlet(np.full(A, cfg.app_concentration), size=G)
    group_dist = cfg.app_global_weight * zipf[None, :] + (1 - cfg.app_global_weight) * own
    cold_dist = rng.dirichlet(np.full(A, cfg.app_concentration))
    dists = np.vstack([group_dist, (1 - cfg.cold_app_shift) * group_dist + cfg.cold_app_shift * cold_dist])
    want = np.minimum(1 + rng.poisson(max(cfg.apps_per_user - 1.0, 0.0), U), A)
    draws = np.minimum(np.ceil(want * 1.3).astype(np.int64) + 3, 4 * A)  # oversample; keep `want` distinct
    row = users["user_group"] + G * is_cold.astype(np.int64)
    extra: dict[str, np.ndarray] = {}
    if cfg.nuisance_strength > 0:  # rows become (interest row, brand) pairs; drawn from srng only
        B, s = cfg.n_brands, cfg.nuisance_strength
        brand = srng.integers(0, B, U)
        brand_dist = srng.dirichlet(np.full(A, 0.05), size=B)  # a few preinstalled apps per brand
        dists = ((1 - s) * dists[:, None, :] + s * brand_dist[None, :, :]).reshape(-1, A)
        row = row * B + brand
        extra = dict(user_brand=brand, brand_app_dist=brand_dist)
    sampler = _row_sampler(dists)
    n_per = np.zeros(U, dtype=np.int64)
    parts = []
    for d in np.unique(draws):  # loop over draw counts: each block is a dense (users x d) matrix
        who = np.flatnonzero(draws == d)
        m = _draw_rows(sampler, A, np.repeat(row[who], d), rng).reshape(len(who), d)
        order = np.argsort(m, axis=1, kind="stable")
        srt = np.take_along_axis(m, order, axis=1)
        dup = np.zeros(m.shape, dtype=bool)
        np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)  # later copies
        keep = ~dup & (np.cumsum(~dup, axis=1) <= want[who, None])
        n_per[who] = keep.sum(axis=1)
        parts.append((who, m[keep]))
    offsets = np.r_[0, np.cumsum(n_per)]
    values = np.empty(offsets[-1], dtype=np.int64)
    for who, vals in parts:  # scatter each block's rows to their users' slots
        cnt = n_per[who]
        start = np.repeat(offsets[who] - np.r_[0, np.cumsum(cnt)[:-1]], cnt)
        values[start + np.arange(len(vals))] = vals + 1
    gt = dict(group_app_dist=group_dist, cold_app_dist=cold_dist, app_popularity=zipf, **extra)
    return offsets, values, gt


def _rank_within_user(u: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """0-based position of each event in its user's time order (ties by row order)."""
    order = np.lexsort((np.arange(len(u)), ts, u))
    su = u[order]
    first = np.r_[0, np.flatnonzero(su[1:] != su[:-1]) + 1]
    starts = np.repeat(first, np.diff(np.r_[first, len(u)]))
    rank = np.empty(len(u), np.int64)
    rank[order] = np.arange(len(u)) - starts
    return rank


def _lifecycle(cfg: SynthConfig, srng: np.random.Generator) -> dict[str, np.ndarray]:
    """The newcomer taste (POSO's scenario): a few topics every young account likes, unrelated to
    its interest group, on the scale of the group affinities. Drawn even when unused, so the null
    world and the planted one share everything else."""
    T = cfg.n_topics
    liked = np.zeros(T, bool)
    liked[srng.choice(T, cfg.lifecycle_topics, replace=False)] = True
    aff = np.where(liked, cfg.affinity_liked, cfg.affinity_other) + srng.normal(0, cfg.affinity_sigma, T)
    return {"newcomer_topic_affinity": aff, "newcomer_topic_liked": liked} if cfg.lifecycle_events else {}


def _behaviour_log(cfg: SynthConfig, users: dict, items: dict, srng: np.random.Generator) -> dict | None:
    """MAIL's scenario: a separate, earlier log of clicks (``behaviour_log_days`` before ``t_start``)
    drawn from each user's own topic affinity, then an item of that topic by popularity. Drawn for
    every user; the caller keeps the old users' and hides the new users'."""
    if not cfg.behaviour_log_days:
        return None
    U, T = cfg.n_users, cfg.n_topics
    n = 1 + srng.poisson(max(cfg.behaviour_events - 1.0, 0.0), U)
    user = np.repeat(np.arange(U, dtype=np.int64), n)
    topic_cdf = _row_sampler(np.exp(cfg.exposure_temperature * users["_user_aff"].astype(np.float64)))
    topic = _draw_rows(topic_cdf, T, user, srng)
    by_topic = np.argsort(items["item_topic"], kind="stable")
    t_sorted = items["item_topic"][by_topic]
    lo = np.searchsorted(t_sorted, np.arange(T), side="left")
    hi = np.searchsorted(t_sorted, np.arange(T), side="right")
    w = items["item_popularity"][by_topic]
    cum = np.r_[0.0, np.cumsum(w)]
    within = (cum[1:] - cum[lo[t_sorted]]) / (cum[hi[t_sorted]] - cum[lo[t_sorted]]) + t_sorted
    pos = np.clip(np.searchsorted(within, topic + srng.random(len(user)), side="right"), lo[topic], hi[topic] - 1)
    length = int(cfg.behaviour_log_days * DAY)
    ts = cfg.t_start - length + srng.integers(0, length, len(user))
    return {"user": user, "item": by_topic[pos].astype(np.int64), "ts": ts.astype(np.int64)}


def _low_active(cfg: SynthConfig, users: dict, counts: np.ndarray,
                urng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """UIE's scenario: which users are low-active (the ``low_active_frac`` with the fewest events),
    and the click taste each user follows. A low-active user follows the group's shared taste (the
    group row + the personal noise every user has) when ``follow_draw < low_active_taste_shared``,
    else an independent taste of their own, drawn like a group row (its own liked topics) and
    shared with nobody. Every array is drawn whatever the strength, so worlds of different
    strengths differ only in which users follow their group (monotonically: a follower at a lower
    strength follows at every higher one). Their attributes go missing here too. None when the
    scenario is off (nothing drawn)."""
    if not cfg.low_active_frac:
        return None
    U, T = cfg.n_users, cfg.n_topics
    low = np.zeros(U, bool)
    low[np.lexsort((urng.random(U), counts))[:int(round(cfg.low_active_frac * U))]] = True
    follow_draw = urng.random(U)
    rank = np.argsort(np.argsort(urng.random((U, T)), axis=1), axis=1)
    n_liked = urng.integers(cfg.topics_liked_min, cfg.topics_liked_max + 1, size=U)
    own = (np.where(rank < n_liked[:, None], cfg.affinity_liked, cfg.affinity_other)
           + urng.normal(0, cfg.affinity_sigma, (U, T)))
    missing = urng.random((U, len(ATTRS))) < cfg.low_active_attr_missing
    follows = ~low | (follow_draw < cfg.low_active_taste_shared)
    for j, name in enumerate(ATTRS):  # a sparse profile: most of a low-active user's attributes are unknown
        users[name] = np.where(low & missing[:, j], 0, users[name])
    group_row = users["user_affinity_scale"][:, None] * users["group_topic_affinity"][users["user_group"]]
    personal = users["_user_aff"] - group_row  # the personal noise every user has
    users["_user_aff"] = np.where(follows[:, None], users["_user_aff"],
                                  users["user_affinity_scale"][:, None] * own + personal).astype(np.float32)
    return {"user_is_low_active": low, "user_follows_group_taste": follows, "user_own_taste": own}


def _watch_time(label: np.ndarray, aff: np.ndarray, urng: np.random.Generator) -> np.ndarray:
    """Seconds watched: more than 10 s for a valid consumption (label 1), longer the more the user
    likes the topic; under 10 s otherwise (UIE's watch-time task)."""
    n = len(label)
    long = 10.0 + np.exp(np.log(20.0) + 0.5 * aff + urng.normal(0.0, 0.5, n))
    short = 10.0 * urng.random(n)
    return np.where(label == 1, long, short).astype(np.float32)


def generate(cfg: SynthConfig | None = None) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Draw the world. Returns the canonical dataset and the ground-truth arrays."""
    cfg = cfg or SynthConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    # Scenario mechanisms draw from their own stream, so the default world stays bit-identical and a
    # scenario's null world (strength 0) differs from its planted one only in the mechanism.
    srng = np.random.default_rng([cfg.seed, 1])
    urng = np.random.default_rng([cfg.seed, 2])  # UIE's scenario (low-active users, watch time)
    users = _users(cfg, rng)
    items = _items(cfg, rng)
    is_new = users["user_is_new"]
    span = int(cfg.t_span_days * DAY)
    w_start = cfg.t_start + int(round((1 - cfg.new_user_window) * span))
    t_end = cfg.t_start + span
    if cfg.join_mode == "uniform":  # joins over the whole range; events in proportion to the time left
        join = srng.integers(cfg.t_start, t_end, cfg.n_users)
        scale = np.maximum((t_end - join) / span, 1.0 / span)
    else:
        scale = np.where(is_new, cfg.new_user_window, 1.0)
    counts = _activity(cfg, scale, rng)
    low_active = _low_active(cfg, users, counts, urng)  # before the click model, after the activity
    u, it, n_dup = _exposures(cfg, users, items, counts, rng)

    # Timestamps: a join time per user; the first event is the join, the rest uniform after it
    # (``always``: every event uniform over the whole range; the join is the first event).
    if cfg.join_mode == "always":
        join = np.full(cfg.n_users, cfg.t_start, np.int64)
    elif cfg.join_mode != "uniform":
        join = np.where(is_new, rng.integers(w_start, t_end, cfg.n_users),
                        rng.integers(cfg.t_start, w_start, cfg.n_users))
    frac = rng.random(len(u))
    if cfg.join_mode != "always":
        frac[np.r_[0, np.cumsum(counts)[:-1]]] = 0.0
    ts = join[u] + np.floor(frac * (t_end - join[u])).astype(np.int64)
    if cfg.join_mode == "always":
        first = np.full(cfg.n_users, t_end, np.int64)
        np.minimum.at(first, u, ts)
        join = first

    # Click model.
    topic = items["item_topic"][it]
    aff = users["_user_aff"][u, topic].astype(np.float64)
    rank = _rank_within_user(u, ts)
    lifecycle = _lifecycle(cfg, srng)
    early = rank < cfg.lifecycle_events
    if cfg.lifecycle_events:  # early-life events: the user's own taste mixed with the newcomer taste
        s = cfg.lifecycle_strength
        aff = np.where(early, (1 - s) * aff + s * lifecycle["newcomer_topic_affinity"][topic], aff)
    new_e = is_new[u]
    pop_w = np.where(new_e, cfg.popularity_weight * cfg.new_user_pop_boost, cfg.popularity_weight)
    logit = (cfg.base_logit + np.where(new_e, cfg.new_user_ctr_shift, 0.0) + cfg.affinity_weight * aff
             + pop_w * items["_lp_std"][it] + users["user_bias"][u] + items["item_bias"][it]
             + rng.normal(0.0, cfg.click_noise, len(u)))
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(len(u)) < prob).astype(np.int8)
    score = logit + rng.normal(0.0, cfg.rating_noise, len(u))
    sub = score if len(score) <= 1_000_000 else score[rng.integers(0, len(score), 1_000_000)]
    cuts = np.quantile(sub, np.cumsum(cfg.rating_shares)[:-1])
    rating = (1 + np.searchsorted(cuts, score, side="right")).astype(np.float32)
    watch = _watch_time(label, aff, urng) if cfg.watch_time else None

    clicks = np.bincount(u, weights=label, minlength=cfg.n_users).astype(np.int64)
    is_cold = clicks <= cfg.cold_click_threshold
    is_light = counts <= cfg.light_user_events
    app_off, app_val, app_gt = _apps(cfg, users, is_light if cfg.cold_shift_by == "activity" else is_cold, rng,
                                     srng)
    behaviour = _behaviour_log(cfg, users, items, srng)

    if behaviour is not None:  # old users' behaviour-log clicks join the log, before t_start
        keep = ~is_new[behaviour["user"]]
        bu, bi, bt = behaviour["user"][keep], behaviour["item"][keep], behaviour["ts"][keep]
        n_lab = len(u)
        u, it, ts = np.r_[u, bu], np.r_[it, bi], np.r_[ts, bt]
        label = np.r_[label, np.ones(len(bu), np.int8)]
        rating = np.r_[rating, np.full(len(bu), 5, np.float32)]
        prob = np.r_[prob, np.full(len(bu), np.nan)]
        watch = None if watch is None else np.r_[watch, np.full(len(bu), np.nan, np.float32)]
        early = np.r_[early, np.zeros(len(bu), bool)]
        rank = np.r_[rank, np.full(len(bu), -1)]
        log.info("behaviour log: %d clicks of old users before the labelled log (%d labelled rows)", len(bu), n_lab)
    order = np.argsort(ts, kind="stable")
    inter = pl.DataFrame({
        "user_id": u[order], "item_id": it[order], "ts": ts[order], "label": label[order],
        "rating": rating[order], "domain": items["item_domain"][it[order]],
        "hour": (ts[order] // 3600) % 24 + 1,
    }, schema={"user_id": pl.Int64, "item_id": pl.Int64, "ts": pl.Int64, "label": pl.Int8,
               "rating": pl.Float32, "domain": pl.Int32, "hour": pl.Int64})
    if watch is not None:  # a label (regression target), never a context feature
        inter = inter.with_columns(pl.Series("watch_time", watch[order], dtype=pl.Float32))
    user_df = pl.DataFrame({"user_id": np.arange(cfg.n_users, dtype=np.int64),
                            **{a: users[a] for a in ATTRS}})
    user_df = user_df.with_columns(_list_series("apps", app_off, app_val))
    item_df = pl.DataFrame({"item_id": np.arange(cfg.n_items, dtype=np.int64)}).with_columns(
        _list_series("tags", items["_tag_offsets"], items["_tag_values"]),
        pl.Series("category", items["item_topic"] + 1, dtype=pl.Int64),
        pl.Series("domain", items["item_domain"], dtype=pl.Int32),
        pl.Series("year", items["item_year"], dtype=pl.Int64),
    )

    gt: dict[str, np.ndarray] = {k: v for k, v in {**users, **items}.items()
                                 if not k.startswith("_") and k not in ATTRS}
    gt.update(app_gt, user_topic_affinity=users["_user_aff"], user_activity=counts, user_clicks=clicks,
              user_is_cold=is_cold, user_is_light=is_light,
              user_join_ts=join, interaction_click_prob=prob[order].astype(np.float32),
              interaction_early_life=early[order], interaction_rank_in_user=rank[order].astype(np.int64),
              **lifecycle, **(low_active or {}))
    if behaviour is not None:  # the new users' would-be behaviour, hidden from the log: the oracle's
        hidden = is_new[behaviour["user"]]
        gt.update(hidden_behaviour_user=behaviour["user"][hidden], hidden_behaviour_item=behaviour["item"][hidden],
                  hidden_behaviour_ts=behaviour["ts"][hidden])
    meta = {
        "name": "synthetic",
        "synthetic": _cfg_dict(cfg),
        "interactions_sorted_by": "ts",
        "new_user_window_start_ts": int(w_start),
        "labelled_log_start_ts": int(cfg.t_start),
        "filtered": {"duplicate_pairs_kept": n_dup},
    }
    vocabs = _vocabs(cfg)
    log.info("synthetic world: %d users (%d new), %d items, %d interactions, CTR %.3f",
             cfg.n_users, int(is_new.sum()), cfg.n_items, len(u), float(label.mean()))
    return Dataset(inter, user_df, item_df, meta, vocabs), gt


def _cfg_dict(cfg: SynthConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["rating_shares"] = list(d["rating_shares"])
    return d


def _vocabs(cfg: SynthConfig) -> dict[str, list[Any]]:
    """Raw value of every code. IDs are their own raw values; 0 is missing/padding elsewhere."""
    def named(prefix: str, n: int) -> list[Any]:
        return [None] + [f"{prefix}{i}" for i in range(1, n + 1)]

    return {
        "user_id": list(range(cfg.n_users)),
        "item_id": list(range(cfg.n_items)),
        "age_bucket": named("age", cfg.n_age_buckets),
        "gender": named("gender", cfg.n_genders),
        "occupation": named("occ", cfg.n_occupations),
        "city": named("city", cfg.n_cities),
        "apps": named("app", cfg.n_apps),
        "category": named("topic", cfg.n_topics),
        "tags": named("tag", cfg.n_tags),
        "hour": [None] + [f"{h:02d}h" for h in range(24)],
    }


def _summary(ds: Dataset, gt: dict[str, np.ndarray]) -> dict[str, Any]:
    """Human-readable shares and rates of the planted structure (ground_truth.json)."""
    inter = ds.interactions
    u = inter["user_id"].to_numpy()
    lab = inter["label"].to_numpy()
    new_rows = gt["user_is_new"][u]
    act = gt["user_activity"]
    counts = np.bincount(inter["item_id"].to_numpy(), minlength=len(gt["item_topic"]))
    top = np.sort(counts)[::-1][: max(1, len(counts) // 10)].sum() / max(1, counts.sum())
    n_apps = ds.users["apps"].list.len().to_numpy()
    cold = gt["user_is_cold"]
    return {
        "n_users": int(ds.users.height), "n_items": int(ds.items.height), "n_interactions": int(inter.height),
        "group_share": np.round(gt["group_share"], 4).tolist(),
        "group_liked_topics": [np.flatnonzero(r).tolist() for r in gt["group_topic_liked"]],
        "new_user_share": float(gt["user_is_new"].mean()),
        "ctr_all": float(lab.mean()),
        "ctr_new_users": float(lab[new_rows].mean()) if new_rows.any() else None,
        "ctr_regular_users": float(lab[~new_rows].mean()) if (~new_rows).any() else None,
        "activity_median": float(np.median(act)), "activity_max": int(act.max()),
        "share_users_le5_events": float((act <= 5).mean()),
        "top10pct_items_interaction_share": float(top),
        "cold_user_share": float(cold.mean()),
        "apps_mean_active": float(n_apps[~cold].mean()) if (~cold).any() else None,
        "apps_mean_cold": float(n_apps[cold].mean()) if cold.any() else None,
        "item_domain1_share": float(gt["item_domain"].mean()),
        "rating_shares": np.round(np.bincount(inter["rating"].to_numpy().astype(np.int64), minlength=6)[1:]
                                  / inter.height, 4).tolist(),
        "duplicate_pairs_kept": ds.meta.get("filtered", {}).get("duplicate_pairs_kept", 0),
    }


def write_world(cfg: SynthConfig | None, out: str | Path) -> Path:
    """Generate and write the dataset folder plus ``ground_truth.npz`` / ``ground_truth.json``."""
    ds, gt = generate(cfg or SynthConfig())
    return write_generated(ds, gt, out)


def write_generated(ds: Dataset, gt: dict[str, np.ndarray], out: str | Path) -> Path:
    """Write a generated world: the dataset folder plus its ground truth (``ground_truth.npz`` and a
    readable ``ground_truth.json`` summary)."""
    out = write_dataset(ds, out)
    tmp = out / "ground_truth.tmp.npz"
    np.savez(tmp, **gt)
    tmp.replace(out / "ground_truth.npz")
    atomic_write_text(out / "ground_truth.json", json.dumps(_summary(ds, gt), indent=1))
    return out


def load_ground_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Ground truth saved by :func:`write_world` (a world folder or the .npz itself)."""
    p = Path(path)
    f = p / "ground_truth.npz" if p.is_dir() else p
    if not f.exists():
        raise DataError("no ground truth here: only synthetic worlds have one", file=str(f),
                        fix="write the world with `thawrec data synth --out DIR` (or write_world)")
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def config_fields() -> list[str]:
    """Names of every knob (for CLIs and YAML validation)."""
    return [f.name for f in fields(SynthConfig)]
