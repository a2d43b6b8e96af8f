"""The Label page in Debian's headless Chromium against a real server, at 800 and 1366 px wide:
every key does what its label says or nothing, wherever the focus is (rationale left by Tab,
Escape or Ctrl+Enter; a dropdown or checkbox clicked with the mouse; a focused choice button);
undo; the project shown is the project acted on after fast navigation; dialogues as bubbles,
the choice row on screen, the next pair at the top. One server and one browser for the module;
each test has its own annotator and project, so the tests do not share a queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prefkit.annotate.server import running_app
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response, Strength

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 30_000
WIDTHS = [800, 1366]
QUIET_MS = 700  # long enough for a (wrongly) triggered rerun to reach the store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make system-deps)"),
]

DIALOGUE = (
    "\n\nHuman: How do I get rid of mice in my kitchen?\n\nAssistant: Seal the gaps, store food in jars,"
    " and set traps along the walls.\n\nHuman: Which traps are the most humane?\n\nAssistant:"
)

WIDE_TABLE = (
    "| "
    + " | ".join(f"cột{k}" for k in range(14))
    + " |\n|"
    + "---|" * 14
    + "\n| "
    + " | ".join("giá-trị-rất-dài" for _ in range(14))
    + " |"
)


def _pairs(tag: str, n: int) -> list[Pair]:
    return [
        Pair(Prompt(f"{tag} câu hỏi {i}: hãy giải thích?"), Response(f"{tag} trả lời A {i}"), Response(f"{tag} B {i}"))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("label")
    db_url = f"sqlite:///{folder / 'store.db'}"
    store = Store.open(db_url)
    tokens: dict[str, str] = {"admin": store.add_user("admin", admin=True)}

    def project(name: str, pairs: list[Pair], user: str) -> None:
        store.create_project(name, overlap=1)
        store.import_pairs(name, pairs)
        tokens[user] = store.add_user(user)
        store.assign(name, user)

    for width in WIDTHS:
        project(f"keys{width}", _pairs(f"keys{width}", 12), f"keys{width}")
        project(f"undo{width}", _pairs(f"undo{width}", 6), f"undo{width}")
        long_answer = "\n\n".join(f"Đoạn {k}: " + "rất dài " * 40 for k in range(8))
        project(
            f"chat{width}",
            [
                Pair(
                    Prompt(DIALOGUE.replace("humane?", f"humane? ({i})")),
                    Response(long_answer + str(i)),
                    Response(f"Live-catch traps {i}.\n\n{WIDE_TABLE}"),
                )
                for i in range(3)
            ],
            f"chat{width}",
        )
    project("safety", _pairs("safety", 4), "safety")
    store.set_safety_labels("safety")
    # Fast navigation: "aaa" sorts first, so a lost choice would fall back to it.
    for name in ("aaa", "zzz"):
        store.create_project(name, overlap=3)
        store.import_pairs(name, _pairs(name, 5))
    with running_app(db_url) as url:
        yield {"url": url, "store": store, "tokens": tokens, "folder": folder}
    store.close()


def _tab(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    return tab


def _settled(page: Any) -> None:
    page.wait_for_function("document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'")


def _sign_in(page: Any, url: str, token: str, project: str, wait: bool = True) -> None:
    page.goto(f"{url}/?p={project}")
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    if wait:
        page.locator(".st-key-prompt").wait_for()
        page.get_by_label("Sign-in token").wait_for(state="detached")  # it held the focus
        _settled(page)
        # A key pressed before the choice row exists does nothing (no button has it yet): the
        # run after sign-in may still be drawing it, so wait for it.
        page.locator("[class*='st-key-choice0-'] button").wait_for()
        _settled(page)


def _prompt(page: Any) -> str:
    return page.locator(".st-key-prompt").inner_text().strip()


def _press_and_wait_for_next(page: Any, key: str) -> None:
    before = _prompt(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "before => { const p = document.querySelector('.st-key-prompt'); return p && p.innerText.trim() !== before; }",
        arg=before,
    )
    _settled(page)


def _nothing_happens(page: Any, store: Store, user: str, project: str, key: str) -> None:
    """`key` records nothing and leaves the pair on screen."""
    before, n = _prompt(page), len(store.my_judgements(user, project))
    page.keyboard.press(key)
    page.wait_for_timeout(QUIET_MS)
    _settled(page)
    assert _prompt(page) == before
    assert len(store.my_judgements(user, project)) == n


def _judgement(store: Store, user: str, project: str, held_pair_id: str):
    return {p.pair_id: j for p, j in store.my_judgements(user, project)}[held_pair_id]


def _active(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "(() => { const e = document.activeElement;"
        " return {tag: e.tagName, type: e.type || '', inChoices: !!e.closest('.st-key-choices')}; })()"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_keys_leave_the_rationale_and_never_record_something_else(
    browser: Any, app: dict[str, Any], width: int
) -> None:
    store: Store = app["store"]
    user = project = f"keys{width}"
    page = _tab(browser, width)
    _sign_in(page, app["url"], app["tokens"][user], project)
    box = page.get_by_label("Rationale (optional)")

    # Tab out of the rationale: the focus leaves the box but lands on no choice button, so Enter
    # records nothing; the next key is the page's and the text is kept.
    held = store.claim(project, user)
    box.click()
    box.press_sequentially("both refuse; equal 15")  # digits typed into the text, not shortcuts
    page.keyboard.press("Tab")
    assert _active(page)["tag"] != "TEXTAREA" and not _active(page)["inChoices"]
    _nothing_happens(page, store, user, project, "Enter")
    _press_and_wait_for_next(page, "5")
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.preferred is None and j.rationale == "both refuse; equal 15"

    # Escape, then Ctrl+Enter: the keys go back to the page; nothing is typed into the text.
    for leave, key, point in (("Escape", "1", -4), ("Control+Enter", "9", 4)):
        held = store.claim(project, user)
        box.click()
        box.press_sequentially(f"lý do {leave}")
        page.keyboard.press(leave)
        _press_and_wait_for_next(page, key)
        j = _judgement(store, user, project, held.pair.pair_id)
        assert j.choice() == point and j.rationale == f"lý do {leave}", (leave, j)

    # A report reason chosen with the mouse: the next key is the page's (P reports with that
    # reason), not search text for the dropdown.
    held = store.claim(project, user)
    page.locator(".st-key-choices [data-testid=stSelectbox]").click()
    page.get_by_role("option", name="Both responses unusable").click()
    _settled(page)
    _press_and_wait_for_next(page, "P")
    reports = store.dashboard(project).reports
    assert list(reports["pair_id"]) == [held.pair.pair_id]
    assert list(reports["reason"]) == ["Both responses unusable"]

    # A checkbox ticked with the mouse keeps the focus: the key still acts, once.
    held = store.claim(project, user)
    page.get_by_text("A is unsafe or harmful").click()
    _settled(page)
    page.locator("[data-testid=stCheckbox] input").first.focus()
    _press_and_wait_for_next(page, "4")  # A negligibly better: a side, margin 0
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.preferred == held.shown_order[0] and j.strength is Strength.NEGLIGIBLY_BETTER
    assert j.unsafe == (held.shown_order[0],)

    # Enter and Space on a focused choice button do nothing (only the labelled keys act).
    page.locator(".st-key-choices button").first.focus()
    assert _active(page)["inChoices"]
    _nothing_happens(page, store, user, project, "Enter")
    _nothing_happens(page, store, user, project, " ")
    # A key with no label does nothing either.
    page.evaluate("document.activeElement.blur()")
    _nothing_happens(page, store, user, project, "x")

    # A project chosen with the mouse in the sidebar: the next key judges a pair of that project
    # (the one now shown), and is not typed into the dropdown.
    if width >= 1100:  # the sidebar is open
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").click()
        page.get_by_role("option", name="zzz").click()
        page.wait_for_function("() => document.querySelector('.st-key-prompt')?.innerText.includes('zzz')")
        _settled(page)
        held = store.claim("zzz", user)
        _press_and_wait_for_next(page, "9")
        assert _judgement(store, user, "zzz", held.pair.pair_id).choice() == 4
        box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox] input")
        assert box.input_value() == "zzz"
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_undo_takes_back_a_judgement_and_a_skip(browser: Any, app: dict[str, Any], width: int) -> None:
    store: Store = app["store"]
    user = project = f"undo{width}"
    page = _tab(browser, width)
    _sign_in(page, app["url"], app["tokens"][user], project)
    first = _prompt(page)
    _press_and_wait_for_next(page, "2")
    second = _prompt(page)
    assert len(store.my_judgements(user, project)) == 1
    _press_and_wait_for_next(page, "U")  # key
    assert _prompt(page) == first and store.my_judgements(user, project) == []
    _press_and_wait_for_next(page, "8")
    assert _prompt(page) == second
    (only,) = store.my_judgements(user, project)
    assert only[1].strength is Strength.BETTER
    _press_and_wait_for_next(page, "S")
    assert _prompt(page) != second
    before = _prompt(page)
    page.locator(".st-key-undo button").click()  # button
    page.wait_for_function("b => document.querySelector('.st-key-prompt')?.innerText.trim() !== b", arg=before)
    page.locator(".st-key-prompt").wait_for()
    _settled(page)
    assert _prompt(page) == second
    assert "Undone: your last skip" in page.inner_text("body")
    page.context.close()


def test_fast_navigation_never_switches_the_project(browser: Any, app: dict[str, Any]) -> None:
    """A page link clicked right after signing in (no wait at all) keeps the chosen project:
    the sidebar, the page and the store's claim all say "zzz", never the first one, "aaa"."""
    store: Store = app["store"]
    for trial, target in enumerate(["Dashboard", "My work", "Label", "Dashboard", "Label"]):
        page = _tab(browser, 1366)
        _sign_in(page, app["url"], app["tokens"]["admin"], "zzz", wait=False)
        page.get_by_role("link", name=target).click()
        _settled(page)
        page.wait_for_timeout(300)
        _settled(page)
        if target == "Label":
            page.locator(".st-key-prompt").wait_for()
            assert _prompt(page).startswith("zzz"), trial
        else:
            page.get_by_role("heading", name=f"{target} · zzz").wait_for()
        box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]")
        picker = box.inner_text() + " " + box.locator("input").input_value()
        assert "zzz" in picker and "aaa" not in picker, (trial, picker)
        page.context.close()
    # Nothing was claimed in "aaa" by any of those pages; "zzz" holds the admin's one pair.
    assert store.progress("aaa", "admin").left_in_queue == 5
    assert store.progress("zzz", "admin").left_in_queue == 4


