"""Shared fixtures for the train room: preference datasets exported the way `prefkit data export` does.

Every preference fixture here (`marker_dataset`, `make_marker_rows`, `make_balanced_rows`) is
length-balanced: a pair's chosen and rejected answers have the same number of tokens (and words),
so a model that scores length cannot tell them apart, and each fixture checks that as it builds
(`assert_same_token_count`). `sft_rows` (answers to imitate, for SFT) is not a preference set.

Learning tests take a `learning_seed` argument: one run per seed, the seeds `@pytest.mark.seeds(...)`
names (default 0), or every seed of `PREFKIT_TEST_SEEDS` ("0-9", "0,3,5") for a sweep outside the
suite (docs/developers/testing.md, "Learning tests").
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from prefkit.data.export import export_dataset
from prefkit.data.schema import PreferenceRow, Strength

TOPICS = ["phở", "cà phê", "Hà Nội", "mùa thu", "quang hợp", "bánh mì", "sông Hồng", "áo dài", "trà", "lúa"]
VERBS = ["Giải thích", "Mô tả", "Kể về", "Viết về", "Nói về"]
SFT_ENDING = "Cảm ơn bạn rất nhiều!"  # every SFT answer ends with it: something to learn


def _seeds(spec: str) -> list[int]:
    """ "0-9" or "0,3,5" (or both: "0-4,7") -> the seeds."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def pytest_configure(config):
    config.addinivalue_line("markers", "seeds(*seeds): the seeds a learning test runs at in the suite (default 0)")


def pytest_generate_tests(metafunc):
    """A test (or a fixture it uses) that takes `learning_seed` runs once per seed: PREFKIT_TEST_SEEDS
    when set (a sweep), else its `seeds` marker's, else 0. Module scope: a module's fixture that
    trains (test_reward's `trained`) trains once per seed."""
    if "learning_seed" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("seeds")
    env = os.environ.get("PREFKIT_TEST_SEEDS")
    seeds = _seeds(env) if env else list(marker.args) if marker else [0]
    metafunc.parametrize("learning_seed", seeds, scope="module", ids=[f"seed{s}" for s in seeds])


