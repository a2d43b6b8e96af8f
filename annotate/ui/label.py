"""Label page: the prompt as a conversation, two responses side by side, the rationale and flags,
and the choice row (Llama 2's scale: a side with each of four levels, and unsure; Skip, Report,
Undo).

Every action is a button callback, and callbacks run before the script: one click submits to the
store and the same rerun claims and draws the next pair (no second click, no second rerun). The
store's claim hands back the pair this user already holds, so a reload or a second tab shows the
same pair, and its submit is idempotent per (annotator, pair), so a double click records once.
After each action the choice row says what it did ("Saved: B slightly better · U to undo"); an
undo puts the whole judgement back (rationale, flags, safety label; its choice marked).

The page's parts live in modules of their own: `conversation` (the prompt), `label_form` (the
rationale, flags, safety label and report reason around the choice), `choices` (the sticky choice
row), `style` (CSS), and `prefkit.annotate.shortcuts` (every key, and the page script).

Layout, 800 px to wide: the choice row sticks to the bottom of the window, so it is reachable
without scrolling whatever the length of the pair; earlier turns of a dialogue are folded away
(the last user turn is always shown); the next pair opens at the top.
"""

from __future__ import annotations

import dataclasses
import functools

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from prefkit.annotate.render import escape_text, safe_markdown
from prefkit.annotate.shortcuts import RATIONALE_KEY, SAFETY_KEYS, UNSAFE_KEYS, key_hint
from prefkit.annotate.store import Assignment, Progress, Suggestion, User
from prefkit.annotate.ui import edit, session, suggestion
from prefkit.annotate.ui.choices import choice_row
from prefkit.annotate.ui.conversation import prompt_turns, render_prompt
from prefkit.annotate.ui.label_form import (
    REPORT_REASONS,
    SAFETY_LABELS,
    SIDES,
    clear_form,
    rationale,
    restore_form,
    safety_flags,
    saved,
    say,
    undone_text,
    unsafe_flags,
)
from prefkit.core.errors import PrefkitError
from prefkit.data.schema import Judgement, utcnow

LEASE_SECONDS = 30 * 60


@session.store_action("label-error", on_success=clear_form)
def _submit(user: User, assignment: Assignment, safety_labels: bool, shown: Suggestion | None, point: int) -> None:
    judgement = Judgement.from_choice(
        assignment.pair.pair_id,
        user.name,
        point,
        assignment.shown_order,
        unsafe=unsafe_flags(assignment),
        rationale=rationale(),
        seconds=(utcnow() - assignment.claimed_at).total_seconds(),
    )
    if safety_labels:
        label = st.session_state.get("safety")
        judgement = dataclasses.replace(judgement, unsafe=safety_flags(judgement, assignment, label))
    judgement = edit.attach(judgement, assignment)  # the open editor's edit of the preferred answer, if any
    stored = session.store().submit(assignment.id, user, judgement, suggestion=shown)
    say(saved(point))
    suggestion.after_submit(assignment.project, assignment, stored, shown)  # `after` projects: the reveal


@session.store_action("label-error", on_success=clear_form)
def _skip(user: User, assignment: Assignment, safety_labels: bool, shown: Suggestion | None = None) -> None:
    session.store().skip(assignment.id, user)
    say("Skipped · U to undo")


@session.store_action("label-error", on_success=clear_form)
def _report(user: User, assignment: Assignment, safety_labels: bool, shown: Suggestion | None = None) -> None:
    reason = st.session_state.get("reason") or REPORT_REASONS[0]
    note = rationale()
    session.store().report(assignment.id, user, f"{reason}: {note}" if note else reason)
    say(f"Reported: {reason} · U to undo")


@session.store_action("label-error")  # the form stays as the undo put it back
def _undo(user: User, project: str) -> None:
    undone = session.store().undo(project, user, LEASE_SECONDS)
    if undone is not None:
        clear_form()
        restore_form(undone)
    say(undone_text(undone))


def _progress(user: User, project: str) -> Progress:
    return session.store().progress(project, user, pairs=session.pairs_in(project))


