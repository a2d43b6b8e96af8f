"""The lead's view of each annotator in one project (Dashboard, "Annotators"; CSV download), built
from the store's raw rows by `annotator_view`. One row per annotator:

- `status`: `ok`, `qualifying`, or `paused (qualification / accuracy / no-gold)`
  (`prefkit.annotate.quality`).
- `judgements`: their judgements in the project, gold pairs included.
- `active_hours`: clock hours (UTC) in which they recorded at least one judgement; `per_hour`:
  judgements ÷ active hours.
- `median_seconds`: median time per pair (from the pair appearing to the judgement).
- `left_share`: position bias, the share of their judgements with a side that chose the
  response shown on the left (0.5: none).
- `unsure_share`: the share of their judgements that are unsure.
- `consensus`: agreement with the consensus. On ordinary pairs with two or more judgements, the
  share of their judgements whose side is the side most of the *other* annotators of the pair
  chose (pairs where the others have no majority side are left out; their own unsure counts as
  not agreeing); `consensus_pairs`: how many of their judgements that compared.
- `gold`: gold pairs they answered (first answers); `gold_side`: the share with the right side;
  `gold_level`: the share with the right side and the level within one step (or at least the
  minimum).

A share with nothing to count is empty (NaN), not 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

COLUMNS = (
    "annotator",
    "status",
    "judgements",
    "active_hours",
    "per_hour",
    "median_seconds",
    "left_share",
    "unsure_share",
    "consensus",
    "consensus_pairs",
    "gold",
    "gold_side",
    "gold_level",
)


def _share(num: float, den: float) -> float:
    return num / den if den else float("nan")


def consensus_counts(judgements: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per annotator: (judgements that agree with the others' majority side, judgements compared),
    over the ordinary pairs (`gold` false) with two or more judgements."""
    by_pair: dict[str, list[Mapping[str, Any]]] = {}
    for j in judgements:
        if not j.get("gold"):
            by_pair.setdefault(j["pair_id"], []).append(j)
    out: dict[str, list[int]] = {}
    for js in by_pair.values():
        if len(js) < 2:
            continue
        sides = Counter(j["preferred"] for j in js if j["preferred"] is not None)
        for j in js:
            others = sides.copy()
            if j["preferred"] is not None:
                others[j["preferred"]] -= 1
            ranked = others.most_common()
            if not ranked or ranked[0][1] == 0 or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
                continue  # the others have no majority side
            agree, compared = out.setdefault(j["annotator"], [0, 0])
            out[j["annotator"]] = [agree + (j["preferred"] == ranked[0][0]), compared + 1]
    return {a: (n[0], n[1]) for a, n in out.items()}


def annotator_view(
    judgements: Sequence[Mapping[str, Any]],
    gold: Sequence[Mapping[str, Any]],
    statuses: Mapping[str, str],
) -> pd.DataFrame:
    """The table (columns `COLUMNS`), most judgements first. `judgements`: every judgement of the
    project (`annotator`, `pair_id`, `preferred`, `shown_left`, `seconds`, `created_at`, `gold`:
    whether the pair is a gold pair); `gold`: first answers on gold pairs (`annotator`, `side`,
    `level`: whether each was right); `statuses`: each annotator's state label. Annotators with
    no judgement appear only when their state is not `ok`."""
    rows = []
    consensus = consensus_counts(judgements)
    by_annotator: dict[str, list[Mapping[str, Any]]] = {}
    for j in judgements:
        by_annotator.setdefault(j["annotator"], []).append(j)
    gold_by: dict[str, list[Mapping[str, Any]]] = {}
    for g in gold:
        gold_by.setdefault(g["annotator"], []).append(g)
    names = set(by_annotator) | {a for a, s in statuses.items() if s != "ok"}
    for name in names:
        js = by_annotator.get(name, [])
        hours = {pd.Timestamp(j["created_at"]).tz_convert("UTC").floor("h") for j in js}
        seconds = [j["seconds"] for j in js if j["seconds"] is not None]
        decided = [j for j in js if j["preferred"] is not None]
        left = sum(1 for j in decided if j["preferred"] == j["shown_left"])
        agree, compared = consensus.get(name, (0, 0))
        gs = gold_by.get(name, [])
        rows.append(
            {
                "annotator": name,
                "status": statuses.get(name, "ok"),
                "judgements": len(js),
                "active_hours": len(hours),
                "per_hour": _share(len(js), len(hours)),
                "median_seconds": float(pd.Series(seconds, dtype=float).median()) if seconds else float("nan"),
                "left_share": _share(left, len(decided)),
                "unsure_share": _share(len(js) - len(decided), len(js)),
                "consensus": _share(agree, compared),
                "consensus_pairs": compared,
                "gold": len(gs),
                "gold_side": _share(sum(bool(g["side"]) for g in gs), len(gs)),
                "gold_level": _share(sum(bool(g["side"] and g["level"]) for g in gs), len(gs)),
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values(["judgements", "annotator"], ascending=[False, True], ignore_index=True)
