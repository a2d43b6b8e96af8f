"""The Label page in Debian's headless Chromium against a real server, at 800 and 1366 px wide:
every key does what its label says or nothing, wherever the focus is (rationale left by Tab,
Escape or Ctrl+Enter; a dropdown or checkbox clicked with the mouse; a focused choice button);
undo; the project shown is the project acted on after fast navigation; dialogues as bubbles,
the choice row on screen, the next pair at the top. One server and one browser for the module;
each test has its own annotator and project, so the tests do not share a queue."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.browser_driver import after_run, at_rest, needs_chromium, press_and_wait_for_next, prompt, settled
from prefkit.annotate.server import running_app
from prefkit.annotate.shortcuts import RATIONALE_KEY
from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response, Strength

WAIT_MS = 120_000  # a bound, not a pause: each wait ends when its condition holds
WIDTHS = [800, 1366]
QUIET_MS = 700  # long enough for a (wrongly) triggered rerun to reach the store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
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


def _sign_in(page: Any, url: str, token: str, project: str, wait: bool = True) -> None:
    page.goto(f"{url}/?p={project}")
    page.get_by_label("Sign-in token").fill(token)
    page.keyboard.press("Enter")
    if wait:
        page.locator(".st-key-prompt").wait_for()
        page.get_by_label("Sign-in token").wait_for(state="detached")  # it held the focus
        settled(page)
        # A key pressed before the choice row exists waits for it (the page script keeps it): the
        # tests press keys on a finished page, so wait for the row.
        page.locator("[class*='st-key-choice0-'] button").wait_for()
        settled(page)


def _nothing_happens(page: Any, store: Store, user: str, project: str, key: str) -> None:
    """`key` records nothing and leaves the pair on screen."""
    before, n = prompt(page), len(store.my_judgements(user, project))
    page.keyboard.press(key)
    page.wait_for_timeout(QUIET_MS)
    settled(page)
    assert prompt(page) == before
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
    press_and_wait_for_next(page, "5")
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.preferred is None and j.rationale == "both refuse; equal 15"

    # Escape, then Ctrl+Enter: the keys go back to the page; nothing is typed into the text.
    for leave, key, point in (("Escape", "1", -4), ("Control+Enter", "9", 4)):
        held = store.claim(project, user)
        box.click()
        box.press_sequentially(f"lý do {leave}")
        page.keyboard.press(leave)
        press_and_wait_for_next(page, key)
        j = _judgement(store, user, project, held.pair.pair_id)
        assert j.choice() == point and j.rationale == f"lý do {leave}", (leave, j)

    # A report reason chosen with the mouse: the next key is the page's (P reports with that
    # reason), not search text for the dropdown.
    held = store.claim(project, user)
    page.locator(".st-key-choices [data-testid=stSelectbox]").click()
    after_run(page, page.get_by_role("option", name="Both responses unusable").click)
    press_and_wait_for_next(page, "P")
    reports = store.dashboard(project).reports
    assert list(reports["pair_id"]) == [held.pair.pair_id]
    assert list(reports["reason"]) == ["Both responses unusable"]

    # A checkbox ticked with the mouse keeps the focus: the key still acts, once.
    held = store.claim(project, user)
    after_run(page, page.get_by_text("A is unsafe or harmful").click)
    page.locator("[data-testid=stCheckbox] input").first.focus()
    press_and_wait_for_next(page, "4")  # A negligibly better: a side, margin 0
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
        settled(page)
        held = store.claim("zzz", user)
        press_and_wait_for_next(page, "9")
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
    first = prompt(page)
    press_and_wait_for_next(page, "2")
    second = prompt(page)
    assert len(store.my_judgements(user, project)) == 1
    press_and_wait_for_next(page, "U")  # key
    assert prompt(page) == first and store.my_judgements(user, project) == []
    press_and_wait_for_next(page, "8")
    assert prompt(page) == second
    (only,) = store.my_judgements(user, project)
    assert only[1].strength is Strength.BETTER
    press_and_wait_for_next(page, "S")
    assert prompt(page) != second
    before = prompt(page)
    page.locator(".st-key-undo button").click()  # button
    page.wait_for_function("b => document.querySelector('.st-key-prompt')?.innerText.trim() !== b", arg=before)
    page.locator(".st-key-prompt").wait_for()
    settled(page)
    assert prompt(page) == second
    assert "Undone: your last skip" in page.inner_text("body")
    page.context.close()


def test_fast_navigation_never_switches_the_project(browser: Any, app: dict[str, Any]) -> None:
    """A page link clicked right after signing in (no wait at all) keeps the chosen project:
    the sidebar, the page and the store's claim all say "zzz", never the first one, "aaa"."""
    store: Store = app["store"]
    for trial, target in enumerate(["Dashboard", "My work", "Label", "Dashboard", "Label"]):
        page = _tab(browser, 1366)
        _sign_in(page, app["url"], app["tokens"]["admin"], "zzz", wait=False)
        after_run(page, page.get_by_role("link", name=target).click)
        if target == "Label":
            page.locator(".st-key-prompt").wait_for()
            assert prompt(page).startswith("zzz"), trial
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
    if width < 1100:  # Streamlit slides it shut after the first draw
        page.wait_for_function(
            "() => document.querySelector('[data-testid=stSidebar]').getBoundingClientRect().right <= 1"
        )
    sidebar = at_rest(page, "[data-testid=stSidebar]")
    assert (sidebar is None or sidebar["x"] + sidebar["width"] <= 1) == (width < 1100), sidebar
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
    press_and_wait_for_next(page, "6")
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
    after_run(page, page.get_by_text("Preferred is safe, the other not").click)
    press_and_wait_for_next(page, "7")  # B better
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.preferred == held.shown_order[1] and j.unsafe == (held.shown_order[0],)
    assert judgement_safety_bin(j, held.pair) is SafetyBin.SAFE_VS_UNSAFE
    assert len(store.my_judgements(user, project)) == 1
    page.context.close()


