"""`train(cfg)`: one pure function from a RunConfig to a trained, evaluated run folder.

The folder holds config.yaml, features/ (the fitted feature pipeline: vocabularies fitted on
train only), checkpoints/last.pt, model.pt (best weights), train_log.csv and metrics.json, so
`thawrec eval RUN_DIR` and a server can rebuild exactly what was trained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from thawrec.config import RunConfig, load_config, save_config
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.schema import Dataset, atomic_write_text
from thawrec.errors import ConfigError
from thawrec.data.worlds import load_world
from thawrec.eval.groups import group_masks
from thawrec.eval.metrics import binary_metrics
from thawrec.registry import build_model
from thawrec.train import dist as tdist
from thawrec.train.fit import score_model, train_model

log = logging.getLogger(__name__)


def split_for(ds: Dataset, protocol: dict[str, Any]):
    from thawrec.data import splits

    p = dict(protocol)
    name = p.pop("name", "new_vs_regular")
    if name == "new_vs_regular":
        return splits.time_window_new_users(ds.interactions, **p)
    if name == "temporal":
        return splits.temporal_split(ds.interactions, mark_new=True, **p)
    if name == "by_user":
        return splits.by_user_split(ds.interactions, **p)
    raise ConfigError(f"unknown protocol '{name}'. Fix: use new_vs_regular, temporal or by_user")


def _prepare(cfg: RunConfig, pipeline: FeaturePipeline | None = None):
    ds, name = load_world(cfg.data, cfg.synth)
    split = split_for(ds, cfg.protocol)
    if pipeline is None:
        h = int(cfg.features.get("history_len", 30))
        pipeline = FeaturePipeline(FeatureConfig(
            sequences={"hist_items": ["item_id", h], "hist_tags": ["tags", h]}, labels=["label"],
        )).fit(ds, split.train)
    return ds, name, split, pipeline


def evaluate_parts(model, pipeline, ds, split, cfg: RunConfig, parts=("test",)) -> dict[str, Any]:
    results = {}
    for part in parts:
        cols = pipeline.transform(ds, getattr(split, part))
        p = score_model(model, cols, cfg.train.eval_batch_size, cfg.train.device)["label"]
        results[part] = {g: binary_metrics(cols["label"][m], p[m], cols["_user"][m])
                         for g, m in group_masks(cols).items() if m.any()}
    return results


def train(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    info = tdist.init_from_env()  # a no-op for one process; joins torchrun's group otherwise
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ds, name, split, pipe = _prepare(cfg)
    if info.is_main:
        save_config(cfg, out / "config.yaml")
        pipe.save(out / "features")
    cols = {part: pipe.transform(ds, getattr(split, part)) for part in ("train", "valid")}
    model = build_model(cfg.model, pipe.feature_map, cfg.model_cfg)
    trained = train_model(model, cols["train"], cols["valid"], cfg.train, out, task="label", resume=resume)
    metrics = {"dataset": name, "best_epoch": trained.fit.best_epoch, "best_valid": trained.fit.best_score,
               "samples_per_second": trained.fit.samples_per_second,
               **evaluate_parts(model, pipe, ds, split, cfg)}
    if info.is_main:
        torch.save(model.state_dict(), out / "model.pt")
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    tdist.barrier()
    return metrics


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists() or not (run_dir / "model.pt").exists():
        raise ConfigError(f"{run_dir} is not a finished run (needs config.yaml and model.pt). "
                          "Fix: run `thawrec train CONFIG.yaml` first")
    cfg = load_config(run_dir / "config.yaml")
    pipe = FeaturePipeline.load(run_dir / "features")
    ds, name, split, pipe = _prepare(cfg, pipe)
    model = build_model(cfg.model, pipe.feature_map, cfg.model_cfg)
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu"))
    model.to(torch.device("cpu"))
    return {"dataset": name, **evaluate_parts(model, pipe, ds, split, cfg, parts=("valid", "test"))}
