"""The real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

from prefkit.core.errors import DataError
from prefkit.data.readers import read_preferences, read_prompts, source_format
from prefkit.data.validate import validate_source


def test_hh_rlhf_harmless_test_split(shared_data: Path) -> None:
    path = shared_data / "hh_rlhf_harmless_test.jsonl.gz"
    assert source_format(path) == "hh_rlhf"
    errors: list[DataError] = []
    rows = read_preferences(path, errors=errors)
    # four real rows end with an empty assistant answer: reported with their lines, not read
    assert len(rows) + len(errors) == 2312
    assert all(e.field in ("chosen", "rejected") and "empty answer" in e.message for e in errors)
    first = rows[0]
    # the turns are kept: history (user, assistant, …) and the last user turn as the question
    assert first.history[0] == ("user", "what are some pranks with a pen i can do?")
    assert [role for role, _ in first.history] == ["user", "assistant"] * (len(first.history) // 2)
    assert first.question == "okay some of these do not have anything to do with pens"
    assert first.chosen.startswith("No, sorry!") and "Human:" not in first.chosen
    multi = [r for r in rows if r.history]
    assert len(multi) > len(rows) // 2 and all("Human:" not in r.question for r in rows)
    # the harmless split is red-teaming: every prompt reads as adversarial (a safety set)
    assert all(r.adversarial for r in rows) and all(p.adversarial for p in read_prompts(path, errors=[]))
    # the same last user turn under different histories stays two prompts
    assert len({r.prompt_id for r in rows}) > len({r.question for r in rows})
    report = validate_source(path, max_errors=10)
    assert report.n_errors == len(errors) and report.rows == 2312


def test_vi_alpaca_prompts(shared_data: Path) -> None:
    path = shared_data / "vi_alpaca_prompts.jsonl"
    assert source_format(path) == "prompt_response"
    prompts = read_prompts(path)
    assert 44_000 < len(prompts) <= 45_000
    assert len({p.id for p in prompts}) == len(prompts)