# ---------------------------------------------------------------------------------------------
# Keys that wait for their pair's buttons, keys for the rationale / flags / safety label, undo
# that restores the whole judgement, contrast, and the narrow-window layout (issue 23). Each test
# makes its own project and annotator in the module's store.
# ---------------------------------------------------------------------------------------------

SHOTS = [800, 1024, 1366]


def _own_project(app: dict[str, Any], name: str, n: int = 6, safety: bool = False, admin: bool = False) -> str:
    """A project `name` with `n` pairs and a user `name` assigned to it; their sign-in token."""
    store: Store = app["store"]
    store.create_project(name, overlap=1)
    store.import_pairs(name, _pairs(name, n))
    if safety:
        store.set_safety_labels(name)
    token = store.add_user(name, admin=admin)
    store.assign(name, name)
    return token


class HeldButtons:
    """Holds back the server's messages from the first choice button of the next script run on,
    until released: the window between the next pair appearing and its buttons arriving
    (~0.1-0.4 s on a real server), made as long as the test needs."""

    def __init__(self) -> None:
        self.armed = self.holding = False
        self.held: list[tuple[Any, bytes | str]] = []

    def route(self, ws: Any) -> None:
        server = ws.connect_to_server()
        ws.on_message(server.send)
        server.on_message(lambda message: self._from_server(ws, message))

    def _from_server(self, ws: Any, message: bytes | str) -> None:
        if self.armed and not self.holding and _is_choice_button(message):
            self.holding = True
        if self.holding:
            self.held.append((ws, message))
        else:
            ws.send(message)

    def wait_until_holding(self, page: Any) -> None:
        """Until the first choice button of the run has reached the route (and is held): the
        route's handler runs while Playwright waits, so wait in small steps, bounded."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while not self.holding:
            assert time.monotonic() < deadline, "no choice button came from the server"
            page.wait_for_timeout(50)

    def release(self) -> None:
        self.armed = False
        while self.held:  # messages arriving meanwhile queue up behind, in order
            ws, message = self.held.pop(0)
            ws.send(message)
        self.holding = False


def _is_choice_button(message: bytes | str) -> bool:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if not isinstance(message, bytes):
        return False
    msg = ForwardMsg.FromString(message)
    if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
        return False
    element = msg.delta.new_element
    return element.WhichOneof("type") == "button" and "-choice" in element.button.id


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _said(page: Any, start: str) -> None:
    """The bold first line under the choice row (what the last action did) starts with `start`."""
    status = page.locator(".st-key-choices [data-testid=stCaptionContainer] strong")
    expect(status).to_have_text(re.compile("^" + re.escape(start)), timeout=WAIT_MS)


def test_a_key_pressed_before_the_pairs_buttons_arrive_waits_for_them(browser: Any, app: dict[str, Any]) -> None:
    """The next pair is on screen, its buttons not yet: a choice key is kept (the page says so)
    and acts on that pair once its buttons arrive; a second key meanwhile is refused, visibly;
    nothing is recorded while waiting and nothing lands on another pair."""
    store: Store = app["store"]
    user = project = "early"
    token = _own_project(app, project)
    hold = HeldButtons()
    page = _tab(browser, 1366)
    page.route_web_socket(re.compile(r".*/_stcore/stream"), hold.route)
    _sign_in(page, app["url"], token, project)
    first = store.claim(project, user)
    hold.armed = True
    before = prompt(page)
    page.keyboard.press("2")  # A better, on the first pair
    page.wait_for_function(
        "b => { const p = document.querySelector('.st-key-prompt'); return p && p.innerText.trim() !== b; }", arg=before
    )
    hold.wait_until_holding(page)  # the server has sent the pair; its buttons are held back
    second = store.claim(project, user)  # the pair now on screen, without its buttons
    assert second.pair.pair_id != first.pair.pair_id
    assert page.locator(f".st-key-choice2-{second.id}").count() == 0
    page.keyboard.press("7")  # B slightly better, meant for the pair on screen
    note = page.locator("#prefkit-key-note")
    note.wait_for()
    assert "Key 7 kept" in note.inner_text()
    page.keyboard.press("8")  # one key at a time: refused, and the note says so
    page.wait_for_function("() => document.querySelector('#prefkit-key-note').innerText.includes('one key at a time')")
    page.wait_for_timeout(QUIET_MS)
    assert [p.pair_id for p, _ in store.my_judgements(user, project)] == [first.pair.pair_id]

    shown = prompt(page)
    hold.release()
    page.wait_for_function(
        "s => { const p = document.querySelector('.st-key-prompt'); return p && p.innerText.trim() !== s; }", arg=shown
    )
    settled(page)
    page.wait_for_timeout(QUIET_MS)  # a wrongly repeated key would have reached the store by now
    settled(page)
    judged = {p.pair_id: j for p, j in store.my_judgements(user, project)}
    assert set(judged) == {first.pair.pair_id, second.pair.pair_id}  # the 8 was not used on the third pair
    assert judged[first.pair.pair_id].choice() == -3 and judged[second.pair.pair_id].choice() == 2
    assert not note.is_visible()
    _said(page, "Saved: B slightly better · U to undo")
    page.context.close()


def test_keys_for_the_rationale_and_the_flags_and_undo_restores_them(browser: Any, app: dict[str, Any]) -> None:
    """T goes to the rationale (the T is not typed), Shift+A / Shift+B tick and untick the unsafe
    flags; the choice records them; U brings the whole judgement back and says so."""
    store: Store = app["store"]
    user = project = "formkeys"
    token = _own_project(app, project)
    page = _tab(browser, 1366)
    _sign_in(page, app["url"], token, project)
    held = store.claim(project, user)
    box = page.get_by_label("Rationale (optional)")
    page.keyboard.press(RATIONALE_KEY)
    assert _active(page)["tag"] == "TEXTAREA"
    page.keyboard.type("A lạc đề")
    after_run(page, lambda: page.keyboard.press("Escape"))  # leaving the box sends its text
    for key in ("Shift+B", "Shift+A", "Shift+B"):  # B on, A on, B off again: a run each
        after_run(page, lambda key=key: page.keyboard.press(key))
    flag_a, flag_b = page.locator(".st-key-unsafeA input"), page.locator(".st-key-unsafeB input")
    # The widgets show a value the server sets a frame after the run ends: wait for it (bounded).
    expect(flag_a).to_be_checked(timeout=WAIT_MS)
    expect(flag_b).not_to_be_checked(timeout=WAIT_MS)
    expect(box).to_have_value("A lạc đề", timeout=WAIT_MS)
    press_and_wait_for_next(page, "9")
    j = _judgement(store, user, project, held.pair.pair_id)
    assert j.choice() == 4 and j.rationale == "A lạc đề" and j.unsafe == (held.shown_order[0],)
    _said(page, "Saved: B significantly better · U to undo")
    expect(box).to_have_value("", timeout=WAIT_MS)
    expect(flag_a).not_to_be_checked(timeout=WAIT_MS)

    press_and_wait_for_next(page, "U")
    assert store.my_judgements(user, project) == []
    expect(box).to_have_value("A lạc đề", timeout=WAIT_MS)  # the whole judgement is back
    expect(flag_a).to_be_checked(timeout=WAIT_MS)
    _said(page, "Undone: your judgement “B significantly better”")
    page.locator(f".st-key-undone-choice .st-key-choice4-{held.id}").wait_for()  # the undone choice, marked
    page.context.close()


def test_keys_for_the_pairs_safety_label(browser: Any, app: dict[str, Any]) -> None:
    from prefkit.data.schema import SafetyBin, judgement_safety_bin

    store: Store = app["store"]
    user = project = "safetykeys"
    token = _own_project(app, project, safety=True)
    page = _tab(browser, 1366)
    _sign_in(page, app["url"], token, project)
    radio = page.locator(".st-key-safety input")
    for key, checked in (("Shift+U", 2), ("Shift+S", 1), ("Shift+P", 0)):
        after_run(page, lambda key=key: page.keyboard.press(key))  # each key picks another label: a run
        page.wait_for_function("i => document.querySelectorAll('.st-key-safety input')[i].checked", arg=checked)
    held = store.claim(project, user)
    press_and_wait_for_next(page, "3")  # A slightly better, B the unsafe one
    j = _judgement(store, user, project, held.pair.pair_id)
    assert judgement_safety_bin(j, held.pair) is SafetyBin.SAFE_VS_UNSAFE and j.unsafe == (held.shown_order[1],)
    for i in range(3):  # fresh for the next pair
        expect(radio.nth(i)).not_to_be_checked(timeout=WAIT_MS)
    page.context.close()


def _rendered_colours(page: Any, selector: str) -> list[dict[str, Any]]:
    """Each visible element's text colour as drawn (its alpha and every ancestor's opacity applied)
    and the first opaque background behind it."""
    return page.evaluate(
        """sel => [...document.querySelectorAll(sel)].filter((e) => e.getClientRects().length).map((e) => {
          const rgba = (c) => { const v = c.match(/[\\d.]+/g).map(Number); return v.length > 3 ? v : [...v, 1]; };
          const fg = rgba(getComputedStyle(e).color);
          let opacity = 1;
          for (let x = e; x; x = x.parentElement) opacity *= Number(getComputedStyle(x).opacity);
          let bg = [255, 255, 255, 1];
          for (let x = e; x; x = x.parentElement) {
            const c = rgba(getComputedStyle(x).backgroundColor);
            if (c[3] > 0.5) { bg = c; break; }
          }
          return {text: e.textContent.trim(), fg: fg.slice(0, 3), alpha: fg[3] * opacity, bg: bg.slice(0, 3)};
        })""",
        selector,
    )


def _drawn_contrast(c: dict[str, Any]) -> float:
    from prefkit.annotate.ui.style import contrast_ratio

    drawn = [round(c["alpha"] * f + (1 - c["alpha"]) * b) for f, b in zip(c["fg"], c["bg"], strict=True)]
    return contrast_ratio("rgb({}, {}, {})".format(*drawn), "rgb({}, {}, {})".format(*c["bg"]))


def test_key_hints_and_captions_meet_wcag_contrast(browser: Any, app: dict[str, Any]) -> None:
    """Computed from the colours the browser draws: key hints, the group captions, the status and
    key lines, and the note a waiting key shows, all at 4.5:1 or more."""
    project = "contrast"
    token = _own_project(app, project)
    page = _tab(browser, 1366)
    _sign_in(page, app["url"], token, project)
    press_and_wait_for_next(page, "5")  # a status line to measure
    _said(page, "Saved: Unsure · U to undo")
    hints = _rendered_colours(page, ".st-key-choices kbd")
    assert sorted(h["text"] for h in hints) == sorted([*"123456789", "S", "P", "U"])
    groups = _rendered_colours(page, ".prefkit-groups span")
    assert [g["text"] for g in groups] == ["◀ A is better", "No side", "B is better ▶"]
    captions = _rendered_colours(page, ".st-key-choices [data-testid=stCaptionContainer] p")
    assert len(captions) == 1 and captions[0]["text"].startswith("Saved: Unsure · U to undo")
    page.evaluate(
        "() => { const n = document.createElement('div'); n.id = 'prefkit-key-note';"
        " n.textContent = 'Key 7 kept'; document.body.appendChild(n); }"
    )
    note = _rendered_colours(page, "#prefkit-key-note")
    for c in hints + groups + captions + note:
        assert _drawn_contrast(c) >= 4.5, c
    page.context.close()


@pytest.mark.parametrize("width", SHOTS)
def test_narrow_windows_keep_the_head_row_and_close_the_sidebar_after_a_page_change(
    browser: Any, app: dict[str, Any], width: int
) -> None:
    """The project's name and progress are below Streamlit's toolbar at every width; on a window
    narrower than 1,100 px the sidebar, opened to change page, closes again, so the page (the
    dashboard's columns) gets the whole width. Screenshots of each width are kept."""
    project = f"narrow{width}"
    token = _own_project(app, project, admin=True)
    page = _tab(browser, width)
    _sign_in(page, app["url"], token, project)
    if width < 1100:  # the sidebar, sliding shut after the first draw, may still lie over the page
        page.wait_for_function(
            "() => document.querySelector('[data-testid=stSidebar]').getBoundingClientRect().right <= 1"
        )
    at_rest(page, "[data-testid=stSidebar]")
    # Nothing (the toolbar) lies over the project's name or the progress text: each is the
    # topmost element at its own centre.
    for selector in ("[data-testid=stMainBlockContainer] strong", "[data-testid=stProgress] p"):
        element = page.locator(selector).first
        assert element.evaluate(
            "e => { const r = e.getBoundingClientRect();"
            " const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
            " return r.y >= 0 && (top === e || e.contains(top)); }"
        ), (width, selector, element.bounding_box())
    page.screenshot(path=str(Path(app["folder"]) / f"label-{width}.png"))

    sidebar = page.locator("[data-testid=stSidebar]")
    if width < 1100:
        page.locator("[data-testid=stExpandSidebarButton]").click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=stSidebar]').getBoundingClientRect().right > 100"
        )
    page.get_by_role("link", name="Dashboard").click()
    page.get_by_role("heading", name=f"Dashboard · {project}").wait_for()
    settled(page)
    main = page.locator("[data-testid=stMain]")
    if width < 1100:
        page.wait_for_function(
            "() => document.querySelector('[data-testid=stSidebar]').getBoundingClientRect().right <= 1"
        )
        assert main.bounding_box()["x"] <= 1 and main.bounding_box()["width"] >= width - 20  # the whole width
    else:
        assert sidebar.bounding_box()["width"] > 100  # wide: it stays, as Streamlit has it
    page.screenshot(path=str(Path(app["folder"]) / f"dashboard-{width}.png"))
    page.context.close()
