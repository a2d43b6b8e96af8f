"""Sign-in limits in the real Streamlit app (AppTest, real SQLite store; issue 22): a guesser at the
victim's address cannot keep the victim out, and a new browser tab or a successful sign-in does
not give a guesser a fresh start. (AppTest has no client address: every tab is `local`, one
address, as behind a same-host proxy that is not trusted.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from prefkit.annotate.store import FREE_FAILURES_PER_USER, Store

APP = Path(__file__).resolve().parents[2] / "annotate" / "app.py"


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    s = Store.open(sqlite_url)
    monkeypatch.setenv("PREFKIT_DB", sqlite_url + "?pool=2")  # as `serve --db-pool 2` passes it
    yield s
    s.close()


def _tab() -> AppTest:
    """A new browser tab: a new Streamlit session, nothing in its state."""
    return AppTest.from_file(APP, default_timeout=60).run()


def _try(at: AppTest, token: str) -> AppTest:
    at.text_input(key="sign_in_token").input(token)
    at = at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def _wrong(token: str) -> str:
    return token.rsplit("_", 1)[0] + "_wrong-secret"


def _refusal(at: AppTest) -> str:
    (error,) = [e.value for e in at.error]
    assert "s" not in at.query_params
    return error


def test_a_guesser_in_another_tab_never_keeps_the_right_token_out(store: Store) -> None:
    token = store.add_user("bob")
    guesser = _tab()
    for _ in range(FREE_FAILURES_PER_USER + 2):  # past the free failures: answers now held
        _try(guesser, _wrong(token))
    assert "a wrong token is now answered after 2 s" in _refusal(guesser)
    bob = _try(_tab(), token)  # bob, at the same address, with his own token
    assert "s" in bob.query_params and not bob.error  # signed in, at once, no wait
    assert store.sign_in_status()["bob"].slowed_until is not None  # while the guesser stays slowed


def test_a_new_tab_or_a_success_does_not_reset_the_count(store: Store) -> None:
    token = store.add_user("bob")
    first = _tab()
    for _ in range(FREE_FAILURES_PER_USER):
        assert _refusal(_try(first, _wrong(token))) == "That token is not valid (or the account is disabled)."
    # a new tab is the same client (the address), not a fresh one
    assert "answered after 1 s; a correct token never waits" in _refusal(_try(_tab(), _wrong(token)))
    # a correct sign-in (bob, or a guesser with a token of their own) clears nothing
    assert "s" in _try(_tab(), token).query_params
    assert "answered after 2 s" in _refusal(_try(_tab(), _wrong(token)))
    # an admin lifts the wait (`prefkit annotate users lift bob`): answered at once again
    store.lift_waits(["bob"])
    assert _refusal(_try(_tab(), _wrong(token))) == "That token is not valid (or the account is disabled)."


@pytest.mark.slow  # 21 fresh app sessions
def test_guessing_keys_from_fresh_tabs_is_slowed_by_the_address(store: Store) -> None:
    """Guesses naming no account (made-up public keys) count against the address only: a fresh
    tab per guess does not start a fresh count."""
    from prefkit.annotate.store import FREE_FAILURES_PER_ADDRESS

    for i in range(FREE_FAILURES_PER_ADDRESS):
        assert "not valid" in _refusal(_try(_tab(), f"pk_{i:016x}_guess"))
    assert "from this address in the last 15 minutes" in _refusal(_try(_tab(), f"pk_{99:016x}_guess"))
