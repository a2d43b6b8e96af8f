"""Errors that reach the user: each names the file, the line or row, and the field.

The `prefkit` command turns a `PrefkitError` into one line on stderr and exit code 2, and a
`RunFailed` (the run broke for a reason outside the input) into one line and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (library errors can run to pages), or its type's
    name when it has no text: for one-line `DataError`/`ConfigError` messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PrefkitError(Exception):
    """A problem the user can fix (bad input, bad config). Shown without a traceback, exit 2."""


class DataError(PrefkitError):
    """Bad input data. `line` is 1-based for text formats; `row` is 0-based for tables.
    `record` is the bad record as read, when a reader skipped it (`--skip-invalid`)."""

    record: Any = None

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.row = row
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field '{self.field}'")
        return (", ".join(where) + ": " if where else "") + self.message


class ConfigError(PrefkitError):
    """Bad configuration: unknown key, wrong type, impossible combination."""


class RunFailed(Exception):
    """A run that broke for a reason outside the user's input or config (an engine ended a request
    without an answer). Shown as one line without a traceback (`--debug` shows it), exit 1; what
    was already written stays (a resumable command continues with `--resume`)."""
