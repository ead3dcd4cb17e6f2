"""Shared test fixtures: the real ML-100K beside the checkout, tiny worlds, quiet training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THAWREC_SHARED", REPO.parent / "shared"))
ML100K = SHARED / "data" / "ml-100k"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    assert (ML100K / "ml-100k.inter").exists(), (
        f"real MovieLens-100K not found at {ML100K}; set THAWREC_SHARED to the shared/ folder"
    )
    return ML100K
