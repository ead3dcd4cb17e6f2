"""Where a run's data comes from: a canonical dataset folder, a RecBole atomic folder (imported on
the fly), or the built-in synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thawrec.data.schema import Dataset, read_dataset
from thawrec.errors import DataError

__all__ = ["load_world"]


def load_world(data: str | Path | None, synth_options: dict[str, Any] | None = None) -> tuple[Dataset, str]:
    """``(dataset, name)``: ``data`` is a canonical folder, a RecBole folder, or None for the
    synthetic world drawn with ``synth_options`` (:class:`~thawrec.data.synthetic.SynthConfig`)."""
    if data is None:
        from thawrec.data.synthetic import SynthConfig, generate

        ds, _ = generate(SynthConfig(**(synth_options or {})))
        return ds, "synthetic"
    path = Path(data)
    if (path / "interactions.parquet").exists():
        ds = read_dataset(path)
        return ds, ds.meta.get("name") or path.name
    if path.is_dir() and any(path.glob("*.inter")):
        from thawrec.data.sources import load_source

        return load_source("recbole", path), path.name
    raise DataError(
        "not a dataset folder (no interactions.parquet and no RecBole *.inter file)",
        file=str(path),
        fix="import it first with `thawrec data import FORMAT SRC --out DIR`, or pass a RecBole folder",
    )
