"""Shared test fixtures: the real ML-100K beside the checkout, tiny worlds, quiet training."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# One instruction set for every x86 machine, set before torch / numpy / faiss load their kernels:
# float sums round differently under AVX2 and AVX-512 code paths, and the suite goldens
# (tests/test_suite_regression.py) compare bit for bit. AVX2 is the common floor of the machines
# this runs on; an explicit setting in the environment wins.
if platform.machine() in ("x86_64", "AMD64"):
    for _var, _isa in (("ATEN_CPU_CAPABILITY", "avx2"), ("OPENBLAS_CORETYPE", "Haswell"),
                       ("FAISS_OPT_LEVEL", "avx2")):
        os.environ.setdefault(_var, _isa)

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THAWREC_SHARED", REPO.parent / "shared"))
# The real MovieLens-100K (RecBole atomic files): THAWREC_ML100K, else ../shared/data/ml-100k.
ML100K = Path(os.environ.get("THAWREC_ML100K", SHARED / "data" / "ml-100k"))
# A small look-alike in the same layout, in the repository (tests/fixtures/make_ml100k_mini.py).
ML100K_MINI = REPO / "tests" / "fixtures" / "ml-100k-mini"

torch.set_num_threads(min(2, torch.get_num_threads()))


def real_ml100k() -> Path | None:
    return ML100K if (ML100K / "ml-100k.inter").exists() else None


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real ML-100K; tests that need it skip, saying where it was looked for, when it is absent
    (a fresh clone without ../shared). CI has ../shared and runs them."""
    if real_ml100k() is None:
        pytest.skip(f"real MovieLens-100K not found at {ML100K}: set THAWREC_ML100K to its folder "
                    "(or THAWREC_SHARED to the shared/ folder) to run the real-data tests")
    return ML100K


@pytest.fixture(scope="session")
def ml100k_mini_dir() -> Path:
    """The in-repository ML-100K look-alike (same RecBole layout, 3,000 ratings)."""
    return ML100K_MINI


@pytest.fixture(scope="session")
def mail_world():
    """A tiny world with MAIL's protocol: 40% of users new (behaviour removed); (feature map,
    columns per part)."""
    from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
    from thawrec.data.splits import mask_new_users, temporal_split
    from thawrec.data.synthetic import SynthConfig, generate

    ds, _ = generate(SynthConfig(n_users=400, n_items=200, n_interactions=12000, seed=6))
    split = mask_new_users(temporal_split(ds.interactions, valid_frac=0.1, test_frac=0.125), frac=0.4, seed=0)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 20]}, mask_new_behaviour=True))
    pipe.fit(ds, split.train)
    return pipe.feature_map, {p: pipe.transform(ds, getattr(split, p)) for p in ("train", "valid", "test")}
