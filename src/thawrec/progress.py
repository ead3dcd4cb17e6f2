"""Progress on long work that reads well both in a terminal and in a log file.

In a terminal a transient rich bar shows the batches of the running epoch. When the output is not
a terminal (piped to a file, CI, ``nohup``), bars would leave blank lines and nothing else, so
there are none; instead every epoch, clustering epoch and (model, seed) run reports one plain line
through the ``thawrec.progress`` logger (the CLI shows it at INFO). Library code never prints.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

log = logging.getLogger("thawrec.progress")

__all__ = ["interactive", "bar", "note"]


def interactive() -> bool:
    """True when progress bars make sense: stderr is a terminal and ``THAWREC_PROGRESS`` is not
    ``plain``."""
    if os.environ.get("THAWREC_PROGRESS", "").lower() == "plain":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def note(msg: str, *args: Any) -> None:
    """One plain progress line (an epoch, a seed, a model) on the ``thawrec.progress`` logger."""
    log.info(msg, *args)


class bar:
    """``with bar(enabled, total, label) as advance: ... advance()``: a transient rich bar when
    ``enabled`` and the output is a terminal, otherwise a no-op ``advance``."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.enabled = enabled and interactive()
        self.total, self.label = total, label

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True)
        self.p.__enter__()
        task = self.p.add_task(self.label, total=self.total)
        return lambda: self.p.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.p.__exit__(*exc)
