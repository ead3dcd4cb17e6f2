"""Shared test fixtures: the real ML-100K beside the checkout, tiny worlds, quiet training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
