"""The Label page's form around the choice: the rationale, the unsafe flags (or the pair's safety
label), and the report reason; cleared for each new pair, put back as it was by an undo, and
read when a choice is recorded. Plus the line that says what the last key did."""

from __future__ import annotations

import streamlit as st

from prefkit.annotate.shortcuts import UNDO_KEY
from prefkit.annotate.store import Assignment, Undone
from prefkit.annotate.ui import edit
from prefkit.core.errors import PrefkitError
from prefkit.data.schema import CHOICE_LABELS, Judgement, SafetyBin

SIDES = ("A", "B")
REPORT_REASONS = ("Bad prompt", "Both responses unusable", "Other")
# Llama 2's safety label of a pair, asked for on projects made with `--safety-labels`; stored as
# the judgement's per-response unsafe flags, from which `prefkit.data.schema.judgement_safety_bin` reads it.
SAFETY_LABELS = {
    SafetyBin.SAFE_VS_UNSAFE.value: "Preferred is safe, the other not",
    SafetyBin.BOTH_SAFE.value: "Both safe",
    SafetyBin.BOTH_UNSAFE.value: "Both unsafe",
}
STATUS_KEY = "label-status"  # what the last action did, shown in the choice row
UNDONE_CHOICE_KEY = "label-undone-choice"  # (assignment id, choice) an undo brought back


def clear_form() -> None:
    """Fresh flags, rationale and reason for the next pair (same widgets, updated in place)."""
    state = st.session_state
    state["rationale"] = ""
    state["reason"] = REPORT_REASONS[0]
    for side in SIDES:
        state[f"unsafe{side}"] = False
    state["safety"] = None
    state.pop(UNDONE_CHOICE_KEY, None)
    edit.clear()  # the editor of the preferred answer (edit-and-rank), closed with its text


def restore_form(undone: Undone) -> None:
    """Put an undone action's form back as it was: a judgement's rationale, unsafe flags, safety
    label and edit (its choice is marked on its button), a report's reason and note."""
    state = st.session_state
    j = undone.judgement
    if j is not None and j.shown_order is not None:
        state["rationale"] = j.rationale or ""
        for side, rid in zip(SIDES, j.shown_order, strict=True):
            state[f"unsafe{side}"] = rid in j.unsafe
        state["safety"] = safety_label_of(j)
        state[UNDONE_CHOICE_KEY] = (undone.assignment_id, j.choice())
        edit.restore(j, undone.assignment_id)
    elif undone.reason:
        reason, _, note = undone.reason.partition(": ")
        if reason in REPORT_REASONS:
            state["reason"], state["rationale"] = reason, note
        else:
            state["rationale"] = undone.reason


def safety_label_of(j: Judgement) -> str | None:
    """The `SAFETY_LABELS` key a judgement's unsafe flags stand for (the inverse of
    `safety_flags`); None for a combination the label cannot give (the preferred one unsafe)."""
    if j.shown_order is None:
        return None
    flagged = set(j.unsafe)
    if not flagged:
        return SafetyBin.BOTH_SAFE.value
    if flagged == set(j.shown_order):
        return SafetyBin.BOTH_UNSAFE.value
    if j.preferred is not None and j.preferred not in flagged:
        return SafetyBin.SAFE_VS_UNSAFE.value
    return None


def unsafe_flags(assignment: Assignment) -> tuple[str, ...]:
    """The response ids whose "unsafe" box is ticked."""
    state = st.session_state
    return tuple(rid for side, rid in zip(SIDES, assignment.shown_order, strict=True) if state.get(f"unsafe{side}"))


def rationale() -> str | None:
    return (st.session_state.get("rationale") or "").strip() or None


def safety_flags(judgement: Judgement, assignment: Assignment, label: str | None) -> tuple[str, ...]:
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


def say(text: str) -> None:
    """What the last action did, for the choice row's status line."""
    st.session_state[STATUS_KEY] = text


def saved(point: int) -> str:
    return f"Saved: {CHOICE_LABELS[point]} · {UNDO_KEY} to undo"


def undone_text(undone: Undone | None) -> str:
    if undone is None:
        return "Nothing to undo (only your actions of the last 30 minutes in this project)."
    if undone.judgement is not None:
        what = CHOICE_LABELS[undone.judgement.choice()]
        return (
            f"Undone: your judgement “{what}”. The pair is back with its rationale and flags; "
            f"choose again · {UNDO_KEY} to undo more"
        )
    if undone.kind == "report":
        return f"Undone: your report. The pair is back on screen · {UNDO_KEY} to undo more"
    return f"Undone: your last {undone.kind}. The pair is back on screen · {UNDO_KEY} to undo more"
