"""Dashboard (admins only): progress per project and annotator, the lead's quality view of each
annotator (`annotate/ui/annotators.py`), labels per hour, time per item, strength distribution,
position bias, agreement on overlapping pairs, models against people, reports, and Export."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from prefkit.annotate.render import escape_text
from prefkit.annotate.store import User
from prefkit.annotate.ui import annotators, models, session
from prefkit.core.errors import PrefkitError
from prefkit.data.aggregate import RULES
from prefkit.data.schema import MarginScheme

_AGREEMENT_LABELS = {
    "items": "pairs with ≥ 2 judgements",
    "comparisons": "annotator pairs compared",
    "raw_side": "same side (unsure a third answer)",
    "comparisons_decided": "annotator pairs, neither unsure",
    "raw_side_decided": "same side, neither unsure",
    "raw_choice": "same choice (side and level)",
    "cohen_kappa": "Cohen's kappa (side: A / unsure / B)",
    "alpha_ordinal": "Krippendorff's alpha (nine choices, ordinal)",
    "alpha_interval": "Krippendorff's alpha (nine choices, interval)",
}
AGREEMENT_NOTE = (
    "On the nine choices of the Label page. *Negligibly better* is a side (a win for that response, "
    "as in the export); only *Unsure* has none. The side figures count unsure as a third answer, "
    'or leave out the comparisons with an unsure ("neither unsure"); on the nine-choice scale '
    "unsure is the middle point, one step from either *negligibly better*."
)


_COUNTS = ("pairs", "complete", "judgements", "needed", "annotators", "skipped", "reported")
_SHARE = st.column_config.NumberColumn(format="%.2f")


def _file_name(project: str) -> str:
    return re.sub(r"[^\w.-]+", "_", project).strip("._") or "dataset"


def _export(project: str) -> None:
    """Run the store's export (what `prefkit data export` does) and keep a zip to download."""
    rule, margin = st.session_state["export-rule"], st.session_state["export-margin"]
    complete_only = bool(st.session_state.get("export-complete-only"))
    with_models = bool(st.session_state.get("export-model-judgements"))
    include_gold = bool(st.session_state.get("export-include-gold"))
    with tempfile.TemporaryDirectory(prefix="prefkit-export-") as tmp:
        out = Path(tmp) / "dataset"
        try:
            report = session.store().export(
                project,
                out,
                rule=rule,
                margin=margin,
                jsonl=True,
                complete_only=complete_only,
                include_model_judgements=with_models,
                include_gold=include_gold,
            )
        except PrefkitError as e:
            st.session_state["export-result"] = (project, str(e), None)
            return
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(_file_name(project)) / path.relative_to(out))
    st.session_state["export-result"] = (project, report.to_dict(), buffer.getvalue())


def _export_judgements(project: str) -> None:
    """The raw judgement table (JSONL), what `prefkit round run --judgements` reads."""
    with tempfile.TemporaryDirectory(prefix="prefkit-judgements-") as tmp:
        out = Path(tmp) / "judgements.jsonl"
        try:
            n = session.store().export_judgements(project, out)
        except PrefkitError as e:
            st.session_state["judgements-result"] = (project, str(e), None)
            return
        st.session_state["judgements-result"] = (project, n, out.read_bytes())


def _assign(project: str) -> None:
    store = session.store()
    wanted = set(st.session_state.pop(f"members-{project}", None) or [])  # re-read from the store next run
    have = set(store.members(project))
    for name in sorted(wanted - have):
        store.assign(project, name)
    for name in sorted(have - wanted):
        store.unassign(project, name)
    st.toast(f"{project}: " + (", ".join(sorted(wanted)) if wanted else "open to every annotator"))


def _access(project: str) -> None:
    """Who may label this project (empty: every annotator)."""
    store = session.store()
    annotators = [u.name for u in store.list_users() if not u.is_admin and not u.disabled]
    key = f"members-{project}"
    if key not in st.session_state:
        st.session_state[key] = [m for m in store.members(project) if m in annotators]
    pick, save = st.columns([4, 1], vertical_alignment="bottom")
    pick.multiselect("Annotators assigned to this project (none: open to every annotator)", annotators, key=key)
    save.button("Save", key="save-members", on_click=_assign, args=(project,))


def _all_projects() -> None:
    rows = [
        {"project": name, **s, "done": s["judgements"] / s["needed"] if s["needed"] else 0.0}
        for name, s in session.store().project_summaries().items()
    ]
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "done": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent"),
            **{k: st.column_config.NumberColumn(k, format="localized") for k in _COUNTS},
        },
    )


