"""Writers: every suffix round-trips through the readers; a failed write leaves nothing behind."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prefkit.core.errors import DataError
from prefkit.core.writers import write_rows
from prefkit.data.readers import read_preferences, read_rows
from prefkit.data.schema import EXPORT_COLUMNS, PreferenceRow
from prefkit.data.writers import write_preferences


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".parquet"])
def test_preferences_round_trip_by_suffix(tmp_path: Path, vi_rows: list[dict], suffix: str) -> None:
    rows = [PreferenceRow(**r) for r in vi_rows]
    path = tmp_path / f"prefs{suffix}"
    assert write_preferences(rows, path) == len(rows)
    assert read_preferences(path) == rows


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_preference_row_round_trips_through_its_record(tmp_path: Path, suffix: str) -> None:
    row = PreferenceRow(
        "q",
        "good",
        "bad",
        strength="better",
        margin=2 / 3,
        n_annotators=3,
        agreement=2 / 3,
        system="s",
        source="src",
        chosen_meta={"model": "m", "seed": 3},
        rejected_meta={"temperature": 1.0},
    )
    rec = row.to_record()
    assert tuple(rec) == EXPORT_COLUMNS
    path = tmp_path / f"row{suffix}"
    write_preferences([row], path)
    assert [r.to_record() for r in read_preferences(path)] == [rec]


def test_parquet_keeps_types_of_all_null_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_preferences([PreferenceRow("q", "a", "b")], path)
    schema = pq.read_schema(path)
    assert tuple(schema.names) == EXPORT_COLUMNS
    assert str(schema.field("chosen_temperature").type) == "double"
    assert str(schema.field("chosen_seed").type) == "int64"
    assert str(schema.field("system").type) == "string"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_rows([{"a": 1}], path)

    def rows_then_fail():
        yield {"a": 2}
        raise RuntimeError("generator broke mid-way")

    with pytest.raises(RuntimeError):
        write_rows(rows_then_fail(), path)
    assert [rec for _, rec in read_rows(path)] == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_unknown_suffix_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown output type"):
        write_rows([{"a": 1}], tmp_path / "out.csv")
    assert not list(tmp_path.iterdir())


def test_write_json_is_atomic_and_writes_objects_as_text(tmp_path):
    import json
    from datetime import datetime

    from prefkit.core.writers import write_json

    target = tmp_path / "report.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_json(target, {1j: "complex key"})  # a key JSON cannot hold
    assert json.loads(target.read_text()) == {"old": True}  # a failed write leaves the old file
    when = datetime(2026, 1, 2, tzinfo=UTC)
    write_json(target, {"path": tmp_path, "when": when, "text": "Xin chào"})
    assert target.read_text(encoding="utf-8").endswith("\n") and "Xin chào" in target.read_text(encoding="utf-8")
    assert json.loads(target.read_text()) == {"path": str(tmp_path), "when": str(when), "text": "Xin chào"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
