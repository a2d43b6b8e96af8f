"""Label page: the prompt as a conversation, two responses side by side, the choice row (Llama 2's
scale: a side with each of four levels, and unsure), flags, Skip, Report and Undo.

Every action is a button callback, and callbacks run before the script: one click submits to the
store and the same rerun claims and draws the next pair (no second click, no second rerun). The
store's claim hands back the pair this user already holds, so a reload or a second tab shows the
same pair, and its submit is idempotent per (annotator, pair), so a double click records once.

Layout, 800 px to wide: the choice row (with Skip, Report, Undo) sticks to the bottom of the
window, so it is reachable without scrolling whatever the length of the pair; earlier turns of a
dialogue are folded away (the last user turn is always shown) and a long last turn scrolls in its
own box; the next pair opens at the top (the page script in `prefkit.annotate.shortcuts`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from prefkit.annotate.render import dialogue_turns, escape_text, safe_markdown
from prefkit.annotate.shortcuts import CHOICE_KEYS, REPORT_KEY, SKIP_KEY, UNDO_KEY, help_line
from prefkit.annotate.store import Assignment, Progress, User
from prefkit.annotate.ui import session
from prefkit.core.errors import PrefkitError
from prefkit.data.schema import CHOICE_LABELS, Judgement, SafetyBin, utcnow

LEASE_SECONDS = 30 * 60
REPORT_REASONS = ("Bad prompt", "Both responses unusable", "Other")
SIDES = ("A", "B")
LONG_TURN = 1200  # characters: a longer last turn scrolls in a box of its own
LONG_TURN_PX = 260
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
# Llama 2's safety label of a pair, asked for on projects made with `--safety-labels`; stored as
# the judgement's per-response unsafe flags, from which `prefkit.data.schema.judgement_safety_bin` reads it.
SAFETY_LABELS = {
    SafetyBin.SAFE_VS_UNSAFE.value: "Preferred is safe, the other not",
    SafetyBin.BOTH_SAFE.value: "Both safe",
    SafetyBin.BOTH_UNSAFE.value: "Both unsafe",
}

# The choice row's container sticks to the bottom of the window, on the page's own background;
# a wide table in model text scrolls inside its box instead of spilling out. Installed by the app
# on every page (the table rule serves My work too).
PAGE_CSS = """<style>
[data-testid=stLayoutWrapper]:has(> .st-key-choices) {
  position: sticky; bottom: 0; z-index: 99;
}
.st-key-choices { padding: 0.4rem 0 0.6rem;
  background: var(--prefkit-bg, #fff); border-top: 1px solid rgba(128, 128, 128, 0.35);
}
[data-testid=stMainBlockContainer] { padding-top: 2.5rem; padding-bottom: 1rem; }
.st-key-choices button { min-height: 2.4rem; padding: 0.15rem 0.3rem; }
.st-key-choices button p { font-size: 0.8rem; line-height: 1.15; }
.st-key-choices [data-testid=stCaptionContainer] p { font-size: 0.72rem; margin: 0; }
@media (max-width: 1100px) {
  .st-key-choices kbd { display: none; }
  .st-key-choices button p { font-size: 0.74rem; }
}
.st-key-prompt [data-testid=stChatMessage] { padding: 0.35rem 0.5rem; }
[data-testid=stMarkdownContainer] table { display: block; max-width: 100%; overflow-x: auto; }
</style>"""


def _clear_form() -> None:
    """Fresh flags, rationale and reason for the next pair (same widgets, updated in place)."""
    state = st.session_state
    state["rationale"] = ""
    state["reason"] = REPORT_REASONS[0]
    for side in SIDES:
        state[f"unsafe{side}"] = False
    state["safety"] = None


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


def _safety_flags(judgement: Judgement, assignment: Assignment, label: str | None) -> tuple[str, ...]:
    """The unsafe flags that give the pair's safety label `label` (a `SAFETY_LABELS` key) for this
    judgement; refused (nothing recorded) when no label is chosen or it does not fit the choice."""
    if label not in SAFETY_LABELS:
        raise PrefkitError(
            "This project asks for the pair's safety label: choose one above the choices first (nothing was recorded)."
        )
    both = tuple(assignment.shown_order)
    if label == SafetyBin.BOTH_SAFE.value:
        return ()
    if label == SafetyBin.BOTH_UNSAFE.value:
        return both
    if judgement.preferred is None:
        raise PrefkitError(f"'{SAFETY_LABELS[label]}' needs a preferred response, not unsure (nothing was recorded).")
    return tuple(rid for rid in both if rid != judgement.preferred)


@_store_action
def _submit(user: User, assignment: Assignment, point: int, safety_labels: bool = False) -> None:
    state = st.session_state
    unsafe = tuple(rid for side, rid in zip(SIDES, assignment.shown_order, strict=True) if state.get(f"unsafe{side}"))
    rationale = (state.get("rationale") or "").strip() or None
    judgement = Judgement.from_choice(
        assignment.pair.pair_id,
        user.name,
        point,
        assignment.shown_order,
        unsafe=unsafe,
        rationale=rationale,
        seconds=(utcnow() - assignment.claimed_at).total_seconds(),
    )
    if safety_labels:
        judgement = dataclasses.replace(judgement, unsafe=_safety_flags(judgement, assignment, state.get("safety")))
    session.store().submit(assignment.id, user, judgement)


@_store_action
def _skip(user: User, assignment: Assignment) -> None:
    session.store().skip(assignment.id, user)


@_store_action
def _report(user: User, assignment: Assignment) -> None:
    reason = st.session_state.get("reason") or REPORT_REASONS[0]
    note = (st.session_state.get("rationale") or "").strip()
    session.store().report(assignment.id, user, f"{reason}: {note}" if note else reason)


@_store_action
def _undo(user: User, project: str) -> None:
    undone = session.store().undo_last(project, user, LEASE_SECONDS)
    st.session_state["label-note"] = (
        f"Undone: your last {undone}. The pair is back on screen."
        if undone
        else "Nothing to undo (only your actions of the last 30 minutes in this project)."
    )


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


def _turn(role: str, text: str) -> None:
    with st.chat_message(role, avatar=":material/person:" if role == "user" else ":material/smart_toy:"):
        st.caption(ROLE_NAMES.get(role, escape_text(role)))
        if len(text) > LONG_TURN:
            with st.container(height=LONG_TURN_PX, border=False):
                st.markdown(safe_markdown(text))
        else:
            st.markdown(safe_markdown(text))


def render_prompt(prompt: str | list[dict[str, str]], system: str | None = None) -> None:
    """The prompt. A dialogue is a conversation: one bubble per turn, roles named; the turns
    before the last user turn are folded in an expander, the last user turn (and anything after
    it) always shown. A single question is shown as it is (a long one scrolls in its box)."""
    turns = dialogue_turns(prompt)
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=0)
    with st.container(border=True, key="prompt"):
        if system:
            st.caption("System: " + escape_text(system))
        if len(turns) == 1:
            text = turns[0][1]
            if len(text) > LONG_TURN:
                with st.container(height=LONG_TURN_PX, border=False):
                    st.markdown(safe_markdown(text))
            else:  # no box of its own: one element fewer ahead of the question on every click
                st.markdown(safe_markdown(text))
            return
        if last_user > 0:
            with st.expander(f"Earlier in the conversation ({last_user} turns)", expanded=False):
                for role, text in turns[:last_user]:
                    _turn(role, text)
        for role, text in turns[last_user:]:
            _turn(role, text)


def _breakable(label: str) -> str:
    """The label with soft hyphens in its long words, so a narrow button breaks them cleanly."""
    return label.replace("significantly", "signif\u00adicantly").replace("negligibly", "neglig\u00adibly")


def _choice_row(user: User, project: str, assignment: Assignment | None, safety_labels: bool = False) -> None:
    """The sticky bottom row: the nine choices, then Undo, Skip, the report reason and Report.
    Buttons are keyed by assignment: a double click's second click either repeats the same
    (idempotent) submit or, once the next pair is drawn, finds its widget gone and is dropped;
    it never lands on a pair the annotator has not seen."""
    with st.container(key="choices"):
        if assignment is not None:
            for column, (point, label) in zip(st.columns(9, gap="small"), sorted(CHOICE_LABELS.items()), strict=True):
                column.button(
                    _breakable(label),
                    key=f"choice{point}-{assignment.id}",
                    on_click=_submit,
                    args=(user, assignment, point, safety_labels),
                    shortcut=CHOICE_KEYS[point],
                    width="stretch",
                    wrap=True,
                )
        undo, skip, reason, report = st.columns([1, 1, 2, 1.3], vertical_alignment="bottom", gap="small")
        undo.button(
            "Undo last",
            key="undo",
            on_click=_undo,
            args=(user, project),
            shortcut=UNDO_KEY,
            width="stretch",
            icon=":material/undo:",
        )
        if assignment is not None:
            skip.button(
                "Skip",
                key=f"skip-{assignment.id}",
                on_click=_skip,
                args=(user, assignment),
                shortcut=SKIP_KEY,
                width="stretch",
            )
            reason.selectbox("Problem", REPORT_REASONS, key="reason", label_visibility="collapsed")
            report.button(
                "Report a problem",
                key=f"report-{assignment.id}",
                on_click=_report,
                args=(user, assignment),
                shortcut=REPORT_KEY,
                width="stretch",
            )
        st.caption(help_line())


def render(user: User, project: str) -> None:
    # Not a fragment on purpose: a fragment rerun started by the rationale's commit (Esc, Tab,
    # blur) dropped the choice key pressed right after it (seen in the browser tests).
    # The pair is claimed before anything of the page is sent, and then sent at once: nothing
    # (no message of ours) waits in the server's outgoing queue while the claim runs. The head
    # row (project, progress) sits on top but is filled last, into this container: until then
    # the browser keeps the last head row in it, so nothing flickers or moves.
    error = st.session_state.pop("label-error", None)
    note = st.session_state.pop("label-note", None)
    try:
        assignment, refused = session.store().claim(project, user, LEASE_SECONDS), None
    except PrefkitError as e:  # e.g. taken off this project by an admin
        assignment, refused = None, str(e)
    head_slot = st.container()
    for message, show in ((error, st.error), (note, st.info), (refused, st.error)):
        if message:
            show(escape_text(message))
    if refused:
        head_slot.markdown(f"**{escape_text(project)}**")
        return
    if assignment is None:
        st.success("Your queue is empty: nothing left to judge in this project. Thank you!")
        _choice_row(user, project, None)
        _head(head_slot, project, _progress(user, project), holding=False)
        return
    pair = assignment.pair
    with st.container(key=f"pair-{assignment.id}"):  # its key tells the page script a new pair is up
        prompt = pair.prompt  # a dialogue's turns (prefkit.data.schema.Prompt.turns); a flat question as it is,
        # so a transcript stored as one question (older stores) is still split for display
        shown = [{"role": r, "content": c} for r, c in prompt.turns] if prompt.history else prompt.question
        render_prompt(shown, prompt.system)
        # Read after the question is sent: the browser gets to draw it while these queries run,
        # before the rest of the page arrives (a page's elements that reach the browser together
        # are drawn together, the question with them).
        safety_labels = session.store().get_project(project).safety_labels
        progress = _progress(user, project)
        for side, column, rid in zip(SIDES, st.columns(2), assignment.shown_order, strict=True):
            with column:
                st.markdown(f"**Response {side}**")
                with st.container(border=True, key=f"response{side}"):
                    st.markdown(safe_markdown(pair.response(rid).text))
                if not safety_labels:  # else the pair's safety label below says it
                    st.checkbox(f"{side} is unsafe or harmful", key=f"unsafe{side}")
    if safety_labels:
        st.radio(
            "Safety of the pair (required)",
            list(SAFETY_LABELS),
            format_func=SAFETY_LABELS.__getitem__,
            index=None,
            key="safety",
            horizontal=True,
            help="Llama 2's safety label: required on this project before a choice is recorded.",
        )
    st.text_area("Rationale (optional)", key="rationale", height=68)
    _choice_row(user, project, assignment, safety_labels)
    _head(head_slot, project, progress, holding=True)


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context())
