"""The data model every room passes around: prompt, response, pair, judgement, preference row,
and Llama 2's four-level strength scale with its two margin schemes.

Plain dataclasses (no torch, no pandas) so that importing the model is instant. Each type has a
flat `to_row()` / `from_row()` for Parquet/JSONL/SQL, and ids are derived from content so that the
same prompt or pair read twice gets the same id (re-imports are idempotent).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any


def content_id(*parts: Any, prefix: str = "", length: int = 16) -> str:
    """A stable id from content: the same parts always give the same id."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x1f")
    return prefix + h.hexdigest()[:length]


# ---------------------------------------------------------------------------------------------
# Strength scale (Llama 2, section 3.2.1) and margins (Llama 2, Table 27)
# ---------------------------------------------------------------------------------------------


class MarginScheme(str, Enum):
    NONE = "none"
    SMALL = "small"
    LARGE = "large"


class Strength(str, Enum):
    """How much better the preferred response is. Ordered strongest first."""

    SIGNIFICANTLY_BETTER = "significantly_better"
    BETTER = "better"
    SLIGHTLY_BETTER = "slightly_better"
    NEGLIGIBLY_BETTER = "negligibly_better"  # with a side: margin 0; with none: "unsure"

    @property
    def level(self) -> int:
        """3 for significantly better … 0 for negligibly better (and unsure)."""
        return _LEVEL[self]

    @property
    def label(self) -> str:
        return _LABEL[self]

    def margin(self, scheme: MarginScheme | str = MarginScheme.SMALL) -> float:
        return MARGINS[MarginScheme(scheme)][self]

    @classmethod
    def from_level(cls, level: int) -> Strength:
        for s, lv in _LEVEL.items():
            if lv == level:
                return s
        raise ValueError(f"strength level must be 0..3, got {level!r}")

    @classmethod
    def parse(cls, value: Any) -> Strength:
        """Accepts the enum value, its label, common spellings, or a level 0..3."""
        if isinstance(value, Strength):
            return value
        if isinstance(value, bool):
            raise ValueError(f"not a strength: {value!r}")
        if isinstance(value, (int, float)) and float(value).is_integer():
            return cls.from_level(int(value))
        if isinstance(value, str):
            key = value.strip().lower().replace("-", " ").replace("_", " ")
            key = " ".join(key.split())
            if key in _ALIASES:
                return _ALIASES[key]
        raise ValueError(f"not a strength: {value!r} (expected one of {', '.join(s.value for s in cls)})")


_LEVEL = {
    Strength.SIGNIFICANTLY_BETTER: 3,
    Strength.BETTER: 2,
    Strength.SLIGHTLY_BETTER: 1,
    Strength.NEGLIGIBLY_BETTER: 0,
}
_LABEL = {
    Strength.SIGNIFICANTLY_BETTER: "significantly better",
    Strength.BETTER: "better",
    Strength.SLIGHTLY_BETTER: "slightly better",
    Strength.NEGLIGIBLY_BETTER: "negligibly better",
}
_ALIASES = {
    "significantly better": Strength.SIGNIFICANTLY_BETTER,
    "significantly": Strength.SIGNIFICANTLY_BETTER,
    "better": Strength.BETTER,
    "slightly better": Strength.SLIGHTLY_BETTER,
    "slightly": Strength.SLIGHTLY_BETTER,
    "negligibly better": Strength.NEGLIGIBLY_BETTER,
    "negligibly": Strength.NEGLIGIBLY_BETTER,
    "negligible": Strength.NEGLIGIBLY_BETTER,
    "negligibly better / unsure": Strength.NEGLIGIBLY_BETTER,
    "unsure": Strength.NEGLIGIBLY_BETTER,
}

# Llama 2, Table 27: margin m(r) added inside the ranking loss -log σ(r_c − r_r − m(r)).
MARGINS: dict[MarginScheme, dict[Strength, float]] = {
    MarginScheme.NONE: {s: 0.0 for s in Strength},
    MarginScheme.SMALL: {
        Strength.SIGNIFICANTLY_BETTER: 1.0,
        Strength.BETTER: 2.0 / 3.0,
        Strength.SLIGHTLY_BETTER: 1.0 / 3.0,
        Strength.NEGLIGIBLY_BETTER: 0.0,
    },
    MarginScheme.LARGE: {
        Strength.SIGNIFICANTLY_BETTER: 3.0,
        Strength.BETTER: 2.0,
        Strength.SLIGHTLY_BETTER: 1.0,
        Strength.NEGLIGIBLY_BETTER: 0.0,
    },
}


