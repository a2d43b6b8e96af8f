"""Pair building and the filter: empty, identical and near-identical pairs go; truncated ones stay, flagged."""

from __future__ import annotations

import unicodedata

import pytest

from prefkit.data.schema import Pair, Prompt, Response
from prefkit.data.shingles import jaccard
from prefkit.generate.pairs import build_pairs, drop_reason

PROMPT = Prompt("Vì sao bầu trời có màu xanh?")
LONG = (
    "Bầu trời có màu xanh vì ánh sáng mặt trời bị tán xạ bởi các phân tử không khí, và ánh sáng "
    "xanh có bước sóng ngắn nên bị tán xạ mạnh hơn nhiều so với ánh sáng đỏ."
)


def resp(text: str, finish: str = "stop", temperature: float = 0.7) -> Response:
    return Response(text, model="m", temperature=temperature, top_p=0.9, seed=1, finish_reason=finish, n_tokens=5)


def reason(a: Response, b: Response, **kw) -> str | None:
    why = drop_reason(
        Pair(PROMPT, a, b), near_duplicate_threshold=kw.pop("threshold", 0.9), **{"drop_truncated": False, **kw}
    )
    return why[0] if why else None


def test_empty_response_is_dropped():
    assert reason(resp(""), resp(LONG)) == "empty_response"
    assert reason(resp(LONG), resp(" \n\t")) == "empty_response"


@pytest.mark.parametrize(
    "other",
    [
        LONG,
        LONG.upper(),
        "  " + LONG.replace(" ", "   ") + "  ",
        unicodedata.normalize("NFD", LONG),
        LONG.replace(",", ""),
    ],
)
def test_identical_after_normalisation_is_dropped(other):
    assert reason(resp(LONG), resp(other, temperature=1.2)) == "identical"


def test_near_identical_is_dropped_and_different_is_kept():
    one_word = LONG.replace("mạnh hơn nhiều", "mạnh hơn rất nhiều")
    assert jaccard(LONG, one_word) >= 0.9
    assert reason(resp(LONG), resp(one_word)) == "near_identical"
    other = "Vì các phân tử khí tán xạ ánh sáng xanh nhiều nhất, hiện tượng này gọi là tán xạ Rayleigh."
    assert jaccard(LONG, other) < 0.5
    assert reason(resp(LONG), resp(other)) is None
    # A strict threshold keeps what a loose one drops.
    assert reason(resp(LONG), resp(one_word), threshold=1.0) is None


def test_jaccard_of_shingles():
    assert jaccard("a b c", "a b d", ngram=1) == pytest.approx(2 / 4)
    assert jaccard("a b c", "a b d", ngram=2) == pytest.approx(1 / 3)  # "a b" of {"a b", "b c", "b d"}
    assert jaccard("a b c", "a b d") == jaccard("a b c", "a b d", ngram=1)  # 3 words: unigrams
    assert jaccard("", "  ,. ") == 1.0 and jaccard("", "chữ") == 0.0


def test_truncated_is_kept_and_flagged_unless_asked():
    a, b = resp(LONG, "length"), resp("Một câu trả lời khác hẳn.", "stop")
    assert reason(a, b) is None
    assert reason(a, b, drop_truncated=True) == "truncated"


def test_build_pairs_keeps_generation_order_and_metadata():
    texts = ["Câu trả lời thứ nhất về bầu trời.", "", "Một cách giải thích hoàn toàn khác về ánh sáng."]
    responses = [resp(t, temperature=t_) for t, t_ in zip(texts, (0.6, 0.9, 1.2), strict=True)]
    kept, dropped = build_pairs(
        PROMPT, responses, ["s0", "s1", "s2"], [(0, 1), (0, 2), (1, 2)], near_duplicate_threshold=0.9
    )
    assert [(p.a.temperature, p.b.temperature) for p in kept] == [(0.6, 1.2)]
    assert kept[0].prompt == PROMPT and kept[0].a is responses[0] and kept[0].b is responses[2]
    assert [(d.a, d.b, d.reason) for d in dropped] == [("s0", "s1", "empty_response"), ("s1", "s2", "empty_response")]
    assert dropped[0].to_dict()["prompt_id"] == PROMPT.id
