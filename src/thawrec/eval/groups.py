"""User groups a report breaks metrics down by (new vs regular users, ...), as boolean row masks
over feature columns."""

from __future__ import annotations

import numpy as np

__all__ = ["group_masks"]


def group_masks(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``all``, ``new`` and ``regular`` rows by the ``_is_new`` column the splits mark."""
    new = cols["_is_new"].astype(bool)
    return {"all": np.ones_like(new), "new": new, "regular": ~new}