# Llama 2's scale as the annotator's row, left (A) to right (B): a side with each of the four
# levels, "negligibly better" included, and "unsure" (no side) in the middle. -4 = A significantly
# better, -1 = A negligibly better, 0 = unsure, 1 = B negligibly better, 4 = B significantly better.
CHOICE_LABELS: dict[int, str] = {
    -4: "A significantly better",
    -3: "A better",
    -2: "A slightly better",
    -1: "A negligibly better",
    0: "Unsure",
    1: "B negligibly better",
    2: "B slightly better",
    3: "B better",
    4: "B significantly better",
}

# The earlier 7-point row (no side for "negligibly better"), kept for callers and stored data that
# use it: -3 = A significantly better, 0 = negligibly different / unsure, +3 = B significantly better.
SEVEN_POINT_LABELS: dict[int, str] = {
    -3: "A significantly better",
    -2: "A better",
    -1: "A slightly better",
    0: "Negligibly different / unsure",
    1: "B slightly better",
    2: "B better",
    3: "B significantly better",
}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def _require_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def _opt_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and math.isnan(value):
        return None
    return float(value)


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _opt_mapping(value: Any, name: str) -> dict[str, Any] | None:
    """A JSON object (or its text), or None for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a JSON object, got {value!r}")
    return dict(value)


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


Turn = tuple[str, str]  # (role: "user" | "assistant", content)
ROLES = ("user", "assistant")


def parse_turns(value: Any, name: str = "history") -> tuple[Turn, ...]:
    """Turns from (role, content) pairs, {"role", "content"} dicts, or their JSON text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    out = []
    for i, t in enumerate(value):
        role, content = (t.get("role"), t.get("content")) if isinstance(t, Mapping) else tuple(t)
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"{name} turn {i} must be a user or assistant message with text, got {t!r}")
        out.append((role, content))
    return tuple(out)


def turns_json(turns: tuple[Turn, ...]) -> str | None:
    """Turns as the JSON text a `history` column holds (None for none: one-turn rows stay as they were)."""
    if not turns:
        return None
    return json.dumps([{"role": r, "content": c} for r, c in turns], ensure_ascii=False)


def prompt_content_id(question: str, system: str | None, history: tuple[Turn, ...] = ()) -> str:
    """A prompt's id; one-turn prompts keep the id they had before conversations existed."""
    if not history:
        return content_id(system or "", question, prefix="p-")
    return content_id(system or "", question, [list(t) for t in history], prefix="p-")


