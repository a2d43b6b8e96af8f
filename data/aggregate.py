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
  (unsure counts as not agreeing); `votes_chosen` / `votes_rejected`: how many preferred the
  winner / the loser (the rest of `n_annotators` were unsure), from which the reward model's
  soft label is computed (`prefkit.data.schema.soft_label`).
- `edited`: the latest edit of the winner by an annotator who preferred it (Llama 3's
  edit-and-rank; `prefkit.data.edits` turns it into more pairs at export).
- Safety flags: a response is unsafe when at least half of the pair's annotators flagged it.
  A pair whose winner is unsafe while the loser is safe is dropped (Llama 2 keeps no example
  where the chosen response is unsafe and the other safe) and counted; otherwise the flag
  counts go into `chosen_meta["unsafe_flags"]` / `rejected_meta["unsafe_flags"]`, and the
  majority verdicts into `chosen_unsafe` / `rejected_unsafe`, which give the pair's Llama 2
  safety bin (`prefkit.data.schema.SafetyBin`: safe_vs_unsafe, both_safe, both_unsafe).
- Judgements of pairs not in `pairs` are counted and ignored; pairs with no judgement are
  counted as unjudged.
- A model annotator's judgement (`Judgement.kind == "model"`, an AI judge) counts like a
  person's when it is given; `n_model_annotators` says how many of a row's annotators were
  models, and the report counts the judgements of each kind.
- `ability` rule: each annotator's reliability is estimated from the overlap with Dawid and
  Skene's EM (A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer
  Error-Rates Using the EM Algorithm", Applied Statistics 28(1), 1979): a confusion matrix per
  annotator, P(answer | true side), answers a / b / unsure, estimated jointly with each pair's
  true side (`dawid_skene`). The winner is the side with the higher posterior, so a vote counts
  by what it tells about the truth: a careful annotator's much, an annotator who always picks
  one shown position's nothing, an adversarial one's against the side they chose. A pair with
  no side vote at all has no winner. The strength is the level with the most weight among the
  winner's voters (weight: the voter's estimated reliability, the probability their answer is
  the true side; the lower level on a tie), negligibly better when none of them chose it.
- `decisions`: a pair's answer decided outside the rule wins over it: a reviewer's
  (`decided_by` "review"), or a gold pair's expected answer ("gold"); a decision of "unsure"
  leaves the pair out (counted). Every row says which decided it (`decided_by`: the rule's name
  otherwise).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.schema import RESPONSE_FIELDS, Judgement, MarginScheme, Pair, PreferenceRow, Response, Strength

RULES = ("mean", "majority", "ability")


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
    model_judgements: int = 0  # of `judgements`, how many were a model annotator's (an AI judge's)
    # Filled by callers that know each pair's required overlap (the annotation store): judged
    # pairs with all their judgements, judged pairs still below it, and whether only the
    # complete ones were exported. None when unknown (e.g. a judgements file).
    complete_pairs: int | None = None
    below_overlap_pairs: int | None = None
    complete_only: bool | None = None
    # Who decided the exported rows ({"mean": 80, "review": 3}), pairs left out because their
    # decision was "unsure", and (ability rule) each annotator's estimated reliability.
    decided_by: dict[str, int] = field(default_factory=dict)
    decided_unsure_dropped: int = 0
    reliability: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """A pair's answer decided outside the aggregation rule: `preferred` response id (None:
    unsure, the pair is left out) and `strength`; `by` says who ("review", "gold")."""

    preferred: str | None
    strength: Strength
    by: str = "review"


@dataclass(frozen=True)
class Ability:
    """What `dawid_skene` estimated: each item's probability that its true side is `b`, each
    annotator's confusion matrix (`confusion[a][t][r]`: P(answer r | true side t), t and r 0 for
    a, 1 for b, r 2 for unsure), the share of items whose true side is b, and each annotator's
    reliability: the probability that their answer is the true side."""

    posterior_b: dict[str, float]
    confusion: dict[str, list[list[float]]]
    prior_b: float
    reliability: dict[str, float]
    iterations: int


def dawid_skene(
    votes: dict[str, list[tuple[str, int]]], *, max_iterations: int = 200, tol: float = 1e-7, smoothing: float = 1.0
) -> Ability:
    """Dawid and Skene's (1979) EM over items with two possible truths (side a = 0, b = 1) and
    three answers (a = 0, b = 1, unsure = 2): `votes` maps an item to its (annotator, answer)s.

    Each annotator's confusion matrix is tied across the two sides (the "one-coin" form of the
    model): P(right side), P(wrong side), P(unsure), whatever the true side. Sides a and b are
    generation order, and the app shows them in a random order, so an annotator has no reason
    to err differently on each; tying halves the parameters, which matters at overlap 2. Starts
    from the majority vote; `smoothing` is a pseudo-count added to each of an annotator's three
    answers (one with few answers stays near uniform)."""
    annotators = sorted({a for vs in votes.values() for a, _ in vs})
    post: dict[str, float] = {}
    for item, vs in votes.items():
        na, nb = sum(r == 0 for _, r in vs), sum(r == 1 for _, r in vs)
        post[item] = 0.5 if na == nb else (1.0 if nb > na else 0.0)
    coins: dict[str, list[float]] = {}
    prior_b = 0.5
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported)
        prior_b = min(max(sum(post.values()) / max(len(post), 1), 1e-3), 1 - 1e-3)
        counts = {a: [smoothing] * 3 for a in annotators}  # right side, wrong side, unsure
        for item, vs in votes.items():
            pb = post[item]
            for a, r in vs:
                if r == 2:
                    counts[a][2] += 1.0
                else:
                    right = pb if r == 1 else 1.0 - pb
                    counts[a][0] += right
                    counts[a][1] += 1.0 - right
        coins = {a: [c / sum(n) for c in n] for a, n in counts.items()}
        logs = {a: [math.log(c) for c in coin] for a, coin in coins.items()}
        change = 0.0
        for item, vs in votes.items():
            la = math.log(1.0 - prior_b)  # log P(truth a, answers)
            lb = math.log(prior_b)
            for a, r in vs:
                if r != 2:  # unsure is as likely whatever the truth: it tells nothing
                    la += logs[a][0 if r == 0 else 1]
                    lb += logs[a][0 if r == 1 else 1]
            pb = 1.0 / (1.0 + math.exp(min(la - lb, 700.0)))
            change = max(change, abs(pb - post[item]))
            post[item] = pb
        if change < tol:
            break
    confusion = {a: [[c[0], c[1], c[2]], [c[1], c[0], c[2]]] for a, c in coins.items()}
    reliability = {a: c[0] for a, c in coins.items()}
    return Ability(post, confusion, prior_b, reliability, iterations)


