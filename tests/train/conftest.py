"""Shared fixtures for the train room: preference datasets exported the way `prefkit data export` does."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from prefkit.data.export import export_dataset
from prefkit.data.schema import PreferenceRow, Strength

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


# the preferred answers hold one of these (polite words); the others hold a distractor of the same
# token count in the same place. Several of each, so a random model has no single token to favour.
MARKERS = ["cảm ơn", "xin mời", "làm ơn", "kính chào", "trân trọng", "vui lòng"]
DISTRACTORS = [
    "rất tốt",
    "hôm nay",
    "bánh mì",
    "cà phê",
    "mùa thu",
    "áo dài",
    "sông Hồng",
    "quang hợp",
    "Hà Nội",
    "ngon lành",
    "xanh tươi",
    "nhỏ bé",
    "to lớn",
    "đẹp đẽ",
    "chủ đề",
    "một hai",
    "con mèo",
    "trời mưa",
]


def balanced_marker_rows(n: int, tokenizer, seed: int = 0) -> list[PreferenceRow]:
    """Pairs the model must read: chosen and rejected are the same words except one slot, which holds
    a marker (MARKERS) in chosen and a distractor in rejected, at a random position, with the same
    number of tokens (so length tells nothing); strengths cycle."""
    rng = random.Random(seed)
    levels = list(Strength)
    rows: list[PreferenceRow] = []
    i = 0
    while len(rows) < n:
        topic = TOPICS[i % len(TOPICS)]
        question = f"{VERBS[(i // len(TOPICS)) % len(VERBS)]} {topic} (câu {i})."
        body = [topic, *rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn", "nhỏ", "hay", "vui"], 4)]
        pos = rng.randrange(len(body) + 1)
        chosen = " ".join(body[:pos] + [rng.choice(MARKERS)] + body[pos:])
        n_chosen = len(tokenizer(chosen, add_special_tokens=False)["input_ids"])
        for d in rng.sample(DISTRACTORS, len(DISTRACTORS)):
            rejected = " ".join(body[:pos] + [d] + body[pos:])
            if len(tokenizer(rejected, add_special_tokens=False)["input_ids"]) == n_chosen:
                rows.append(
                    PreferenceRow(
                        question=question, chosen=chosen, rejected=rejected, strength=levels[len(rows) % len(levels)]
                    )
                )
                break
        i += 1
    return rows


@pytest.fixture(scope="session")
def make_balanced_rows(tiny_model_path):
    """`balanced_marker_rows(n, seed)` with the tiny model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    return lambda n, seed=0: balanced_marker_rows(n, tok, seed)
