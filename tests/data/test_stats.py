"""`data.stats.compute_stats` on files with broken lines and on text-free (judgement) rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.stats import compute_stats


def test_malformed_line_counts_as_unreadable(write_jsonl: Callable[..., Path]) -> None:
    good = {"question": "q", "chosen": "c", "rejected": "r"}
    stats = compute_stats(write_jsonl([good, "{bad json", {**good, "question": "q2"}]), near_duplicates=False)
    assert (stats["rows"], stats["bad_rows"], stats["format"]) == (2, 1, "vi_alpaca_preference")