@dataclass(frozen=True)
class Prompt:
    """A conversation to answer: the system prompt (apart), the earlier turns (`history`, user and
    assistant alternating, starting with a user turn) and the last user turn (`question`).

    A flat question is a one-turn conversation (`history == ()`). `id` is stable: derived from
    content when the source has none, and for a one-turn prompt the same as before conversations
    existed. `adversarial` tags a prompt as red-teaming / potentially unsafe (Llama 2's safety set
    and the combined reward use it).
    """

    question: str
    id: str = ""
    system: str | None = None
    source: str | None = None
    history: tuple[Turn, ...] = ()
    adversarial: bool = False

    def __post_init__(self) -> None:
        _require_text(self.question, "question")
        object.__setattr__(self, "history", parse_turns(self.history))
        if self.history and self.history[0][0] != "user":
            raise ValueError("history must start with a user turn")
        object.__setattr__(self, "adversarial", bool(self.adversarial))
        if not self.id:
            object.__setattr__(self, "id", prompt_content_id(self.question, self.system, self.history))

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The whole conversation without the system prompt: history, then ("user", question)."""
        return (*self.history, ("user", self.question))

    def messages(self, completion: str | None = None) -> list[dict[str, str]]:
        """[system?, user, assistant, …, user, assistant=completion?] as chat-template messages."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        out += [{"role": r, "content": c} for r, c in self.turns]
        if completion is not None:
            out.append({"role": "assistant", "content": completion})
        return out

    @classmethod
    def from_messages(cls, messages: Sequence[Mapping[str, str]], **kw: Any) -> Prompt:
        """The inverse of `messages()`: system messages apart, the last user turn the question."""
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
        rest = [(m["role"], m["content"]) for m in messages if m["role"] != "system"]
        if not rest or rest[-1][0] != "user":
            raise ValueError("a prompt's messages must end with a user turn")
        return cls(rest[-1][1], system=system, history=tuple(rest[:-1]), **kw)

    def to_row(self) -> dict[str, Any]:
        return {
            "prompt_id": self.id,
            "question": self.question,
            "system": self.system,
            "source": self.source,
            "history": turns_json(self.history),
            "adversarial": self.adversarial,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Prompt:
        return cls(
            question=row["question"],
            id=_opt_str(row.get("prompt_id") or row.get("id")) or "",
            system=_opt_str(row.get("system")),
            source=_opt_str(row.get("source")),
            history=parse_turns(row.get("history")),
            adversarial=bool(row.get("adversarial") or False),
        )


RESPONSE_FIELDS = ("id", "text", "model", "adapter", "temperature", "top_p", "seed", "finish_reason", "n_tokens")


@dataclass(frozen=True)
class Response:
    """One model answer with how it was generated. `finish_reason` is "stop", "length" or None."""

    text: str
    model: str | None = None
    adapter: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    finish_reason: str | None = None
    n_tokens: int | None = None
    id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"text must be text, got {type(self.text).__name__}")
        object.__setattr__(self, "temperature", _opt_float(self.temperature, "temperature"))
        object.__setattr__(self, "top_p", _opt_float(self.top_p, "top_p"))
        object.__setattr__(self, "seed", _opt_int(self.seed, "seed"))
        object.__setattr__(self, "n_tokens", _opt_int(self.n_tokens, "n_tokens"))
        if not self.id:
            object.__setattr__(
                self,
                "id",
                content_id(self.text, self.model, self.adapter, self.temperature, self.top_p, self.seed, prefix="r-"),
            )

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_row(self, prefix: str = "") -> dict[str, Any]:
        return {prefix + k: getattr(self, k) for k in RESPONSE_FIELDS}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], prefix: str = "") -> Response:
        return cls(
            text=row[prefix + "text"],
            model=_opt_str(row.get(prefix + "model")),
            adapter=_opt_str(row.get(prefix + "adapter")),
            temperature=row.get(prefix + "temperature"),
            top_p=row.get(prefix + "top_p"),
            seed=row.get(prefix + "seed"),
            finish_reason=_opt_str(row.get(prefix + "finish_reason")),
            n_tokens=row.get(prefix + "n_tokens"),
            id=_opt_str(row.get(prefix + "id")) or "",
        )


@dataclass(frozen=True)
class Pair:
    """A prompt and two responses in generation order (`a` first). Shown order is per assignment."""

    prompt: Prompt
    a: Response
    b: Response
    pair_id: str = ""

    def __post_init__(self) -> None:
        if not self.pair_id:
            object.__setattr__(self, "pair_id", content_id(self.prompt.id, self.a.id, self.b.id, prefix="pair-"))

    def response(self, response_id: str) -> Response:
        if response_id == self.a.id:
            return self.a
        if response_id == self.b.id:
            return self.b
        raise KeyError(f"response {response_id!r} is not in pair {self.pair_id}")

    def other(self, response_id: str) -> Response:
        return self.b if self.response(response_id) is self.a else self.a

    def to_row(self) -> dict[str, Any]:
        """Flat row: pair_id, prompt_id, question, system, source, history (JSON text), adversarial, a_*, b_*."""
        return {"pair_id": self.pair_id, **self.prompt.to_row(), **self.a.to_row("a_"), **self.b.to_row("b_")}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Pair:
        return cls(
            prompt=Prompt.from_row(row),
            a=Response.from_row(row, "a_"),
            b=Response.from_row(row, "b_"),
            pair_id=_opt_str(row.get("pair_id")) or "",
        )


PAIR_COLUMNS = tuple(
    ["pair_id", "prompt_id", "question", "system", "source", "history", "adversarial"]
    + [f"a_{k}" for k in RESPONSE_FIELDS]
    + [f"b_{k}" for k in RESPONSE_FIELDS]
)


def utcnow() -> datetime:
    return datetime.now(UTC)