@pytest.mark.parametrize("width", WIDTHS)
def test_dialogue_bubbles_choice_row_on_screen_next_pair_at_top(
    browser: Any, app: dict[str, Any], width: int, tmp_path: Path
) -> None:
    store: Store = app["store"]
    user = project = f"chat{width}"
    page = _tab(browser, width)
    _sign_in(page, app["url"], app["tokens"][user], project)
    prompt = page.locator(".st-key-prompt")
    # The last user turn is a bubble on screen; the two earlier turns are folded away.
    bubbles = prompt.locator("[data-testid=stChatMessage]")
    visible = [b.inner_text() for b in bubbles.all() if b.is_visible()]
    assert len(visible) == 1 and "Which traps are the most humane?" in visible[0] and "User" in visible[0]
    assert "Human:" not in prompt.inner_text()
    page.get_by_text("Earlier in the conversation (2 turns)").click()
    prompt.get_by_text("Seal the gaps").wait_for()
    visible = [b.inner_text() for b in bubbles.all() if b.is_visible()]
    assert len(visible) == 3 and "Assistant" in visible[1] and "How do I get rid of mice" in visible[0]

    # The sidebar is collapsed on a narrow window; the choice row is on screen without scrolling.
    sidebar = page.locator("[data-testid=stSidebar]")
    assert (sidebar.bounding_box() is None or sidebar.bounding_box()["x"] + sidebar.bounding_box()["width"] <= 1) == (
        width < 1100
    )
    row = page.locator(".st-key-choices").bounding_box()
    assert row["y"] >= 0 and row["y"] + row["height"] <= 800 + 1, row
    buttons = page.locator(".st-key-choices [data-testid^=stBaseButton]").all()
    assert len(buttons) == 12  # nine choices, Undo, Skip, Report
    for button in buttons:
        box = button.bounding_box()
        assert box["width"] >= 60 and box["height"] <= 64, box  # no letter-by-letter wrapping
    # A wide table in a response scrolls inside its box instead of spilling out of it.
    for side in "AB":
        box = page.locator(f".st-key-response{side}")
        if box.locator("table").count():
            outer, table = box.bounding_box(), box.locator("table").bounding_box()
            assert table["x"] + table["width"] <= outer["x"] + outer["width"] + 1, (outer, table)
            assert box.locator("table").evaluate("t => t.scrollWidth > t.clientWidth")
            break
    else:
        raise AssertionError("the table is not shown")
    page.screenshot(path=str(Path(app["folder"]) / f"label-{width}.png"))

    # Scrolled down to read a long answer, then judged: the next pair opens at the top.
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollTop = 10000")
    assert page.evaluate("document.querySelector('[data-testid=stMain]').scrollTop") > 100
    _press_and_wait_for_next(page, "6")
    page.wait_for_function("document.querySelector('[data-testid=stMain]').scrollTop === 0")
    assert len(store.my_judgements(user, project)) == 1
    page.context.close()


def test_keys_on_a_safety_project_need_the_pairs_safety_label(browser: Any, app: dict[str, Any]) -> None:
    """A choice key without the pair's safety label records nothing (the page says why); after the
    label is picked with the mouse (the radio keeps the focus), the key records that choice once,
    with the label as the judgement's unsafe flags."""
    from prefkit.data.schema import SafetyBin, judgement_safety_bin

    store: Store = app["store"]
    user = project = "safety"
    page = _tab(browser, 1366)
    _sign_in(page, app["url"], app["tokens"][user], project)
    held = store.claim(project, user)
    _nothing_happens(page, store, user, project, "3")
    assert "safety label" in page.locator("[data-testid=stAlert]").first.inner_text()
    page.get_by_text("Preferred is safe, the other not").click()
    _settled(page)
    _press_and_wait_for_next(page, "7")  # B better
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.preferred == held.shown_order[1] and j.unsafe == (held.shown_order[0],)
    assert judgement_safety_bin(j, held.pair) is SafetyBin.SAFE_VS_UNSAFE
    assert len(store.my_judgements(user, project)) == 1
    page.context.close()
