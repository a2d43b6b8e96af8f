"""Label page: the prompt, two responses side by side, the 7-point row, flags, Skip, Report.

Every action is a button callback, and callbacks run before the script: one click submits to the
store and the same rerun claims and draws the next pair (no second click, no second rerun). The
store's claim hands back the pair this user already holds, so a reload or a second tab shows the
same pair, and its submit is idempotent per (annotator, pair), so a double click records once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from annotate.render import escape_text, safe_markdown
from annotate.shortcuts import CHOICE_KEYS, REPORT_KEY, SKIP_KEY, help_line, release_checkbox_focus
from annotate.store import Assignment, User
from annotate.ui import session
from data.errors import PrefkitError
from data.schema import SEVEN_POINT_LABELS, Judgement, utcnow

LEASE_SECONDS = 30 * 60
REPORT_REASONS = ("Bad prompt", "Both responses unusable", "Other")
SIDES = ("A", "B")


def _clear_form() -> None:
    """Fresh flags, rationale and reason for the next pair (same widgets, updated in place)."""
    state = st.session_state
    state["rationale"] = ""
    state["reason"] = REPORT_REASONS[0]
    for side in SIDES:
        state[f"unsafe{side}"] = False


def _store_action(action: Callable[..., None]) -> Callable[..., None]:
    """Run a button's store call; a refusal (e.g. the pair was withdrawn meanwhile) is shown on
    the next draw instead of a traceback, and the form is cleared only on success."""

    @functools.wraps(action)
    def run(*args: object) -> None:
        try:
            action(*args)
        except PrefkitError as e:
            st.session_state["label-error"] = str(e)
        else:
            _clear_form()

    return run


@_store_action
def _submit(user: User, assignment: Assignment, point: int) -> None:
    state = st.session_state
    unsafe = tuple(rid for side, rid in zip(SIDES, assignment.shown_order, strict=True) if state.get(f"unsafe{side}"))
    rationale = (state.get("rationale") or "").strip() or None
    judgement = Judgement.from_seven_point(
        assignment.pair.pair_id,
        user.name,
        point,
        assignment.shown_order,
        unsafe=unsafe,
        rationale=rationale,
        seconds=(utcnow() - assignment.claimed_at).total_seconds(),
    )
    session.store().submit(assignment.id, user, judgement)


@_store_action
def _skip(user: User, assignment: Assignment) -> None:
    session.store().skip(assignment.id, user)


@_store_action
def _report(user: User, assignment: Assignment) -> None:
    reason = st.session_state.get("reason") or REPORT_REASONS[0]
    note = (st.session_state.get("rationale") or "").strip()
    session.store().report(assignment.id, user, f"{reason}: {note}" if note else reason)


def _progress(slot: DeltaGenerator, user: User, project: str, holding: bool) -> None:
    p = session.store().progress(project, user)
    left = p.left_in_queue + holding  # the store counts the pairs besides the one on screen
    total = p.done_today + left
    slot.progress(
        p.done_today / total if total else 1.0,
        text=f"{p.done_today} done today · {left} left in your queue · {p.done_total} in all",
    )


def render(user: User, project: str) -> None:
    # The progress bar sits on top but is filled last: the next pair is on screen before the count.
    progress_slot = st.empty()
    if error := st.session_state.pop("label-error", None):
        st.error(escape_text(error))
    assignment = session.store().claim(project, user, LEASE_SECONDS)
    if assignment is None:
        st.success("Your queue is empty: nothing left to judge in this project. Thank you!")
        _progress(progress_slot, user, project, holding=False)
        return
    pair = assignment.pair
    st.markdown("#### Prompt")
    if pair.prompt.system:
        st.caption("System: " + escape_text(pair.prompt.system))
    with st.container(border=True, key="prompt"):
        st.markdown(safe_markdown(pair.prompt.question))

    for side, column, rid in zip(SIDES, st.columns(2), assignment.shown_order, strict=True):
        with column:
            st.markdown(f"#### Response {side}")
            with st.container(border=True, key=f"response{side}"):
                st.markdown(safe_markdown(pair.response(rid).text))
            st.checkbox(f"{side} is unsafe or harmful", key=f"unsafe{side}")

    st.text_area("Rationale (optional)", key="rationale", height=68)
    # Buttons are keyed by assignment: a double click's second click either repeats the same
    # (idempotent) submit or, once the next pair is drawn, finds its widget gone and is dropped;
    # it never lands on a pair the annotator has not seen.
    for column, (point, label) in zip(st.columns(7), sorted(SEVEN_POINT_LABELS.items()), strict=True):
        column.button(
            label,
            key=f"choice{point}-{assignment.id}",
            on_click=_submit,
            args=(user, assignment, point),
            shortcut=CHOICE_KEYS[point],
            width="stretch",
            wrap=True,
        )
    st.caption(help_line())
    skip, reason, report = st.columns([1, 2, 1], vertical_alignment="bottom")
    skip.button(
        "Skip", key=f"skip-{assignment.id}", on_click=_skip, args=(user, assignment), shortcut=SKIP_KEY, width="stretch"
    )
    reason.selectbox("Problem", REPORT_REASONS, key="reason")
    report.button(
        "Report a problem",
        key=f"report-{assignment.id}",
        on_click=_report,
        args=(user, assignment),
        shortcut=REPORT_KEY,
        width="stretch",
    )
    release_checkbox_focus()
    _progress(progress_slot, user, project, holding=True)


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context())