def _answer(j: Judgement, pair: Pair) -> int:
    return 2 if j.preferred is None else (0 if j.preferred == pair.a.id else 1)


def _decide_ability(pair: Pair, js: list[Judgement], ability: Ability) -> tuple[Response, Strength] | None:
    if all(j.preferred is None for j in js):
        return None
    pb = ability.posterior_b[pair.pair_id]
    if pb == 0.5:
        return None
    winner = pair.b if pb > 0.5 else pair.a
    weights: dict[int, float] = {}
    for j in js:
        if j.preferred == winner.id:
            weights[j.strength.level] = weights.get(j.strength.level, 0.0) + ability.reliability[j.annotator]
    if not weights:
        return winner, Strength.NEGLIGIBLY_BETTER
    top = max(weights.values())
    return winner, Strength.from_level(min(lv for lv, w in weights.items() if w >= top - 1e-12))


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
    decisions: Mapping[str, Decision] | None = None,
) -> tuple[list[PreferenceRow], AggregateReport]:
    """One PreferenceRow per judged pair with a winner (winner -> chosen, loser -> rejected), and
    one per pair with a `decisions` entry naming a side (judged or not)."""
    if rule not in RULES:
        raise DataError(f"unknown aggregation rule {rule!r} (expected {', '.join(RULES)})", field="rule")
    try:
        scheme = MarginScheme(margin)
    except ValueError:
        raise DataError(f"unknown margin scheme {margin!r} (expected none, small or large)", field="margin") from None
    by_id = {p.pair_id: p for p in pairs}
    report = AggregateReport(rule=rule, margin=scheme.value, pairs=len(by_id))
    grouped: dict[str, list[Judgement]] = {}
    for j in judgements:
        report.judgements += 1
        report.model_judgements += j.kind == "model"
        if j.pair_id not in by_id:
            report.unknown_pair_judgements += 1
            continue
        grouped.setdefault(j.pair_id, []).append(j)
    decisions = {k: v for k, v in (decisions or {}).items() if k in by_id}
    report.unjudged_pairs = sum(1 for pid in by_id if pid not in grouped and pid not in decisions)
    latest = {pid: _latest_per_annotator(js) for pid, js in grouped.items()}
    ability = None
    if rule == "ability":
        ability = dawid_skene({pid: [(j.annotator, _answer(j, by_id[pid])) for j in js] for pid, js in latest.items()})
        report.reliability = {a: round(r, 4) for a, r in sorted(ability.reliability.items())}

    rows: list[PreferenceRow] = []
    decided_by: Counter[str] = Counter()
    for pair_id, pair in by_id.items():
        js = latest.get(pair_id, [])
        decision = decisions.get(pair_id)
        if decision is not None:
            if decision.preferred is None:
                report.decided_unsure_dropped += 1
                continue
            decided: tuple[Response, Strength] | None = (pair.response(decision.preferred), decision.strength)
        elif not js:
            continue
        else:
            decided = _decide_ability(pair, js, ability) if ability is not None else decide(pair, js, rule)
        if decided is None:
            report.ties_dropped += 1
            continue
        winner, strength = decided
        loser = pair.other(winner.id)
        flags = Counter(r for j in js for r in set(j.unsafe))
        unsafe = {r for r, n in flags.items() if 2 * n >= len(js)} if js else set()
        if winner.id in unsafe and loser.id not in unsafe:
            report.unsafe_chosen_dropped += 1
            continue
        edits = sorted((j for j in js if j.edited and j.preferred == winner.id), key=lambda j: j.created_at)
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
                n_model_annotators=sum(j.kind == "model" for j in js),
                agreement=sum(1 for j in js if j.preferred == winner.id) / len(js) if js else None,
                chosen_meta=_meta(winner, flags.get(winner.id, 0)),
                rejected_meta=_meta(loser, flags.get(loser.id, 0)),
                history=pair.prompt.history,
                adversarial=pair.prompt.adversarial,
                chosen_unsafe=winner.id in unsafe if js else None,
                rejected_unsafe=loser.id in unsafe if js else None,
                decided_by=decision.by if decision is not None else rule,
                votes_chosen=sum(1 for j in js if j.preferred == winner.id) if js else None,
                votes_rejected=sum(1 for j in js if j.preferred == loser.id) if js else None,
                edited=edits[-1].edited if edits else None,
            )
        )
        decided_by[decision.by if decision is not None else rule] += 1
    report.exported = len(rows)
    report.decided_by = dict(decided_by)
    report.strength_counts = dict(Counter(r.strength.value for r in rows if r.strength is not None))
    shares = [r.agreement for r in rows if r.agreement is not None]
    if shares:
        report.mean_agreement = sum(shares) / len(shares)
    return rows, report
