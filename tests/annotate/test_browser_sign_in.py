"""Sign-in limits in the real thing (issue 22): `streamlit run annotate/app.py` started as
`prefkit annotate serve` starts it, driven by Debian's headless Chromium. The address a proxy
names in X-Forwarded-For is counted only when that proxy is configured (`--trusted-proxies`);
a guesser sharing the victim's office address is slowed while the victim signs in at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from dev.browser_driver import needs_chromium, settled
from prefkit.annotate.server import running_app
from prefkit.annotate.store import FREE_FAILURES_PER_USER, Store
from prefkit.annotate.tables import SignInRow

WAIT_MS = 120_000  # a loaded machine: the first page of a fresh server can take a while
OFFICE = "203.0.113.7"  # what the proxy says the client's address is

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """`tab()`: a fresh browser context (no state, no cookies) whose requests, the websocket's
    included, carry the X-Forwarded-For header a reverse proxy would add."""
    contexts = []

    def new() -> Any:
        context = browser.new_context(extra_http_headers={"X-Forwarded-For": OFFICE})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        return page

    yield new
    for c in contexts:
        c.close()


def _try(page: Any, url: str, token: str) -> str:
    """Sign in with `token`; 'signed in', or the refusal shown."""
    page.goto(url)
    page.get_by_label("Sign-in token").wait_for()
    settled(page)
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    page.locator("[data-testid=stAlertContentError], [data-testid=stSidebar]").first.wait_for()
    if page.locator("[data-testid=stSidebar]").count():
        return "signed in"
    return page.locator("[data-testid=stAlertContentError]").inner_text()


def _clients(store: Store) -> list[str | None]:
    with store.engine.connect() as c:
        return list(c.execute(select(SignInRow.client).order_by(SignInRow.id)).scalars())


def test_the_forwarded_address_counts_only_from_a_trusted_proxy(tab: Any, sqlite_url: str) -> None:
    store = Store.open(sqlite_url)
    token = store.add_user("lan")
    wrong = token.rsplit("_", 1)[0] + "_not-the-secret"
    try:
        with running_app(sqlite_url) as url:  # no --trusted-proxies: the header is the client's own words
            assert "not valid" in _try(tab(), url, store.add_user("minh") + "x")
        assert _clients(store) == ["local"]

        with running_app(sqlite_url, trusted_proxies="127.0.0.1") as url:  # the proxy on this host
            guesser = tab()
            for _ in range(FREE_FAILURES_PER_USER):
                assert "not valid" in _try(guesser, url, wrong)
            # the 6th wrong token on lan's account: its answer is held, and says so
            assert "answered after 1 s" in _try(guesser, url, wrong)
            assert _try(tab(), url, token) == "signed in"  # lan, same office address: at once
        assert _clients(store)[1:] == [f"ip:{OFFICE}"] * (FREE_FAILURES_PER_USER + 2)
    finally:
        store.close()
