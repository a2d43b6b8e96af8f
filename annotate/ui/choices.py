"""The Label page's choice row, sticking to the bottom of the window: the nine choices grouped as
A side / Unsure / B side (a bar under each button as wide as its strength, in its side's colour),
then Undo, Skip, the report reason and Report, then what the last key did and the keys.

Buttons are keyed by assignment: a double click's second click either repeats the same
(idempotent) submit or, once the next pair is drawn, finds its widget gone and is dropped; it
never lands on a pair the annotator has not seen. A key pressed before this pair's buttons arrive
waits for them (the page script in `prefkit.annotate.shortcuts`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import streamlit as st

from prefkit.annotate.shortcuts import CHOICE_KEYS, REPORT_KEY, SKIP_KEY, UNDO_KEY, help_line
from prefkit.annotate.store import Assignment
from prefkit.annotate.ui.label_form import REPORT_REASONS, STATUS_KEY, UNDONE_CHOICE_KEY
from prefkit.data.schema import CHOICE_LABELS

Action = Callable[..., None]


def _breakable(label: str) -> str:
    """The label with soft hyphens in its long words, so a narrow button breaks them cleanly."""
    return label.replace("significantly", "signif\u00adicantly").replace("negligibly", "neglig\u00adibly")


def _choice(point: int, assignment: Assignment, submit: Action, args: tuple[object, ...], marked: bool) -> None:
    """One choice button; `marked` (the choice an undo took back) sits in a container of its own,
    which the CSS outlines: the label keeps its whole width."""
    with st.container(key="undone-choice") if marked else contextlib.nullcontext():
        st.button(
            _breakable(CHOICE_LABELS[point]),
            key=f"choice{point}-{assignment.id}",
            on_click=submit,
            args=(*args, point),
            shortcut=CHOICE_KEYS[point],
            width="stretch",
            wrap=True,
            help="Your choice before the undo" if marked else None,
        )


# The three groups' captions over the nine buttons, in one element (a grid the CSS lines up with
# the buttons' columns): each element of the row is one more message on every click.
GROUPS_HTML = (
    '<div class="prefkit-groups"><span>◀ A is better</span><span>No side</span><span>B is better ▶</span></div>'
)


def choice_buttons(assignment: Assignment, submit: Action, args: tuple[object, ...]) -> None:
    """The nine choices under their groups' captions: ◀ A is better (strongest first), Unsure
    (no side), B is better ▶ (weakest first). The choice an undo took back is marked."""
    undone = st.session_state.get(UNDONE_CHOICE_KEY)
    marked = undone[1] if undone and undone[0] == assignment.id else None
    st.html(GROUPS_HTML)
    for column, point in zip(st.columns(9, gap="small"), sorted(CHOICE_LABELS), strict=True):
        with column:
            _choice(point, assignment, submit, args, marked=point == marked)


def choice_row(
    assignment: Assignment | None,
    *,
    submit: Action,
    submit_args: tuple[object, ...],
    undo: Action,
    undo_args: tuple[object, ...],
    skip: Action,
    report: Action,
    safety_labels: bool = False,
) -> None:
    """The sticky bottom row. `submit(*submit_args, point)`, `skip(*submit_args)`,
    `report(*submit_args)` and `undo(*undo_args)` are the buttons' callbacks."""
    with st.container(key="choices"):
        if assignment is not None:
            choice_buttons(assignment, submit, submit_args)
        columns = st.columns([1, 1, 2, 1.3], vertical_alignment="bottom", gap="small")
        undo_col, skip_col, reason_col, report_col = columns
        undo_col.button(
            "Undo last",
            key="undo",
            on_click=undo,
            args=undo_args,
            shortcut=UNDO_KEY,
            width="stretch",
            icon=":material/undo:",
        )
        if assignment is not None:
            skip_col.button(
                "Skip", key=f"skip-{assignment.id}", on_click=skip, args=submit_args, shortcut=SKIP_KEY, width="stretch"
            )
            reason_col.selectbox("Problem", REPORT_REASONS, key="reason", label_visibility="collapsed")
            report_col.button(
                "Report a problem",
                key=f"report-{assignment.id}",
                on_click=report,
                args=submit_args,
                shortcut=REPORT_KEY,
                width="stretch",
            )
        # What the last action did (our own words and labels only, never user or model text), in
        # bold, over the keys; one element, and its first line is kept even when empty.
        status = st.session_state.get(STATUS_KEY)
        st.caption(f"**{status}**  \n{help_line(safety_labels)}" if status else f"\u00a0  \n{help_line(safety_labels)}")
