"""Simulated annotators whose truth is known, for the aggregation rules' test and bench
(`tests/data/test_ability.py`, `bench/ability_sim.py`).

Each pair has a true side (a or b, even odds) and a true level (0…3, even odds). Each pair is
judged by `overlap` distinct annotators drawn from the pool, each seeing the two responses in a
random order (as the app shows them). The kinds:

- `good`: unsure 3 % of the time; otherwise the right side 90 % of the time, the level off by
  one step 40 % of the time (within 0…3).
- `careless`: half the time any of the nine choices at random; otherwise as `good`.
- `always_a`: always "A better" (the response shown on the left): position bias, no signal.
- `adversarial`: the wrong side 85 % of the time, at a random level.

`recovery(rows, sim)` is the share of all pairs whose exported winner is the true side (a pair
left out counts as not recovered); `right_rows` counts the exported rows that are right.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from prefkit.data.schema import Judgement, Pair, PreferenceRow, Prompt, Response, Strength

KINDS = ("good", "careless", "always_a", "adversarial")
# The order the estimated reliabilities must follow (best first).
RANK = {"good": 0, "careless": 1, "always_a": 2, "adversarial": 3}
DEFAULT_POOL = (
    ("good1", "good"),
    ("good2", "good"),
    ("careless", "careless"),
    ("always_a", "always_a"),
    ("adversarial", "adversarial"),
)
# A larger team, with fewer judgements per annotator at the same number of pairs (harder).
LARGE_POOL = (
    ("good1", "good"),
    ("good2", "good"),
    ("good3", "good"),
    ("careless1", "careless"),
    ("careless2", "careless"),
    ("always_a1", "always_a"),
    ("always_a2", "always_a"),
    ("adversarial", "adversarial"),
)


@dataclass(frozen=True)
class Simulated:
    pairs: list[Pair]
    judgements: list[Judgement]
    truth: dict[str, str]  # pair id -> the better response's id
    kinds: dict[str, str]  # annotator -> kind


def _choice(kind: str, true_side: int, true_level: int, rng: random.Random) -> int:
    """A point of the nine-choice row in generation order: -4..-1 prefer a, 1..4 b, 0 unsure."""
    if kind == "careless" and rng.random() < 0.5:
        return rng.randint(-4, 4)
    if kind in ("good", "careless"):
        if rng.random() < 0.03:
            return 0
        side = true_side if rng.random() < 0.9 else -true_side
        level = true_level
        if rng.random() < 0.4:
            level = min(3, max(0, level + rng.choice((-1, 1))))
        return side * (level + 1)
    if kind == "adversarial":
        side = -true_side if rng.random() < 0.85 else true_side
        return side * rng.randint(1, 4)
    raise ValueError(kind)


def simulate(n_pairs: int, overlap: int, seed: int, pool: Sequence[tuple[str, str]] = DEFAULT_POOL) -> Simulated:
    rng = random.Random(seed)
    pairs, judgements, truth = [], [], {}
    for i in range(n_pairs):
        pair = Pair(
            Prompt(f"Question {seed}-{i}?"),
            Response(f"Answer one to {seed}-{i}", model="m1"),
            Response(f"Answer two to {seed}-{i}", model="m2"),
        )
        pairs.append(pair)
        true_side, true_level = rng.choice((-1, 1)), rng.randint(0, 3)
        truth[pair.pair_id] = pair.a.id if true_side < 0 else pair.b.id
        for name, kind in rng.sample(list(pool), overlap):
            shown = (pair.a.id, pair.b.id) if rng.random() < 0.5 else (pair.b.id, pair.a.id)
            if kind == "always_a":
                j = Judgement(pair.pair_id, name, shown[0], Strength.BETTER, shown_order=shown)
            else:
                point = _choice(kind, true_side, true_level, rng)
                preferred = None if point == 0 else (pair.a.id if point < 0 else pair.b.id)
                strength = Strength.NEGLIGIBLY_BETTER if point == 0 else Strength.from_level(abs(point) - 1)
                j = Judgement(pair.pair_id, name, preferred, strength, shown_order=shown)
            judgements.append(j)
    return Simulated(pairs, judgements, truth, dict(pool))


def right_rows(rows: Sequence[PreferenceRow], sim: Simulated) -> int:
    """How many exported rows have the true better response as `chosen`."""
    by_id = {p.pair_id: p for p in sim.pairs}
    return sum(1 for r in rows if by_id[r.id].response(sim.truth[r.id]).text == r.chosen)


def recovery(rows: Sequence[PreferenceRow], sim: Simulated) -> float:
    """Share of all simulated pairs whose exported `chosen` is the true better response."""
    return right_rows(rows, sim) / len(sim.pairs)


def ranks_right(reliability: dict[str, float], kinds: dict[str, str]) -> bool:
    """Every annotator of a better kind (`RANK`) has a higher estimated reliability than every
    annotator of a worse kind."""
    return all(
        reliability[a] > reliability[b] for a in reliability for b in reliability if RANK[kinds[a]] < RANK[kinds[b]]
    )
