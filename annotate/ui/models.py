"""The dashboard's section on models against people (`prefkit.annotate.calibration`): each model's
agreement with people per level, Cohen's kappa and confusion matrix, the AI judges' own counts
(apart from people's figures), and whether suggestions shown before the choice moved people."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from prefkit.annotate.calibration import ModelReport
from prefkit.annotate.render import escape_text
from prefkit.annotate.ui import session

_KINDS = {"reward_model": "reward model", "judge": "AI judge"}
_SHARE = st.column_config.NumberColumn(format="%.2f")


def _overview(report: ModelReport) -> pd.DataFrame:
    rows = []
    for m in report.models:
        row = {
            "model": m.source,
            "kind": _KINDS.get(m.kind, m.kind),
            "pairs": m.pairs,
            "judgements": m.judgements,
            "agreement": m.agreement,
            "kappa": m.kappa,
        }
        row.update(zip(m.per_level["level"], m.per_level["agreement"], strict=True))
        rows.append(row)
    return pd.DataFrame(rows)


def render(project: str) -> None:
    """The section, when the project has predictions or AI judges' judgements."""
    store = session.store()
    sources = store.prediction_sources(project)
    if not sources:
        return
    report = store.model_report(project)
    st.subheader("Models against people")
    st.caption(
        "Each human judgement of a pair a model also judged is one comparison. Agreement: the model chose the "
        "person's side (for an unsure person: the model was unsure too), per level the person gave; "
        "kappa: Cohen's kappa on the winner (a / unsure / b). AI judges' judgements are not in any figure above."
    )
    if report.models:
        st.dataframe(
            _overview(report),
            hide_index=True,
            column_config={
                "agreement": _SHARE,
                "kappa": st.column_config.NumberColumn(format="%.3f"),
                **{level: _SHARE for level in report.models[0].per_level["level"]},
            },
        )
        names = [m.source for m in report.models]
        pick = st.selectbox("Confusion matrix of", names, key="confusion-model")
        chosen = next(m for m in report.models if m.source == pick)
        st.caption(
            "Rows: the person's choice; columns: the model's; a and b in the pair's own order (not the sides shown)."
        )
        st.dataframe(chosen.confusion)
    else:
        st.info("No pair has both a model's verdict and a person's judgement yet.")
    if len(report.annotators):
        st.markdown("**AI judges** (model annotators: never counted toward a pair's overlap)")
        st.dataframe(report.annotators, hide_index=True)
    if report.anchoring:
        st.markdown(
            "**Did suggestions shown before the choice move people?** Share of judgements choosing the model's side, "
            "with the suggestion on screen before the choice against nothing shown before it (off, after, holdout); "
            "Fisher's exact test, two-sided, and Newcombe's 95 % interval of the difference. Only the holdout is a "
            "randomised control."
        )
        rows = []
        for a in report.anchoring:
            row: dict[str, object] = {"model": a.source}
            for group, n, share in zip(a.groups["group"], a.groups["judgements"], a.groups["agreement"], strict=True):
                row[f"{group} n"] = int(n)
                row[f"{group} agree"] = share
            row["difference"] = a.difference
            row["95% interval"] = "–" if a.ci is None else f"{a.ci[0]:+.2f} … {a.ci[1]:+.2f}"
            row["p (Fisher)"] = a.p_value
            rows.append(row)
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            column_config={
                **{f"{g} agree": _SHARE for g in ("before", "off", "after", "holdout")},
                "difference": st.column_config.NumberColumn(format="%+.2f"),
                "p (Fisher)": st.column_config.NumberColumn(format="%.3g"),
            },
        )
    st.caption("Models: " + ", ".join(escape_text(s["source"]) for s in sources))
