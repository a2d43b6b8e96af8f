"""The bundled sample and the data demo (validate -> dedup -> export) that runs on it."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import datasets

from prefkit.data.demo import run_data_demo, sample_path
from prefkit.data.readers import read_preferences, read_rows
from prefkit.data.validate import validate_source


def test_bundled_sample_is_valid_varied_and_has_planted_near_duplicates() -> None:
    report = validate_source(sample_path())
    assert report.ok and report.format == "vi_alpaca_preference"
    rows = read_preferences(sample_path())
    questions = [r.question for r in rows]
    normalised = {" ".join(unicodedata.normalize("NFC", q).casefold().split()) for q in questions}
    assert len(normalised) >= 58
    assert any(not unicodedata.is_normalized("NFC", q) for q in questions)  # an NFD twin
    assert all(r.chosen != r.rejected and len(r.chosen) > len(r.rejected) for r in rows)
    assert len({r.strength for r in rows}) >= 3


def test_data_demo_exports_deduplicated_sample(tmp_path: Path, capsys) -> None:
    dataset = run_data_demo(tmp_path)
    assert dataset == tmp_path / "dataset"
    loaded = datasets.load_from_disk(str(dataset))
    n_in = sum(1 for _ in read_rows(sample_path()))
    n_out = sum(1 for _ in read_rows(tmp_path / "deduped.jsonl"))
    assert loaded["train"].num_rows + loaded["test"].num_rows == n_out < n_in
    exported = [*loaded["train"]["question"], *loaded["test"]["question"]]
    assert all(unicodedata.is_normalized("NFC", q) for q in exported)  # NFD twins were removed
    assert set(loaded["train"]["question"]).isdisjoint(loaded["test"]["question"])
    assert (dataset / "README.md").read_text().count("apache-2.0") == 1
    out = capsys.readouterr().out
    assert "1. validate" in out and "2. dedup" in out and "3. export" in out
