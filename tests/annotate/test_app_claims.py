"""Issue 23's two silent failures, in the real app (AppTest, real SQLite store): an annotator
taken off a project while a pair is on their screen, and a sign-in that ends with a pair on
screen. Either way the key is refused with a message on the page, and nothing is recorded."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from dev.app_driver import signed_in as _signed_in
from prefkit.annotate.render import safe_markdown
from prefkit.annotate.store import Store
from prefkit.annotate.tables import PairRow, SessionRow
from prefkit.data.schema import Judgement


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, make_pairs):
    s = Store.open(sqlite_url)
    s.create_project("team", overlap=1)
    s.import_pairs("team", make_pairs(3))
    s.create_project("warm-up", overlap=1)
    s.import_pairs("warm-up", make_pairs(2, start=10))
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    yield s
    s.close()


def _choice(at: AppTest, point: int) -> AppTest:
    (button,) = [b for b in at.button if b.key and b.key.startswith(f"choice{point}-")]
    return button.click().run()


def _done(store: Store) -> dict[str, int]:
    with store.engine.connect() as c:
        return dict(c.execute(select(PairRow.pair_id, PairRow.done)).all())


def _lan_on_the_team(store: Store) -> AppTest:
    """lan and minh are the team's members; lan is signed in, on the team's Label page."""
    lan = store.add_user("lan")
    store.add_user("minh")
    store.assign("team", "lan")
    store.assign("team", "minh")
    at = _signed_in(lan)
    return at.sidebar.selectbox(key="project-picker").select("team").run()


def test_a_key_after_being_taken_off_the_project_is_refused_on_the_page(store: Store) -> None:
    at = _lan_on_the_team(store)
    on_screen = store.claim("team", "lan")  # the pair the page shows (the held claim)
    assert safe_markdown(on_screen.pair.prompt.question) in "\n".join(m.value for m in at.markdown)

    store.unassign("team", "lan")  # the admin: `prefkit annotate unassign lan --project team`
    taken = store.claim("team", "minh")  # the pair went back to the queue; minh has it now
    assert taken.pair.pair_id == on_screen.pair.pair_id
    at = _choice(at, -2)

    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]  # shown markdown-escaped
    assert any("'lan' is not assigned to project 'team'" in e and "nothing was recorded" in e for e in errors), errors
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("You can no longer label project 'team'" in w and "Now showing 'warm-up'" in w for w in warnings)
    assert store.judgements("team") == []  # nothing recorded for lan...
    store.submit(taken.id, "minh", Judgement.from_choice(taken.pair.pair_id, "minh", 2, taken.shown_order))
    assert _done(store)[on_screen.pair.pair_id] == 1  # ...and the pair ends at its overlap, not over it
    # the page goes on, on the project lan may still label; the warning is said once
    at = at.run()
    assert not at.exception and not [w for w in at.warning if "no longer label" in w.value]
    assert at.session_state["project"] == "warm-up"


def test_a_key_after_the_sign_in_ended_is_refused_and_said_on_the_sign_in_form(store: Store) -> None:
    token = store.add_user("lan")
    at = _signed_in(token)
    with store.engine.begin() as c:  # the --session-hours lifetime runs out while the pair is on screen
        c.execute(update(SessionRow).values(expires_at=store.now()))
    at = _choice(at, 3)

    assert not at.exception
    assert store.judgements("team") == [] and store.judgements("warm-up") == []  # no last key recorded
    assert [b.label for b in at.button] == ["Sign in"] and "s" not in at.query_params
    (note,) = [w.value for w in at.warning]
    assert "Your sign-in has ended (it lasts 12 h" in note and "that last action was not recorded" in note
    at = _signed_in(token)  # signing in again goes on with the same pair, still unjudged
    assert not at.exception and not at.warning


def test_changing_a_judgement_after_being_taken_off_the_project_is_refused(store: Store) -> None:
    at = _lan_on_the_team(store)
    at = _choice(at, -2)
    ((_, before),) = store.my_judgements("lan", "team")
    at.switch_page("ui/my_work.py").run()
    assert not at.exception
    store.unassign("team", "lan")
    at.select_slider[0].set_value(4)
    at = at.button(key="edit-save").click().run()

    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("'lan' is not assigned to project 'team'" in e for e in errors), errors
    ((_, after),) = store.my_judgements("lan", "team")
    assert after.choice() == before.choice() == -2  # kept as it was
