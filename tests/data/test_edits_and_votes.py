"""What people said, carried by the export: vote counts beside agreement, the soft label, and Llama 3's
edits (the `edited` column, and the pairs `--edit-pairs` makes of it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prefkit.core.errors import DataError
from prefkit.data.aggregate import aggregate
from prefkit.data.edits import expand_edits
from prefkit.data.export import export_dataset, export_judged
from prefkit.data.readers import read_preferences
from prefkit.data.schema import Judgement, Pair, PreferenceRow, Prompt, Response, Strength, soft_label

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _pair(i: int = 0) -> Pair:
    return Pair(Prompt(f"Câu hỏi {i}?"), Response(f"Trả lời A {i}."), Response(f"Trả lời B {i}."))


def _j(pair: Pair, who: str, side: str | None, level: int = 2, minutes: int = 0, edited: str | None = None):
    preferred = {"a": pair.a.id, "b": pair.b.id, None: None}[side]
    strength = Strength.from_level(level) if side else Strength.NEGLIGIBLY_BETTER
    return Judgement(pair.pair_id, who, preferred, strength, created_at=T0 + timedelta(minutes=minutes), edited=edited)


def test_votes_agreement_and_the_soft_label() -> None:
    pair = _pair()
    js = [_j(pair, "u1", "a"), _j(pair, "u2", "a"), _j(pair, "u3", None), _j(pair, "u4", "b", level=0)]
    (row,), _ = aggregate([pair], js, rule="majority")
    assert row.chosen == pair.a.text
    assert (row.n_annotators, row.votes_chosen, row.votes_rejected) == (4, 2, 1)
    assert row.agreement == 0.5  # unsure counts against
    assert row.soft_label == pytest.approx((2 + 0.5) / 4)  # ... and half in the soft label
    assert soft_label(0, None, None, None) == 1.0  # no judgements: the hard label
    assert soft_label(3, None, None, 2 / 3) == pytest.approx(2 / 3)  # agreement only (older exports)
    rec = row.to_record()
    assert (rec["votes_chosen"], rec["votes_rejected"], rec["edited"], rec["derived_from"]) == (2, 1, None, None)


def test_the_latest_edit_of_an_annotator_who_preferred_the_winner_is_kept() -> None:
    pair = _pair()
    js = [
        _j(pair, "u1", "a", minutes=1, edited="A, sửa lần đầu."),
        _j(pair, "u2", "a", minutes=5, edited="A, sửa bởi u2."),
        _j(pair, "u3", "b", minutes=9, edited="B, sửa bởi người không đồng ý."),  # the loser's edit: no
    ]
    (row,), _ = aggregate([pair], js)
    assert row.chosen == pair.a.text and row.edited == "A, sửa bởi u2."
    with pytest.raises(ValueError, match="needs a preferred response"):
        _j(pair, "u4", None, edited="x")
    assert _j(pair, "u5", "a", edited="   ").edited is None  # an emptied editor is no edit


def test_expand_edits_two_and_three_pairs() -> None:
    judged = PreferenceRow(
        "Q?", "chosen answer", "rejected answer", strength=Strength.SIGNIFICANTLY_BETTER, edited="edited answer"
    )
    plain = PreferenceRow("Q2?", "c", "r", strength=Strength.BETTER, edited="  c ")  # whitespace only: no edit
    assert expand_edits([judged, plain], "off") == [judged, plain]
    two = expand_edits([judged, plain], "two", "slightly_better")
    assert len(two) == 3
    new = two[2]
    assert (new.chosen, new.rejected, new.strength) == ("edited answer", "chosen answer", Strength.SLIGHTLY_BETTER)
    assert new.derived_from == judged.id and new.edited is None and new.id != judged.id
    three = expand_edits([judged], "three", "slightly_better")
    assert [(r.chosen, r.rejected) for r in three[1:]] == [
        ("edited answer", "chosen answer"),
        ("edited answer", "rejected answer"),
    ]
    # edited > rejected is never weaker than the judged chosen > rejected
    assert three[2].strength is Strength.SIGNIFICANTLY_BETTER
    with pytest.raises(DataError, match="edit_pairs"):
        expand_edits([judged], "four")
    with pytest.raises(DataError, match="not a strength"):
        expand_edits([judged], "two", "huge")


def test_the_export_carries_votes_and_edits_and_keeps_derived_pairs_with_their_prompt(tmp_path: Path) -> None:
    pairs = [_pair(i) for i in range(12)]
    js = []
    for i, p in enumerate(pairs):
        js += [_j(p, "u1", "a", edited=f"A {i}, tốt hơn." if i % 3 == 0 else None), _j(p, "u2", "a" if i % 2 else "b")]
    js += [_j(p, "u3", "a") for p in pairs]
    dsdict, _ = export_judged(pairs, js, tmp_path / "ds", test_size=0.3, seed=2, jsonl=True, edit_pairs="three")
    rows = {s: read_preferences(tmp_path / "ds", s) for s in dsdict}
    allrows = [r for rs in rows.values() for r in rs]
    judged = [r for r in allrows if r.derived_from is None]
    derived = [r for r in allrows if r.derived_from is not None]
    assert len(judged) == 12 and len(derived) == 2 * 4  # four edited pairs, two new pairs each
    assert all(r.votes_chosen is not None and r.votes_chosen + r.votes_rejected == 3 for r in judged)
    by_id = {r.id: (s, r) for s, rs in rows.items() for r in rs}
    for d in derived:
        split, origin = by_id[d.derived_from]
        assert by_id[d.id][0] == split  # same prompt, same side of the split
        assert d.chosen == origin.edited
        assert (d.rejected, d.strength) in (
            (origin.chosen, Strength.BETTER),
            (origin.rejected, max(Strength.BETTER, origin.strength, key=lambda s: s.level)),
        )
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "`votes_chosen`, `votes_rejected`" in card and "4 judged pairs carry an annotator's edit" in card


def test_rows_without_judgements_export_null_votes(tmp_path: Path) -> None:
    export_dataset([PreferenceRow("Q?", "c", "r")], tmp_path / "ds", test_size=0.0, seed=0, jsonl=True)
    (row,) = read_preferences(tmp_path / "ds", "train")
    assert (row.votes_chosen, row.votes_rejected, row.edited, row.derived_from) == (None, None, None, None)
    assert row.soft_label == 1.0


@pytest.mark.parametrize("test_size", [0.3, 0.0])
def test_re_exporting_an_export_with_edit_pairs_adds_none_again(tmp_path: Path, test_size: float) -> None:
    """An earlier export read back (`prefkit data export OLD NEW`) holds both the judged rows with
    their `edited` answer and the pairs made of them: exporting it again keeps its rows as they are
    (with its splits), instead of making the edit pairs a second time (or, with two splits, failing)."""
    pairs = [_pair(i) for i in range(12)]
    js = [_j(p, "u1", "a", edited=f"A {i}, tốt hơn." if i % 3 == 0 else None) for i, p in enumerate(pairs)]
    first, _ = export_judged(pairs, js, tmp_path / "ds", test_size=test_size, seed=2, jsonl=True, edit_pairs="three")
    rows, split_of = [], []
    for split in first:
        part = read_preferences(tmp_path / "ds", split)
        rows += part
        split_of += [split] * len(part)
    assert sum(r.derived_from is not None for r in rows) == 8
    again = export_dataset(
        rows,
        tmp_path / "again",
        test_size=test_size,
        seed=2,
        jsonl=True,
        edit_pairs="three",
        split_of=split_of if len(first) > 1 else None,
    )
    assert {s: sorted(d["id"]) for s, d in again.items()} == {s: sorted(d["id"]) for s, d in first.items()}


def test_edit_pairs_made_on_re_export_go_to_their_judged_rows_split(tmp_path: Path) -> None:
    """An export made with `--edit-pairs off`, exported again with `two` keeping its splits: each
    new pair joins the split its judged row is in (the same prompt never on both sides)."""
    pairs = [_pair(i) for i in range(12)]
    js = [_j(p, "u1", "a", edited=f"A {i}, tốt hơn." if i % 3 == 0 else None) for i, p in enumerate(pairs)]
    first, _ = export_judged(pairs, js, tmp_path / "ds", test_size=0.3, seed=2, jsonl=True, edit_pairs="off")
    assert len(first) == 2
    rows, split_of = [], []
    for split in first:
        part = read_preferences(tmp_path / "ds", split)
        rows += part
        split_of += [split] * len(part)
    again = export_dataset(rows, tmp_path / "again", jsonl=True, edit_pairs="two", split_of=split_of)
    where = {i: s for s, d in again.items() for i in d["id"]}
    derived = [(s, r) for s in again for r in read_preferences(tmp_path / "again", s) if r.derived_from]
    assert len(derived) == 4
    assert all(where[r.derived_from] == s for s, r in derived)
