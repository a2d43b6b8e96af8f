"""Rows left out by `--skip-invalid`: where they go and how they are announced.

A command run with `--skip-invalid` collects its reader's `DataError`s instead of stopping at the
first, goes on with the good rows, writes every bad one with its location and reason to a
`*.rejected.jsonl` beside its output, and says on stderr how many it skipped and where the first
few were. Without the option the readers raise at the first bad row, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefkit.core.errors import DataError

SHOWN = 3  # locations named on stderr


def rejected_path(out: str | Path) -> Path:
    """`kept.jsonl` -> `kept.rejected.jsonl`; a folder `out/x` -> `out/x.rejected.jsonl` beside it."""
    out = Path(out)
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(f"{name}.rejected.jsonl")


def rejected_rows(errors: Sequence[DataError]) -> list[dict[str, Any]]:
    """One JSON-ready row per bad record: where, field, reason, and the record as read."""
    return [
        {
            "file": e.file,
            "line": e.line,
            "row": e.row,
            "field": e.field,
            "reason": e.message,
            "record": getattr(e, "record", None),
        }
        for e in errors
    ]


def write_rejected(errors: Sequence[DataError], path: str | Path, *, marker: str | None = None) -> int:
    """The rejected rows to `path` (JSONL), with the marker of command `marker` in the same commit."""
    from prefkit.core.writers import write_rows

    return write_rows(rejected_rows(errors), path, marker=marker)


def nothing_valid(source: str | Path, errors: Sequence[DataError] | None) -> DataError:
    """The error of a command that read no valid row: every one was bad (with `--skip-invalid`),
    or there were none. Raised before anything is written or created."""
    if errors:
        return DataError(
            f"no valid rows: all {len(errors)} were bad, so nothing was written (first: {errors[0]})", file=source
        )
    return DataError("no rows to read, so nothing was written", file=source)


def skipped_line(errors: Sequence[DataError], path: str | Path | None) -> str:
    """One stderr line: how many rows were skipped, the first few locations, where they went."""
    first = "; ".join(str(e) for e in errors[:SHOWN])
    more = f"; … {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
    to = f" (all with reasons in {path})" if path is not None else ""
    return f"skipped {len(errors)} invalid row(s){to}: {first}{more}"