def sft_rows(n: int, seed: int = 0) -> list[PreferenceRow]:
    """Rows for SFT to imitate: '<topic> là một chủ đề hay. <3 words> SFT_ENDING'. NOT a preference set
    (the rejected answer is the chosen one without its ending: longer wins), so no preference test uses it."""
    rng = random.Random(seed)
    levels = list(Strength)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        question = f"{VERBS[(i // len(TOPICS)) % len(VERBS)]} {topic} (câu {i})."
        body = f"{topic} là một chủ đề hay. " + " ".join(rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn", "nhỏ"], 3))
        rows.append(
            PreferenceRow(
                question=question, chosen=f"{body} {SFT_ENDING}", rejected=body, strength=levels[i % len(levels)]
            )
        )
    return rows


@pytest.fixture(scope="session")
def memorise_dataset(tmp_path_factory) -> Path:
    """A few SFT rows, for SFT to memorise (JSONL per split via a `{split}` path)."""
    out = tmp_path_factory.mktemp("memorise")
    export_dataset(sft_rows(4), out / "ds", test_size=0.25, seed=1, jsonl=True)
    return out / "ds"


@pytest.fixture(scope="session")
def make_sft_rows():
    """`sft_rows(n, seed)` for SFT tests that build their own files."""
    return sft_rows


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def assert_same_token_count(rows: Sequence[PreferenceRow], tokenizer) -> None:
    """Every pair's chosen and rejected answers have the same number of tokens: length tells nothing."""
    for i, r in enumerate(rows):
        c, j = token_count(tokenizer, r.chosen), token_count(tokenizer, r.rejected)
        assert c == j, f"row {i}: chosen has {c} tokens, rejected {j}: a length-only scorer could tell them apart"


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
def tiny_tokenizer(tiny_model_path):
    """The tiny model's tokenizer (the one every length here is counted in)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="session")
def assert_balanced(tiny_tokenizer):
    """`assert_same_token_count(rows)` in the tiny model's tokens."""
    return lambda rows: assert_same_token_count(rows, tiny_tokenizer)


@pytest.fixture(scope="session")
def make_marker_rows(tiny_tokenizer):
    """`balanced_marker_rows(n, seed)` with the tiny model's tokenizer, checked: same token count per pair."""

    def make(n: int, seed: int = 0) -> list[PreferenceRow]:
        rows = balanced_marker_rows(n, tiny_tokenizer, seed)
        assert_same_token_count(rows, tiny_tokenizer)
        return rows

    return make


@pytest.fixture(scope="session")
def make_balanced_rows(make_marker_rows):
    """The same as `make_marker_rows` (both are length-balanced; older tests name this one)."""
    return make_marker_rows


@pytest.fixture(scope="session")
def marker_dataset(tmp_path_factory, make_marker_rows, tiny_tokenizer) -> Path:
    """An exported DatasetDict folder (train/test split by prompt, margins 'small') of 160 length-balanced
    marker pairs; what was written is read back and checked (same token count per pair)."""
    from prefkit.data.readers import read_preferences

    out = tmp_path_factory.mktemp("marker") / "ds"
    export_dataset(make_marker_rows(160), out, test_size=0.25, seed=1, margin="small")
    for split in ("train", "test"):
        assert_same_token_count(read_preferences(out, split), tiny_tokenizer)
    return out


# --- held-out evaluation, computed here (not by prefkit's scoring code) ----------------------------


class HeldOut:
    """A learning test's own measurements on the held-out pairs of an export folder: the pairs read
    from disk and turned into chat messages here, each conversation scored by one forward pass of its
    own (no batching, no padding), so a bug in prefkit's data preparation or scoring cannot also bend
    the yardstick. Accuracy counts chosen strictly above rejected: on pairs of equal token count a
    length-only or constant scorer ties every pair and scores 0 (0.5 with ties broken by a coin)."""

    @staticmethod
    def pairs(source: Path, split: str = "test") -> list[tuple[list[dict[str, str]], str, str, str | None]]:
        """(prompt messages, chosen, rejected, strength) of each row of `split`, as written."""
        from prefkit.data.readers import read_preferences

        return [
            ([{"role": "user", "content": r.question}], r.chosen, r.rejected, r.strength.value if r.strength else None)
            for r in read_preferences(source, split)
        ]

    @staticmethod
    def _ids(tok, prompt: list[dict[str, str]], answer: str) -> list[int]:
        convo = [*prompt, {"role": "assistant", "content": answer}]
        return tok.apply_chat_template(convo, tokenize=True, return_dict=True)["input_ids"]

    @staticmethod
    def reward_margins(model, tok, pairs) -> list[float]:
        """r(chosen) − r(rejected) of each pair, a reward model's score of each conversation alone."""
        import torch

        model.eval()

        def score(prompt, answer) -> float:
            with torch.no_grad():
                ids = torch.tensor([HeldOut._ids(tok, prompt, answer)], device=model.device)
                return model(input_ids=ids).logits[0, 0].float().item()

        return [score(p, c) - score(p, r) for p, c, r, _ in pairs]

    @staticmethod
    def logratios(model, tok, pairs) -> list[float]:
        """log π(chosen | prompt) − log π(rejected | prompt) of each pair, a causal LM's answer tokens
        (those after the chat template's prompt, the end-of-turn token included)."""
        import torch

        model.eval()

        def logp(prompt, answer) -> float:
            n_prompt = len(
                tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)[
                    "input_ids"
                ]
            )
            ids = torch.tensor([HeldOut._ids(tok, prompt, answer)], device=model.device)
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            return lp.gather(-1, ids[0, 1:, None]).squeeze(-1)[n_prompt - 1 :].sum().item()

        return [logp(p, c) - logp(p, r) for p, c, r, _ in pairs]

    @staticmethod
    def accuracy(margins: Sequence[float]) -> float:
        """The share of pairs whose margin is > 0 (a tie is not a win)."""
        return sum(m > 0 for m in margins) / len(margins)

    @staticmethod
    def learned(before: Sequence[float], after: Sequence[float], record=None) -> tuple[float, float]:
        """(accuracy before, after) on the same pairs, handed to `record` (pytest's `record_property`:
        a sweep's --junitxml keeps them) and checked as every learning test asks: after ≥ 0.85 (a
        length-only or constant scorer gets 0 on equal-length pairs, 0.5 with a coin), the error at
        most half the start model's (whose accuracy is what it is, not 0.5 by construction: 0.28–0.85
        over seeds here), and the mean margin up."""
        acc_before, acc_after = HeldOut.accuracy(before), HeldOut.accuracy(after)
        if record is not None:
            record("held_out_accuracy", (acc_before, acc_after))
        assert acc_after >= 0.85 and 1 - acc_after <= (1 - acc_before) / 2, (acc_before, acc_after)
        assert sum(after) / len(after) > sum(before) / len(before), (before, after)
        return acc_before, acc_after


@pytest.fixture(scope="session")
def held_out() -> type[HeldOut]:
    """`HeldOut`: the learning tests' own held-out pairs and measurements (tests cannot import conftest)."""
    return HeldOut
