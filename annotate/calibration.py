"""Models against people: how often each model (a reward model's predictions, an AI judge's
verdicts) agrees with the people who judged the same pairs, per level, and whether suggestions
shown before the choice moved people's choices toward the model.

Agreement per level (as Llama 2 reports reward-model accuracy per strength, Table 8): each human
judgement of a pair the model also judged is one comparison, grouped by the level the person gave;
"agrees" means the model chose the same response (for an unsure person: the model was unsure too).
Cohen's kappa is on the winner (a / unsure / b) over those comparisons
(`prefkit.annotate.agreement.cohen_kappa`); the confusion matrix crosses the person's signed level
with the model's, both in generation order (a = the pair's first response, not the side shown).

Anchoring: judgements made with the model's suggestion on screen before the choice (`before`)
against judgements of pairs the same model predicted where nothing was shown before the choice
(`off`: no suggestion; `after`: shown once chosen; `holdout`: a `before` project's randomised
control). The figure is the share agreeing with the model in each group; the test is Fisher's
exact test on the 2×2 table (agree / not × before / not shown, two-sided), with Newcombe's
hybrid-score 95 % interval for the difference. Only the holdout group is randomised: a difference
against `off` judgements made at another time or on other pairs may reflect the pairs, not the
suggestion.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from prefkit.annotate.agreement import cohen_kappa, side
from prefkit.data.schema import Strength, signed_level

LEVELS = tuple(s.label for s in Strength) + ("unsure",)
# Generation-order labels of a signed level -4..4 (a = the pair's first response).
SIGNED_LABELS = dict(
    sorted(
        {
            **{-(s.level + 1): f"a {s.label}" for s in Strength},
            0: "unsure",
            **{s.level + 1: f"b {s.label}" for s in Strength},
        }.items()
    )
)
GROUPS = ("before", "off", "after", "holdout")


@dataclass
class ModelAgreement:
    """One model against people, on the pairs both judged."""

    source: str
    kind: str  # reward_model | judge
    pairs: int  # pairs with the model's verdict and at least one human judgement
    judgements: int  # human judgements of those pairs (the comparisons)
    agreement: float | None  # share of comparisons where the model chose the person's side
    kappa: float | None  # Cohen's kappa on the winner (a / unsure / b)
    per_level: pd.DataFrame  # level, judgements, agree, agreement (LEVELS order)
    confusion: pd.DataFrame  # person's signed level (rows) x model's (columns), SIGNED_LABELS

    def card(self) -> dict[str, Any]:
        """The figures the dataset card prints (plain values)."""
        return {
            "kind": self.kind,
            "pairs": self.pairs,
            "judgements": self.judgements,
            "agreement": self.agreement,
            "kappa": self.kappa,
            "per_level": {
                str(level): {"n": int(n), "agreement": None if share != share else float(share)}
                for level, n, share in zip(
                    self.per_level["level"], self.per_level["judgements"], self.per_level["agreement"], strict=True
                )
            },
            "confusion": {
                str(person): {str(model): int(n) for model, n in row.items() if n}
                for person, row in self.confusion.iterrows()
                if row.sum()
            },
        }


@dataclass
class Anchoring:
    """Did seeing `source`'s suggestion before choosing move people toward it?"""

    source: str
    groups: pd.DataFrame  # group (before, off, after, holdout), judgements, agree, agreement
    before: tuple[int, int]  # (agreeing, judgements) with the suggestion shown before the choice
    not_shown: tuple[int, int]  # (agreeing, judgements) with nothing shown before the choice
    difference: float | None  # agreement before − not shown
    ci: tuple[float, float] | None  # Newcombe's 95 % interval of the difference
    p_value: float | None  # Fisher's exact test, two-sided


@dataclass
class ModelReport:
    models: list[ModelAgreement] = field(default_factory=list)
    annotators: pd.DataFrame = field(default_factory=pd.DataFrame)  # model annotator, judgements, sides, unsure, ...
    anchoring: list[Anchoring] = field(default_factory=list)

    def card(self) -> dict[str, dict[str, Any]]:
        """{judge: figures} for the export card: the AI judges' agreement with people."""
        return {m.source: m.card() for m in self.models if m.kind == "judge" and m.judgements}


def _level_name(signed: int) -> str:
    return "unsure" if signed == 0 else Strength.from_level(abs(signed) - 1).label


