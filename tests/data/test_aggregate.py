"""Aggregation: several annotators' judgements of one pair become one exported row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefkit.core.errors import DataError
from prefkit.data.aggregate import aggregate
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pair(i: int = 0) -> Pair:
    return Pair(
        Prompt(f"Câu hỏi {i}?", system="sys", source="test"),
        Response(f"A{i}", model="m-a", temperature=0.7, seed=1),
        Response(f"B{i}", model="m-b", temperature=1.1, seed=2, finish_reason="length"),
    )


def judge(p: Pair, annotator: str, point: int, *, unsafe: tuple[str, ...] = (), minutes: int = 0) -> Judgement:
    """`point` on the 7-point row in generation order: negative prefers a, positive b."""
    return Judgement.from_seven_point(
        p.pair_id, annotator, point, (p.a.id, p.b.id), unsafe=unsafe, created_at=T0 + timedelta(minutes=minutes)
    )


def test_mean_rule_winner_strength_agreement_and_metadata() -> None:
    p = pair()
    rows, report = aggregate([p], [judge(p, "an", 3), judge(p, "binh", 2), judge(p, "chi", -1)], margin="large")
    (row,) = rows
    # mean = (3 + 2 - 1) / 3 = 1.33 -> b wins, level round(1.33) = 1
    assert (row.chosen, row.rejected, row.strength) == ("B0", "A0", Strength.SLIGHTLY_BETTER)
    assert row.margin == 1.0 and row.n_annotators == 3 and row.agreement == pytest.approx(2 / 3)
    assert row.id == p.pair_id and row.question == "Câu hỏi 0?" and row.system == "sys"
    assert row.chosen_meta["model"] == "m-b" and row.chosen_meta["finish_reason"] == "length"
    assert row.rejected_meta["temperature"] == 0.7
    rec = row.to_record()
    assert rec["chosen_id"] == p.b.id and rec["rejected_seed"] == 1
    assert report.exported == 1 and report.strength_counts == {"slightly_better": 1}


def test_mean_rounds_half_up() -> None:
    p = pair()
    rows, _ = aggregate([p], [judge(p, "an", -3), judge(p, "binh", -2)])  # mean -2.5 -> level 3, a wins
    assert (rows[0].chosen, rows[0].strength) == ("A0", Strength.SIGNIFICANTLY_BETTER)
    assert rows[0].margin == 1.0


def test_majority_rule_uses_votes_and_most_common_level() -> None:
    p = pair()
    js = [judge(p, "an", -1), judge(p, "binh", -1), judge(p, "chi", 3), judge(p, "dung", 0)]
    rows, _ = aggregate([p], js, rule="majority")
    assert (rows[0].chosen, rows[0].strength, rows[0].agreement) == ("A0", Strength.SLIGHTLY_BETTER, 0.5)
    # the mean rule sees the signed levels (-2 -2 +4 +0)/4 = 0: no winner
    rows, report = aggregate([p], js, rule="mean")
    assert rows == [] and report.ties_dropped == 1
    # one more "B slightly better" tips it: (-2 -2 +4 +0 +2)/5 = 0.4 -> b, negligibly better, margin 0
    rows, _ = aggregate([p], js + [judge(p, "em", 1)], rule="mean")
    assert (rows[0].chosen, rows[0].strength, rows[0].margin) == ("B0", Strength.NEGLIGIBLY_BETTER, 0.0)


def choose(p: Pair, annotator: str, point: int) -> Judgement:
    """`point` on the 9-choice row (Llama 2's scale) with a shown in the left place."""
    return Judgement.from_choice(p.pair_id, annotator, point, (p.a.id, p.b.id), created_at=T0)


@pytest.mark.parametrize("rule", ["mean", "majority"])
def test_negligibly_better_keeps_its_side_and_unsure_has_none(rule: str) -> None:
    negligible, unsure = pair(1), pair(2)
    js = [choose(negligible, "an", -1), choose(unsure, "an", 0)]
    rows, report = aggregate([negligible, unsure], js, rule=rule, margin="large")
    (row,) = rows  # the negligibly-better pair has a winner; the unsure one is a tie
    assert (row.chosen, row.strength, row.margin, row.agreement) == ("A1", Strength.NEGLIGIBLY_BETTER, 0.0, 1.0)
    assert report.ties_dropped == 1 and report.strength_counts == {"negligibly_better": 1}
    # two annotators, both negligibly, opposite sides: no winner under either rule
    rows, report = aggregate([negligible], [choose(negligible, "an", -1), choose(negligible, "binh", 1)], rule=rule)
    assert rows == [] and report.ties_dropped == 1


def test_choice_row_round_trips_and_old_judgements_read_the_same() -> None:
    p = pair()
    for point in range(-4, 5):
        j = choose(p, "an", point)
        assert j.choice() == point
        assert Judgement.from_row(j.to_row()).choice() == point
    # A judgement stored from the old 7-point row: its middle button (unsure) is still unsure,
    # and "A slightly better" is still that.
    old_unsure = Judgement.from_row(
        {
            "pair_id": p.pair_id,
            "annotator": "an",
            "preferred": None,
            "strength": "negligibly_better",
            "shown_left": p.a.id,
            "shown_right": p.b.id,
        }
    )
    assert old_unsure.choice() == 0 and old_unsure.signed_level(p) == 0
    assert judge(p, "an", -1).choice() == -2 and choose(p, "an", -2) == judge(p, "an", -1)


def test_ties_and_all_unsure_are_dropped_and_counted() -> None:
    tie, unsure, unjudged = pair(1), pair(2), pair(3)
    js = [judge(tie, "an", -2), judge(tie, "binh", 2), judge(unsure, "an", 0), judge(unsure, "binh", 0)]
    rows, report = aggregate([tie, unsure, unjudged], js, rule="majority")
    assert rows == []
    assert (report.ties_dropped, report.unjudged_pairs, report.exported, report.judgements) == (2, 1, 0, 4)


def test_latest_judgement_per_annotator_counts() -> None:
    p = pair()
    rows, _ = aggregate([p], [judge(p, "an", 3, minutes=0), judge(p, "an", -2, minutes=5)])
    assert (rows[0].chosen, rows[0].n_annotators, rows[0].strength) == ("A0", 1, Strength.BETTER)


def test_unsafe_chosen_dropped_flags_carried_otherwise() -> None:
    unsafe_winner, both_flagged = pair(1), pair(2)
    js = [
        judge(unsafe_winner, "an", 2, unsafe=(unsafe_winner.b.id,)),
        judge(unsafe_winner, "binh", 2),
        judge(both_flagged, "an", -3, unsafe=(both_flagged.a.id, both_flagged.b.id)),
    ]
    rows, report = aggregate([unsafe_winner, both_flagged], js)
    assert report.unsafe_chosen_dropped == 1
    (row,) = rows
    assert row.id == both_flagged.pair_id
    assert (row.chosen_meta["unsafe_flags"], row.rejected_meta["unsafe_flags"]) == (1, 1)


def test_unknown_pairs_counted_and_bad_options_rejected() -> None:
    p = pair()
    other = pair(9)
    rows, report = aggregate([p], [judge(p, "an", 1), judge(other, "an", 1)])
    assert len(rows) == 1 and report.unknown_pair_judgements == 1
    with pytest.raises(DataError, match="unknown aggregation rule"):
        aggregate([p], [], rule="median")
    with pytest.raises(DataError, match="unknown margin scheme"):
        aggregate([p], [], margin="huge")
