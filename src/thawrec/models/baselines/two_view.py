"""What the deep clustering baselines of DAUC's Table 2 share (DEC, IDEC, DCCAE, COMPLETER): checked
configs, the per-view autoencoders, the reconstruction loss, and :class:`TwoViewClusterer`, the
common shape of the two-view methods (DCCAE, COMPLETER)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thawrec.config import resolve_options
from thawrec.errors import ConfigError
from thawrec.models.clustering import DeepClusterer, UserViews
from thawrec.nn.mlp import MLP

RECON_LOSSES = ("bce", "mse")


def resolve_config(model: str, defaults: dict[str, Any], cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``defaults`` overridden by ``cfg``; an unknown key is a :class:`ConfigError`."""
    return resolve_options(model, defaults, cfg)


def check_dims(model: str, key: str, dims: Any) -> list[int]:
    if (not isinstance(dims, (list, tuple)) or not dims
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims)):
        raise ConfigError(f"{model}: '{key}' must be a non-empty list of positive layer sizes, got {dims!r}. "
                          "Fix: e.g. [800, 600, 400] (the last is the representation size)")
    return [int(d) for d in dims]


def check_positive(model: str, cfg: dict[str, Any], *keys: str, allow_zero: bool = False) -> None:
    for key in keys:
        v = cfg[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            raise ConfigError(f"{model}: '{key}' must be a {'non-negative' if allow_zero else 'positive'} number, "
                              f"got {v!r}. Fix: set {key} {'>= 0' if allow_zero else '> 0'}")


def check_recon_loss(model: str, kind: Any) -> str:
    if kind not in RECON_LOSSES:
        raise ConfigError(f"{model}: unknown recon_loss {kind!r}. Fix: choose one of {list(RECON_LOSSES)} "
                          "('mse' as the original papers, 'bce' for the binary side view's likelihood)")
    return kind


def check_dim(model: str, name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{model}: {name} must be a positive integer, got {value!r}. "
                          "Fix: pass the number of columns of that view (e.g. views.side.shape[1])")
    return int(value)


def view_encoder(in_dim: int, dims: list[int], act: str, batch_norm: bool = False) -> MLP:
    """``in_dim -> dims[0] -> ... -> dims[-1]``: activation on the hidden layers, linear output."""
    return MLP(in_dim, dims[:-1], out_dim=dims[-1], act=act, batch_norm=batch_norm)


def view_decoder(dims: list[int], out_dim: int, act: str, batch_norm: bool = False) -> MLP:
    """The mirrored decoder ``dims[-1] -> ... -> dims[0] -> out_dim`` with a linear output (logits
    for ``bce``, values for ``mse``)."""
    return MLP(dims[-1], list(reversed(dims[:-1])), out_dim=out_dim, act=act, batch_norm=batch_norm)


@torch.no_grad()
def init_logit_bias(layer: nn.Linear, views: UserViews, done: torch.Tensor) -> None:
    """Once (``done``: a bool buffer saved with the weights): set the output bias of the side
    decoder to ``logit`` of each column's frequency in ``views.side`` (clipped to [1e-4, 1 - 1e-4]),
    so a ``bce`` autoencoder starts at the column priors instead of at probability 0.5."""
    if bool(done):
        return
    if layer.out_features != views.side.shape[1]:
        raise ConfigError(f"the side decoder has {layer.out_features} outputs but the side view has "
                          f"{views.side.shape[1]} columns. Fix: build the model with side_dim = views.side.shape[1]")
    freq = np.asarray(views.side.mean(axis=0), dtype=np.float64).ravel().clip(1e-4, 1 - 1e-4)
    layer.bias.copy_(torch.from_numpy(np.log(freq / (1 - freq))).to(layer.bias))
    done.fill_(True)


def reconstruction_loss(out: torch.Tensor, x: torch.Tensor, kind: str, per_user_sum: bool = False) -> torch.Tensor:
    """Sigmoid cross-entropy of logits (``bce``) or squared error (``mse``): the mean over all
    entries, or with ``per_user_sum`` summed over each user's dimensions and averaged over users."""
    if kind == "bce":
        err = F.binary_cross_entropy_with_logits(out, x, reduction="none")
    else:
        err = (out - x).pow(2)
    return err.sum(1).mean() if per_user_sum else err.mean()


class TwoViewClusterer(DeepClusterer):
    """What DCCAE and COMPLETER share: built from both views' widths, trained for ``cfg["epochs"]``
    at ``cfg["lr"]``, clustered on the side-view code, BCE output bias set from the app rates."""

    cfg: dict[str, Any]
    defaults: dict[str, Any]
    method: str

    def _configure(self, side_dim: int, target_dim: int, cfg: dict[str, Any] | None) -> tuple[list[int], list[int]]:
        """Checked config and view widths; returns the side and target encoder widths."""
        name = self.method
        self.cfg = resolve_config(name, self.defaults, cfg)
        self.side_dim = check_dim(name, "side_dim", side_dim)
        self.target_dim = check_dim(name, "target_dim", target_dim)
        return (check_dims(name, "side_encoder", self.cfg["side_encoder"]),
                check_dims(name, "target_encoder", self.cfg["target_encoder"]))

    @classmethod
    def from_views(cls, views: UserViews, cfg: dict[str, Any] | None = None) -> TwoViewClusterer:
        return cls(views.side.shape[1], views.target.shape[1], cfg)

    @property
    def fit_defaults(self) -> dict[str, Any]:
        return {"epochs": int(self.cfg["epochs"]), "lr": float(self.cfg["lr"])}

    def represent(self, side: torch.Tensor) -> torch.Tensor:
        return self.side_encoder(side)

    def on_epoch_start(self, epoch: int, views: UserViews) -> None:
        if self.recon_kind == "bce":
            init_logit_bias(self.side_decoder[-1], views, self.side_bias_ready)
