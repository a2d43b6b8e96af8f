"""Edit-and-rank (Llama 3, section 4.2.1): an annotator may edit the answer they preferred, so a
pair with an edit holds a ranking of three answers, edited > chosen > rejected.

The reward model reads the ranking as it is (the `edited` column; `prefkit train reward` with
`edits: rank`). For DPO the export turns it into pairs (`expand_edits`), beside the judged pair
chosen > rejected, which stays as it was:

- `two`: the adjacent comparison of the ranking, edited > chosen (two pairs per edited prompt);
- `three`: both comparisons the edit adds, edited > chosen and edited > rejected (three pairs).

A new pair's strength is `strength` (configurable; "better" by default); edited > rejected is never
weaker than the judged chosen > rejected (the edit ranks above chosen). Its `derived_from` names
the judged row it came from, and it counts one judgement (the editor's), all for the edit. An edit
that only changes whitespace is no edit. The new pairs share the prompt of their judged row, so the
split by prompt keeps them on its side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.schema import PreferenceRow, Strength

EDIT_PAIRS = ("off", "two", "three")


def same_text(a: str, b: str) -> bool:
    """Equal but for whitespace (an edit that only moves spaces is no edit)."""
    return " ".join(a.split()) == " ".join(b.split())


def edited_rows(rows: Iterable[PreferenceRow]) -> list[PreferenceRow]:
    """The judged rows whose `edited` answer differs from `chosen` (not counting whitespace)."""
    return [r for r in rows if r.edited and r.derived_from is None and not same_text(r.edited, r.chosen)]


def expand_edits(
    rows: list[PreferenceRow], pairs: str = "two", strength: Strength | str = Strength.BETTER
) -> list[PreferenceRow]:
    """`rows` followed by the pairs their edits make (`pairs`: off, two or three; module docstring).
    A row whose pairs are already among `rows` (an earlier export read back) makes none again."""
    if pairs not in EDIT_PAIRS:
        raise DataError(f"edit_pairs must be one of {', '.join(EDIT_PAIRS)}, got {pairs!r}", field="edit_pairs")
    try:
        level = Strength.parse(strength)
    except ValueError as e:
        raise DataError(str(e), field="edit_strength") from None
    if pairs == "off":
        return list(rows)
    new: list[PreferenceRow] = []
    expanded = {r.derived_from for r in rows if r.derived_from}  # an earlier export's own edit pairs
    for row in edited_rows(rows):
        assert row.edited is not None
        if row.id in expanded:
            continue
        common: dict[str, Any] = dict(
            id="",
            edited=None,
            derived_from=row.id,
            n_annotators=1,
            agreement=1.0,
            votes_chosen=1,
            votes_rejected=0,
            chosen_meta={},
            chosen_unsafe=None,
        )
        new.append(
            dataclasses.replace(
                row,
                chosen=row.edited,
                rejected=row.chosen,
                strength=level,
                rejected_meta=dict(row.chosen_meta),
                rejected_unsafe=row.chosen_unsafe,
                **common,
            )
        )
        if pairs == "three":
            stronger = max(level, row.strength or level, key=lambda s: s.level)
            new.append(dataclasses.replace(row, chosen=row.edited, strength=stronger, **common))
    return [*rows, *new]