def _head(slot: DeltaGenerator, project: str, p: Progress, holding: bool) -> None:
    """The project's name and the user's progress `p`, drawn into `slot` (on top of the page)
    after the pair: the next pair is on screen before its count. The count is exact after the
    user's own actions (the walk over 100,000 open pairs is avoided, see `Store.progress`)."""
    left = p.left_in_queue + holding  # the store counts the pairs besides the one on screen
    total = p.done_today + left
    with slot:
        head, progress = st.columns([1, 3], vertical_alignment="center")
        head.markdown(f"**{escape_text(project)}**", help="The project you are labelling (change it in the sidebar).")
        progress.progress(
            p.done_today / total if total else 1.0,
            text=f"{p.done_today} done today · {left} left in your queue · {p.done_total} in all",
        )


def _responses(assignment: Assignment, safety_labels: bool) -> None:
    """The two responses side by side, each with its "unsafe" flag (unless the project asks for
    the pair's safety label instead)."""
    for side, column, rid in zip(SIDES, st.columns(2), assignment.shown_order, strict=True):
        with column:
            st.markdown(f"**Response {side}**")
            with st.container(border=True, key=f"response{side}"):
                st.markdown(safe_markdown(assignment.pair.response(rid).text))
            if not safety_labels:  # else the pair's safety label below says it
                st.checkbox(f"{side} is unsafe or harmful · {key_hint(UNSAFE_KEYS[side])}", key=f"unsafe{side}")


def _safety_label() -> None:
    st.radio(
        "Safety of the pair (required)",
        list(SAFETY_LABELS),
        format_func=lambda v: f"{SAFETY_LABELS[v]} · {key_hint(SAFETY_KEYS[v])}",
        index=None,
        key="safety",
        horizontal=True,
        help="Llama 2's safety label: required on this project before a choice is recorded.",
    )


def render(user: User, project: str) -> None:
    # Not a fragment on purpose: a fragment rerun started by the rationale's commit (Esc, Tab,
    # blur) dropped the choice key pressed right after it (seen in the browser tests).
    # The pair is claimed before anything of the page is sent, and then sent at once: nothing
    # (no message of ours) waits in the server's outgoing queue while the claim runs. The head
    # row (project, progress) sits on top but is filled last, into this container: until then
    # the browser keeps the last head row in it, so nothing flickers or moves.
    if suggestion.reveal(user, project, _undo):  # an `after` project: the model's view of the pair just judged
        return
    error = st.session_state.pop("label-error", None)
    try:
        assignment, refused = session.store().claim(project, user, LEASE_SECONDS), None
    except PrefkitError as e:  # e.g. taken off this project by an admin
        assignment, refused = None, str(e)
    head_slot = st.container()
    for message in (error, refused):
        if message:
            st.error(escape_text(message))
    if refused:
        head_slot.markdown(f"**{escape_text(project)}**")
        return
    row = functools.partial(
        choice_row, submit=_submit, skip=_skip, report=_report, undo=_undo, undo_args=(user, project)
    )
    if assignment is None:
        st.success("Your queue is empty: nothing left to judge in this project. Thank you!")
        row(None, submit_args=())
        _head(head_slot, project, _progress(user, project), holding=False)
        return
    with st.container(key=f"pair-{assignment.id}"):  # its key tells the page script a new pair is up
        render_prompt(prompt_turns(assignment.pair.prompt), assignment.pair.prompt.system)
        # Read after the question is sent: the browser gets to draw it while these queries run,
        # before the rest of the page arrives (a page's elements that reach the browser together
        # are drawn together, the question with them).
        settings = session.store().get_project(project)
        safety_labels = settings.safety_labels
        suggested = suggestion.for_claim(user, settings, assignment)  # None unless the project shows suggestions
        progress = _progress(user, project)
        _responses(assignment, safety_labels)
    suggestion.panel(suggested, assignment)  # a `before` project: the model's prediction, up front
    if settings.edits:  # edit-and-rank, on projects that take edits
        edit.render(assignment)
    if safety_labels:
        _safety_label()
    st.text_area(f"Rationale (optional) · {RATIONALE_KEY}", key="rationale", height=68)
    row(assignment, submit_args=(user, assignment, safety_labels, suggested), safety_labels=safety_labels)
    _head(head_slot, project, progress, holding=True)


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context())
