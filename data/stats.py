"""`prefkit data stats`: counts, length distributions, strength distribution, duplicate rates."""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.dedup import dedup_records
from prefkit.data.readers import canonical_records
from prefkit.data.shingles import words
from prefkit.data.sources import ColumnMap

TEXT_FIELDS = ("question", "system", "chosen", "rejected", "response", "a", "b")
PERCENTILES = (50, 90, 99)


def _normalise(text: str) -> str:
    """Identical after NFC and whitespace collapsing counts as an exact duplicate."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _distribution(values: list[int]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values)
    out = {"min": int(arr.min()), "mean": round(float(arr.mean()), 1)}
    out.update({f"p{p}": round(float(np.percentile(arr, p)), 1) for p in PERCENTILES})
    out["max"] = int(arr.max())
    return out


def _near_duplicate_rate(questions: list[str]) -> float | None:
    """Share of prompts the MinHash dedup would drop."""
    if not questions:
        return None
    kept, _report = dedup_records([{"question": q} for q in questions], ["question"])
    return 1 - len(kept) / len(questions)


def compute_stats(
    source: str | Path, split: str | None = None, *, near_duplicates: bool = True, columns: ColumnMap | None = None
) -> dict[str, Any]:
    bad: list[DataError] = []  # stats describe the readable rows; `validate` lists the bad ones
    fmt, records = canonical_records(source, split, errors=bad, columns=columns)
    lengths: dict[str, tuple[list[int], list[int]]] = {}
    strengths: Counter[str] = Counter()
    annotators: set[str] = set()
    rows = 0
    seen_rows: set[tuple[tuple[str, Any], ...]] = set()
    duplicate_rows = 0
    questions: list[str] = []
    for _loc, rec in records:
        rows += 1
        for name in TEXT_FIELDS:
            text = rec.get(name)
            if text:
                chars, word_counts = lengths.setdefault(name, ([], []))
                chars.append(len(text))
                word_counts.append(len(words(text)))
        if "strength" in rec:
            strengths[rec["strength"].value if rec["strength"] is not None else "none"] += 1
        if "annotator" in rec:
            annotators.add(rec["annotator"])
        # The whole canonical record, so rows without text (judgements) differ by their other fields.
        key = tuple((name, _normalise(v) if isinstance(v, str) else v) for name, v in sorted(rec.items()))
        if key in seen_rows:
            duplicate_rows += 1
        seen_rows.add(key)
        if rec.get("question"):
            questions.append(rec["question"])
    distinct_questions = len({_normalise(q) for q in questions})
    stats: dict[str, Any] = {
        "source": str(source),
        "format": fmt,
        "rows": rows,
        "bad_rows": len(bad),
        "prompts": distinct_questions,
        "lengths": {
            name: {"chars": _distribution(chars), "words": _distribution(word_counts)}
            for name, (chars, word_counts) in lengths.items()
        },
        "strength": dict(sorted(strengths.items())),
        "exact_duplicate_rows": duplicate_rows,
        "exact_duplicate_rate": duplicate_rows / rows if rows else 0.0,
        "duplicate_prompt_rate": (1 - distinct_questions / len(questions)) if questions else 0.0,
    }
    if annotators:
        stats["annotators"] = len(annotators)
    if near_duplicates:
        near = _near_duplicate_rate(questions)
        if near is not None:
            stats["near_duplicate_prompt_rate"] = near
    return stats
