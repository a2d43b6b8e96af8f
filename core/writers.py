"""Write records by file suffix (.jsonl, .jsonl.gz, .json, .parquet), always atomically.

The typed writers of the data model (pairs, judgements, exported rows, with their Arrow schemas)
are `prefkit.data.writers`; this module knows rows and files, not what the rows mean.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefkit.core.atomic import atomic_files, atomic_path
from prefkit.core.errors import DataError

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


def output_suffix(path: Path) -> str:
    """The writable suffix `path` ends with; raises `DataError` when it has none."""
    name = path.name.lower()
    for s in SUFFIXES:
        if name.endswith(s):
            return s
    raise DataError(f"unknown output type (expected {', '.join(SUFFIXES)})", file=path)


def write_rows(
    rows: Iterable[Mapping[str, Any]], path: str | Path, schema: pa.Schema | None = None, *, marker: str | None = None
) -> int:
    """Write `rows` to `path` by its suffix (atomic: temp file, then rename). Returns the count.

    JSONL is streamed; JSON and Parquet gather the rows first. `schema` fixes Parquet types.
    `marker` (a command's name) commits the file's output marker with it (`prefkit.core.outputs`).
    """
    path = Path(path)
    suffix = output_suffix(path)
    with atomic_files([path], marker=marker) as (tmp,):
        n = write_rows_to(rows, tmp, suffix, schema)
    return n


def write_rows_to(rows: Iterable[Mapping[str, Any]], tmp: Path, suffix: str, schema: pa.Schema | None = None) -> int:
    """Write `rows` in the format of `suffix` to `tmp` as it is (no rename): for callers that
    commit several files as one unit (`prefkit.core.atomic.atomic_files`). Returns the count."""
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
