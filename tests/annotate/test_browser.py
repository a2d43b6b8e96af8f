"""The real thing: `streamlit run annotate/app.py` on loopback, driven by Debian's headless
Chromium through Playwright. An annotator signs in, judges three pairs with the keyboard only,
and the judgements are in the store; untrusted model output runs no script, loads no image and
carries no javascript: link in the real DOM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dev.browser_driver import after_run, needs_chromium, press_and_wait_for_next, prompt, settled
from prefkit.annotate.render import safe_markdown
from prefkit.annotate.seed import ADMIN, ANNOTATOR, TOKENS_FILE, seed_demo
from prefkit.annotate.server import running_app
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response, Strength

WAIT_MS = 120_000  # a bound, not a pause: each wait ends when its condition holds

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]

ATTACK_PAIR = Pair(
    Prompt("Viết một đoạn HTML <script>window.__pwned = 'prompt'</script>"),
    Response(
        'Đây: <img src="http://beacon.invalid/pixel.gif" onerror="window.__pwned = \'img\'">\n\n'
        "![logo](http://beacon.invalid/logo.png)\n\n[tài liệu](https://example.org/docs)",
        model="m-a",
    ),
    Response("[bấm vào đây](javascript:window.__pwned='link') <script>window.__pwned = 'b'</script>", model="m-b"),
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module: the demo project (seed_demo) plus an "attacks" project."""
    folder = tmp_path_factory.mktemp("browser")
    db_url = f"sqlite:///{folder / 'store.db'}"
    admin, annotator = seed_demo(db_url, folder)
    store = Store.open(db_url)
    store.create_project("attacks", overlap=1)
    store.import_pairs("attacks", [ATTACK_PAIR])
    with running_app(db_url) as url:
        yield {"url": url, "store": store, "admin": admin, "annotator": annotator, "folder": folder}
    store.close()


@pytest.fixture
def page(browser: Any, app: dict[str, Any]) -> Iterator[Any]:
    """A fresh tab that may reach only the app on loopback; any other request is refused and kept."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(app["url"]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.outside_requests = outside
    yield tab
    context.close()


def _sign_in(page: Any, url: str, token: str, project: str) -> None:
    page.goto(f"{url}/?p={project}")  # the project choice survives signing in
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    page.locator(".st-key-prompt").wait_for()
    settled(page)
    page.locator("[class*='st-key-choice0-'] button").wait_for()  # keys act once their buttons exist
    settled(page)


def test_sign_in_and_judge_three_pairs_with_the_keyboard(page: Any, app: dict[str, Any]) -> None:
    store: Store = app["store"]
    saved = json.loads((app["folder"] / TOKENS_FILE).read_text())
    assert saved == {ADMIN: app["admin"], ANNOTATOR: app["annotator"]}
    _sign_in(page, app["url"], app["annotator"], "demo")
    questions = {p.prompt.question: p for p in store.pairs("demo")}

    judged: list[tuple[str, str]] = []
    for i, key in enumerate(["1", "5", "9"]):  # A significantly better, unsure, B significantly better
        held = store.claim("demo", ANNOTATOR)
        assert prompt(page) == held.pair.prompt.question
        assert held.pair.prompt.question in questions
        if i == 1:
            # Typing digits into the rationale must not submit: shortcuts stay out of text fields.
            box = page.get_by_label("Rationale (optional)")
            box.click()
            box.press_sequentially("câu 1 và câu 9 giống nhau")
            assert prompt(page) == held.pair.prompt.question
            assert len(store.my_judgements(ANNOTATOR, "demo")) == 1
            box.blur()  # commits the text; the next key press goes to the page
        if i == 2:
            after_run(page, page.get_by_text("B is unsafe or harmful").click)  # focus on a checkbox: keys still work
            # However fast the key follows the click, the focus may still be on the checkbox:
            # hold it there on purpose, so the key must get through anyway.
            page.locator("[data-testid=stCheckbox] input").nth(1).focus()
            assert page.evaluate("document.activeElement.type") == "checkbox"
        press_and_wait_for_next(page, key, gone_ok=True)
        judged.append((held.pair.pair_id, key))

    stored = {pair.pair_id: (pair, j) for pair, j in store.my_judgements(ANNOTATOR, "demo")}
    assert len(stored) == 3
    for pair_id, key in judged:
        _pair, j = stored[pair_id]
        left, right = j.shown_order
        if key == "1":
            assert j.preferred == left and j.strength is Strength.SIGNIFICANTLY_BETTER
        elif key == "5":
            assert j.preferred is None and j.strength is Strength.NEGLIGIBLY_BETTER
            assert j.rationale == "câu 1 và câu 9 giống nhau"
        else:
            assert j.preferred == right and j.strength is Strength.SIGNIFICANTLY_BETTER
            assert j.unsafe == (right,)

    # Moving to another page and reloading it keep the annotator signed in.
    page.get_by_role("link", name="My work").click()
    page.get_by_role("heading", name="My work").wait_for()
    page.reload()
    page.get_by_role("heading", name="My work").wait_for()
    assert page.get_by_label("Sign-in token").count() == 0
    assert page.outside_requests == []


def test_untrusted_output_is_inert_in_the_real_browser(page: Any, app: dict[str, Any]) -> None:
    _sign_in(page, app["url"], app["admin"], "attacks")
    # A reload with the session key in the URL stays signed in and shows the same pair.
    page.reload()
    page.locator(".st-key-prompt").wait_for()
    settled(page)
    page.get_by_text("bấm vào đây").wait_for()

    # The annotator sees the markup as text...
    assert "<script>window.__pwned = 'prompt'</script>" in prompt(page)
    assert "[image removed: logo — http://beacon.invalid/logo.png]" in page.inner_text("body")
    # ...and nothing of it ran, loaded or links anywhere but http(s).
    page.wait_for_timeout(500)  # give an onerror handler time to fire, were there one
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("[...document.scripts].filter(s => s.text.includes('__pwned')).length") == 0
    img_sources = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
    assert not [s for s in img_sources if "beacon" in s]
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if not h.startswith(("http://", "https://", "/", "?", "#", "mailto:"))], hrefs
    assert "https://example.org/docs" in hrefs  # a plain https link is still a link
    assert not [u for u in page.outside_requests if "beacon" in u], page.outside_requests
    assert page.outside_requests == []
    # The markdown Streamlit got is exactly the sanitiser's output.
    assert safe_markdown(ATTACK_PAIR.prompt.question).startswith(r"Viết một đoạn HTML \<script\>")
