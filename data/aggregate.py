"""Several annotators' judgements of one pair -> one exported preference row.

Rules (documented in docs/guides/data-engineers/data.md, "Aggregating judgements", and in the dataset card):

- Each annotator counts once per pair: a re-judgement replaces their earlier one (latest
  `created_at` wins).
- `mean` rule: average the signed levels (`Judgement.signed_level`, -4..4: negative prefers
  `a`, positive `b`, |value| = strength level + 1, so "negligibly better" is ±1 and still has a
  side; unsure is 0). The sign picks the winner; |mean| rounded half up, less one, is the
  strength level (0..3; below 0.5 it is 0, "negligibly better"). A single "A negligibly better"
  is a winner with margin 0. `majority` rule: the side with more votes wins (unsure votes count
  for neither); the strength is the most common level among the winner's voters, the lower
  level on a tie.
- No winner (mean exactly 0, equal votes, or everyone unsure): the pair is dropped and counted
  as a tie. Like Llama 2, only pairs with a winner are kept.
- `agreement`: the share of the pair's annotators whose preferred response is the winner
  (unsure counts as not agreeing).
- Safety flags: a response is unsafe when at least half of the pair's annotators flagged it.
  A pair whose winner is unsafe while the loser is safe is dropped (Llama 2 keeps no example
  where the chosen response is unsafe and the other safe) and counted; otherwise the flag
  counts go into `chosen_meta["unsafe_flags"]` / `rejected_meta["unsafe_flags"]`, and the
  majority verdicts into `chosen_unsafe` / `rejected_unsafe`, which give the pair's Llama 2
  safety bin (`prefkit.data.schema.SafetyBin`: safe_vs_unsafe, both_safe, both_unsafe).
- Judgements of pairs not in `pairs` are counted and ignored; pairs with no judgement are
  counted as unjudged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.schema import RESPONSE_FIELDS, Judgement, MarginScheme, Pair, PreferenceRow, Response, Strength

RULES = ("mean", "majority")


@dataclass
class AggregateReport:
    rule: str
    margin: str
    pairs: int = 0
    judgements: int = 0
    exported: int = 0
    ties_dropped: int = 0
    unsafe_chosen_dropped: int = 0
    unjudged_pairs: int = 0
    unknown_pair_judgements: int = 0
    mean_agreement: float | None = None
    strength_counts: dict[str, int] = field(default_factory=dict)
    # Filled by callers that know each pair's required overlap (the annotation store): judged
    # pairs with all their judgements, judged pairs still below it, and whether only the
    # complete ones were exported. None when unknown (e.g. a judgements file).
    complete_pairs: int | None = None
    below_overlap_pairs: int | None = None
    complete_only: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latest_per_annotator(judgements: Iterable[Judgement]) -> list[Judgement]:
    latest: dict[str, Judgement] = {}
    for j in judgements:
        if j.annotator not in latest or j.created_at >= latest[j.annotator].created_at:
            latest[j.annotator] = j
    return list(latest.values())


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def decide(pair: Pair, judgements: list[Judgement], rule: str) -> tuple[Response, Strength] | None:
    """The winning response and strength under `rule`, or None when there is no winner."""
    if rule == "mean":
        mean = sum(j.signed_level(pair) for j in judgements) / len(judgements)
        if mean == 0:
            return None
        level = min(3, max(0, _round_half_up(abs(mean)) - 1))
        return (pair.a if mean < 0 else pair.b), Strength.from_level(level)
    votes = Counter(j.preferred for j in judgements if j.preferred is not None)
    a_votes, b_votes = votes.get(pair.a.id, 0), votes.get(pair.b.id, 0)
    if a_votes == b_votes:
        return None
    winner = pair.a if a_votes > b_votes else pair.b
    levels = Counter(j.strength.level for j in judgements if j.preferred == winner.id)
    top = max(levels.values())
    return winner, Strength.from_level(min(lv for lv, n in levels.items() if n == top))


def _meta(response: Response, flags: int) -> dict[str, Any]:
    meta = {k: getattr(response, k) for k in RESPONSE_FIELDS if k != "text"}
    meta["unsafe_flags"] = flags
    return meta


def aggregate(
    pairs: Iterable[Pair],
    judgements: Iterable[Judgement],
    rule: str = "mean",
    margin: MarginScheme | str = "small",
) -> tuple[list[PreferenceRow], AggregateReport]:
    """One PreferenceRow per judged pair with a winner (winner -> chosen, loser -> rejected)."""
    if rule not in RULES:
        raise DataError(f"unknown aggregation rule {rule!r} (expected {' or '.join(RULES)})", field="rule")
    try:
        scheme = MarginScheme(margin)
    except ValueError:
        raise DataError(f"unknown margin scheme {margin!r} (expected none, small or large)", field="margin") from None
    by_id = {p.pair_id: p for p in pairs}
    report = AggregateReport(rule=rule, margin=scheme.value, pairs=len(by_id))
    grouped: dict[str, list[Judgement]] = {}
    for j in judgements:
        report.judgements += 1
        if j.pair_id not in by_id:
            report.unknown_pair_judgements += 1
            continue
        grouped.setdefault(j.pair_id, []).append(j)
    report.unjudged_pairs = sum(1 for pid in by_id if pid not in grouped)

    rows: list[PreferenceRow] = []
    for pair_id, pair in by_id.items():
        if pair_id not in grouped:
            continue
        js = _latest_per_annotator(grouped[pair_id])
        decided = decide(pair, js, rule)
        if decided is None:
            report.ties_dropped += 1
            continue
        winner, strength = decided
        loser = pair.other(winner.id)
        flags = Counter(r for j in js for r in set(j.unsafe))
        unsafe = {r for r, n in flags.items() if 2 * n >= len(js)}
        if winner.id in unsafe and loser.id not in unsafe:
            report.unsafe_chosen_dropped += 1
            continue
        rows.append(
            PreferenceRow(
                question=pair.prompt.question,
                chosen=winner.text,
                rejected=loser.text,
                id=pair.pair_id,
                system=pair.prompt.system,
                source=pair.prompt.source,
                strength=strength,
                margin=strength.margin(scheme),
                n_annotators=len(js),
                agreement=sum(1 for j in js if j.preferred == winner.id) / len(js),
                chosen_meta=_meta(winner, flags.get(winner.id, 0)),
                rejected_meta=_meta(loser, flags.get(loser.id, 0)),
                history=pair.prompt.history,
                adversarial=pair.prompt.adversarial,
                chosen_unsafe=winner.id in unsafe,
                rejected_unsafe=loser.id in unsafe,
            )
        )
    report.exported = len(rows)
    report.strength_counts = dict(Counter(r.strength.value for r in rows if r.strength is not None))
    if rows:
        report.mean_agreement = sum(r.agreement or 0.0 for r in rows) / len(rows)
    return rows, report
