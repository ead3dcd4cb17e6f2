"""The Trainer owns the loop: device, optimizers, clipping, early stopping, checkpoints, logs.

Resuming from ``checkpoints/last.pt`` reproduces an uninterrupted run exactly: checkpoints are
taken at epoch boundaries with every RNG state, and the batch reader's shuffle is a pure
function of (seed, epoch).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from thawrec import progress
from thawrec.config import TrainConfig
from thawrec.errors import ConfigError
from thawrec.models.base import RecModel
from thawrec.train import dist as tdist
from thawrec.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device '{name}'. Fix: use auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no GPU is visible. Fix: use --device auto or cpu")
    return dev


def build_optimizers(groups: list[dict[str, Any]], cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    opts = []
    for g in groups:
        kind = g.get("optimizer", "adam")
        lr = g.get("lr", cfg.sparse_lr if (kind == "sparse_adam" and cfg.sparse_lr) else cfg.lr)
        if kind == "adam":
            opts.append(torch.optim.Adam(g["params"], lr=lr, weight_decay=g.get("weight_decay", cfg.weight_decay)))
        elif kind == "sparse_adam":
            opts.append(torch.optim.SparseAdam(g["params"], lr=lr))
        elif kind == "sgd":
            opts.append(torch.optim.SGD(g["params"], lr=lr))
        else:
            raise ConfigError(f"param group '{g.get('name')}' asks for unknown optimizer '{kind}'")
    return opts


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model: RecModel, batches: Iterable[dict[str, torch.Tensor]], device: torch.device) -> dict[str, np.ndarray]:
    """Probabilities per task over batches, concatenated in order."""
    was = model.training
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        for t, p in model.predict(to_device(batch, device)).items():
            chunks.setdefault(t, []).append(p.float().cpu().numpy())
    model.train(was)
    return {t: np.concatenate(v) for t, v in chunks.items()}


class Trainer:
    """Fit a RecModel. ``evaluate(model) -> dict[str, float]`` scores the validation set."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, label: str = "model") -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir else None
        self.device = resolve_device(cfg.device)
        self.label = label  # names the model in progress lines

    # ------------------------------------------------------------------------------------------
    def fit(
        self,
        model: RecModel,
        train_batches: Any,
        evaluate: Callable[[RecModel], dict[str, float]],
        *,
        resume: bool = False,
    ) -> FitResult:
        cfg = self.cfg
        seed_everything(cfg.seed)
        model.to(self.device)
        groups = model.param_groups()
        optimizers = build_optimizers(groups, cfg)
        info = tdist.current()
        net: nn.Module = model
        if info.enabled:
            if len({tuple(g["loss"]) if g.get("loss") else None for g in groups}) > 1:
                raise ConfigError("models with per-group objectives cannot run under DDP yet. "
                                  "Fix: train them with one process")
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[info.local_rank] if self.device.type == "cuda" else None)
        sign = 1.0 if cfg.monitor_mode == "max" else -1.0
        start_epoch, history = 0, []
        best_score, best_epoch, bad_epochs, best_state = -np.inf, -1, 0, None
        ckpt_path = self.run_dir / "checkpoints" / "last.pt" if self.run_dir else None
        save_here = ckpt_path is not None and info.is_main

        if resume:
            if ckpt_path is None or not ckpt_path.exists():
                raise ConfigError(f"--resume given but no checkpoint at {ckpt_path}. Fix: drop --resume")
            st = load_checkpoint(ckpt_path)
            model.load_state_dict(st["model"])
            for o, s in zip(optimizers, st["optimizers"]):
                o.load_state_dict(s)
            start_epoch, history = st["epoch"] + 1, st["history"]
            best_score, best_epoch, bad_epochs = st["best_score"], st["best_epoch"], st["bad_epochs"]
            best_state = st["best_model"]
            set_rng_state(st["rng"])
            log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)

        t_total, n_total = 0.0, 0
        self.steps = history[-1].get("step", 0) if history else 0
        for epoch in range(start_epoch, cfg.epochs):
            if bad_epochs >= cfg.patience or (cfg.max_steps is not None and self.steps >= cfg.max_steps):
                break
            if hasattr(train_batches, "set_epoch"):
                train_batches.set_epoch(epoch)
            t0 = time.perf_counter()
            sums, n_seen = self._run_epoch(model, net, groups, optimizers, train_batches, epoch)
            if epoch == start_epoch:
                _check_loss_terms(groups, sums)
            if info.enabled:
                _average_buffers(model, info.world_size)
            secs = time.perf_counter() - t0
            t_total, n_total = t_total + secs, n_total + n_seen
            metrics = evaluate(model)
            if cfg.monitor not in metrics:
                raise ConfigError(f"monitor '{cfg.monitor}' not among validation metrics {sorted(metrics)}")
            row = {"epoch": epoch, "step": self.steps, **{f"train_{k}": v for k, v in sums.items()},
                   **{f"valid_{k}": v for k, v in metrics.items()},
                   "seconds": secs, "samples_per_second": n_seen / max(secs, 1e-9)}
            history.append(row)
            score = sign * metrics[cfg.monitor]
            if score > best_score:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            log.info("epoch %d %s", epoch, {k: round(v, 5) for k, v in row.items() if k != "epoch"})
            if info.is_main:
                progress.note("%s epoch %d/%d: loss %.4f, valid %s %.4f%s (%.1f s)", self.label, epoch + 1, cfg.epochs,
                              sums.get("loss", float("nan")), cfg.monitor, metrics[cfg.monitor],
                              " *" if best_epoch == epoch else "", secs)
            if save_here:
                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                    "epoch": epoch, "history": history, "best_score": best_score, "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs, "best_model": best_state, "rng": rng_state(),
                    "train_config": asdict(cfg),
                })
                self._write_log(history)
        if best_state is not None:
            model.load_state_dict(best_state)
        return FitResult(best_epoch, sign * best_score, history, t_total, n_total / max(t_total, 1e-9))

    # ------------------------------------------------------------------------------------------
    def _run_epoch(self, model: RecModel, net: nn.Module, groups, optimizers, batches,
                   epoch: int) -> tuple[dict[str, float], int]:
        """One pass; ``net`` is the model or its DDP wrapper (forward through it, loss from the model)."""
        model.train()
        sums: dict[str, float] = {}
        n_batches = n_seen = 0
        total = len(batches) if hasattr(batches, "__len__") else None
        # Which optimizers step on which loss: None = the total loss.
        by_loss: dict[tuple[str, ...] | None, list[int]] = {}
        for i, g in enumerate(groups):
            key = tuple(g["loss"]) if g.get("loss") else None
            by_loss.setdefault(key, []).append(i)
        show = self.cfg.progress and tdist.current().is_main
        with progress.bar(show, total, f"{self.label} epoch {epoch}") as advance:
            for batch in batches:
                batch = to_device(batch, self.device)
                out = net(batch)
                terms = model.compute_loss(batch, out)
                total_loss = sum(terms.values())
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                if len(by_loss) == 1 and None in by_loss:
                    total_loss.backward()
                else:
                    self._backward_per_group(groups, by_loss, terms, total_loss)
                self._clip(groups)
                for o in optimizers:
                    o.step()
                model.on_batch_end(batch, out)
                self.steps += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["loss"] = sums.get("loss", 0.0) + float(total_loss.detach())
                n_batches += 1
                n_seen += len(next(iter(batch.values())))
                advance()
                if self.cfg.max_steps is not None and self.steps >= self.cfg.max_steps:
                    break  # the step budget is spent: this (partial) epoch is the last
        return {k: v / max(n_batches, 1) for k, v in sums.items()}, n_seen

    @staticmethod
    def _backward_per_group(groups, by_loss, terms, total_loss) -> None:
        """Each set of groups gets gradients of its own objective only (e.g. MAIL's G_A / G_B)."""
        keys = list(by_loss)
        for j, key in enumerate(keys):
            params = [p for i in by_loss[key] for p in groups[i]["params"]]
            present = [terms[t] for t in key if t in terms] if key is not None else [total_loss]
            if not present:  # e.g. MAIL's zero-shot loss on a batch without any old user: no step
                for p in params:
                    p.grad = None
                continue
            loss = sum(present)
            grads = torch.autograd.grad(loss, params, retain_graph=j < len(keys) - 1, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = g

    def _clip(self, groups) -> None:
        """Norm-clip each dense param group's gradients to ``grad_clip`` on its own: every group is
        one optimizer, and a joint norm would let one objective's large gradients (MAIL's L_zst)
        shrink another's steps (L_rt). Sparse groups (SparseAdam's embedding tables) stay unclipped."""
        if not self.cfg.grad_clip:
            return
        for g in groups:
            if g.get("optimizer", "adam") == "sparse_adam":
                continue
            dense = [p for p in g["params"] if p.grad is not None]
            if dense:
                nn.utils.clip_grad_norm_(dense, self.cfg.grad_clip)

    def _write_log(self, history: list[dict[str, float]]) -> None:
        path = self.run_dir / "train_log.csv"
        keys = sorted({k for r in history for k in r}, key=lambda k: (k != "epoch", k))
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(history)


def _check_loss_terms(groups: list[dict[str, Any]], produced: dict[str, float]) -> None:
    """A param group that optimises a loss term the model never produced in a whole epoch would
    silently train on nothing: refuse it, naming the term and what the model does produce."""
    for g in groups:
        missing = [t for t in (g.get("loss") or []) if t not in produced]
        if missing:
            made = sorted(k for k in produced if k != "loss")
            raise ConfigError(f"param group '{g.get('name')}' optimises loss term(s) {missing} that the model never "
                              f"produced in a whole epoch (it produced {made}). Fix: name terms the model's "
                              "compute_loss returns in that group's 'loss' list")


@torch.no_grad()
def _average_buffers(model: nn.Module, world_size: int) -> None:
    """BatchNorm running statistics are rank-local under DDP; average them so every rank
    evaluates and checkpoints the same model."""
    for b in model.buffers():
        if b.is_floating_point():
            tdist.all_reduce_sum(b)
            b.div_(world_size)
