"""The shared data model: row round-trips, the strength scale and both margin schemes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from prefkit.data.schema import (
    JUDGEMENT_COLUMNS,
    PAIR_COLUMNS,
    Judgement,
    MarginScheme,
    Pair,
    PreferenceRow,
    Prompt,
    Response,
    Strength,
)


def make_pair() -> Pair:
    prompt = Prompt("Tại sao trời mưa?", system="Trả lời ngắn gọn.", source="test")
    a = Response(
        "Hơi nước ngưng tụ thành giọt.",
        model="tiny",
        temperature=0.7,
        top_p=0.9,
        seed=1,
        finish_reason="stop",
        n_tokens=12,
    )
    b = Response("Vì trời buồn.", model="tiny", adapter="lora-1", temperature=1.2, seed=2, finish_reason="length")
    return Pair(prompt, a, b)


def test_pair_round_trips_through_its_flat_row() -> None:
    pair = make_pair()
    row = pair.to_row()
    assert tuple(row) == PAIR_COLUMNS
    assert Pair.from_row(row) == pair
    assert pair.b.truncated and not pair.a.truncated


def test_ids_are_stable_and_content_derived() -> None:
    assert make_pair().pair_id == make_pair().pair_id
    assert Prompt("x").id == Prompt("x").id != Prompt("y").id
    assert Prompt("x", system="s").id != Prompt("x").id


def _judgement(pair: Pair, **more: Any) -> Judgement:
    """Lan's judgement of `pair` (B better, shown first, flagged unsafe), with `more` fields."""
    return Judgement(
        pair.pair_id,
        "lan",
        pair.b.id,
        "better",
        shown_order=(pair.b.id, pair.a.id),
        unsafe=(pair.b.id,),
        rationale="rõ hơn",
        seconds=12.5,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        **more,
    )


def test_judgement_round_trips_with_shown_order_and_flags() -> None:
    pair = make_pair()
    j = _judgement(pair)
    back = Judgement.from_row(j.to_row())
    assert back == j
    assert back.signed_score(pair) == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_judgement_table_keeps_every_field_in_either_format(tmp_path, suffix) -> None:
    """Every field `to_row` writes is a column of the table (the Parquet schema drops a key it
    does not list: `selected_by` was lost that way), and the table reads back to the same judgement."""
    from prefkit.data.readers import read_judgements
    from prefkit.data.writers import write_judgements

    pair = make_pair()
    j = _judgement(pair, suggestion={"source": "rm", "side": "b"}, edited="Bản sửa.", selected_by="uncertainty")
    assert tuple(j.to_row()) == JUDGEMENT_COLUMNS
    write_judgements([j], tmp_path / f"j{suffix}")
    assert read_judgements(tmp_path / f"j{suffix}") == [j]


def test_naive_created_at_is_read_as_utc() -> None:
    pair = make_pair()
    aware = Judgement(pair.pair_id, "lan", pair.a.id, "better", created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    naive_row = {**aware.to_row(), "created_at": "2026-01-02T03:04:06"}
    naive = Judgement.from_row(naive_row)
    assert naive.created_at == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert Judgement.from_row({**naive_row, "created_at": datetime(2026, 1, 2, 3, 4, 6)}).created_at == naive.created_at
    # The newer (naive) judgement replaces the older (aware) one without a naive-vs-aware TypeError.
    assert naive.created_at > aware.created_at


@pytest.mark.parametrize(
    ("point", "winner", "strength"),
    [
        (-3, "left", Strength.SIGNIFICANTLY_BETTER),
        (-1, "left", Strength.SLIGHTLY_BETTER),
        (0, None, Strength.NEGLIGIBLY_BETTER),
        (2, "right", Strength.BETTER),
    ],
)
def test_seven_point_choice(point: int, winner: str | None, strength: Strength) -> None:
    j = Judgement.from_seven_point("p", "an", point, ("L", "R"))
    assert j.preferred == {"left": "L", "right": "R", None: None}[winner]
    assert j.strength is strength


def test_unsure_judgement_must_be_negligible() -> None:
    with pytest.raises(ValueError, match="negligibly"):
        Judgement("p", "an", None, "better")


@pytest.mark.parametrize(
    ("strength", "small", "large"),
    [("significantly better", 1.0, 3.0), ("better", 2 / 3, 2.0), ("slightly better", 1 / 3, 1.0), ("unsure", 0.0, 0.0)],
)
def test_margins_follow_llama2_table_28(strength: str, small: float, large: float) -> None:
    s = Strength.parse(strength)
    assert s.margin(MarginScheme.SMALL) == pytest.approx(small)
    assert s.margin("large") == pytest.approx(large)
    assert s.margin("none") == 0.0
    assert PreferenceRow("q", "a", "b", strength=s).with_margin("large").margin == pytest.approx(large)


def test_strength_parse_accepts_levels_and_labels_and_rejects_others() -> None:
    assert Strength.parse(3) is Strength.SIGNIFICANTLY_BETTER
    assert Strength.parse("Slightly-Better") is Strength.SLIGHTLY_BETTER
    assert Strength.parse("negligibly better / unsure") is Strength.NEGLIGIBLY_BETTER
    for bad in ("huge", 7, True, 1.5):
        with pytest.raises(ValueError):
            Strength.parse(bad)