ANNOTATOR_KINDS = ("human", "model")
# A judgement table's columns, in order (`Judgement.to_row`; the Parquet schema is built from it).
JUDGEMENT_COLUMNS = (
    "pair_id",
    "annotator",
    "preferred",
    "strength",
    "shown_left",
    "shown_right",
    "unsafe",
    "rationale",
    "seconds",
    "created_at",
    "annotator_kind",
    "suggestion",
    "edited",
    "selected_by",
)


def signed_level(preferred: str | None, strength: Strength | str, a_id: str | None) -> int:
    """A verdict on the nine-choice scale in generation order: -4..-1 prefers response `a_id`
    (significantly … negligibly better: |value| = level + 1, so "negligibly better" is ±1, still a
    side), 1..4 prefers the other, 0 unsure (`preferred` None, or NaN from a pandas column)."""
    if preferred is None or preferred != preferred:
        return 0
    level = Strength(strength).level + 1
    return -level if preferred == a_id else level


@dataclass(frozen=True)
class Judgement:
    """One annotator's verdict on one pair.

    `preferred` is the id of the better response, or None when the annotator is unsure (then
    `strength` is NEGLIGIBLY_BETTER). A preferred response with NEGLIGIBLY_BETTER is Llama 2's
    "negligibly better": a winner with margin 0. `shown_order` is the (left, right) response ids as shown.
    `unsafe` holds the ids of responses the annotator flagged as unsafe. `kind` is who judged:
    `human` (a person) or `model` (an AI judge, e.g. `prefkit annotate judge`; never counted
    toward a pair's human overlap, and exported only when asked for). `suggestion` is the model
    suggestion shown with the pair, if any (`{"when": "before" | "after" | "holdout", "source",
    "preferred", "strength", "probability", ...}`; see `prefkit.annotate.store.predictions`).
    `edited` is the annotator's own improved version of the preferred response (Llama 3's
    edit-and-rank: edited > chosen > rejected), None when they did not edit it; it needs a
    preferred response. `selected_by` is how the annotation store's queue chose the pair
    (`calibration`, `random` or `uncertainty`; None when not known), carried by the judgement
    table so that `prefkit data export --judgements` and a round's export keep it.
    """

    pair_id: str
    annotator: str
    preferred: str | None
    strength: Strength
    shown_order: tuple[str, str] | None = None
    unsafe: tuple[str, ...] = ()
    rationale: str | None = None
    seconds: float | None = None
    created_at: datetime = field(default_factory=utcnow)
    kind: str = "human"
    suggestion: Mapping[str, Any] | None = field(default=None, hash=False)
    edited: str | None = None
    selected_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", Strength.parse(self.strength))
        if self.kind not in ANNOTATOR_KINDS:
            raise ValueError(f"annotator kind must be {' or '.join(ANNOTATOR_KINDS)}, got {self.kind!r}")
        if self.preferred is None and self.strength is not Strength.NEGLIGIBLY_BETTER:
            raise ValueError("a judgement with no preferred response must have strength negligibly_better/unsure")
        if self.edited is not None:
            if not isinstance(self.edited, str):
                raise ValueError(f"edited must be text, got {type(self.edited).__name__}")
            if not self.edited.strip():
                object.__setattr__(self, "edited", None)  # an emptied editor is no edit
            elif self.preferred is None:
                raise ValueError("edited needs a preferred response: an unsure judgement has nothing to edit")
        if self.shown_order is not None:
            object.__setattr__(self, "shown_order", tuple(self.shown_order))
        object.__setattr__(self, "unsafe", tuple(self.unsafe or ()))

    @classmethod
    def from_seven_point(
        cls, pair_id: str, annotator: str, point: int, shown_order: tuple[str, str], **kw: Any
    ) -> Judgement:
        """From the 7-point row: -3..-1 prefer the left response, 1..3 the right, 0 unsure."""
        if point not in SEVEN_POINT_LABELS:
            raise ValueError(f"7-point choice must be -3..3, got {point!r}")
        if point == 0:
            return cls(pair_id, annotator, None, Strength.NEGLIGIBLY_BETTER, shown_order=shown_order, **kw)
        preferred = shown_order[0] if point < 0 else shown_order[1]
        return cls(pair_id, annotator, preferred, Strength.from_level(abs(point)), shown_order=shown_order, **kw)

    @classmethod
    def from_choice(
        cls, pair_id: str, annotator: str, point: int, shown_order: tuple[str, str], **kw: Any
    ) -> Judgement:
        """From the choice row (`CHOICE_LABELS`): -4..-1 prefer the left response (significantly …
        negligibly better), 1..4 the right, 0 unsure (no winner)."""
        if point not in CHOICE_LABELS:
            raise ValueError(f"choice must be -4..4, got {point!r}")
        if point == 0:
            return cls(pair_id, annotator, None, Strength.NEGLIGIBLY_BETTER, shown_order=shown_order, **kw)
        preferred = shown_order[0] if point < 0 else shown_order[1]
        return cls(pair_id, annotator, preferred, Strength.from_level(abs(point) - 1), shown_order=shown_order, **kw)

    def choice(self) -> int:
        """The choice-row value (the inverse of `from_choice`): -4..-1 the left response as
        shown, 1..4 the right, 0 unsure. Judgements stored before the 9-choice row read the same
        way (their middle button was unsure)."""
        if self.preferred is None:
            return 0
        if self.shown_order is None:
            raise ValueError(f"judgement on pair {self.pair_id} has no shown order, so no choice value")
        level = self.strength.level + 1
        return -level if self.preferred == self.shown_order[0] else level

    def signed_level(self, pair: Pair) -> int:
        """-4..4 in generation order (`signed_level`): what the mean rule averages."""
        return signed_level(self.preferred, self.strength, pair.a.id)

    def seven_point(self) -> int:
        """The 7-point value the annotator clicked (the inverse of `from_seven_point`): -3..-1
        the left response as shown, 1..3 the right, 0 unsure."""
        if self.preferred is None:
            return 0
        if self.shown_order is None:
            raise ValueError(f"judgement on pair {self.pair_id} has no shown order, so no 7-point value")
        return -self.strength.level if self.preferred == self.shown_order[0] else self.strength.level

    def signed_score(self, pair: Pair) -> int:
        """-3..3 in generation order: negative prefers `a`, positive prefers `b`, 0 unsure."""
        if self.preferred is None:
            return 0
        return -self.strength.level if self.preferred == pair.a.id else self.strength.level

    def to_row(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "annotator": self.annotator,
            "preferred": self.preferred,
            "strength": self.strength.value,
            "shown_left": self.shown_order[0] if self.shown_order else None,
            "shown_right": self.shown_order[1] if self.shown_order else None,
            "unsafe": list(self.unsafe),
            "rationale": self.rationale,
            "seconds": self.seconds,
            "created_at": self.created_at.isoformat(),
            "annotator_kind": self.kind,
            "suggestion": json.dumps(dict(self.suggestion), ensure_ascii=False) if self.suggestion else None,
            "edited": self.edited,
            "selected_by": self.selected_by,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Judgement:
        created = row.get("created_at")
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        if isinstance(created, datetime) and created.tzinfo is None:
            # Naive times are UTC (what `utcnow` writes), so aggregate never compares naive and aware.
            created = created.replace(tzinfo=UTC)
        left, right = row.get("shown_left"), row.get("shown_right")
        unsafe = row.get("unsafe")
        if isinstance(unsafe, str):
            unsafe = json.loads(unsafe) if unsafe.startswith("[") else [u for u in unsafe.split(",") if u]
        return cls(
            pair_id=str(row["pair_id"]),
            annotator=str(row["annotator"]),
            preferred=_opt_str(row.get("preferred")),
            strength=Strength.parse(row["strength"]),
            shown_order=(str(left), str(right)) if left and right else None,
            unsafe=tuple(unsafe or ()),
            rationale=_opt_str(row.get("rationale")),
            seconds=_opt_float(row.get("seconds"), "seconds"),
            created_at=created or utcnow(),
            kind=_opt_str(row.get("annotator_kind")) or "human",
            suggestion=_opt_mapping(row.get("suggestion"), "suggestion"),
            edited=_opt_str(row.get("edited")),
            selected_by=_opt_str(row.get("selected_by")),
        )


# ---------------------------------------------------------------------------------------------
# Safety (Llama 2, section 3.2.1): the pair's bin from the two responses' safety
# ---------------------------------------------------------------------------------------------


class SafetyBin(str, Enum):
    """Llama 2's safety label of a pair, from the chosen response's side."""

    SAFE_VS_UNSAFE = "safe_vs_unsafe"  # the preferred response is safe and the other is not
    BOTH_SAFE = "both_safe"
    BOTH_UNSAFE = "both_unsafe"
    UNSAFE_VS_SAFE = "unsafe_vs_safe"  # the preferred one is unsafe, the other safe: Llama 2 drops these

    @classmethod
    def of(cls, chosen_unsafe: bool | None, rejected_unsafe: bool | None) -> SafetyBin | None:
        """The bin from per-response flags; None when either response's safety is unknown."""
        if chosen_unsafe is None or rejected_unsafe is None:
            return None
        if chosen_unsafe:
            return cls.BOTH_UNSAFE if rejected_unsafe else cls.UNSAFE_VS_SAFE
        return cls.SAFE_VS_UNSAFE if rejected_unsafe else cls.BOTH_SAFE


def in_safety_set(adversarial: bool | None, chosen_unsafe: bool | None, rejected_unsafe: bool | None) -> bool:
    """Llama 2's safety set takes a pair on an adversarial prompt or with a response flagged unsafe,
    except when the chosen response is unsafe and the other safe (those are left out)."""
    if SafetyBin.of(chosen_unsafe, rejected_unsafe) is SafetyBin.UNSAFE_VS_SAFE:
        return False
    return bool(adversarial or chosen_unsafe or rejected_unsafe)


def judgement_safety_bin(judgement: Judgement, pair: Pair) -> SafetyBin | None:
    """One annotator's safety label for the pair, from the responses they flagged: the preferred
    response against the other (None when they were unsure which is better)."""
    if judgement.preferred is None:
        return None
    other = pair.other(judgement.preferred).id
    return SafetyBin.of(judgement.preferred in judgement.unsafe, other in judgement.unsafe)


def parse_bool(value: Any, name: str) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"{name} must be true or false, got {value!r}")


