"""`prefkit data validate`: read a source end to end and report what is wrong with it.

Unlike the readers, validation goes on past a bad record so the user sees the first N errors
(with file, line/row and field) in one run; over-long fields are warnings, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefkit.core.errors import DataError
from prefkit.data.formats import check_column_map, detect_format, preference_warning
from prefkit.data.readers import canonical_record
from prefkit.data.sources import ColumnMap, iter_records, parquet_columns, source_kind


@dataclass
class FieldStats:
    present: int = 0
    empty: int = 0
    max_chars: int = 0
    over_long: int = 0


@dataclass
class ValidationReport:
    source: str
    format: str | None = None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    fields: dict[str, FieldStats] = field(default_factory=dict)
    n_errors: int = 0
    errors: list[DataError] = field(default_factory=list)
    n_warnings: int = 0
    warnings: list[DataError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.n_errors == 0


def validate_source(
    source: str | Path,
    *,
    max_chars: int = 32_000,
    max_errors: int = 20,
    split: str | None = None,
    columns: ColumnMap | None = None,
) -> ValidationReport:
    """Read every record of `source` (its columns renamed by `columns`, as every reader does);
    raises DataError only if the source cannot be read at all. Columns that look like
    preference data the format does not use are a warning (`preference_warning`)."""
    if columns:
        check_column_map(columns)
    report = ValidationReport(source=str(source))
    seen_columns: dict[str, None] = {}

    def error(e: DataError) -> None:
        report.n_errors += 1
        if len(report.errors) < max_errors:
            report.errors.append(e)

    def warning(e: DataError) -> None:
        report.n_warnings += 1
        if len(report.warnings) < max_errors:
            report.warnings.append(e)

    if source_kind(source) == "parquet":
        back = {column: name for name, column in (columns or {}).items()}
        for c in parquet_columns(source):
            seen_columns.setdefault(back.get(c, c))
        report.format = detect_format(list(seen_columns), file=str(source))
    for loc, rec in iter_records(source, split, columns):
        report.rows += 1
        if isinstance(rec, DataError):
            error(rec)
            continue
        for name, value in rec.items():
            seen_columns.setdefault(name)
            st = report.fields.setdefault(name, FieldStats())
            if value is None:
                continue
            st.present += 1
            if isinstance(value, str):
                if not value.strip():
                    st.empty += 1
                st.max_chars = max(st.max_chars, len(value))
                if len(value) > max_chars:
                    st.over_long += 1
                    warning(loc.error(f"{len(value)} characters (over {max_chars})", name))
        if report.format is None:
            try:
                report.format = detect_format(list(rec), rec, file=str(source), loc=loc)
            except DataError as e:  # this record tells no format: a bad record; the next may tell it
                error(e)
                continue
        try:
            canonical_record(report.format, rec, loc)  # converts as the reader would
        except DataError as e:
            error(e)
    report.columns = list(seen_columns)
    odd = preference_warning(report.columns, report.format) if report.format else None
    if odd:
        warning(DataError(odd, file=str(source)))
    if report.rows == 0:
        error(DataError("no records", file=str(source)))
    return report
