"""Dashboard (admins only): progress per project and annotator, labels per hour, time per item,
strength distribution, position bias, agreement on overlapping pairs, reports, and Export."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from annotate.render import escape_text
from annotate.store import User
from annotate.ui import session
from data.aggregate import RULES
from data.errors import PrefkitError
from data.schema import MarginScheme

_AGREEMENT_LABELS = {
    "items": "pairs with ≥ 2 judgements",
    "comparisons": "annotator pairs compared",
    "raw_with_ties": "raw agreement (with ties)",
    "raw_without_ties": "raw agreement (without ties)",
    "cohen_kappa": "Cohen's kappa (winner)",
    "alpha_ordinal": "Krippendorff's alpha (7-point, ordinal)",
    "alpha_interval": "Krippendorff's alpha (7-point, interval)",
}


def _file_name(project: str) -> str:
    return re.sub(r"[^\w.-]+", "_", project).strip("._") or "dataset"


def _export(project: str) -> None:
    """Run the store's export (what `prefkit data export` does) and keep a zip to download."""
    rule, margin = st.session_state["export-rule"], st.session_state["export-margin"]
    with tempfile.TemporaryDirectory(prefix="prefkit-export-") as tmp:
        out = Path(tmp) / "dataset"
        try:
            report = session.store().export(project, out, rule=rule, margin=margin, jsonl=True)
        except PrefkitError as e:
            st.session_state["export-result"] = (project, str(e), None)
            return
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(_file_name(project)) / path.relative_to(out))
    st.session_state["export-result"] = (project, report.to_dict(), buffer.getvalue())


def _all_projects() -> None:
    rows = [
        {"project": name, **s, "done": s["judgements"] / s["needed"] if s["needed"] else 0.0}
        for name, s in session.store().project_summaries().items()
    ]
    st.dataframe(
        rows,
        hide_index=True,
        column_config={"done": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent")},
    )


def render(user: User, project: str) -> None:
    st.header(f"Dashboard · {escape_text(project)}")
    d = session.store().dashboard(project)
    st.subheader("Progress per project")
    _all_projects()

    st.subheader("Per annotator")
    st.dataframe(d.per_annotator, hide_index=True)

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
                ]
            )
    with bias:
        st.markdown("**Position bias** (share of decided votes for the left response; 0.5 is none)")
        st.dataframe(d.position_bias, hide_index=True)

    st.subheader("Agreement on overlapping pairs")
    figures = d.agreement.as_dict()
    st.dataframe(
        [{"measure": label, "value": figures[key]} for key, label in _AGREEMENT_LABELS.items()], hide_index=True
    )

    if len(d.reports):
        st.subheader("Reported problems")
        st.dataframe(d.reports, hide_index=True)

    st.subheader("Export")
    rule, margin, go = st.columns([2, 2, 1], vertical_alignment="bottom")
    rule.selectbox("Aggregation rule", RULES, key="export-rule")
    margin.selectbox("Margin scheme", [m.value for m in MarginScheme], index=1, key="export-margin")
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


if __name__ == "__main__":  # run as a page script by st.navigation
    render(*session.page_context(admin=True))
