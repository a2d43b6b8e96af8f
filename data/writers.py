"""Write the data model's records (pairs, judgements, exported rows) through `prefkit.core.writers`.

Typed Arrow schemas for pairs, judgements and exported preference rows keep Parquet columns
stable even when a column is all null (e.g. no `system` anywhere), so files concatenate and
round-trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prefkit.core.writers import write_rows
from prefkit.data.schema import EXPORT_COLUMNS, JUDGEMENT_COLUMNS, PAIR_COLUMNS, Judgement, Pair, PreferenceRow

if TYPE_CHECKING:
    import pyarrow as pa


_FLOAT_FIELDS = {"margin", "agreement", "temperature", "top_p", "seconds"}
_INT_FIELDS = {"n_annotators", "n_model_annotators", "seed", "n_tokens", "votes_chosen", "votes_rejected"}
_BOOL_FIELDS = {"adversarial", "unsafe"}  # adversarial, chosen_unsafe, rejected_unsafe


def _arrow_type(column: str) -> pa.DataType:
    import pyarrow as pa

    base = column
    for side in ("a_", "b_", "chosen_", "rejected_"):
        if column.startswith(side):
            base = column[len(side) :]
            break
    if column in _INT_FIELDS:  # votes_chosen / votes_rejected: counts, not a chosen_* metadata field
        return pa.int64()
    if base in _FLOAT_FIELDS:
        return pa.float64()
    if base in _INT_FIELDS:
        return pa.int64()
    if base in _BOOL_FIELDS:
        return pa.bool_()
    return pa.string()


def export_schema() -> pa.Schema:
    """The exported dataset's columns (`prefkit.data.schema.EXPORT_COLUMNS`) with their types."""
    import pyarrow as pa

    return pa.schema([(c, _arrow_type(c)) for c in EXPORT_COLUMNS])


def pair_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(c, _arrow_type(c)) for c in PAIR_COLUMNS])


def judgement_schema() -> pa.Schema:
    """A judgement table's columns (`prefkit.data.schema.JUDGEMENT_COLUMNS`) with their types."""
    import pyarrow as pa

    special = {"unsafe": pa.list_(pa.string()), "seconds": pa.float64()}
    return pa.schema([(c, special.get(c, pa.string())) for c in JUDGEMENT_COLUMNS])


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> int:
    return write_rows((p.to_row() for p in pairs), path, schema=pair_schema())


def write_preferences(rows: Iterable[PreferenceRow], path: str | Path) -> int:
    return write_rows((r.to_record() for r in rows), path, schema=export_schema())


def write_judgements(judgements: Iterable[Judgement], path: str | Path, *, marker: str | None = None) -> int:
    return write_rows((j.to_row() for j in judgements), path, schema=judgement_schema(), marker=marker)
