"""Sign-in in the real Streamlit app (AppTest, real SQLite store): repeated failures from one tab
are slowed down and said so; an admin's token reset lets the user in again at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from prefkit.annotate.store import FREE_FAILURES_PER_USER, Store

APP = Path(__file__).resolve().parents[2] / "annotate" / "app.py"


def _try(at: AppTest, token: str) -> AppTest:
    at.text_input(key="sign_in_token").input(token)
    return at.button[0].click().run()


def test_repeated_wrong_tokens_are_refused_unchecked_until_reset(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    store = Store.open(sqlite_url)
    token = store.add_user("bob")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url + "?pool=2")  # as `serve --db-pool 2` passes it
    at = AppTest.from_file(APP, default_timeout=60).run()
    wrong = token.rsplit("_", 1)[0] + "_wrong-secret"
    for _ in range(FREE_FAILURES_PER_USER):
        assert "not valid" in _try(at, wrong).error[0].value
    at = _try(at, token)  # right token, too soon after the failures: refused, and why
    assert not at.exception and "s" not in at.query_params
    assert "Sign-in refused: too many failed sign-ins for this account; try again in" in at.error[0].value
    status = store.sign_in_status()["bob"]
    assert status.failures_24h == FREE_FAILURES_PER_USER and status.locked_until is not None
    new = store.reset_token("bob")  # what `prefkit annotate users reset-token bob` does
    at = _try(at, new)
    assert not at.exception and "s" in at.query_params
    store.close()
