"""Edit-and-rank in Debian's headless Chromium against a real server: on a project that takes edits,
E opens the editor prefilled with the left response; the annotator rewrites it, leaves the box with
Escape and chooses with a key: the judgement stores the edit. Keys typed in the editor are text, not
shortcuts; on a project without edits, E does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dev.browser_driver import after_run, needs_chromium, settled
from prefkit.annotate.server import running_app
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response

WAIT_MS = 30_000
QUIET_MS = 700

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('edit') / 'store.db'}"
    store = Store.open(db_url)
    tokens = {}
    for name, edits in (("edits", True), ("plain", False)):
        store.create_project(name, overlap=1)
        store.import_pairs(
            name,
            [
                Pair(Prompt(f"{name} câu hỏi {i}?"), Response(f"{name} trả lời A {i}."), Response(f"B {i}."))
                for i in range(3)
            ],
        )
        if edits:
            store.set_edits(name)
        tokens[name] = store.add_user(name)
        store.assign(name, name)
    with running_app(db_url) as url:
        yield {"url": url, "store": store, "tokens": tokens}
    store.close()


def _sign_in(browser: Any, app: dict[str, Any], project: str) -> Any:
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{app['url']}/?p={project}")
    page.get_by_label("Sign-in token").fill(app["tokens"][project])
    page.keyboard.press("Enter")
    page.locator(".st-key-prompt").wait_for()
    page.get_by_label("Sign-in token").wait_for(state="detached")
    settled(page)
    page.locator("[class*='st-key-choice0-'] button").wait_for()
    settled(page)
    return page


def test_e_opens_the_editor_and_a_choice_key_records_the_edit(browser: Any, app: dict[str, Any]) -> None:
    store: Store = app["store"]
    page = _sign_in(browser, app, "edits")
    held = store.claim("edits", "edits")
    left = held.pair.response(held.shown_order[0]).text

    page.keyboard.press("e")
    editor = page.get_by_label("Your better version of response A")
    editor.wait_for()
    settled(page)
    assert editor.input_value() == left  # prefilled with the response
    editor.click()
    editor.press("End")
    editor.press_sequentially(" Thêm 3 ví dụ.")  # the digit is text here, not the key "3"
    after_run(page, lambda: page.keyboard.press("Escape"))  # leave the box (a run: it sends its text)
    before = page.locator(".st-key-prompt").inner_text()
    page.keyboard.press("2")  # A better (keys 1–9 follow the choice row left to right)
    page.wait_for_function("b => document.querySelector('.st-key-prompt')?.innerText !== b", arg=before)
    settled(page)
    ((pair, j),) = store.my_judgements("edits", "edits")
    assert pair.pair_id == held.pair.pair_id
    assert j.preferred == held.shown_order[0] and j.edited == left + " Thêm 3 ví dụ."
    assert page.get_by_label("Your better version of response A").count() == 0  # the next pair: closed
    page.context.close()


def test_e_does_nothing_on_a_project_without_edits(browser: Any, app: dict[str, Any]) -> None:
    store: Store = app["store"]
    page = _sign_in(browser, app, "plain")
    page.keyboard.press("e")
    page.wait_for_timeout(QUIET_MS)
    settled(page)
    assert page.locator("textarea").count() == 1  # the rationale only
    assert store.my_judgements("plain", "plain") == []
    page.context.close()
