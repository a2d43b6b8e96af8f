"""The Dashboard's quality section (admins): the lead's view of each annotator (speed, position
bias, unsure share, agreement with the consensus, gold accuracy, state; see
`prefkit.annotate.annotator_view`), its CSV download, the project's quality settings, and lifting
an annotator's pause."""

from __future__ import annotations

import re

import streamlit as st

from prefkit.annotate.render import escape_text
from prefkit.annotate.store import User
from prefkit.annotate.ui import session

ERROR = "annotators-error"
_SHARE = st.column_config.NumberColumn(format="%.2f")
_HELP = {
    "judgements": "All their judgements in the project, gold answers included"
    " (the Per annotator table above counts ordinary pairs only).",
    "per_hour": "Judgements ÷ clock hours (UTC) with at least one judgement.",
    "left_share": "Share of their judgements with a side that chose the response shown on the left (0.5: no bias).",
    "consensus": "On ordinary pairs with two or more judgements: share agreeing with the side most others chose.",
    "gold_side": "Share of their gold answers with the right side.",
    "gold_level": "Share of their gold answers with the right side and the level within one step.",
}


@session.store_action(ERROR)
def _lift(user: User, project: str) -> None:
    name = st.session_state.get("lift-who")
    if name:
        status = session.store().lift_pause(project, name, by=user.name)
        st.toast(f"{name}: {status.label}")


def render(user: User, project: str) -> None:
    store = session.store()
    st.subheader("Annotators: speed, bias and quality")
    if error := st.session_state.pop(ERROR, None):
        st.error(error)
    table = store.annotator_view(project)
    cfg = store.quality_settings(project)
    n_gold = len(store.gold_pair_ids(project))
    parts = [f"{n_gold} gold pairs" + (f", served at a rate of {cfg.gold_rate:.0%}" if n_gold else "")]
    if cfg.qualify:
        parts.append(f"qualification: {cfg.qualify} gold pairs, {cfg.qualify_accuracy:.0%} to pass")
    if cfg.pause_below:
        parts.append(f"pause below {cfg.pause_below:.0%} over the last {cfg.pause_window} gold answers")
    st.caption("; ".join(parts) + " (`prefkit annotate quality set`).")
    if not len(table):
        st.info("No judgements yet.")
        return
    st.dataframe(
        table,
        hide_index=True,
        key="annotator-view",
        column_config={
            "judgements": st.column_config.NumberColumn("judgements", help=_HELP["judgements"]),
            "per_hour": st.column_config.NumberColumn("per hour", format="%.1f", help=_HELP["per_hour"]),
            "median_seconds": st.column_config.NumberColumn("median time", format="%.1f s"),
            "left_share": st.column_config.NumberColumn("left share", format="%.2f", help=_HELP["left_share"]),
            "unsure_share": _SHARE,
            "consensus": st.column_config.NumberColumn("consensus", format="%.2f", help=_HELP["consensus"]),
            "gold_side": st.column_config.NumberColumn("gold side", format="%.2f", help=_HELP["gold_side"]),
            "gold_level": st.column_config.NumberColumn("gold level", format="%.2f", help=_HELP["gold_level"]),
        },
    )
    name = re.sub(r"[^\w.-]+", "_", project).strip("._") or "project"
    st.download_button(
        "Download this table (.csv)",
        table.to_csv(index=False).encode("utf-8"),
        file_name=f"{name}-annotators.csv",
        mime="text/csv",
        key="annotators-csv",
    )
    paused = [str(a) for a, s in zip(table["annotator"], table["status"], strict=True) if str(s).startswith("paused")]
    if paused:
        who, go = st.columns([3, 1], vertical_alignment="bottom")
        who.selectbox(
            "Paused annotators", paused, key="lift-who", format_func=lambda a: escape_text(a), help="Let them go on."
        )
        go.button("Lift the pause", key="lift-pause", on_click=_lift, args=(user, project))
