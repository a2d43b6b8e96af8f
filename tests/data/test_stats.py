"""`prefkit.data.stats.compute_stats` on files with broken lines and on text-free (judgement) rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefkit.data.stats import compute_stats


def test_malformed_line_counts_as_unreadable(write_jsonl: Callable[..., Path]) -> None:
    good = {"question": "q", "chosen": "c", "rejected": "r"}
    stats = compute_stats(write_jsonl([good, "{bad json", {**good, "question": "q2"}]), near_duplicates=False)
    assert (stats["rows"], stats["bad_rows"], stats["format"]) == (2, 1, "vi_alpaca_preference")


def test_distinct_judgements_are_not_exact_duplicates(write_jsonl: Callable[..., Path]) -> None:
    rows = [{"pair_id": f"p{i}", "annotator": "an", "preferred": "r1", "strength": "better"} for i in range(3)]
    stats = compute_stats(write_jsonl(rows + [rows[0]]), near_duplicates=False)
    assert (stats["format"], stats["rows"], stats["exact_duplicate_rows"]) == ("judgements", 4, 1)


def test_word_counts_split_at_punctuation(write_jsonl: Callable[..., Path]) -> None:
    stats = compute_stats(write_jsonl([{"prompt": "Xin chào,thế giới!", "response": "a-b c"}]), near_duplicates=False)
    assert stats["lengths"]["question"]["words"]["max"] == 4
    assert stats["lengths"]["response"]["words"]["max"] == 3
