"""Figures of the reports (PNG, no screen needed): matplotlib is set up here once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save", "plot_training_curves"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only; works on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Tight layout, write ``path``, close the figure (figures are not kept in memory)."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_training_curves(histories: dict[str, list[dict[str, float]]], path: str | Path,
                         metric: str = "valid_auc", loss: str = "train_loss") -> Path:
    """Two panels: training loss and validation metric per epoch, one line per run."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, hist in histories.items():
        ep = [h["epoch"] + 1 for h in hist]
        axes[0].plot(ep, [h.get(loss, float("nan")) for h in hist], marker="o", label=name)
        axes[1].plot(ep, [h.get(metric, float("nan")) for h in hist], marker="o", label=name)
    axes[0].set(title="training loss", xlabel="epoch", ylabel=loss)
    axes[1].set(title="validation " + metric.replace("valid_", "").upper(), xlabel="epoch", ylabel=metric)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)
