"""Model suggestions on the Label page, without anchoring the annotator.

A project's `suggestions` setting (`prefkit annotate suggestions`, `Store.set_suggestions`):

- `off` (default): nothing is shown.
- `after`: the annotator chooses first; their judgement is recorded, then the page shows what the
  model predicted for the pair (side, level, probability) next to their own choice, and moves on
  only when they ask (`NEXT_KEY`, or the button). Undo (there or later) takes the judgement
  back; the choice made again is recorded as made with the suggestion seen (`before`).
- `before`: the prediction is shown with the pair, before the choice (review workflows). A
  seeded share of claims (`suggestion_holdout`) is shown nothing: the dashboard's randomised
  control for whether suggestions move people's choices.

Every judgement records what was shown with it (`Store.submit(..., suggestion=...)`). The app never
loads a model: it shows predictions already in the store (`Store.suggestion`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from prefkit.annotate.render import escape_text, safe_markdown
from prefkit.annotate.shortcuts import NEXT_KEY, UNDO_KEY
from prefkit.annotate.store import Assignment, Project, Suggestion, User
from prefkit.annotate.ui import session
from prefkit.annotate.ui.conversation import prompt_turns, render_prompt
from prefkit.data.schema import CHOICE_LABELS, Judgement

_REVEAL = "suggestion-reveal"  # session key: the judged pair whose suggestion is on screen (after)
_SEEN = "suggestion-seen"  # session key: (project, pair id)s whose suggestion this tab revealed (after)
_SEEN_KEPT = 200
_KINDS = {"reward_model": "reward model", "judge": "AI judge"}


@dataclass(frozen=True)
class _Reveal:
    project: str
    assignment: Assignment
    choice: int  # the annotator's choice as shown (-4..4)
    suggestion: Suggestion


def describe(suggestion: Suggestion, shown_order: tuple[str, str]) -> str:
    """'**B slightly better** · 62 % · reward model rm:…' for the pair as the annotator sees it."""
    p = suggestion.prediction
    text = f"**{p.label(shown_order)}**"
    if p.probability is not None:
        text += f" · {p.probability:.0%}"
    return f"{text} · {_KINDS.get(p.kind, p.kind)} {escape_text(p.source)}"


def for_claim(user: User, project: Project, assignment: Assignment) -> Suggestion | None:
    """The suggestion that goes with this claim (None: nothing to show or record). A pair back on
    screen after an undo whose suggestion this tab revealed counts as shown before (and shows it)."""
    found = session.store().suggestion(project, assignment.pair.pair_id, user)
    if found is None:
        return None
    if (project.name, assignment.pair.pair_id) in st.session_state.get(_SEEN, ()) and found.when != "before":
        return Suggestion("before", found.prediction)
    return found


def panel(suggestion: Suggestion | None, assignment: Assignment) -> None:
    """Under the pair, before the choice: the model's prediction, in a `before` project only."""
    if suggestion is None or not suggestion.shown_before:
        return
    with st.container(border=True, key="suggestion"):
        st.markdown(
            "Model suggestion: "
            + describe(suggestion, assignment.shown_order)
            + " — your own judgement counts; choose what you think."
        )


def after_submit(project: str, assignment: Assignment, judgement: Judgement, suggestion: Suggestion | None) -> None:
    """After a recorded choice: in an `after` project, keep the pair on screen with the model's
    prediction until the annotator asks for the next one (and remember it was seen: an undo
    brings the pair back as a pair whose suggestion was shown before the choice)."""
    if suggestion is not None and suggestion.when == "after":
        st.session_state[_REVEAL] = _Reveal(project, assignment, judgement.choice(), suggestion)
        seen = [*st.session_state.get(_SEEN, ()), (project, assignment.pair.pair_id)]
        st.session_state[_SEEN] = seen[-_SEEN_KEPT:]


def _next() -> None:
    st.session_state.pop(_REVEAL, None)


def _undo(undo: Callable[[User, str], None], user: User, reveal: _Reveal) -> None:
    st.session_state.pop(_REVEAL, None)
    undo(user, reveal.project)


def reveal(user: User, project: str, undo: Callable[[User, str], None]) -> bool:
    """Draw the pair just judged with the model's prediction beside the annotator's choice, and
    the Next button (`NEXT_KEY`); True when drawn (the page claims no new pair meanwhile)."""
    shown: _Reveal | None = st.session_state.get(_REVEAL)
    if shown is None:
        return False
    if shown.project != project:  # the annotator moved to another project: its reveal is over
        st.session_state.pop(_REVEAL, None)
        return False
    a, p = shown.assignment, shown.suggestion.prediction
    st.markdown(f"**{escape_text(project)}**")
    same = p.preferred is not None and p.choice(a.shown_order) * shown.choice > 0
    with st.container(border=True, key=f"reveal-{a.id}"):
        st.markdown(f"Your choice: **{CHOICE_LABELS[shown.choice]}** (recorded)")
        st.markdown("The model predicted: " + describe(shown.suggestion, a.shown_order))
        st.caption("Same side as yours." if same else "Not the side you chose.")
    render_prompt(prompt_turns(a.pair.prompt), a.pair.prompt.system)
    for side, column, rid in zip(("A", "B"), st.columns(2), a.shown_order, strict=True):
        with column:
            st.markdown(f"**Response {side}**")
            with st.container(border=True):
                st.markdown(safe_markdown(a.pair.response(rid).text))
    with st.container(key="choices"):
        go, back, _ = st.columns([2, 1, 3], vertical_alignment="bottom", gap="small")
        go.button("Next pair", key=f"next-{a.id}", on_click=_next, shortcut=NEXT_KEY, type="primary", width="stretch")
        back.button(
            "Undo last",
            key=f"undo-reveal-{a.id}",
            on_click=_undo,
            args=(undo, user, shown),
            shortcut=UNDO_KEY,
            width="stretch",
            icon=":material/undo:",
        )
        st.caption(f"Keys: {NEXT_KEY} next pair · {UNDO_KEY} undo (your choice is already recorded)")
    return True