def _figure(value: object) -> str:
    """A count (int) with thousands separators, a share or coefficient (float) to three decimals
    (never "-0.000"), a missing one as "–"."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{round(value, 3) + 0.0:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render(user: User, project: str) -> None:
    st.header(f"Dashboard · {escape_text(project)}")
    d = session.store().dashboard(project)
    st.subheader("Progress per project")
    _all_projects()

    st.subheader("Per annotator")
    st.caption("Ordinary pairs only. The quality table below counts gold answers too (its `gold` column).")
    st.dataframe(
        d.per_annotator,
        hide_index=True,
        column_config={
            "median_seconds": st.column_config.NumberColumn("median time", format="%.1f s"),
            "last_at": st.column_config.DatetimeColumn("last (UTC)", format="YYYY-MM-DD HH:mm"),
        },
    )
    with st.expander("Access", expanded=False):
        _access(project)
    annotators.render(user, project)  # speed, bias, consensus, gold accuracy; CSV; lifting a pause

    hourly, strength = st.columns(2)
    with hourly:
        st.markdown("**Labels per hour (UTC)**")
        if len(d.labels_per_hour):
            st.bar_chart(d.labels_per_hour, x="hour", y="judgements", color="annotator")
    with strength:
        st.markdown("**Strength distribution**")
        st.bar_chart(d.strength, x="strength", y="judgements", horizontal=True, sort=False)

    times, bias = st.columns(2)
    with times:
        st.markdown("**Time per item (seconds)**")
        if len(d.time_per_item):
            st.dataframe(
                d.time_per_item.groupby("annotator")["seconds"].describe(percentiles=[0.5, 0.9])[
                    ["count", "mean", "50%", "90%"]
                ],
                column_config={
                    "count": st.column_config.NumberColumn(format="%d"),
                    **{k: st.column_config.NumberColumn(k, format="%.1f s") for k in ("mean", "50%", "90%")},
                },
            )
    with bias:
        st.markdown("**Position bias** (share of decided votes for the left response; 0.5 is none)")
        st.dataframe(d.position_bias, hide_index=True, column_config={"left_share": _SHARE})

    st.subheader("Agreement on overlapping pairs")
    st.caption(AGREEMENT_NOTE)
    figures = d.agreement.as_dict()
    st.dataframe(
        [{"measure": label, "value": _figure(figures[key])} for key, label in _AGREEMENT_LABELS.items()],
        hide_index=True,
    )

    models.render(project)  # reward models' and AI judges' agreement with people, anchoring

    if len(d.reports):
        st.subheader("Reported problems")
        st.dataframe(d.reports, hide_index=True)

    st.subheader("Export")
    done = session.store().completeness(project)
    st.caption(
        f"{done['complete_pairs']:,} judged pairs have all the judgements their overlap asks for; "
        f"{done['below_overlap_pairs']:,} have fewer (a single judgement shows agreement 1.0)."
    )
    rule, margin, only, go = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    rule.selectbox("Aggregation rule", RULES, key="export-rule")
    margin.selectbox("Margin scheme", [m.value for m in MarginScheme], index=1, key="export-margin")
    only.checkbox("Complete pairs only", key="export-complete-only")
    only.checkbox(
        "Include AI judges' judgements",
        key="export-model-judgements",
        help="Off: people's judgements only. On: a mixed dataset (AI-only where no person judged); "
        "the card says which.",
    )
    only.checkbox("Include gold pairs", key="export-include-gold", help="Decided by their expected answer.")
    go.button("Export", key="export", on_click=_export, args=(project,), type="primary")
    result = st.session_state.get("export-result")
    if result and result[0] == project:
        _, summary, archive = result
        if archive is None:
            st.error(escape_text(summary))
        else:
            st.json(summary, expanded=False)
            st.download_button(
                "Download the dataset (.zip)",
                archive,
                file_name=f"{_file_name(project)}.zip",
                mime="application/zip",
                key="export-zip",
            )
    st.button(
        "Prepare the judgement table (for prefkit round run --judgements)",
        key="export-judgements",
        on_click=_export_judgements,
        args=(project,),
    )
    table = st.session_state.get("judgements-result")
    if table and table[0] == project:
        _, n, data = table
        if data is None:
            st.error(escape_text(str(n)))
        else:
            st.download_button(
                f"Download {n:,} judgements (.jsonl)",
                data,
                file_name=f"{_file_name(project)}-judgements.jsonl",
                mime="application/jsonl",
                key="judgements-jsonl",
            )


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context(admin=True))
