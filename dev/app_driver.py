"""Driving the labelling app in tests with Streamlit's AppTest (no browser): the app's file, a
session signed in with a token (optionally opened on a project, `?p=`), and a button found by
the stem of its key (keys end in a per-pair suffix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "annotate" / "app.py"
TIMEOUT = 60  # the first run imports pandas/pyarrow on a slow shared machine


def signed_in(token: str, project: str | None = None) -> AppTest:
    """A fresh app session, signed in with `token` (on `project` when given)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if project is not None:
        at.query_params["p"] = project
    at.run()
    at.text_input(key="sign_in_token").input(token)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "s" in at.query_params, "the sign-in did not open a session"
    return at


def button(at: AppTest, name: str) -> Any:
    """The one button whose key, less its last `-suffix`, is `name`."""
    (found,) = [b for b in at.button if b.key and b.key.rsplit("-", 1)[0] == name]
    return found


def button_names(at: AppTest) -> list[str]:
    """The stems of every keyed button on the page, in order."""
    return [b.key.rsplit("-", 1)[0] for b in at.button if b.key]
