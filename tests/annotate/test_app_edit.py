"""Edit-and-rank on the Label page (AppTest, real SQLite store): off by default; on a project that
takes edits the editor opens prefilled with the picked response, the choice records the edit of the
preferred answer, an edit of the other answer (or with unsure) is refused and records nothing, and
an untouched editor records no edit. The store refuses an edit on a project that takes none."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.app_driver import button as _button
from dev.app_driver import signed_in as _signed_in
from prefkit.annotate.store import Store
from prefkit.core.errors import DataError
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    s = Store.open(sqlite_url)
    s.create_project("demo", overlap=1)
    s.import_pairs(
        "demo",
        [Pair(Prompt(f"Câu hỏi {i}?"), Response(f"Trả lời A{i}."), Response(f"Trả lời B{i}.")) for i in range(5)],
    )
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    return s


def _judged(store: Store, pair_id: str) -> Judgement:
    return {p.pair_id: j for p, j in store.my_judgements("bob", "demo")}[pair_id]


def test_the_editor_records_an_edit_of_the_preferred_answer_only(store: Store) -> None:
    token = store.add_user("bob")
    at = _signed_in(token)
    assert not [b for b in at.button if b.key and b.key.startswith("edit-")]  # off by default
    store.set_edits("demo")
    at.run()

    # Open the editor: prefilled with the left response (A); edit it; choose A.
    held = store.claim("demo", "bob")
    left, right = (held.pair.response(r).text for r in held.shown_order)
    _button(at, "edit").click().run()
    box = at.text_area(key=f"edit-textA-{held.id}")
    assert box.value == left
    box.input(left + " Thêm một ví dụ cụ thể.").run()
    _button(at, "choice-2").click().run()  # A slightly better
    assert not at.exception and not at.error
    j = _judged(store, held.pair.pair_id)
    assert j.preferred == held.shown_order[0] and j.strength is Strength.SLIGHTLY_BETTER
    assert j.edited == left + " Thêm một ví dụ cụ thể."

    # The next pair opens without an editor; edit B, choose A: refused, nothing recorded.
    held = store.claim("demo", "bob")
    assert not [t for t in at.text_area if t.key and t.key.startswith("edit-text")]
    _button(at, "edit").click().run()
    at.radio(key=f"edit-side-{held.id}").set_value("B").run()
    right = held.pair.response(held.shown_order[1]).text
    assert at.text_area(key=f"edit-textB-{held.id}").value == right
    at.text_area(key=f"edit-textB-{held.id}").input("Một câu trả lời B tốt hơn.").run()
    _button(at, "choice-3").click().run()  # A better: not the edited answer
    assert "only the answer you prefer can be edited" in at.error[0].value
    assert held.pair.pair_id not in {p.pair_id for p, _ in store.my_judgements("bob", "demo")}
    _button(at, "choice0").click().run()  # unsure: no preferred answer to edit either
    assert "chose unsure" in at.error[0].value
    assert held.pair.pair_id not in {p.pair_id for p, _ in store.my_judgements("bob", "demo")}
    _button(at, "choice4").click().run()  # B significantly better: recorded with the edit
    assert not at.error
    j = _judged(store, held.pair.pair_id)
    assert j.preferred == held.shown_order[1] and j.edited == "Một câu trả lời B tốt hơn."

    # Opened but untouched (whitespace only): no edit; closed again (E twice): no edit either.
    held = store.claim("demo", "bob")
    _button(at, "edit").click().run()
    box = at.text_area(key=f"edit-textA-{held.id}")
    box.input("  " + box.value + "\n").run()
    _button(at, "choice-1").click().run()
    assert _judged(store, held.pair.pair_id).edited is None
    held = store.claim("demo", "bob")
    _button(at, "edit").click().run()
    at.text_area(key=f"edit-textA-{held.id}").input("bỏ đi").run()
    _button(at, "edit").click().run()
    assert not [t for t in at.text_area if t.key and t.key.startswith("edit-text")]
    _button(at, "choice-1").click().run()
    assert _judged(store, held.pair.pair_id).edited is None


def test_undo_reopens_the_editor_with_the_undone_edit(store: Store) -> None:
    """An undone judgement with an edit comes back with its editor open on the side it preferred
    (the right one here), holding the edited text; choosing again records the same edit."""
    token = store.add_user("bob")
    store.set_edits("demo")
    at = _signed_in(token)
    held = store.claim("demo", "bob")
    _button(at, "edit").click().run()
    at.radio(key=f"edit-side-{held.id}").set_value("B").run()
    better = "Trả lời B, có thêm một ví dụ."
    at.text_area(key=f"edit-textB-{held.id}").input(better).run()
    _button(at, "choice3").click().run()  # B better, with the edit
    assert _judged(store, held.pair.pair_id).edited == better
    assert not [t for t in at.text_area if t.key and t.key.startswith("edit-text")]  # the next pair: closed

    at.button(key="undo").click().run()
    assert held.pair.pair_id not in {p.pair_id for p, _ in store.my_judgements("bob", "demo")}
    assert store.claim("demo", "bob").id == held.id  # the pair is back
    assert at.radio(key=f"edit-side-{held.id}").value == "B"
    assert at.text_area(key=f"edit-textB-{held.id}").value == better
    _button(at, "choice3").click().run()
    j = _judged(store, held.pair.pair_id)
    assert j.preferred == held.shown_order[1] and j.edited == better


def test_the_store_refuses_an_edit_on_a_project_without_edits(db_url: str) -> None:
    store = Store.open(db_url)
    store.create_project("p", overlap=1)
    store.import_pairs("p", [Pair(Prompt("Q?"), Response("a"), Response("b"))])
    store.add_user("u")
    held = store.claim("p", "u")
    edited = Judgement.from_choice(held.pair.pair_id, "u", -2, held.shown_order, edited="a, better")
    with pytest.raises(DataError, match="does not take edits"):
        store.submit(held.id, "u", edited)
    assert store.judgements("p") == []
    assert store.set_edits("p").edits
    stored = store.submit(held.id, "u", edited)
    assert stored.edited == "a, better"
    assert store.judgements("p")[0].edited == "a, better"
    assert not store.set_edits("p", False).edits
    store.close()


def test_the_store_keeps_an_edit_through_a_change_only_for_the_same_side(db_url: str) -> None:
    """`change_judgement` itself (not only the My work page) keeps an edit while the edited answer
    is still preferred, drops it when the other one is, and refuses a new edit on a project that
    takes none."""
    store = Store.open(db_url)
    store.create_project("p", overlap=1)
    store.set_edits("p")
    store.import_pairs("p", [Pair(Prompt("Q?"), Response("a"), Response("b"))])
    store.add_user("u")
    held = store.claim("p", "u")
    pid, order = held.pair.pair_id, held.shown_order
    store.submit(held.id, "u", Judgement.from_choice(pid, "u", -2, order, edited="left, better"))
    kept = store.change_judgement("u", pid, Judgement.from_choice(pid, "u", -4, order))
    assert kept.edited == "left, better" and store.judgements("p")[0].edited == "left, better"
    dropped = store.change_judgement("u", pid, Judgement.from_choice(pid, "u", 3, order))
    assert dropped.edited is None and store.judgements("p")[0].edited is None
    store.set_edits("p", False)
    with pytest.raises(DataError, match="does not take edits"):
        store.change_judgement("u", pid, Judgement.from_choice(pid, "u", 3, order, edited="right, better"))
    assert store.judgements("p")[0].edited is None
    store.close()


def test_an_edit_is_exported_and_becomes_pairs(db_url: str, tmp_path: Path) -> None:
    """A project's edited judgement: the export's `edited` column, and with `edit_pairs` the pairs
    edited > chosen (> rejected) beside the judged pair."""
    from prefkit.data.readers import read_preferences

    store = Store.open(db_url)
    store.create_project("p", overlap=1)
    store.set_edits("p")
    pairs = [Pair(Prompt(f"Câu {i}?"), Response(f"Đáp án A {i}."), Response(f"Đáp án B {i}.")) for i in range(4)]
    store.import_pairs("p", pairs)
    store.add_user("u")
    edited = {}
    for i in range(4):
        held = store.claim("p", "u")
        text = f"{held.pair.response(held.shown_order[0]).text} Có ví dụ." if i % 2 == 0 else None
        store.submit(held.id, "u", Judgement.from_choice(held.pair.pair_id, "u", -3, held.shown_order, edited=text))
        edited[held.pair.pair_id] = text
    store.export("p", tmp_path / "ds", test_size=0.0, jsonl=True, edit_pairs="three", edit_strength="slightly_better")
    rows = read_preferences(tmp_path / "ds", "train")
    judged = {r.id: r for r in rows if r.derived_from is None}
    assert {pid: r.edited for pid, r in judged.items()} == edited
    derived = [r for r in rows if r.derived_from is not None]
    assert len(derived) == 4 and all(r.chosen == judged[r.derived_from].edited for r in derived)
    assert sorted(r.strength.value for r in derived if r.rejected == judged[r.derived_from].chosen) == [
        "slightly_better",
        "slightly_better",
    ]
    store.close()


def test_changing_a_judgement_keeps_the_edit_only_for_the_same_side(store: Store) -> None:
    token = store.add_user("bob")
    store.set_edits("demo")
    held = store.claim("demo", "bob")
    edit = held.pair.response(held.shown_order[0]).text + " Sửa."
    store.submit(held.id, "bob", Judgement.from_choice(held.pair.pair_id, "bob", -2, held.shown_order, edited=edit))
    at = _signed_in(token)
    at.switch_page("ui/my_work.py").run()
    assert "Your edit of the response you preferred" in "\n".join(c.value for c in at.caption)
    at.select_slider[0].set_value(-4)  # still A, now significantly better: the edit stays
    at.button(key="edit-save").click().run()
    assert _judged(store, held.pair.pair_id).edited == edit
    at.select_slider[0].set_value(3)  # now B: the edit of A no longer fits the judgement
    at.button(key="edit-save").click().run()
    j = _judged(store, held.pair.pair_id)
    assert j.preferred == held.shown_order[1] and j.edited is None
