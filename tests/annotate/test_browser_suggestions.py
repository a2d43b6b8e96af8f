"""A model suggestion shown after the choice, in Debian's headless Chromium against a real server:
the choice key records the judgement, the pair stays on screen with the model's prediction, the
choice keys do nothing there, and only N moves on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dev.browser_driver import needs_chromium, prompt, settled
from prefkit.annotate.server import running_app
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response

WAIT_MS = 30_000
QUIET_MS = 700  # long enough for a (wrongly) triggered rerun to reach the store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('suggest') / 'store.db'}"
    store = Store.open(db_url)
    pairs = [Pair(Prompt(f"Gợi ý câu hỏi {i}?"), Response(f"Một {i}"), Response(f"Hai {i}")) for i in range(4)]
    store.import_project("after", pairs, overlap=1)
    store.record_predictions("after", "rm:round-1", {p.pair_id: 0.9 for p in pairs})
    store.set_suggestions("after", "after")
    token = store.add_user("ann")
    with running_app(db_url) as url:
        yield {"url": url, "store": store, "token": token}
    store.close()


def test_after_the_choice_the_prediction_waits_for_the_next_key(browser: Any, app: dict[str, Any]) -> None:
    store: Store = app["store"]
    page = browser.new_context(viewport={"width": 1366, "height": 800}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{app['url']}/?p=after")
    page.get_by_label("Sign-in token").fill(app["token"])
    page.keyboard.press("Enter")
    page.locator("[class*='st-key-choice0-'] button").wait_for()
    settled(page)
    first = prompt(page)
    assert "The model predicted" not in page.inner_text("body")

    page.keyboard.press("1")  # A significantly better
    page.get_by_text("The model predicted").wait_for()
    settled(page)
    assert prompt(page) == first
    (judged,) = store.judgements("after")
    assert judged.choice() == -4 and judged.suggestion["when"] == "after"
    body = page.inner_text("body")
    assert "Your choice: A significantly better (recorded)" in body and "90%" in body

    for key in ("5", "9", "Enter"):  # no choice here: the keys do nothing, the pair stays
        page.keyboard.press(key)
        page.wait_for_timeout(QUIET_MS)
        settled(page)
        assert prompt(page) == first and len(store.judgements("after")) == 1

    page.keyboard.press("N")
    page.wait_for_function(
        "b => { const p = document.querySelector('.st-key-prompt'); return p && p.innerText.trim() !== b; }",
        arg=first,
    )
    page.locator("[class*='st-key-choice0-'] button").wait_for()
    settled(page)
    assert "The model predicted" not in page.inner_text("body")
    assert len(store.judgements("after")) == 1
    page.context.close()
