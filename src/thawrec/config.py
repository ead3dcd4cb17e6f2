"""Typed run configs from YAML (yaml.safe_load; never eval), overridable by CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thawrec.errors import ConfigError
from thawrec.train.trainer import TrainConfig


@dataclass
class RunConfig:
    """One training run: where the data is, which protocol splits it, which model, how to train."""

    data: str | None = None  # canonical folder, RecBole folder, or None = the synthetic world
    out: str = "runs/train"
    model: str = "base_dnn"
    model_cfg: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=lambda: {"name": "new_vs_regular", "window": 0.2})
    features: dict[str, Any] = field(default_factory=lambda: {"history_len": 30})
    synth: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "RunConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of options")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"{source}: unknown option(s) {sorted(unknown)}. Fix: valid options are "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        d = dict(d)
        try:
            d["train"] = TrainConfig.from_dict(d.get("train"))
        except ConfigError as e:
            raise ConfigError(f"{source}: train: {e}") from e
        except TypeError as e:
            raise ConfigError(f"{source}: train: {e}") from e
        return cls(**d)


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found. Fix: pass a YAML file, e.g. "
                          "src/thawrec/configs/base_ml100k.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return RunConfig.from_dict(raw, source=str(path))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
