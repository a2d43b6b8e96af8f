"""Shared fixtures for the train room: preference datasets exported the way `prefkit data export` does."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from data.export import export_dataset
from data.schema import PreferenceRow, Strength

TOPICS = ["phở", "cà phê", "Hà Nội", "mùa thu", "quang hợp", "bánh mì", "sông Hồng", "áo dài", "trà", "lúa"]
VERBS = ["Giải thích", "Mô tả", "Kể về", "Viết về", "Nói về"]
MARKER = "Cảm ơn bạn rất nhiều!"  # the learnable preference: chosen answers end with it


def marker_rows(n: int, seed: int = 0) -> list[PreferenceRow]:
    """Pairs whose chosen answer ends with MARKER and whose rejected one does not; strengths cycle."""
    rng = random.Random(seed)
    levels = list(Strength)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        question = f"{VERBS[(i // len(TOPICS)) % len(VERBS)]} {topic} (câu {i})."
        body = f"{topic} là một chủ đề hay. " + " ".join(rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn", "nhỏ"], 3))
        rows.append(
            PreferenceRow(question=question, chosen=f"{body} {MARKER}", rejected=body, strength=levels[i % len(levels)])
        )
    return rows


@pytest.fixture(scope="session")
def marker_dataset(tmp_path_factory) -> Path:
    """An exported DatasetDict folder (train/test split by prompt, margins 'small') of marker pairs."""
    out = tmp_path_factory.mktemp("marker") / "ds"
    export_dataset(marker_rows(160), out, test_size=0.25, seed=1, margin="small")
    return out


@pytest.fixture(scope="session")
def memorise_dataset(tmp_path_factory) -> Path:
    """A few rows repeated, for SFT to memorise (JSONL per split via a `{split}` path)."""
    out = tmp_path_factory.mktemp("memorise")
    rows = marker_rows(4)
    export_dataset(rows * 1, out / "ds", test_size=0.25, seed=1, jsonl=True)
    return out / "ds"


@pytest.fixture(scope="session")
def make_marker_rows():
    """`marker_rows(n, seed)` for tests that build their own files."""
    return marker_rows
