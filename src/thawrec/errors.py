"""One error family. Every message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class ThawrecError(Exception):
    """Base of every error thawrec raises on purpose."""


class DataError(ThawrecError):
    """Bad input data: names the file, the row (0-based, data rows) and the column."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem, self.file, self.row, self.column, self.fix = problem, file, row, column, fix
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        msg = (", ".join(where) + ": " if where else "") + problem
        if fix:
            msg += f". Fix: {fix}"
        super().__init__(msg)


class ConfigError(ThawrecError):
    """A config file or flag that cannot be used as given."""
