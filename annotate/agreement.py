"""Agreement between annotators on pairs judged more than once, on the nine-choice scale.

Input is one choice per (item, annotator) in generation order, as `Judgement.signed_level`
gives it: -4..-1 prefer response a (significantly … negligibly better), 0 unsure, 1..4 prefer b
(negligibly … significantly better). The side is the choice's sign, so "negligibly better" is a
side (a win with margin 0, as on the Label page and in the export); only unsure has none.

- Raw agreement as MT-Bench reports it (Zheng et al. 2023, "agreement between two judges is the
  probability of randomly selected individuals of each type agreeing on a randomly selected
  question"): over every pair of annotators on every item, the share that name the same side.
  "Side" counts unsure as a third answer (two unsure agree); "side, both decided" leaves out
  comparisons where either annotator was unsure. "Choice" asks for the same side and level.
- Cohen's kappa on the side (a / unsure / b), per pair of annotators over the items both judged,
  then averaged weighted by those items (Cohen's kappa is defined for two raters).
- Krippendorff's alpha on the nine choices (side and level; interval and ordinal), all annotators
  at once, missing judgements allowed (the `krippendorff` package). Unsure is the middle point,
  one step from either "negligibly better".
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SIDES = (-1, 0, 1)  # a, unsure, b
CHOICES = range(-4, 5)  # the nine choices in generation order


@dataclass(frozen=True)
class PairKappa:
    annotators: tuple[str, str]
    items: int
    kappa: float | None  # None when undefined (both always gave the same single label)


@dataclass(frozen=True)
class AgreementReport:
    items: int  # items with at least two judgements
    comparisons: int  # annotator pairs over those items
    comparisons_decided: int  # of those, the ones where neither annotator was unsure
    raw_side: float | None  # same side, unsure counting as a third answer
    raw_side_decided: float | None  # same side, over `comparisons_decided`
    raw_choice: float | None  # same side and same level
    cohen_kappa: float | None  # on the side (a / unsure / b)
    alpha_interval: float | None  # on the nine choices
    alpha_ordinal: float | None  # on the nine choices
    per_pair: list[PairKappa] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "items": self.items,
            "comparisons": self.comparisons,
            "comparisons_decided": self.comparisons_decided,
            "raw_side": self.raw_side,
            "raw_side_decided": self.raw_side_decided,
            "raw_choice": self.raw_choice,
            "cohen_kappa": self.cohen_kappa,
            "alpha_interval": self.alpha_interval,
            "alpha_ordinal": self.alpha_ordinal,
        }


def side(choice: int) -> int:
    """-1 for response a, 1 for b, 0 for unsure: the sign of a nine-choice value."""
    return (choice > 0) - (choice < 0)


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


def agreement(choices: Iterable[tuple[str, str, int]]) -> AgreementReport:
    """Agreement figures from (item, annotator, choice -4..4 in generation order) triples, the
    choice as `Judgement.signed_level` gives it. Items judged once are ignored; a repeated
    (item, annotator) is an error."""
    by_item: dict[str, dict[str, int]] = defaultdict(dict)
    for item, annotator, choice in choices:
        if choice not in CHOICES:
            raise ValueError(f"choice must be -4..4, got {choice!r} (item {item}, annotator {annotator})")
        if annotator in by_item[item]:
            raise ValueError(f"annotator {annotator!r} judged item {item!r} twice")
        by_item[item][annotator] = int(choice)
    multi = {k: v for k, v in by_item.items() if len(v) >= 2}

    same_side = same_choice = comparisons = same_decided = decided = 0
    shared: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for votes in multi.values():
        for (a1, c1), (a2, c2) in itertools.combinations(sorted(votes.items()), 2):
            s1, s2 = side(c1), side(c2)
            comparisons += 1
            same_side += s1 == s2
            same_choice += c1 == c2
            if s1 != 0 and s2 != 0:
                decided += 1
                same_decided += s1 == s2
            xs, ys = shared[(a1, a2)]
            xs.append(s1)
            ys.append(s2)

    per_pair = [PairKappa(k, len(xs), cohen_kappa(xs, ys)) for k, (xs, ys) in sorted(shared.items())]
    defined = [(p.kappa, p.items) for p in per_pair if p.kappa is not None]
    kappa = sum(k * n for k, n in defined) / sum(n for _, n in defined) if defined else None

    return AgreementReport(
        items=len(multi),
        comparisons=comparisons,
        comparisons_decided=decided,
        raw_side=same_side / comparisons if comparisons else None,
        raw_side_decided=same_decided / decided if decided else None,
        raw_choice=same_choice / comparisons if comparisons else None,
        cohen_kappa=kappa,
        alpha_interval=_alpha(multi, "interval"),
        alpha_ordinal=_alpha(multi, "ordinal"),
        per_pair=per_pair,
    )


def _alpha(items: dict[str, dict[str, int]], level: Literal["interval", "ordinal"]) -> float | None:
    """Krippendorff's alpha over the nine choices; None when undefined (no variation at all)."""
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
        return None  # everyone gave the same choice: expected disagreement is 0
    # The whole scale as the domain, so ordinal distances count the unused points between.
    value = krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=list(CHOICES))
    return float(value)