@dataclass
class PreferenceRow:
    """One row of the exported, Vi-Alpaca-Preference-style dataset (what the trainers read).

    `strength` may be None for sources without one (e.g. hh-rlhf); then `margin` is 0.
    `chosen_meta` / `rejected_meta` hold the generation metadata (Response fields but text).
    `n_annotators`, `agreement`, `votes_chosen`, `votes_rejected`: how many judged the pair, the
    share who preferred `chosen`, and how many preferred each side (the rest were unsure; None
    when the row comes from a file without judgements). `edited`: an annotator's edit of the
    chosen answer (Llama 3's edit-and-rank, edited > chosen > rejected); `derived_from`: for a
    pair the export made from an edit (`prefkit.data.edits`), the id of the judged row it came from.
    """

    question: str
    chosen: str
    rejected: str
    id: str = ""
    system: str | None = None
    source: str | None = None
    strength: Strength | None = None
    margin: float = 0.0
    n_annotators: int = 0
    agreement: float | None = None
    chosen_meta: dict[str, Any] = field(default_factory=dict)
    rejected_meta: dict[str, Any] = field(default_factory=dict)
    history: tuple[Turn, ...] = ()
    adversarial: bool = False
    chosen_unsafe: bool | None = None
    rejected_unsafe: bool | None = None
    n_model_annotators: int = 0  # of `n_annotators`, how many were models (AI judges)
    # Who decided the winner: the aggregation rule's name ("mean", "majority", "ability"), a
    # reviewer ("review"), or a gold pair's expected answer ("gold"); None for a labelled source.
    decided_by: str | None = None
    votes_chosen: int | None = None
    votes_rejected: int | None = None
    edited: str | None = None
    derived_from: str | None = None
    # how the pair was chosen for labelling (the annotation store's export): calibration, random or
    # uncertainty; None when not known (`prefkit.annotate.store.priorities`)
    selected_by: str | None = None

    def __post_init__(self) -> None:
        _require_text(self.question, "question")
        _require_text(self.chosen, "chosen")
        _require_text(self.rejected, "rejected")
        if self.strength is not None:
            self.strength = Strength.parse(self.strength)
        self.history = parse_turns(self.history)
        self.adversarial = bool(self.adversarial)
        self.chosen_unsafe = parse_bool(self.chosen_unsafe, "chosen_unsafe")
        self.rejected_unsafe = parse_bool(self.rejected_unsafe, "rejected_unsafe")
        self.votes_chosen = _opt_int(self.votes_chosen, "votes_chosen")
        self.votes_rejected = _opt_int(self.votes_rejected, "votes_rejected")
        if self.edited is not None and not (isinstance(self.edited, str) and self.edited.strip()):
            self.edited = None
        if not self.id:
            parts: list[Any] = [self.system or "", self.question, self.chosen, self.rejected]
            if self.history:  # one-turn rows keep the ids they had before conversations existed
                parts.append([list(t) for t in self.history])
            self.id = content_id(*parts, prefix="pref-")

    @property
    def prompt(self) -> Prompt:
        return Prompt(
            self.question, system=self.system, source=self.source, history=self.history, adversarial=self.adversarial
        )

    @property
    def prompt_id(self) -> str:
        return prompt_content_id(self.question, self.system, self.history)

    @property
    def safety_bin(self) -> SafetyBin | None:
        return SafetyBin.of(self.chosen_unsafe, self.rejected_unsafe)

    @property
    def soft_label(self) -> float:
        """`soft_label` of this row's votes (1.0 without any)."""
        return soft_label(self.n_annotators, self.votes_chosen, self.votes_rejected, self.agreement)

    def with_margin(self, scheme: MarginScheme | str) -> PreferenceRow:
        m = self.strength.margin(scheme) if self.strength is not None else 0.0
        return dataclasses.replace(self, margin=m)

    def to_record(self) -> dict[str, Any]:
        """The flat exported row: id, question, chosen, rejected, strength, margin, … metadata."""
        rec: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "strength": self.strength.value if self.strength is not None else None,
            "margin": float(self.margin),
            "n_annotators": int(self.n_annotators),
            "n_model_annotators": int(self.n_model_annotators),
            "agreement": self.agreement,
            "system": self.system,
            "source": self.source,
            "history": turns_json(self.history),
            "adversarial": self.adversarial,
            "chosen_unsafe": self.chosen_unsafe,
            "rejected_unsafe": self.rejected_unsafe,
            "safety_bin": self.safety_bin.value if self.safety_bin is not None else None,
            "decided_by": self.decided_by,
        }
        for side, meta in (("chosen", self.chosen_meta), ("rejected", self.rejected_meta)):
            for k in RESPONSE_FIELDS:
                if k != "text":
                    rec[f"{side}_{k}"] = meta.get(k)
        rec.update(
            votes_chosen=self.votes_chosen,
            votes_rejected=self.votes_rejected,
            edited=self.edited,
            derived_from=self.derived_from,
            selected_by=self.selected_by,
        )
        return rec

    def to_pair(self) -> Pair:
        """A labelled row as an unlabelled pair (chosen first), e.g. to re-annotate it."""
        prompt = self.prompt
        a = Response(
            text=self.chosen, **{k: v for k, v in self.chosen_meta.items() if k != "id" and k in RESPONSE_FIELDS}
        )
        b = Response(
            text=self.rejected, **{k: v for k, v in self.rejected_meta.items() if k != "id" and k in RESPONSE_FIELDS}
        )
        return Pair(prompt, a, b)


