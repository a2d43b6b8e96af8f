"""Write records by file suffix (.jsonl, .jsonl.gz, .json, .parquet), always atomically.

Typed Arrow schemas for pairs, judgements and exported preference rows keep Parquet columns
stable even when a column is all null (e.g. no `system` anywhere), so files concatenate and
round-trip.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.atomic import atomic_path
from data.errors import DataError
from data.schema import EXPORT_COLUMNS, PAIR_COLUMNS, Judgement, Pair, PreferenceRow

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """One JSON document (a report, a manifest, a summary), UTF-8, written then renamed;
    paths, datetimes and other objects are written as their str."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


_FLOAT_FIELDS = {"margin", "agreement", "temperature", "top_p", "seconds"}
_INT_FIELDS = {"n_annotators", "seed", "n_tokens"}
_BOOL_FIELDS = {"adversarial", "unsafe"}  # adversarial, chosen_unsafe, rejected_unsafe


def _arrow_type(column: str) -> pa.DataType:
    import pyarrow as pa

    base = column
    for side in ("a_", "b_", "chosen_", "rejected_"):
        if column.startswith(side):
            base = column[len(side) :]
            break
    if base in _FLOAT_FIELDS:
        return pa.float64()
    if base in _INT_FIELDS:
        return pa.int64()
    if base in _BOOL_FIELDS:
        return pa.bool_()
    return pa.string()


def export_schema() -> pa.Schema:
    """The exported dataset's columns (`data.schema.EXPORT_COLUMNS`) with their types."""
    import pyarrow as pa

    return pa.schema([(c, _arrow_type(c)) for c in EXPORT_COLUMNS])


def pair_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(c, _arrow_type(c)) for c in PAIR_COLUMNS])


def judgement_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("pair_id", pa.string()),
            ("annotator", pa.string()),
            ("preferred", pa.string()),
            ("strength", pa.string()),
            ("shown_left", pa.string()),
            ("shown_right", pa.string()),
            ("unsafe", pa.list_(pa.string())),
            ("rationale", pa.string()),
            ("seconds", pa.float64()),
            ("created_at", pa.string()),
        ]
    )


def output_suffix(path: Path) -> str:
    """The writable suffix `path` ends with; raises `DataError` when it has none."""
    name = path.name.lower()
    for s in SUFFIXES:
        if name.endswith(s):
            return s
    raise DataError(f"unknown output type (expected {', '.join(SUFFIXES)})", file=path)


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | Path, schema: pa.Schema | None = None) -> int:
    """Write `rows` to `path` by its suffix (atomic: temp file, then rename). Returns the count.

    JSONL is streamed; JSON and Parquet gather the rows first. `schema` fixes Parquet types.
    """
    path = Path(path)
    suffix = output_suffix(path)
    with atomic_path(path) as tmp:
        return write_rows_to(rows, tmp, suffix, schema)


def write_rows_to(rows: Iterable[Mapping[str, Any]], tmp: Path, suffix: str, schema: pa.Schema | None = None) -> int:
    """Write `rows` in the format of `suffix` to `tmp` as it is (no rename): for callers that
    commit several files as one unit (`data.atomic.atomic_files`). Returns the count."""
    n = 0
    if suffix in (".jsonl", ".jsonl.gz"):
        opener = gzip.open if suffix == ".jsonl.gz" else open
        with opener(tmp, "wt", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(dict(row), ensure_ascii=False, default=str) + "\n")
                n += 1
    elif suffix == ".json":
        data = [dict(r) for r in rows]
        tmp.write_text(json.dumps(data, ensure_ascii=False, default=str, indent=1) + "\n", encoding="utf-8")
        n = len(data)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = [dict(r) for r in rows]
        table = pa.Table.from_pylist(data, schema=schema) if schema is not None else pa.Table.from_pylist(data)
        pq.write_table(table, tmp)
        n = len(data)
    return n


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> int:
    return write_rows((p.to_row() for p in pairs), path, schema=pair_schema())


def write_preferences(rows: Iterable[PreferenceRow], path: str | Path) -> int:
    return write_rows((r.to_record() for r in rows), path, schema=export_schema())


def write_judgements(judgements: Iterable[Judgement], path: str | Path) -> int:
    return write_rows((j.to_row() for j in judgements), path, schema=judgement_schema())
