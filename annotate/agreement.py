"""Agreement between annotators on pairs judged more than once.

Input is one score per (item, annotator) on the 7-point scale in generation order: -3..-1
prefer response a, 0 unsure/tie, 1..3 prefer b. The winner is the score's sign.

- Raw agreement as MT-Bench reports it (Zheng et al. 2023, "agreement between two judges is the
  probability of randomly selected individuals of each type agreeing on a randomly selected
  question"): over every pair of annotators on every item, the share that name the same winner.
  "With ties" counts a tie as a label; "without ties" drops comparisons where either vote is one.
- Cohen's kappa on the winner (a / tie / b), per pair of annotators over the items both judged,
  then averaged weighted by those items (Cohen's kappa is defined for two raters).
- Krippendorff's alpha on the 7-point score (interval and ordinal), all annotators at once,
  missing judgements allowed (the `krippendorff` package).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

WINNERS = (-1, 0, 1)  # a, tie, b


@dataclass(frozen=True)
class PairKappa:
    annotators: tuple[str, str]
    items: int
    kappa: float | None  # None when undefined (both always gave the same single label)


@dataclass(frozen=True)
class AgreementReport:
    items: int  # items with at least two judgements
    comparisons: int  # annotator pairs over those items
    comparisons_without_ties: int
    raw_with_ties: float | None
    raw_without_ties: float | None
    cohen_kappa: float | None
    alpha_interval: float | None
    alpha_ordinal: float | None
    per_pair: list[PairKappa] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "items": self.items,
            "comparisons": self.comparisons,
            "comparisons_without_ties": self.comparisons_without_ties,
            "raw_with_ties": self.raw_with_ties,
            "raw_without_ties": self.raw_without_ties,
            "cohen_kappa": self.cohen_kappa,
            "alpha_interval": self.alpha_interval,
            "alpha_ordinal": self.alpha_ordinal,
        }


def winner(score: int) -> int:
    return (score > 0) - (score < 0)


def cohen_kappa(x: list[int], y: list[int]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when chance agreement is 1."""
    n = len(x)
    if n == 0 or n != len(y):
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    labels = sorted(set(x) | set(y))
    po = sum(a == b for a, b in zip(x, y, strict=True)) / n
    pe = sum((x.count(k) / n) * (y.count(k) / n) for k in labels)
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1.0 - pe)


def agreement(scores: Iterable[tuple[str, str, int]]) -> AgreementReport:
    """Agreement figures from (item, annotator, score -3..3) triples. Items judged once are
    ignored; a repeated (item, annotator) is an error."""
    by_item: dict[str, dict[str, int]] = defaultdict(dict)
    for item, annotator, score in scores:
        if not -3 <= score <= 3:
            raise ValueError(f"score must be -3..3, got {score!r} (item {item}, annotator {annotator})")
        if annotator in by_item[item]:
            raise ValueError(f"annotator {annotator!r} judged item {item!r} twice")
        by_item[item][annotator] = int(score)
    multi = {k: v for k, v in by_item.items() if len(v) >= 2}

    same = comparisons = same_nt = comparisons_nt = 0
    shared: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for votes in multi.values():
        for (a1, s1), (a2, s2) in itertools.combinations(sorted(votes.items()), 2):
            w1, w2 = winner(s1), winner(s2)
            comparisons += 1
            same += w1 == w2
            if w1 != 0 and w2 != 0:
                comparisons_nt += 1
                same_nt += w1 == w2
            xs, ys = shared[(a1, a2)]
            xs.append(w1)
            ys.append(w2)

    per_pair = [PairKappa(k, len(xs), cohen_kappa(xs, ys)) for k, (xs, ys) in sorted(shared.items())]
    defined = [(p.kappa, p.items) for p in per_pair if p.kappa is not None]
    kappa = sum(k * n for k, n in defined) / sum(n for _, n in defined) if defined else None

    return AgreementReport(
        items=len(multi),
        comparisons=comparisons,
        comparisons_without_ties=comparisons_nt,
        raw_with_ties=same / comparisons if comparisons else None,
        raw_without_ties=same_nt / comparisons_nt if comparisons_nt else None,
        cohen_kappa=kappa,
        alpha_interval=_alpha(multi, "interval"),
        alpha_ordinal=_alpha(multi, "ordinal"),
        per_pair=per_pair,
    )


def _alpha(items: dict[str, dict[str, int]], level: Literal["interval", "ordinal"]) -> float | None:
    """Krippendorff's alpha over the 7-point scale; None when undefined (no variation at all)."""
    import krippendorff

    if not items:
        return None
    annotators = sorted({a for votes in items.values() for a in votes})
    index = {a: i for i, a in enumerate(annotators)}
    data = np.full((len(annotators), len(items)), np.nan)
    for j, votes in enumerate(items.values()):
        for a, s in votes.items():
            data[index[a], j] = s
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # everyone gave the same score: expected disagreement is 0
    # The whole scale as the domain, so ordinal distances count the unused points between.
    value = krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=list(range(-3, 4)))
    return float(value)
