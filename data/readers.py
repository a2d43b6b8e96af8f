"""Read any supported source into the data model.

`read_rows` gives raw records with their location; `detect_format` names the format;
`read_prompts` / `read_preferences` / `read_pairs` / `read_judgements` give typed objects.
A bad record raises `DataError` naming file, line/row and field — or, when the caller passes an
`errors` list, is recorded there and skipped (for real-world files with a few broken rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prefkit.core.errors import DataError
from prefkit.data.formats import (
    FORMAT_COLUMNS,
    LABELLED_FORMATS,
    check_column_map,
    detect_format,
    preference_warning,
    render_turns,
    to_judgement,
    to_pair,
    to_preference,
    to_prompt,
    to_response_text,
)
from prefkit.data.schema import Judgement, Pair, PreferenceRow, Prompt
from prefkit.data.sources import ColumnMap, Location, first_columns, first_records, iter_records, read_rows

__all__ = [
    "Location",
    "canonical_record",
    "canonical_records",
    "detect_format",
    "raw_and_canonical_records",
    "read_judgements",
    "read_pairs",
    "read_preferences",
    "read_prompts",
    "read_rows",
    "source_format",
]

T = TypeVar("T")


def source_format(
    source: str | Path, split: str | None = None, *, skip_bad: bool = False, columns: ColumnMap | None = None
) -> str:
    """The format of `source`, from its columns and first record, after the `columns` mapping
    (`prefkit.data.sources.iter_records`); with `skip_bad`, from the first record that tells one
    (a broken first record is then one bad row among the others, not the end of the read)."""
    if columns:
        check_column_map(columns)
    failed: DataError | None = None
    for names, record, loc in first_records(source, split, skip_bad=skip_bad, columns=columns):
        if not names:
            break
        try:
            return detect_format(names, record, file=str(source), loc=loc)
        except DataError as e:
            if not skip_bad:
                raise
            failed = failed or e  # told by a later record; this one is counted bad when read
    if failed is not None:
        raise failed
    raise DataError("no records", file=str(source))


def _convert(
    source: str | Path,
    split: str | None,
    convert: Callable[[str, dict[str, Any], Location], T],
    errors: list[DataError] | None,
    fmt: str | None = None,
    columns: ColumnMap | None = None,
) -> Iterator[T]:
    fmt = fmt or source_format(source, split, skip_bad=errors is not None, columns=columns)
    for loc, rec in iter_records(source, split, columns):
        if isinstance(rec, DataError):  # malformed JSON or not an object
            if errors is None:
                raise rec
            errors.append(rec)
            continue
        try:
            yield convert(fmt, rec, loc)
        except DataError as e:
            if errors is None:
                raise
            e.record = rec
            errors.append(e)


def is_safety_source(source: str | Path, fmt: str) -> bool:
    """hh-rlhf's harmless (red-teaming) split: every prompt is adversarial, so it reads as a
    safety set. Told by the file or folder name (`harmless-base`, `red-team…`)."""
    name = str(source).lower().replace("_", "-")
    return fmt in ("hh_rlhf", "trl_preference") and ("harmless" in name or "red-team" in name)


def read_prompts(
    source: str | Path,
    split: str | None = None,
    *,
    errors: list[DataError] | None = None,
    adversarial: bool | None = None,
    columns: ColumnMap | None = None,
) -> list[Prompt]:
    """The prompts of any format, each once (first occurrence kept, by prompt id).

    `adversarial`: True tags every prompt adversarial; None (default) tags them when the source
    is hh-rlhf's harmless split (`is_safety_source`), else keeps each record's own `adversarial`.
    """
    fmt = source_format(source, split, skip_bad=errors is not None, columns=columns)
    tag = is_safety_source(source, fmt) if adversarial is None else adversarial
    seen: dict[str, Prompt] = {}
    for p in _convert(source, split, to_prompt, errors, fmt, columns):
        if tag and not p.adversarial:
            p = dataclasses.replace(p, adversarial=True)
        seen.setdefault(p.id, p)
    return list(seen.values())


def read_preferences(
    source: str | Path,
    split: str | None = None,
    *,
    errors: list[DataError] | None = None,
    adversarial: bool | None = None,
    columns: ColumnMap | None = None,
) -> list[PreferenceRow]:
    """Labelled rows (Vi-Alpaca preference, hh-rlhf, TRL preference) as PreferenceRows.

    `adversarial` as in `read_prompts` (hh-rlhf harmless rows come tagged adversarial)."""
    fmt = source_format(source, split, skip_bad=errors is not None, columns=columns)
    if fmt not in LABELLED_FORMATS:
        hint = " (pairs need judgements: pass --judgements)" if fmt == "pairs" else ""
        names, _ = first_columns(source, split, skip_bad=True, columns=columns)
        odd = preference_warning(names, fmt)
        raise DataError(
            odd
            or f"format {fmt!r} has no preference labels (need one of {', '.join(LABELLED_FORMATS)}: "
            f"{'; '.join(f'{f}: {FORMAT_COLUMNS[f]}' for f in LABELLED_FORMATS)}){hint}",
            file=str(source),
        )
    rows = list(_convert(source, split, to_preference, errors, fmt, columns))
    if is_safety_source(source, fmt) if adversarial is None else adversarial:
        for r in rows:
            r.adversarial = True
    return rows


def read_pairs(
    source: str | Path,
    split: str | None = None,
    *,
    errors: list[DataError] | None = None,
    columns: ColumnMap | None = None,
) -> list[Pair]:
    """prefkit pairs; a labelled preference file gives pairs with chosen as `a`. A file that reads
    as prompts but has answer-like columns (`preference_warning`) is refused with what each format
    needs, not blamed on its first row."""
    fmt = source_format(source, split, skip_bad=errors is not None, columns=columns)
    if fmt not in ("pairs", *LABELLED_FORMATS):
        names, _ = first_columns(source, split, skip_bad=True, columns=columns)
        raise DataError(
            preference_warning(names, fmt)
            or f"reads as {fmt!r}, which holds no pairs: pairs need {FORMAT_COLUMNS['pairs']}, or a labelled "
            f"format ({'; '.join(f'{f}: {FORMAT_COLUMNS[f]}' for f in LABELLED_FORMATS)}); "
            "map your names with --columns NAME=COLUMN,…",
            file=str(source),
        )
    return list(_convert(source, split, to_pair, errors, fmt, columns))


def read_judgements(
    source: str | Path, split: str | None = None, *, errors: list[DataError] | None = None
) -> list[Judgement]:
    return list(_convert(source, split, to_judgement, errors))


def _conversation(prompt: Prompt) -> str:
    """The prompt's whole conversation as one text (the question alone for one turn), so that
    dedup and stats compare conversations, not only their last user turns."""
    return render_turns(list(prompt.turns))


def canonical_record(fmt: str, rec: dict[str, Any], loc: Location) -> dict[str, Any]:
    """One raw record of format `fmt` converted as its reader would (raising the reader's
    located `DataError`), with its texts under common names (see `canonical_records`)."""
    if fmt in LABELLED_FORMATS:
        row = to_preference(fmt, rec, loc)
        return {
            "question": _conversation(row.prompt),
            "system": row.system,
            "chosen": row.chosen,
            "rejected": row.rejected,
            "strength": row.strength,
        }
    if fmt == "pairs":
        pair = to_pair(fmt, rec, loc)
        return {
            "question": _conversation(pair.prompt),
            "system": pair.prompt.system,
            "a": pair.a.text,
            "b": pair.b.text,
        }
    if fmt == "judgements":
        j = to_judgement(fmt, rec, loc)
        return {"strength": j.strength, "annotator": j.annotator, "pair_id": j.pair_id}
    prompt = to_prompt(fmt, rec, loc)
    out: dict[str, Any] = {"question": _conversation(prompt), "system": prompt.system}
    response = to_response_text(fmt, rec, loc)
    if response is not None:
        out["response"] = response
    return out


def raw_and_canonical_records(
    source: str | Path,
    split: str | None = None,
    *,
    errors: list[DataError] | None = None,
    columns: ColumnMap | None = None,
) -> tuple[str, Iterator[tuple[Location, dict[str, Any], dict[str, Any]]]]:
    """The format and, per record in one pass, its location, the raw record and its canonical
    form (as `canonical_records`); raises `DataError` at the first bad record, unless `errors`
    collects them."""
    fmt = source_format(source, split, skip_bad=errors is not None, columns=columns)

    def convert(fmt: str, rec: dict[str, Any], loc: Location) -> tuple[Location, dict[str, Any], dict[str, Any]]:
        return loc, rec, canonical_record(fmt, rec, loc)

    return fmt, _convert(source, split, convert, errors, fmt, columns)


def canonical_records(
    source: str | Path,
    split: str | None = None,
    *,
    errors: list[DataError] | None = None,
    columns: ColumnMap | None = None,
) -> tuple[str, Iterator[tuple[Location, dict[str, Any]]]]:
    """The format and, per record, its texts under common names, whatever the source format:
    `question` (the whole conversation, as "Human: …" / "Assistant: …" text when it has
    several turns), `system`, and `chosen`/`rejected` (labelled), `response` (alpaca,
    prompt/response), `a`/`b` (pairs), plus `strength` where present. Judgements have no text.
    Raises `DataError` at the first bad record, unless `errors` collects them.
    """
    fmt = source_format(source, split, skip_bad=errors is not None, columns=columns)

    def convert(fmt: str, rec: dict[str, Any], loc: Location) -> tuple[Location, dict[str, Any]]:
        return loc, canonical_record(fmt, rec, loc)

    return fmt, _convert(source, split, convert, errors, fmt, columns)
