"""What the ID-embedding baselines (Meta-Embedding, MWUF) share: which fields describe a user
besides the ID, and which rows carry an ID never seen in training."""

from __future__ import annotations

import torch

from thawrec.data.preprocess import UNK
from thawrec.data.schema import FeatureMap
from thawrec.errors import ConfigError


def user_attribute_fields(feature_map: FeatureMap, id_field: str = "user_id") -> list[str]:
    """Categorical user-table features other than the ID (age, gender, occupation, ...)."""
    fields = [f.name for f in feature_map.features
              if f.table == "users" and f.kind == "categorical" and f.name != id_field]
    if not fields:
        raise ConfigError(f"no user attributes besides '{id_field}' in the feature map: an ID embedding "
                          "cannot be generated from nothing. Fix: import user attributes (age, gender, ...)")
    return fields


def unknown_ids(ids: torch.Tensor) -> torch.Tensor:
    """Rows whose ID maps to the 'unknown' index: the ID had no training row (a new user)."""
    return ids == UNK