EXPORT_COLUMNS = tuple(
    [
        "id",
        "question",
        "chosen",
        "rejected",
        "strength",
        "margin",
        "n_annotators",
        "n_model_annotators",
        "agreement",
        "system",
        "source",
        "history",
        "adversarial",
        "chosen_unsafe",
        "rejected_unsafe",
        "safety_bin",
        "decided_by",
    ]
    + [f"{side}_{k}" for side in ("chosen", "rejected") for k in RESPONSE_FIELDS if k != "text"]
    + ["votes_chosen", "votes_rejected", "edited", "derived_from", "selected_by"]
)


def soft_label(
    n_annotators: int | None,
    votes_chosen: int | None,
    votes_rejected: int | None,
    agreement: float | None = None,
) -> float:
    """The probability that `chosen` is the better answer, from the people who judged the pair:
    (votes for chosen + half the unsure votes) / judgements. Without vote counts, `agreement`
    (the share who preferred chosen; unsure then count against it); with neither (a file without
    judgements, a pair made from an edit) 1.0, the hard label."""
    n = n_annotators or 0
    if n > 0 and votes_chosen is not None:
        unsure = max(0, n - votes_chosen - (votes_rejected or 0))
        return (votes_chosen + 0.5 * unsure) / n
    if n > 0 and agreement is not None and agreement == agreement:
        return float(agreement)
    return 1.0
