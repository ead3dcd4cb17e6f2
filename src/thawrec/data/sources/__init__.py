"""Importers: raw files in a known format -> canonical :class:`~thawrec.data.schema.Dataset`.

``load_source`` returns the Dataset; ``import_dataset`` also writes it (``write_dataset``) and
returns an :class:`ImportReport` so the CLI can say what happened, including filtered counts.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from thawrec.data.schema import Dataset, write_dataset
from thawrec.data.sources.amazon import load_amazon
from thawrec.data.sources.movielens import load_ml1m, load_ml20m, load_ml100k
from thawrec.data.sources.recbole import load_recbole
from thawrec.data.sources.tabular import load_tabular
from thawrec.data.sources.taobao_ad import load_taobao_ad
from thawrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "ml-100k": load_ml100k,
    "ml-1m": load_ml1m,
    "ml-20m": load_ml20m,
    "recbole": load_recbole,
    "tabular": load_tabular,
    "taobao-ad": load_taobao_ad,
    "amazon": load_amazon,
}
FORMATS: tuple[str, ...] = tuple(_LOADERS)


@dataclass
class ImportReport:
    """What an import produced; ``filtered`` maps reason -> rows dropped (also in meta)."""

    out: Path
    n_users: int
    n_items: int
    n_interactions: int
    filtered: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    format: str = ""

    def summary(self) -> str:
        dropped = sum(self.filtered.values())
        return (f"{self.format}: {self.n_users:,} users, {self.n_items:,} items, {self.n_interactions:,} "
                f"interactions -> {self.out} in {self.seconds:.2f}s ({dropped} row(s) filtered)")


def _loader(fmt: str) -> Callable[..., Dataset]:
    key = fmt.strip().lower()
    if key == "ml-latest":
        key = "ml-20m"
    if key not in _LOADERS:
        raise DataError(f"unknown format '{fmt}'", column="format",
                        fix=f"use one of {', '.join(FORMATS)}")
    return _LOADERS[key]


def load_source(fmt: str, src: str | Path, **options: Any) -> Dataset:
    """Read and validate raw files of format ``fmt`` into a Dataset (nothing written)."""
    loader = _loader(fmt)
    params = inspect.signature(loader).parameters
    unknown = [k for k in options if k not in params or k == "src"]
    if unknown:
        valid = [p for p in params if p != "src"]
        raise ConfigError(f"unknown option(s) {unknown} for format '{fmt}'. Fix: valid options are {valid}")
    if not Path(src).exists():
        raise DataError("source path not found", file=str(src), fix="check the path to the raw dataset")
    ds = loader(src, **options)
    ds.meta["source"] = {"format": fmt, "path": str(Path(src).resolve())}
    return ds


def import_dataset(fmt: str, src: str | Path, out: str | Path, **options: Any) -> ImportReport:
    """Import raw files into a canonical dataset folder at ``out``."""
    t0 = time.perf_counter()
    ds = load_source(fmt, src, **options)
    path = write_dataset(ds, out)
    rep = ImportReport(
        out=Path(path), n_users=ds.users.height, n_items=ds.items.height, n_interactions=ds.interactions.height,
        filtered=dict(ds.meta.get("filtered", {})), seconds=time.perf_counter() - t0, format=fmt,
    )
    log.info(rep.summary())
    return rep


__all__ = ["FORMATS", "ImportReport", "import_dataset", "load_source", "load_amazon",
           "load_ml100k", "load_ml1m", "load_ml20m", "load_recbole", "load_tabular", "load_taobao_ad"]
