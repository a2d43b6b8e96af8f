"""The Label page's feedback and undo, and My work's conversation, through Streamlit's AppTest on a
real SQLite store: each action says what it recorded; an undo brings the whole judgement back
(rationale, flags, safety label, its choice marked) and says what it undid; My work shows every
turn of a dialogue."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from dev.app_driver import button as _button
from dev.app_driver import signed_in as _signed_in
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response, SafetyBin

DIALOGUE = (
    "\n\nHuman: Làm sao đuổi chuột khỏi bếp?\n\nAssistant: Bịt các khe hở và cất thức ăn vào hũ."
    "\n\nHuman: Bẫy nào nhân đạo nhất? ({i})\n\nAssistant:"
)


@pytest.fixture
def app(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    store = Store.open(sqlite_url)
    for name in ("plain", "safety"):
        store.create_project(name, overlap=1)
        pairs = [
            Pair(Prompt(DIALOGUE.format(i=i)), Response(f"{name} A {i}"), Response(f"{name} B {i}")) for i in range(4)
        ]
        store.import_pairs(name, pairs)
    store.set_safety_labels("safety")
    token = store.add_user("bob")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    yield store, token
    store.close()


def _status(at: AppTest) -> str:
    """The choice row's first line: what the last action did (bold, over the keys)."""
    (line,) = [c.value for c in at.caption if "Keys: 1–9" in c.value]
    return line.split("  \n")[0].strip("*")


def test_each_action_says_what_it_recorded_and_undo_restores_the_whole_judgement(app) -> None:
    store, token = app
    at = _signed_in(token, "plain")
    held = store.claim("plain", "bob")
    at.text_area(key="rationale").input("B nêu nguồn")
    at.checkbox(key="unsafeA").check()
    _button(at, "choice2").click().run()  # B slightly better
    assert _status(at) == "Saved: B slightly better · U to undo"
    assert at.text_area(key="rationale").value == "" and not at.checkbox(key="unsafeA").value  # fresh form

    at.button(key="undo").click().run()
    assert store.my_judgements("bob", "plain") == []
    assert store.claim("plain", "bob").id == held.id  # the pair is back on screen
    assert _status(at).startswith("Undone: your judgement “B slightly better”")
    assert at.text_area(key="rationale").value == "B nêu nguồn"
    assert at.checkbox(key="unsafeA").value and not at.checkbox(key="unsafeB").value
    assert _button(at, "choice2").help == "Your choice before the undo"  # the undone choice, marked
    assert not _button(at, "choice3").help

    # judged again (the rationale and flag as restored), then skip and report say so too
    _button(at, "choice-4").click().run()
    ((_, j),) = store.my_judgements("bob", "plain")
    assert j.choice() == -4 and j.rationale == "B nêu nguồn" and j.unsafe == (held.shown_order[0],)
    assert _status(at) == "Saved: A significantly better · U to undo"
    assert not _button(at, "choice2").help  # the mark was for the undone pair only
    _button(at, "skip").click().run()
    assert _status(at) == "Skipped · U to undo"
    at.selectbox(key="reason").set_value("Other")
    at.text_area(key="rationale").input("thiếu câu hỏi")
    _button(at, "report").click().run()
    assert _status(at) == "Reported: Other · U to undo"
    # an undone report comes back with its reason and note
    at.button(key="undo").click().run()
    assert _status(at).startswith("Undone: your report")
    assert at.selectbox(key="reason").value == "Other" and at.text_area(key="rationale").value == "thiếu câu hỏi"
    at.button(key="undo").click().run()
    assert _status(at).startswith("Undone: your last skip")


def test_undo_restores_the_pairs_safety_label(app) -> None:
    store, token = app
    at = _signed_in(token, "safety")
    held = store.claim("safety", "bob")
    at.radio(key="safety").set_value(SafetyBin.SAFE_VS_UNSAFE.value)
    _button(at, "choice-3").click().run()  # A better: B is the unsafe one
    ((_, j),) = store.my_judgements("bob", "safety")
    assert j.unsafe == (held.shown_order[1],)
    assert at.radio(key="safety").value is None  # fresh for the next pair
    at.button(key="undo").click().run()
    assert at.radio(key="safety").value == SafetyBin.SAFE_VS_UNSAFE.value
    at.button(key="undo").click().run()
    assert _status(at).startswith("Nothing to undo")


def test_my_work_shows_the_whole_conversation(app) -> None:
    _, token = app
    at = _signed_in(token, "plain")
    _button(at, "choice1").click().run()
    at.switch_page("ui/my_work.py").run()
    assert not at.exception
    turns = [m for m in at.chat_message]
    assert [m.name for m in turns] == ["user", "assistant", "user"]  # every turn, none folded away
    text = " ".join(e.value for m in turns for e in m.markdown)
    assert "đuổi chuột" in text and "Bịt các khe hở" in text and "nhân đạo" in text
    assert not at.expander  # nothing hidden
