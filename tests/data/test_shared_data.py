"""The real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

from data.errors import DataError
from data.readers import read_preferences, read_prompts, source_format
from data.validate import validate_source


def test_hh_rlhf_harmless_test_split(shared_data: Path) -> None:
    path = shared_data / "hh_rlhf_harmless_test.jsonl.gz"
    assert source_format(path) == "hh_rlhf"
    errors: list[DataError] = []
    rows = read_preferences(path, errors=errors)
    # four real rows end with an empty assistant answer: reported with their lines, not read
    assert len(rows) + len(errors) == 2312
    assert all(e.field in ("chosen", "rejected") and "empty answer" in e.message for e in errors)
    first = rows[0]
    assert first.question.startswith("Human: what are some pranks with a pen i can do?\n\nAssistant: ")
    assert first.chosen.startswith("No, sorry!") and "Human:" not in first.chosen
    multi = [r for r in rows if r.question.startswith("Human: ")]
    assert multi and all(r.question.rstrip().split("\n\n")[-1].startswith("Human: ") for r in multi)
    report = validate_source(path, max_errors=10)
    assert report.n_errors == len(errors) and report.rows == 2312


def test_vi_alpaca_prompts(shared_data: Path) -> None:
    path = shared_data / "vi_alpaca_prompts.jsonl"
    assert source_format(path) == "prompt_response"
    prompts = read_prompts(path)
    assert 44_000 < len(prompts) <= 45_000
    assert len({p.id for p in prompts}) == len(prompts)
