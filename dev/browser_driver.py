"""Driving the app in Debian's headless Chromium (Playwright), shared by the browser tests: where
Chromium is and how it is started (a test skips, saying why, without it), wait
for the script run an action started, wait for the app to be idle, read a moving box once it is at
rest, read the pair on screen, press a key and wait for the next pair.

Why runs are watched on the websocket and not in the page: Streamlit marks its root with
`data-test-script-state`, but React may draw "running" and "notRunning" in one render when both
messages arrive before it draws (a loaded browser, a short run), so the attribute never changes and
a test waiting for it to change waits forever (CI, 2026-12-07: a report reason picked with the
mouse). Every run, however short, sends its own frames: `new_session` when it starts and
`script_finished` when it ends, after the `rerun_script` the browser sent for it. Those frames are
decoded here with Streamlit's own protobuf classes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make system-deps)"
)
WAIT_S = 120  # a bound, not a pause: each wait ends when its condition holds
_LOG = "_prefkit_runs"
_EARLY = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


def watch_runs(context: Any) -> None:
    """Log, for every page opened in `context` from now on, the reruns it asks for and the runs
    the server starts and finishes (read by `after_run`)."""
    context.on("page", _watch_page)


def _decoded(cls: Any, payload: str | bytes) -> Any:
    """`payload` parsed as Streamlit's `cls` (BackMsg or ForwardMsg), or None (text, or not one)."""
    if not isinstance(payload, bytes):
        return None
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        return None
    return msg


def _watch_page(page: Any) -> None:
    log: list[str] = []
    setattr(page, _LOG, log)

    def sent(payload: str | bytes) -> None:
        msg = _decoded(BackMsg, payload)
        if msg is not None and msg.WhichOneof("type") == "rerun_script":
            log.append("rerun")

    def received(payload: str | bytes) -> None:
        msg = _decoded(ForwardMsg, payload)
        kind = None if msg is None else msg.WhichOneof("type")
        if kind == "new_session":
            log.append("started")
        elif kind == "script_finished":
            log.append("stopped" if msg.script_finished == _EARLY else "finished")

    def socket(ws: Any) -> None:
        ws.on("framesent", sent)
        ws.on("framereceived", received)

    page.on("websocket", socket)


def _run_done(events: list[str]) -> bool:
    """A run was asked for, one started after that, and that one (or a later one) finished."""
    if "rerun" not in events:
        return False
    after = events[events.index("rerun") :]
    return "started" in after and "finished" in after[after.index("started") :]


def settled(page: Any) -> None:
    """Wait until the page shows no script run in progress."""
    page.wait_for_function("document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'")


def after_run(page: Any, action: Any) -> None:
    """Do `action` (a click that makes the app rerun) and wait until a run started after it has
    finished on the server and the page shows it finished. The page must come from a context
    given to `watch_runs` (the browser fixtures do this)."""
    log: list[str] = getattr(page, _LOG)
    start = len(log)
    action()
    deadline = time.monotonic() + WAIT_S
    while not _run_done(log[start:]):
        if time.monotonic() > deadline:
            raise AssertionError(f"no run finished after the action in {WAIT_S} s; frames seen: {log[start:]}")
        page.wait_for_timeout(20)  # lets Playwright deliver the frames' events
    settled(page)


def at_rest(page: Any, selector: str) -> dict[str, float] | None:
    """Wait until the element at `selector` stops moving (a CSS transition, such as the sidebar
    sliding shut on a narrow window, has ended) and return its box (None when it is not drawn).
    Read once, at rest: a box read during the slide is neither open nor shut (CI, 2026-12-07)."""
    deadline = time.monotonic() + WAIT_S
    last: Any = object()
    same = 0
    while same < 4:  # unchanged over four reads 50 ms apart: no transition is running
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} still moving after {WAIT_S} s: {last}")
        box = page.locator(selector).bounding_box()
        same = same + 1 if box == last else 0
        last = box
        page.wait_for_timeout(50)
    return last  # type: ignore[no-any-return]


def prompt(page: Any) -> str:
    """The prompt of the pair on screen."""
    return page.locator(".st-key-prompt").inner_text().strip()


def press_and_wait_for_next(page: Any, key: str, *, gone_ok: bool = False) -> None:
    """Press `key` and wait until another pair is on screen (or, with `gone_ok`, none: the queue
    is empty), then until the run has finished."""
    before = prompt(page)
    none = "true" if gone_ok else "false"
    page.keyboard.press(key)
    page.wait_for_function(
        "before => { const p = document.querySelector('.st-key-prompt');"
        f" return p ? p.innerText.trim() !== before : {none}; }}",
        arg=before,
    )
    settled(page)
