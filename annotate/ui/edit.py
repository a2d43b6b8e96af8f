"""The Label page's editor: edit-and-rank (Llama 3, section 4.2.1), on projects that take edits.

The annotator presses E (or the button) and an editor opens under the responses, prefilled with
the response they pick (A or B); they improve it, leave the box (Esc, Tab or Ctrl+Enter, as the
rationale) and choose as usual. The choice records the edit with the judgement when the edited
response is the one they preferred; an edit of the other response, or with "unsure", is refused
with a message and nothing is recorded (the judgement says edited > chosen > rejected, so only the
preferred answer can be edited). An edit that changes only whitespace is no edit. Closing the
editor (E again) drops the edit. The store keeps the edit in `judgements.edited`, and the export's
`edited` column (and, on request, more pairs: `prefkit.data.edits`) carries it.

The Label page calls four hooks: `render(assignment)` under the responses, `attach(judgement,
assignment)` in its submit, `clear()` when a pair is done, `restore(judgement, assignment_id)`
after an undo (the editor opens again with the undone edit).
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from prefkit.annotate.shortcuts import EDIT_KEY
from prefkit.annotate.store import Assignment
from prefkit.core.errors import PrefkitError
from prefkit.data.edits import same_text
from prefkit.data.schema import Judgement

SIDES = ("A", "B")
OPEN = "edit-open"  # session key: the assignment whose editor is open (None: closed)


def _side_key(assignment: Assignment) -> str:
    return f"edit-side-{assignment.id}"


def _box_key(assignment: Assignment, side: str) -> str:
    return f"edit-text{side}-{assignment.id}"


def _toggle(assignment_id: int) -> None:
    st.session_state[OPEN] = None if st.session_state.get(OPEN) == assignment_id else assignment_id


def clear() -> None:
    """Close the editor (the next pair starts without one)."""
    st.session_state[OPEN] = None


def restore(judgement: Judgement, assignment_id: int) -> None:
    """After an undo: reopen the editor on the undone judgement's edit (on the side it preferred,
    with the text it recorded), so choosing again records the same edit unless it is changed."""
    if not judgement.edited or judgement.preferred is None or judgement.shown_order is None:
        return
    side = SIDES[judgement.shown_order.index(judgement.preferred)]
    st.session_state[OPEN] = assignment_id
    st.session_state[f"edit-side-{assignment_id}"] = side
    st.session_state[f"edit-text{side}-{assignment_id}"] = judgement.edited


def render(assignment: Assignment) -> None:
    """The Edit button (key E) and, when open, the editor prefilled with the picked response."""
    st.button(
        "Edit the answer you prefer",
        key=f"edit-{assignment.id}",
        on_click=_toggle,
        args=(assignment.id,),
        shortcut=EDIT_KEY,
        icon=":material/edit:",
        help="Improve the response you prefer, then choose as usual: the judgement records your edit as better "
        "than both (edited > chosen > rejected). Press E again to close the editor and drop the edit.",
    )
    if st.session_state.get(OPEN) != assignment.id:
        return
    side = st.radio(
        "Response to edit",
        SIDES,
        key=_side_key(assignment),
        horizontal=True,
        format_func=lambda s: f"Response {s}",
    )
    box = _box_key(assignment, side)
    if box not in st.session_state:  # prefilled once; the annotator's text stays across reruns
        st.session_state[box] = assignment.pair.response(assignment.shown_order[SIDES.index(side)]).text
    st.text_area(f"Your better version of response {side}", key=box, height=220)


def attach(judgement: Judgement, assignment: Assignment) -> Judgement:
    """`judgement` with the open editor's edit, if any; refused (PrefkitError, nothing recorded)
    when the edited response is not the preferred one."""
    state = st.session_state
    if state.get(OPEN) != assignment.id:
        return judgement
    side = state.get(_side_key(assignment)) or SIDES[0]
    rid = assignment.shown_order[SIDES.index(side)]
    text = state.get(_box_key(assignment, side))
    if not isinstance(text, str) or not text.strip() or same_text(text, assignment.pair.response(rid).text):
        return judgement  # opened, but nothing changed
    if judgement.preferred != rid:
        chose = "unsure" if judgement.preferred is None else f"response {SIDES[1 - SIDES.index(side)]}"
        raise PrefkitError(
            f"You edited response {side} but chose {chose}: only the answer you prefer can be edited. Choose "
            f"response {side}, or press {EDIT_KEY} to close the editor and drop the edit (nothing was recorded)."
        )
    return dataclasses.replace(judgement, edited=text)
