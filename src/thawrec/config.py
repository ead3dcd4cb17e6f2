"""Typed configs from YAML (yaml.safe_load; never eval), overridable by CLI flags, and the one rule
every config in thawrec follows: an unknown key is an error that names it and the valid ones."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from thawrec.errors import ConfigError

__all__ = ["TrainConfig", "RunConfig", "load_config", "save_config", "resolve_options"]


def resolve_options(owner: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None,
                    *, nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """``defaults`` overridden by ``given``, refusing any key ``defaults`` does not have.

    Keys in ``nested`` hold dicts that are merged (and checked) one level down, e.g. POSO's
    ``poso: {mlp, mha, mmoe}``. Returns a deep copy, so defaults are never shared between models.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {unknown}. Fix: valid options are {sorted(defaults)}")
    out = copy.deepcopy(dict(defaults))
    for k, v in given.items():
        if k in nested and v is not None:
            if not isinstance(v, Mapping):
                raise ConfigError(f"{owner}: '{k}' must be a mapping, got {v!r}. Fix: e.g. {defaults[k]}")
            out[k] = resolve_options(f"{owner}.{k}", defaults[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class TrainConfig:
    """How the Trainer fits a model: epochs, batch sizes, optimizer settings, early stopping."""

    epochs: int = 10
    max_steps: int | None = None  # optimizer-step budget: stop (mid-epoch if need be) once reached
    batch_size: int = 1024
    eval_batch_size: int = 8192
    lr: float = 1e-3
    sparse_lr: float | None = None
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    patience: int = 2
    monitor: str = "auc"
    monitor_mode: str = "max"
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        return cls(**resolve_options("train", asdict(cls()), d))


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
        return asdict(self)

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
        except (ConfigError, TypeError) as e:
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
