"""Gold pairs: pairs whose right answer the project lead knows, served to annotators among the
others to measure how well each one labels (`prefkit annotate import --gold FILE`).

The file is any pairs file `prefkit annotate import` reads (prefkit's pairs with `a_text` /
`b_text`, or a labelled file such as Vi-Alpaca's `question` / `chosen` / `rejected`, whose
`chosen` answer becomes response `a`), with the expected answer on each row:

- `gold`: the better response, `a` or `b` (generation order). Required for prefkit pairs; in a
  labelled file the default is `a`, its `chosen` answer.
- `gold_strength`: the expected level: `significantly_better`, `better`, `slightly_better`,
  `negligibly_better` (or its label, or 3…0).
- `gold_min_strength`: instead of `gold_strength`, the lowest level accepted.

A labelled file's own `strength` serves as `gold_strength` when neither is given. A bad row is
one line naming the file, the line (or row) and the field.

Scoring an answer (`check`): the **side** is right when the annotator preferred the expected
response (unsure is wrong); the **level** is right when, on top of that, it is within one step of
the expected level (`better` accepts `slightly_better`, `better`, `significantly_better`), or
at least the minimum for a `gold_min_strength`. An answer **passes** when both are right:
qualification and pauses count passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prefkit.core.errors import DataError
from prefkit.data.formats import LABELLED_FORMATS, strength_field, to_pair
from prefkit.data.schema import Pair, Strength
from prefkit.data.sources import Location, iter_records

SIDE_FIELD, STRENGTH_FIELD, MIN_STRENGTH_FIELD = "gold", "gold_strength", "gold_min_strength"


@dataclass(frozen=True)
class GoldAnswer:
    """The expected answer of a gold pair: response `side` ("a" or "b") is better, by `strength`
    (or by at least `strength` when `minimum`)."""

    side: str
    strength: Strength
    minimum: bool = False

    def preferred(self, pair: Pair) -> str:
        """The expected response's id."""
        return pair.a.id if self.side == "a" else pair.b.id

    def describe(self) -> str:
        return f"{self.side.upper()} {'at least ' if self.minimum else ''}{self.strength.label}"


@dataclass(frozen=True)
class GoldItem:
    pair: Pair
    answer: GoldAnswer
    where: Location  # the row it was read from, for errors found later (e.g. by the store)


@dataclass(frozen=True)
class GoldCheck:
    side: bool  # preferred the expected response
    level: bool  # ... and the level is within one step (or at least the minimum)

    @property
    def passed(self) -> bool:
        return self.side and self.level


def check(
    expected: str, expected_strength: Strength | str, minimum: bool, preferred: str | None, strength: Strength | str
) -> GoldCheck:
    """Score one answer (`preferred` response id or None for unsure, and its `strength`) against a
    gold pair's expected response id and level."""
    if preferred is None or preferred != expected:
        return GoldCheck(False, False)
    got, want = Strength(strength).level, Strength(expected_strength).level
    return GoldCheck(True, got >= want if minimum else abs(got - want) <= 1)


def _side(value: object, loc: Location, labelled: bool) -> str:
    if value is None or (isinstance(value, float) and value != value):
        if labelled:
            return "a"  # the chosen answer
        raise loc.error("missing field: the better response, a or b", SIDE_FIELD)
    side = value.strip().lower() if isinstance(value, str) else None
    if side not in ("a", "b"):
        raise loc.error(f"must be a or b (the better response), got {value!r}", SIDE_FIELD)
    return side


def _items(source: str | Path) -> Iterator[GoldItem]:
    from prefkit.data.readers import source_format

    fmt = source_format(source)
    if fmt not in ("pairs", *LABELLED_FORMATS):
        raise DataError(
            f"format {fmt!r} has no pairs: a gold file is a pairs file (question, a_text, b_text) or a labelled "
            "one (question, chosen, rejected) with the expected answer on each row",
            file=str(source),
        )
    labelled = fmt in LABELLED_FORMATS
    seen: dict[str, Location] = {}
    for loc, rec in iter_records(source):
        if isinstance(rec, DataError):
            raise rec
        pair = to_pair(fmt, rec, loc)
        side = _side(rec.get(SIDE_FIELD), loc, labelled)
        exact, least = strength_field(rec, STRENGTH_FIELD, loc), strength_field(rec, MIN_STRENGTH_FIELD, loc)
        if exact is not None and least is not None:
            raise loc.error(f"give {STRENGTH_FIELD} or {MIN_STRENGTH_FIELD}, not both", MIN_STRENGTH_FIELD)
        if exact is None and least is None and labelled:
            exact = strength_field(rec, "strength", loc)
        if exact is None and least is None:
            raise loc.error(
                f"missing field: the expected level ({STRENGTH_FIELD}, or {MIN_STRENGTH_FIELD} for a lowest one)",
                STRENGTH_FIELD,
            )
        if pair.pair_id in seen:
            raise loc.error(f"pair {pair.pair_id} is already in this file at {seen[pair.pair_id]}", "pair_id")
        seen[pair.pair_id] = loc
        strength = exact if exact is not None else least
        assert strength is not None
        yield GoldItem(pair, GoldAnswer(side, strength, minimum=exact is None), loc)


def read_gold(source: str | Path) -> list[GoldItem]:
    """Every gold pair of `source` with its expected answer (see the module docstring); the first
    bad row raises a `DataError` naming the file, the line or row, and the field."""
    items = list(_items(source))
    if not items:
        raise DataError("no gold pairs in the file", file=str(source))
    return items
