"""Review (reviewers and admins): the project's pairs whose judgements disagree, every judgement
with its rationale, and the reviewer's final decision (a side and a level, or unsure, with a
note), which the export takes over the aggregation rule (`decided_by: review`).

Responses are named A and B in generation order here (annotators saw them in their own random
order; each judgement is translated to this naming, and the page says which one they saw on
the left)."""

from __future__ import annotations

import streamlit as st

from prefkit.annotate.render import escape_text, safe_markdown
from prefkit.annotate.store import Dispute, User
from prefkit.annotate.ui import session
from prefkit.annotate.ui.conversation import prompt_turns, render_prompt
from prefkit.data.schema import CHOICE_LABELS, Judgement, Pair, Strength, signed_level

ERROR = "review-error"


@session.store_action(ERROR)
def _decide(user: User, project: str, pair: Pair) -> None:
    state = st.session_state
    point = state.get(f"review-choice-{pair.pair_id}")
    if point is None:
        state[ERROR] = "Choose a final decision first (nothing was recorded)."
        return
    preferred = None if point == 0 else (pair.a.id if point < 0 else pair.b.id)
    strength = Strength.NEGLIGIBLY_BETTER if point == 0 else Strength.from_level(abs(point) - 1)
    note = state.get(f"review-note-{pair.pair_id}")
    session.store().decide(project, pair.pair_id, user, preferred, strength, note)
    state["review-note"] = f"Decision recorded: {CHOICE_LABELS[point]}."


@session.store_action(ERROR)
def _undecide(user: User, project: str, pair: Pair) -> None:
    session.store().clear_decision(project, pair.pair_id, user)
    st.session_state.pop(f"review-choice-{pair.pair_id}", None)
    st.session_state["review-note"] = "Decision taken back: the aggregation rule decides this pair again."


def _label(d: Dispute) -> str:
    side = "opposite sides" if d.opposite else f"{d.spread} steps apart"
    done = " · decided" if d.review is not None else ""
    return f"{d.pair_id} · {d.judgements} judgements · {side}{done}"


def _judgement_line(j: Judgement, pair: Pair) -> str:
    left = "A" if j.shown_order and j.shown_order[0] == pair.a.id else "B"
    unsafe = ", ".join("A" if r == pair.a.id else "B" for r in j.unsafe)
    extras = [f"saw {left} on the left"]
    if unsafe:
        extras.append(f"flagged {unsafe} unsafe")
    if j.seconds is not None:
        extras.append(f"{j.seconds:.0f} s")
    choice = CHOICE_LABELS[j.signed_level(pair)]
    return f"**{escape_text(j.annotator)}**: {choice} ({', '.join(extras)})"


def render(user: User, project: str) -> None:
    st.header(f"Review · {escape_text(project)}")
    if not user.may_review:
        st.error("This page is for reviewers and admins.")
        st.stop()
    for key, show in ((ERROR, st.error), ("review-note", st.success)):
        if message := st.session_state.pop(key, None):
            show(escape_text(message))
    store = session.store()
    default_steps = store.quality_settings(project).review_steps
    steps, decided = st.columns([3, 2], vertical_alignment="bottom")
    n_steps = steps.number_input(
        "Disagreement: levels more than this many steps apart (opposite sides always count)",
        min_value=0,
        max_value=8,
        value=default_steps,
        key="review-steps",
    )
    show_decided = decided.toggle("Show decided pairs too", value=True, key="review-decided")
    disputes = store.disputes(project, int(n_steps))
    n_decided = sum(1 for d in disputes if d.review is not None)
    st.caption(
        f"{len(disputes)} pairs have judgements that disagree; {n_decided} decided, {len(disputes) - n_decided} to go. "
        "A decision wins over the aggregation rule in the export (`decided_by: review`)."
    )
    listed = [d for d in disputes if show_decided or d.review is None]
    if not listed:
        st.success("Every disagreement is decided." if disputes else "Nothing to review: no judgements disagree.")
        return
    by_id = {d.pair_id: d for d in listed}
    chosen = st.selectbox("Pair", list(by_id), format_func=lambda pid: _label(by_id[pid]), key="review-pair")
    pair, judgements, review = store.dispute(project, chosen)

    render_prompt(prompt_turns(pair.prompt), pair.prompt.system, fold=False, key="review-prompt")
    for side, column, response in zip("AB", st.columns(2), (pair.a, pair.b), strict=True):
        with column:
            st.markdown(f"**Response {side}**")
            with st.container(border=True):
                st.markdown(safe_markdown(response.text))

    st.subheader("Judgements")
    for j in judgements:
        with st.container(border=True):
            st.markdown(_judgement_line(j, pair))
            if j.rationale:
                st.markdown("> " + safe_markdown(j.rationale).replace("\n", "\n> "))
            else:
                st.caption("No rationale.")

    st.subheader("Final decision")
    if review is not None:
        st.info(
            f"Decided by {escape_text(review.reviewer)} at {review.decided_at:%Y-%m-%d %H:%M} UTC: "
            f"{CHOICE_LABELS[signed_level(review.preferred, review.strength, pair.a.id)]}"
            + (f" — {escape_text(review.note)}" if review.note else "")
        )
    key = f"review-choice-{pair.pair_id}"
    if key not in st.session_state and review is not None:
        st.session_state[key] = signed_level(review.preferred, review.strength, pair.a.id)
    st.radio(
        "Final decision (A and B as above)",
        sorted(CHOICE_LABELS),
        format_func=CHOICE_LABELS.__getitem__,
        index=None,
        horizontal=True,
        key=key,
    )
    note = (review.note or "") if review is not None else ""
    st.text_area("Note (why)", value=note, key=f"review-note-{pair.pair_id}", height=68)
    record, clear = st.columns(2)
    record.button(
        "Record the decision", key="review-record", on_click=_decide, args=(user, project, pair), type="primary"
    )
    if review is not None:
        clear.button("Take the decision back", key="review-clear", on_click=_undecide, args=(user, project, pair))


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context(review=True))
