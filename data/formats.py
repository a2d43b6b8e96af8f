"""Which format a record set is in, and how one raw record of each format becomes the data model.

Formats (DESIGN.md, "Formats read"):

| name | columns |
| --- | --- |
| `vi_alpaca_preference` | `question`, `chosen`, `rejected` (+ `strength`, `system`, metadata) |
| `alpaca` | `instruction`, `input` (optional), `output` |
| `prompt_response` | `prompt`, `response` |
| `hh_rlhf` | `chosen`, `rejected` as `\\n\\nHuman:` / `\\n\\nAssistant:` transcripts |
| `trl_preference` | `prompt`, `chosen`, `rejected` (message lists or text; or TRL's implicit prompt, below) |
| `pairs` | prefkit's own pairs (`prefkit.data.schema.PAIR_COLUMNS`) |
| `judgements` | prefkit's own judgements (`pair_id`, `annotator`, `strength`, …) |
| `prompts` | prompts only: `question` or `prompt` (or `instruction` without `output`) |

`trl_preference` also reads TRL's implicit prompt (`chosen` / `rejected` whole conversations, no
`prompt` column) and so `prefkit data export --trl` output.

Conversations are kept: hh-rlhf transcripts and TRL message lists become a `Prompt` whose
`history` holds the earlier turns and whose `question` is the last user turn; the flat formats
read an optional `history` column (JSON text or a list of {"role", "content"} messages), and
every format an optional `adversarial` flag (a red-teaming prompt) and, for labelled rows,
`chosen_unsafe` / `rejected_unsafe`.

Each converter raises `DataError` naming the record's location and the field at fault.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any

from prefkit.core.errors import DataError
from prefkit.data.schema import (
    RESPONSE_FIELDS,
    Judgement,
    Pair,
    PreferenceRow,
    Prompt,
    Strength,
    Turn,
    parse_bool,
    parse_turns,
)
from prefkit.data.sources import Location

FORMATS = (
    "vi_alpaca_preference",
    "alpaca",
    "prompt_response",
    "hh_rlhf",
    "trl_preference",
    "pairs",
    "judgements",
    "prompts",
)
LABELLED_FORMATS = ("vi_alpaca_preference", "hh_rlhf", "trl_preference")

# The columns each format needs (what `--columns` maps a file's own names onto).
FORMAT_COLUMNS = {
    "vi_alpaca_preference": "question, chosen, rejected",
    "alpaca": "instruction, output (input optional)",
    "prompt_response": "prompt, response",
    "hh_rlhf": "chosen, rejected (Human:/Assistant: transcripts)",
    "trl_preference": "prompt, chosen, rejected",
    "pairs": "question, a_text, b_text",
    "judgements": "pair_id, annotator, strength",
    "prompts": "question or prompt (or instruction alone)",
}
COLUMNS_HELP = (
    "Read the file's own column names as prefkit's: NAME=COLUMN pairs, e.g. question=instruction,chosen=better "
    "(a YAML mapping in a config: columns: {question: instruction}); the names each format needs are in "
    "`prefkit data validate`'s warnings and the data guide."
)
# Names a `--columns NAME=COLUMN` mapping may give a column: every format's, and the optional ones.
COLUMN_NAMES = frozenset(
    [
        "question",
        "chosen",
        "rejected",
        "instruction",
        "input",
        "output",
        "prompt",
        "response",
        "a_text",
        "b_text",
        "pair_id",
        "annotator",
        "strength",
        "preferred",
        "system",
        "history",
        "adversarial",
        "chosen_unsafe",
        "rejected_unsafe",
        "id",
        "margin",
    ]
)
# A column that holds a second answer or a verdict: a file that has one but reads as prompts (or
# instruction/answer data) is probably preference data under other names.
_ANSWER_LIKE = re.compile(
    r"^((output|response|answer|completion|generation)s?[ _-]?([0-9]|[ab]|one|two)|chosen\w*|rejected\w*|"
    r"preferred|preference|winner|label|choice|ranking)$",
    re.I,
)


def needed_columns() -> str:
    """One line: the columns each format needs."""
    return "; ".join(f"{name}: {cols}" for name, cols in FORMAT_COLUMNS.items())


def unmatched_preference_columns(columns: Collection[str], fmt: str) -> list[str]:
    """The columns that look like a second answer or a verdict when the file reads as a format
    that uses none of them (prompts, alpaca, prompt_response): preference data under other names."""
    if fmt not in ("prompts", "alpaca", "prompt_response"):
        return []
    return [c for c in columns if _ANSWER_LIKE.match(c.strip())]


def preference_warning(columns: Collection[str], fmt: str) -> str | None:
    """The warning for `unmatched_preference_columns`, naming what each format needs and `--columns`."""
    odd = unmatched_preference_columns(columns, fmt)
    if not odd:
        return None
    return (
        f"columns {', '.join(odd)} look like preference data, but the file reads as {fmt!r}, which uses none of "
        f"them. The formats need: {needed_columns()}. Map your names with --columns NAME=COLUMN,… "
        "(e.g. --columns question=instruction,a_text=output_1,b_text=output_2 reads two answers as pairs to label)"
    )


def check_column_map(mapping: Mapping[str, str], where: str = "--columns") -> None:
    """A `--columns` mapping gives known names to distinct columns."""
    unknown = sorted(set(mapping) - COLUMN_NAMES)
    if unknown:
        raise DataError(
            f"{where}: unknown name(s) {', '.join(unknown)}; "
            f"a column can be mapped to {', '.join(sorted(COLUMN_NAMES))}",
            field="columns",
        )
    sources = list(mapping.values())
    twice = sorted({c for c in sources if sources.count(c) > 1})
    if twice:
        raise DataError(f"{where}: column(s) {', '.join(twice)} mapped twice", field="columns")


def detect_format(
    columns: Collection[str],
    sample: Mapping[str, Any] | None = None,
    *,
    file: str | None = None,
    loc: Location | None = None,
) -> str:
    """The format of records with these columns (see the module table).

    `sample` (one record) tells TRL's implicit-prompt form (message lists) from hh-rlhf
    transcripts (text), which share the columns `chosen`/`rejected`. `loc` is where `sample` was
    read: an error then names its line or row; without it, the columns are a table's (Parquet).
    """
    cols = set(columns)

    def fail(message: str, field: str | None = None) -> DataError:
        if loc is not None:
            return loc.error(message.replace("{what}", "the record"), field)
        what = "the columns" if sample is None else "the first record"
        return DataError(message.replace("{what}", what), file=file, field=field)

    if {"pair_id", "annotator", "strength"} <= cols:
        return "judgements"
    if {"question", "a_text", "b_text"} <= cols:
        return "pairs"
    if {"chosen", "rejected"} <= cols and sample is not None and isinstance(sample.get("chosen"), list):
        return "trl_preference"  # message lists (also `export --trl`, which keeps `question` beside them)
    if {"question", "chosen", "rejected"} <= cols:
        return "vi_alpaca_preference"
    if {"prompt", "chosen", "rejected"} <= cols:
        return "trl_preference"
    if {"chosen", "rejected"} <= cols:
        if sample is not None and isinstance(sample.get("chosen"), list):
            return "trl_preference"
        return "hh_rlhf"
    half = cols & {"chosen", "rejected"}
    if half:  # one side of a preference pair: a broken preference row, not a prompts file
        (missing,) = {"chosen", "rejected"} - half
        raise fail(
            f"{{what}} has {next(iter(half))!r} but no {missing!r}: it looks like a broken preference "
            "row (a preference row needs question or prompt, chosen and rejected; a prompts file has neither)",
            missing,
        )
    if {"instruction", "output"} <= cols:
        return "alpaca"
    if {"prompt", "response"} <= cols:
        return "prompt_response"
    if cols & {"question", "prompt", "instruction"}:
        return "prompts"
    raise fail(
        f"unknown format: columns {sorted(cols)} match none of the formats, which need: {needed_columns()}; "
        "map your names with --columns NAME=COLUMN,… (e.g. --columns question=instruction)"
    )


# ---------------------------------------------------------------------------------------------
# Field access with located errors
# ---------------------------------------------------------------------------------------------


def text_field(rec: Mapping[str, Any], name: str, loc: Location, *, allow_empty: bool = False) -> str:
    if name not in rec or rec[name] is None:
        raise loc.error("missing field", name)
    value = rec[name]
    if not isinstance(value, str):
        raise loc.error(f"must be text, got {type(value).__name__}", name)
    if not allow_empty and not value.strip():
        raise loc.error("empty text", name)
    return value


def opt_text(rec: Mapping[str, Any], name: str, loc: Location) -> str | None:
    value = rec.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise loc.error(f"must be text, got {type(value).__name__}", name)
    return value or None


def strength_field(rec: Mapping[str, Any], name: str, loc: Location) -> Strength | None:
    value = rec.get(name)
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        return Strength.parse(value)
    except ValueError as e:
        raise loc.error(str(e), name) from None


# ---------------------------------------------------------------------------------------------
# Transcripts (hh-rlhf) and message lists (TRL)
# ---------------------------------------------------------------------------------------------

_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_ROLE = {"Human": "user", "Assistant": "assistant"}
_SPEAKER = {"user": "Human", "assistant": "Assistant"}


def parse_transcript(text: str, loc: Location, field: str) -> list[Turn]:
    """hh-rlhf's "\\n\\nHuman: …\\n\\nAssistant: …" into (role, content) turns."""
    parts = _TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if parts[0].strip() or len(parts) < 3:
        raise loc.error('not an hh-rlhf transcript (expected "\\n\\nHuman: …\\n\\nAssistant: …")', field)
    return [(_ROLE[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


def parse_messages(value: Any, loc: Location, field: str) -> list[Turn]:
    """TRL's [{"role": …, "content": …}, …]; plain text counts as one assistant/user message."""
    if isinstance(value, str):
        return [("assistant" if field != "prompt" else "user", value)]
    if not isinstance(value, list) or not value:
        raise loc.error(f"must be a non-empty list of messages, got {type(value).__name__}", field)
    turns = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise loc.error(f"message {i} must be {{'role': str, 'content': str}}", field)
        turns.append((m["role"], m["content"]))
    return turns


def render_turns(turns: list[Turn]) -> str:
    """One turn: its text. Several: a readable "Human: …" / "Assistant: …" transcript."""
    if len(turns) == 1:
        return turns[0][1]
    return "\n\n".join(f"{_SPEAKER.get(role, role.capitalize())}: {content}" for role, content in turns)


def split_conversations(chosen: list[Turn], rejected: list[Turn]) -> tuple[list[Turn], list[Turn], list[Turn]]:
    """Shared prompt turns (ending with a user turn) and each side's answer turns."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and chosen[n - 1][0] != "user":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _prompt_parts(turns: list[Turn], loc: Location, field: str) -> tuple[str | None, tuple[Turn, ...], str]:
    """(system, history, question) from prompt turns: the system message stays apart, the last
    user turn is the question, the turns before it are the history."""
    system = "\n\n".join(c for r, c in turns if r == "system") or None
    rest = [(r, c) for r, c in turns if r != "system"]
    if not rest or rest[-1][0] != "user" or not rest[-1][1].strip():
        raise loc.error("the prompt must end with a user turn (the question)", field)
    for i, (role, _) in enumerate(rest):
        if role not in ("user", "assistant"):
            raise loc.error(f"message {i} has role {role!r} (expected system, user or assistant)", field)
    if rest[0][0] != "user":
        raise loc.error("the conversation must start with a user turn (after an optional system message)", field)
    return system, tuple(rest[:-1]), rest[-1][1]


def history_field(rec: Mapping[str, Any], loc: Location) -> tuple[Turn, ...]:
    """The optional `history` column: earlier turns as JSON text or a list of messages."""
    try:
        return parse_turns(rec.get("history"))
    except (ValueError, TypeError) as e:
        raise loc.error(f"not a list of user/assistant messages: {e}", "history") from None


def bool_field(rec: Mapping[str, Any], name: str, loc: Location) -> bool | None:
    try:
        return parse_bool(rec.get(name), name)
    except ValueError as e:
        raise loc.error(str(e), name) from None


# ---------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------


def _meta(rec: Mapping[str, Any], side: str) -> dict[str, Any]:
    return {k: rec[f"{side}_{k}"] for k in RESPONSE_FIELDS if k != "text" and rec.get(f"{side}_{k}") is not None}


def to_preference(fmt: str, rec: Mapping[str, Any], loc: Location) -> PreferenceRow:
    """A labelled record (vi_alpaca_preference, hh_rlhf, trl_preference) as a PreferenceRow."""
    if fmt == "vi_alpaca_preference":
        question = text_field(rec, "question", loc)
        chosen = text_field(rec, "chosen", loc)
        rejected = text_field(rec, "rejected", loc)
        system = opt_text(rec, "system", loc)
        history = history_field(rec, loc)
    elif fmt == "hh_rlhf":
        c_turns = parse_transcript(text_field(rec, "chosen", loc), loc, "chosen")
        r_turns = parse_transcript(text_field(rec, "rejected", loc), loc, "rejected")
        prompt, c_ans, r_ans = split_conversations(c_turns, r_turns)
        if not prompt:
            raise loc.error("no shared Human turn before the answers", "chosen")
        system, history, question = _prompt_parts(prompt, loc, "chosen")
        chosen, rejected = _answer(c_ans, loc, "chosen"), _answer(r_ans, loc, "rejected")
    elif fmt == "trl_preference":
        c_turns = parse_messages(rec.get("chosen"), loc, "chosen")
        r_turns = parse_messages(rec.get("rejected"), loc, "rejected")
        if "prompt" in rec:
            prompt = parse_messages(rec.get("prompt"), loc, "prompt")
            c_ans, r_ans = c_turns, r_turns
        else:  # implicit prompt: both sides are whole conversations
            prompt, c_ans, r_ans = split_conversations(c_turns, r_turns)
        system, history, question = _prompt_parts(prompt, loc, "prompt" if "prompt" in rec else "chosen")
        chosen, rejected = _answer(c_ans, loc, "chosen"), _answer(r_ans, loc, "rejected")
    else:
        raise loc.error(
            f"format {fmt!r} has no preference labels"
            + (" (pairs need judgements: pass --judgements)" if fmt == "pairs" else "")
        )
    try:
        return PreferenceRow(
            question=question,
            chosen=chosen,
            rejected=rejected,
            id=opt_text(rec, "id", loc) or "",
            system=system,
            source=opt_text(rec, "source", loc),
            strength=strength_field(rec, "strength", loc),
            margin=_opt_number(rec, "margin", loc) or 0.0,
            n_annotators=_opt_count(rec, "n_annotators", loc),
            n_model_annotators=_opt_count(rec, "n_model_annotators", loc),
            agreement=_opt_number(rec, "agreement", loc),
            chosen_meta=_meta(rec, "chosen"),
            rejected_meta=_meta(rec, "rejected"),
            history=history,
            adversarial=bool(bool_field(rec, "adversarial", loc)),
            chosen_unsafe=bool_field(rec, "chosen_unsafe", loc),
            rejected_unsafe=bool_field(rec, "rejected_unsafe", loc),
            decided_by=opt_text(rec, "decided_by", loc),
            votes_chosen=_opt_votes(rec, "votes_chosen", loc),
            votes_rejected=_opt_votes(rec, "votes_rejected", loc),
            edited=opt_text(rec, "edited", loc),
            derived_from=opt_text(rec, "derived_from", loc),
            selected_by=opt_text(rec, "selected_by", loc),
        )
    except ValueError as e:
        raise loc.error(str(e)) from None


def _opt_votes(rec: Mapping[str, Any], name: str, loc: Location) -> int | None:
    """A vote count (None when the row has none, e.g. a file without judgements)."""
    return _opt_count(rec, name, loc) if _opt_number(rec, name, loc) is not None else None


def _answer(turns: list[Turn], loc: Location, field: str) -> str:
    text = render_turns(turns) if turns else ""
    if not text.strip():
        raise loc.error("empty answer", field)
    return text


def _opt_number(rec: Mapping[str, Any], name: str, loc: Location) -> float | None:
    value = rec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise loc.error(f"must be a number, got {type(value).__name__}", name)
    return None if value != value else float(value)


def _opt_count(rec: Mapping[str, Any], name: str, loc: Location) -> int:
    value = _opt_number(rec, name, loc)
    if value is None:
        return 0
    if value < 0 or not value.is_integer():
        raise loc.error(f"must be a whole number ≥ 0, got {rec[name]!r}", name)
    return int(value)


def to_prompt(fmt: str, rec: Mapping[str, Any], loc: Location) -> Prompt:
    """The prompt of a record in any format (judgements have none)."""
    source = opt_text(rec, "source", loc)
    adversarial = bool(bool_field(rec, "adversarial", loc))
    if fmt in ("vi_alpaca_preference", "pairs") or (fmt == "prompts" and "question" in rec):
        return Prompt(
            text_field(rec, "question", loc),
            system=opt_text(rec, "system", loc),
            source=source,
            id=opt_text(rec, "prompt_id", loc) or "",
            history=history_field(rec, loc),
            adversarial=adversarial,
        )
    if fmt == "alpaca" or (fmt == "prompts" and "instruction" in rec):
        instruction = text_field(rec, "instruction", loc)
        extra = opt_text(rec, "input", loc)
        question = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        return Prompt(question, source=source, adversarial=adversarial)
    if fmt in ("prompt_response", "prompts"):
        if isinstance(rec.get("prompt"), list):  # TRL's conversational prompt-only form
            system, history, question = _prompt_parts(parse_messages(rec["prompt"], loc, "prompt"), loc, "prompt")
            return Prompt(question, system=system, source=source, history=history, adversarial=adversarial)
        return Prompt(
            text_field(rec, "prompt", loc),
            system=opt_text(rec, "system", loc),
            source=source,
            history=history_field(rec, loc),
            adversarial=adversarial,
        )
    if fmt in ("hh_rlhf", "trl_preference"):
        return dataclasses.replace(to_preference(fmt, rec, loc).prompt, source=source)
    raise loc.error(f"format {fmt!r} holds no prompts")


def to_response_text(fmt: str, rec: Mapping[str, Any], loc: Location) -> str | None:
    """The single answer of an instruction/answer record (alpaca, prompt_response), else None."""
    if fmt == "alpaca":
        return text_field(rec, "output", loc)
    if fmt == "prompt_response":
        return text_field(rec, "response", loc)
    return None


def to_pair(fmt: str, rec: Mapping[str, Any], loc: Location) -> Pair:
    """A prefkit pairs record, or a labelled record as a pair with chosen as `a`."""
    if fmt != "pairs":
        return to_preference(fmt, rec, loc).to_pair()
    text_field(rec, "question", loc)
    for side in ("a", "b"):
        text_field(rec, f"{side}_text", loc)
    try:
        return Pair.from_row(rec)
    except (ValueError, TypeError) as e:
        raise loc.error(str(e), _field_in(str(e), rec)) from None


def to_judgement(fmt: str, rec: Mapping[str, Any], loc: Location) -> Judgement:
    if fmt != "judgements":
        raise loc.error(f"expected judgements (pair_id, annotator, preferred, strength), got format {fmt!r}")
    for name in ("pair_id", "annotator"):
        text_field(rec, name, loc)
    strength_field(rec, "strength", loc)
    if rec.get("strength") is None:
        raise loc.error("missing field", "strength")
    try:
        return Judgement.from_row(rec)
    except (ValueError, TypeError) as e:
        raise loc.error(str(e), _field_in(str(e), rec)) from None


def _field_in(message: str, rec: Mapping[str, Any]) -> str | None:
    """The field a schema ValueError names first ("seconds must be a number" -> "seconds")."""
    word = message.split(" ", 1)[0]
    return word if word in rec else None
