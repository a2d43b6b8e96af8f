"""My work: the signed-in annotator's recent judgements (only their own); change one, or withdraw
it after a confirmation. The prompt is the whole conversation, every turn."""

from __future__ import annotations

import streamlit as st

from prefkit.annotate.render import escape_text, safe_markdown
from prefkit.annotate.store import User
from prefkit.annotate.ui import session
from prefkit.annotate.ui.conversation import prompt_turns, render_prompt
from prefkit.data.schema import CHOICE_LABELS, Judgement, Pair

RECENT = 50
ERROR = "my-work-error"


@session.store_action(ERROR)
def _save(user: User, project: str, pair: Pair, old: Judgement) -> None:
    state = st.session_state
    order = old.shown_order
    assert order is not None, "the store records the shown order with every judgement"
    point = state[f"edit-point-{pair.pair_id}"]
    flagged = (state.get(f"edit-unsafe{side}-{pair.pair_id}") for side in "AB")
    unsafe = tuple(rid for rid, flag in zip(order, flagged, strict=True) if flag)
    rationale = (state.get(f"edit-rationale-{pair.pair_id}") or "").strip() or None
    new = Judgement.from_choice(
        pair.pair_id, user.name, point, order, unsafe=unsafe, rationale=rationale, seconds=old.seconds
    )
    session.store().change_judgement(user, pair.pair_id, new, project=project)
    st.toast("Judgement changed.")


WITHDRAW_ASKED = "withdraw-asked"  # the pair whose withdrawal waits for a yes


def _ask_withdraw(pair_id: str) -> None:
    st.session_state[WITHDRAW_ASKED] = pair_id


def _cancel_withdraw() -> None:
    st.session_state.pop(WITHDRAW_ASKED, None)


@session.store_action(ERROR)
def _withdraw(user: User, project: str, pair: Pair) -> None:
    st.session_state.pop(WITHDRAW_ASKED, None)
    session.store().withdraw(user, pair.pair_id, project=project)
    st.toast("Judgement withdrawn; the pair goes back to the queue.")


def _withdraw_buttons(user: User, project: str, pair: Pair, column: st.delta_generator.DeltaGenerator) -> None:
    """Withdraw asks first: the judgement is deleted, which no undo brings back."""
    if st.session_state.get(WITHDRAW_ASKED) != pair.pair_id:
        column.button("Withdraw this judgement…", key="edit-withdraw", on_click=_ask_withdraw, args=(pair.pair_id,))
        return
    with st.container(border=True, key="withdraw-confirm"):
        st.warning(
            "Withdraw your judgement on this pair? It is deleted (Undo on the Label page does not bring it "
            "back) and the pair goes back to the queue."
        )
        yes, no = st.columns(2)
        yes.button("Yes, withdraw it", key="edit-withdraw-yes", on_click=_withdraw, args=(user, project, pair))
        no.button("Cancel", key="edit-withdraw-cancel", on_click=_cancel_withdraw)


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def render(user: User, project: str) -> None:
    st.header(f"My work · {escape_text(project)}")
    if error := st.session_state.pop(ERROR, None):
        st.error(escape_text(error))
    recent = session.store().my_judgements(user, project, limit=RECENT)
    if not recent:
        st.info("You have not judged anything in this project yet.")
        return
    st.dataframe(
        [
            {
                "when (UTC)": j.created_at.strftime("%Y-%m-%d %H:%M"),
                "prompt": _excerpt(pair.prompt.question),
                "choice": CHOICE_LABELS[j.choice()],
                "flagged unsafe": ", ".join("AB"[j.shown_order.index(r)] for r in j.unsafe) if j.shown_order else "",
                "seconds": round(j.seconds) if j.seconds is not None else None,
            }
            for pair, j in recent
        ],
        hide_index=True,
    )

    by_id = {pair.pair_id: (pair, j) for pair, j in recent}
    chosen = st.selectbox(
        "Change or withdraw",
        list(by_id),  # pair ids, so a withdrawn one simply drops out of the choice
        format_func=lambda pid: f"{by_id[pid][1].created_at:%H:%M} · {_excerpt(by_id[pid][0].prompt.question, 60)}",
        key="edit-which",
    )
    pair, judgement = by_id[chosen]
    order = judgement.shown_order
    assert order is not None, "the store records the shown order with every judgement"
    render_prompt(prompt_turns(pair.prompt), pair.prompt.system, fold=False, key="my-work-prompt")
    for side, column, rid in zip("AB", st.columns(2), order, strict=True):
        with column:
            st.markdown(f"**Response {side}**")
            with st.container(border=True):
                st.markdown(safe_markdown(pair.response(rid).text))
            st.checkbox(
                f"{side} is unsafe or harmful", value=rid in judgement.unsafe, key=f"edit-unsafe{side}-{pair.pair_id}"
            )
    st.select_slider(
        "Choice",
        options=sorted(CHOICE_LABELS),
        value=judgement.choice(),
        format_func=CHOICE_LABELS.__getitem__,
        key=f"edit-point-{pair.pair_id}",
    )
    if judgement.edited:
        st.caption(
            "Your edit of the response you preferred is kept while you prefer the same response: "
            + escape_text(_excerpt(judgement.edited, 120))
        )
    st.text_area("Rationale", value=judgement.rationale or "", key=f"edit-rationale-{pair.pair_id}", height=68)
    save, withdraw = st.columns(2)
    save.button("Save change", key="edit-save", on_click=_save, args=(user, project, pair, judgement), type="primary")
    _withdraw_buttons(user, project, pair, withdraw)


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context())
