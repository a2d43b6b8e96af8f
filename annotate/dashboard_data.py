"""The admin dashboard's figures, as pandas DataFrames built from the store's raw rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from prefkit.annotate.agreement import AgreementReport, agreement
from prefkit.annotate.tables import REPORTED, SKIPPED
from prefkit.data.schema import Strength, signed_level


@dataclass
class Dashboard:
    """Admin figures for one project; DataFrames ready for `st.dataframe` / `st.bar_chart`."""

    summary: dict[str, Any]  # pairs, complete, judgements, needed, annotators, skipped, reported
    per_annotator: pd.DataFrame  # annotator, judgements, today, skipped, reported, median_seconds, last_at
    labels_per_hour: pd.DataFrame  # hour (UTC), annotator, judgements
    time_per_item: pd.DataFrame  # annotator, seconds (one row per judgement with a time)
    strength: pd.DataFrame  # strength, judgements (four levels with a side, strongest first; then "unsure")
    position_bias: pd.DataFrame  # annotator, left, right, unsure, left_share (of decided votes)
    agreement: AgreementReport  # on pairs with two or more judgements, on the nine choices
    reports: pd.DataFrame  # pair_id, annotator, reason, at


def _choices(j: pd.DataFrame) -> list[int]:
    """Each judgement's nine-choice value in generation order (`signed_level`). Read from the side
    and strength, not the stored -3..3 `score`, where "negligibly better" is 0 like unsure."""
    return [signed_level(p, s, a) for p, s, a in zip(j["preferred"], j["strength"], j["a_id"], strict=True)]


def build_dashboard(
    *,
    n_pairs: int,
    needed: int,
    complete: int,
    judgements: list[dict[str, Any]],
    finished: list[dict[str, Any]],
    now: datetime,
) -> Dashboard:
    j = pd.DataFrame(
        judgements,
        columns=[
            "annotator",
            "pair_id",
            "a_id",
            "strength",
            "preferred",
            "shown_left",
            "shown_right",
            "seconds",
            "created_at",
        ],
    )
    f = pd.DataFrame(finished, columns=["annotator", "pair_id", "status", "reason", "finished_at"])
    j["created_at"] = pd.to_datetime(j["created_at"], utc=True)
    midnight = pd.Timestamp(now).normalize()

    per = (
        pd.DataFrame(
            {
                "judgements": j.groupby("annotator").size(),
                "today": j[j["created_at"] >= midnight].groupby("annotator").size(),
                "skipped": f[f["status"] == SKIPPED].groupby("annotator").size(),
                "reported": f[f["status"] == REPORTED].groupby("annotator").size(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    per["median_seconds"] = j.groupby("annotator")["seconds"].median()
    per["last_at"] = j.groupby("annotator")["created_at"].max()
    per = per.reset_index(names="annotator").sort_values("judgements", ascending=False, ignore_index=True)

    hourly = (
        j.assign(hour=j["created_at"].dt.floor("h"))
        .groupby(["hour", "annotator"])
        .size()
        .rename("judgements")
        .reset_index()
    )
    time_per_item = j.loc[j["seconds"].notna(), ["annotator", "seconds"]].reset_index(drop=True)

    # Llama 2's four levels with a side, then "unsure" (no side) on its own row.
    counts = j.loc[j["preferred"].notna(), "strength"].value_counts()
    strength = pd.DataFrame(
        {
            "strength": [s.label for s in Strength] + ["unsure"],
            "judgements": [int(counts.get(s.value, 0)) for s in Strength] + [int(j["preferred"].isna().sum())],
        }
    )

    side = pd.Series("unsure", index=j.index)
    side[j["preferred"].notna() & (j["preferred"] == j["shown_left"])] = "left"
    side[j["preferred"].notna() & (j["preferred"] == j["shown_right"])] = "right"
    bias = pd.crosstab(j["annotator"], side).reindex(columns=["left", "right", "unsure"], fill_value=0)
    decided = bias["left"] + bias["right"]
    bias["left_share"] = (bias["left"] / decided.where(decided > 0)).astype(float)
    bias = bias.reset_index().rename_axis(columns=None)
    if len(j):  # all annotators together, the figure the dashboard headlines
        total: dict[str, Any] = {
            "annotator": "(all)",
            "left": int(bias["left"].sum()),
            "right": int(bias["right"].sum()),
            "unsure": int(bias["unsure"].sum()),
        }
        d = total["left"] + total["right"]
        total["left_share"] = total["left"] / d if d else float("nan")
        bias = pd.concat([bias, pd.DataFrame([total])], ignore_index=True)

    reports = (
        f.loc[f["status"] == REPORTED, ["pair_id", "annotator", "reason", "finished_at"]]
        .rename(columns={"finished_at": "at"})
        .reset_index(drop=True)
    )

    summary = {
        "pairs": n_pairs,
        "complete": complete,
        "judgements": len(j),
        "needed": needed,
        "annotators": int(j["annotator"].nunique()),
        "skipped": int((f["status"] == SKIPPED).sum()),
        "reported": int((f["status"] == REPORTED).sum()),
    }
    return Dashboard(
        summary=summary,
        per_annotator=per,
        labels_per_hour=hourly,
        time_per_item=time_per_item,
        strength=strength,
        position_bias=bias,
        agreement=agreement(zip(j["pair_id"], j["annotator"], _choices(j), strict=True)),
        reports=reports,
    )
