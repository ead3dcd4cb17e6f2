"""DAUC's plan: Table 2's clustering baselines (Random, Profile, k-means, DEC, IDEC, DCCAE,
COMPLETER), DAUC, and Table 3's ablations; every method is compared with DAUC."""

from __future__ import annotations

from typing import Any

from thawrec.suites.common.plan import Entry

BASELINES = ("Random", "Profile", "k-means", "DEC", "IDEC", "DCCAE", "COMPLETER")
FLOOR = "Popularity (one cluster)"
ORACLE = "Oracle (planted groups)"
TASTE_ORACLE = "Oracle (k-means on planted tastes)"
REFERENCES = (FLOOR, ORACLE, TASTE_ORACLE)
ABLATIONS = ("DAUC-no-rec", "DAUC-no-con", "DAUC-no-adv")
ALL = BASELINES + ("DAUC",) + ABLATIONS
# Batch sizes: DAUC's 128 (App. A.3) for all but DCCAE, whose CCA over a 400-d code needs far more
# than 128 paired users per batch to carry signal (with n users at most n - 1 correlations are
# non-zero and all approach 1); the paper gives no batch size for it.
BATCH = {"DCCAE": 1024}
_REGISTRY = {"Random": "random", "Profile": "profile", "k-means": "kmeans", "DEC": "dec", "IDEC": "idec",
             "DCCAE": "dccae", "COMPLETER": "completer", "DAUC": "dauc", "DAUC-no-rec": "dauc",
             "DAUC-no-con": "dauc", "DAUC-no-adv": "dauc"}


def _config(name: str, epochs: int | None) -> dict[str, Any]:
    """A method's options; ``epochs`` (if given) replaces every method's own count (DEC / IDEC keep
    their 3:2 split of pretraining and clustering epochs)."""
    off = {"DAUC-no-rec": "use_rec", "DAUC-no-con": "use_con", "DAUC-no-adv": "use_adv"}.get(name)
    if off:
        return {off: False}
    if epochs is None:
        return {}
    if name in ("DEC", "IDEC"):
        pre = max(1, round(0.6 * epochs))
        return {"pretrain_epochs": pre, "cluster_epochs": max(1, epochs - pre)}
    if name in ("DCCAE", "COMPLETER"):
        return {"epochs": epochs}
    return {}


def model_plan(epochs: int | None = None) -> list[Entry]:
    """Every method, then the floor (everyone in one cluster: global popularity) and, on synthetic
    worlds, the ceilings: the planted interest groups as clusters, and k-means (as many clusters as
    the methods get) on every user's planted topic affinities, the taste the clicks follow."""
    return [Entry(m, _REGISTRY[m], _config(m, epochs), baseline=None if m == "DAUC" else "DAUC",
                  options={"batch_size": BATCH[m]} if m in BATCH else {},
                  requires=("user_attributes",) if m == "Profile" else ()) for m in ALL] + [
        Entry(FLOOR, floor="one_cluster", baseline="DAUC"),
        Entry(ORACLE, floor="truth", baseline="DAUC", requires=("ground_truth",)),
        Entry(TASTE_ORACLE, floor="taste", baseline="DAUC", requires=("ground_truth",))]