def model_agreement(
    source: str, kind: str, humans: list[tuple[str, int]], model: dict[str, int]
) -> ModelAgreement | None:
    """`humans`: (pair_id, person's signed level) per human judgement; `model`: {pair_id: the
    model's signed level}. None when they share no pair."""
    both = [(pid, h, model[pid]) for pid, h in humans if pid in model]
    if not both:
        return None
    agree = [side(h) == side(m) for _, h, m in both]
    by_level: dict[str, list[bool]] = defaultdict(list)
    for (_, h, _), same in zip(both, agree, strict=True):
        by_level[_level_name(h)].append(same)
    per_level = pd.DataFrame(
        {
            "level": list(LEVELS),
            "judgements": [len(by_level[lv]) for lv in LEVELS],
            "agree": [sum(by_level[lv]) for lv in LEVELS],
        }
    )
    per_level["agreement"] = (per_level["agree"] / per_level["judgements"].where(per_level["judgements"] > 0)).astype(
        float
    )
    labels = list(SIGNED_LABELS.values())
    counts = Counter((SIGNED_LABELS[h], SIGNED_LABELS[m]) for _, h, m in both)
    confusion = pd.DataFrame(
        [[counts.get((r, c), 0) for c in labels] for r in labels], index=labels, columns=labels, dtype=int
    )
    confusion.index.name, confusion.columns.name = "person", "model"
    return ModelAgreement(
        source=source,
        kind=kind,
        pairs=len({pid for pid, _, _ in both}),
        judgements=len(both),
        agreement=sum(agree) / len(agree),
        kappa=cohen_kappa([side(h) for _, h, _ in both], [side(m) for _, _, m in both]),
        per_level=per_level,
        confusion=confusion,
    )


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def newcombe_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid-score 95 % interval for p1 − p2 (his method 10, from Wilson intervals)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1)
    l2, u2 = _wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def anchoring(source: str, rows: Iterable[tuple[str, bool]]) -> Anchoring | None:
    """`rows`: (group, the person chose the model's side) per human judgement of a pair `source`
    predicted; group is `before`, `off`, `after` or `holdout` (see the module docstring)."""
    from scipy.stats import fisher_exact

    tally: dict[str, list[bool]] = defaultdict(list)
    for group, same in rows:
        tally[group].append(same)
    if not tally:
        return None
    groups = pd.DataFrame(
        {
            "group": list(GROUPS),
            "judgements": [len(tally[g]) for g in GROUPS],
            "agree": [sum(tally[g]) for g in GROUPS],
        }
    )
    groups["agreement"] = (groups["agree"] / groups["judgements"].where(groups["judgements"] > 0)).astype(float)
    k1, n1 = sum(tally["before"]), len(tally["before"])
    rest = [x for g in GROUPS[1:] for x in tally[g]]
    k2, n2 = sum(rest), len(rest)
    difference = ci = p_value = None
    if n1 and n2:
        difference = k1 / n1 - k2 / n2
        ci = newcombe_interval(k1, n1, k2, n2)
        p_value = float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided")[1])
    return Anchoring(source, groups, (k1, n1), (k2, n2), difference, ci, p_value)


def build_model_report(
    *, humans: list[dict[str, Any]], predictions: list[dict[str, Any]], model_judgements: list[dict[str, Any]]
) -> ModelReport:
    """The dashboard's and the card's model figures from the store's rows: `humans` (pair_id,
    preferred, strength, a_id, suggestion), `predictions` (pair_id, source, kind, side,
    strength), `model_judgements` (annotator, pair_id, preferred, strength, verdicts)."""
    people = [(h["pair_id"], signed_level(h["preferred"], h["strength"], h["a_id"]), h) for h in humans]
    by_source: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for p in predictions:
        # a prediction names its side "a" or "b"
        by_source[(p["source"], p["kind"])][p["pair_id"]] = signed_level(p["side"], p["strength"], "a")
    report = ModelReport()
    for (source, kind), model in sorted(by_source.items()):
        found = model_agreement(source, kind, [(pid, h) for pid, h, _ in people], model)
        if found is not None:
            report.models.append(found)
        shown = []
        for pid, h, row in people:
            if pid not in model:
                continue
            s = row.get("suggestion") or {}
            group = s.get("when", "off") if s.get("source") == source else "off"
            shown.append((group if group in GROUPS else "off", side(h) == side(model[pid])))
        found_a = anchoring(source, shown)
        if found_a is not None and found_a.before[1]:
            report.anchoring.append(found_a)
    report.annotators = _annotators(model_judgements)
    return report


def _annotators(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per model annotator: judgements, with a side, unsure, and unsure because its two orders
    disagreed (position bias) or an answer could not be read."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        c = out[r["annotator"]]
        c["judgements"] += 1
        c["with a side" if r["preferred"] is not None else "unsure"] += 1
        signed = [v.get("signed") for v in r.get("verdicts") or []]
        if any(x is None for x in signed):
            c["unreadable answer"] += 1
        elif r["preferred"] is None and len({side(x) for x in signed}) > 1:
            c["orders disagree"] += 1
    columns = ["judgements", "with a side", "unsure", "orders disagree", "unreadable answer"]
    frame = pd.DataFrame(
        [{"model annotator": name, **{k: int(c.get(k, 0)) for k in columns}} for name, c in sorted(out.items())],
        columns=["model annotator", *columns],
    )
    return frame
