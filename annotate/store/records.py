"""What the store hands out and takes in: its records (`Project`, `User`, `ImportResult`,
`Assignment`, `Progress`) built from table rows, and the checks a judgement or a text passes
before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Pair, Response, Strength


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    guidelines: str
    overlap: int
    calibration: float
    calibration_overlap: int
    seed: int
    created_at: datetime
    safety_labels: bool = False  # the Label page asks for the pair's safety label (Llama 2's bins)
    suggestions: str = "off"  # model suggestions on the Label page: off, after or before
    suggestion_source: str | None = None  # whose predictions are suggested (None: each pair's latest)
    suggestion_holdout: float = 0.0  # share of `before` claims shown no suggestion (anchoring control)
    edits: bool = False  # the Label page lets annotators edit the preferred answer (edit-and-rank)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    disabled: bool
    is_reviewer: bool = False  # may settle disagreements on the Review page (admins may too)

    @property
    def may_review(self) -> bool:
        return self.is_admin or self.is_reviewer

    @property
    def role(self) -> str:
        return "admin" if self.is_admin else "reviewer" if self.is_reviewer else "annotator"


@dataclass(frozen=True)
class ImportResult:
    added: int
    skipped: int  # already in the project (same pair_id), or repeated in the input


@dataclass(frozen=True)
class Assignment:
    """A claim (lease) on one pair. `shown_order` is (left, right) response ids as shown."""

    id: int
    project: str
    user: str
    pair: Pair
    shown_order: tuple[str, str]
    claimed_at: datetime
    expires_at: datetime
    is_calibration: bool

    @property
    def left(self) -> Response:
        return self.pair.response(self.shown_order[0])

    @property
    def right(self) -> Response:
        return self.pair.response(self.shown_order[1])


@dataclass(frozen=True)
class Progress:
    done_today: int  # this user's judgements in this project since 00:00 UTC
    left_in_queue: int  # pairs this user could still be given now, besides the one they hold
    done_total: int  # this user's judgements in this project


def _no_nul(value: str | None, field: str, error: type[DataError] | type[ConfigError] = DataError) -> None:
    """PostgreSQL text cannot hold a NUL character (SQLite could); the store refuses it on both
    backends, with one line naming the field, rather than keep it on one and fail on the other."""
    if value is not None and "\x00" in value:
        message = f"{field} contains a NUL character (\\x00), which the store cannot keep; remove it"
        raise error(message, field=field) if error is DataError else ConfigError(message)


def _project(r: Any) -> Project:
    return Project(
        id=r.id,
        name=r.name,
        guidelines=r.guidelines,
        overlap=r.overlap,
        calibration=r.calibration,
        calibration_overlap=r.calibration_overlap,
        seed=r.seed,
        created_at=r.created_at,
        safety_labels=bool(getattr(r, "safety_labels", False)),
        suggestions=getattr(r, "suggestions", None) or "off",
        suggestion_source=getattr(r, "suggestion_source", None),
        suggestion_holdout=float(getattr(r, "suggestion_holdout", None) or 0.0),
        edits=bool(getattr(r, "edits", False)),
    )


def _user(r: Any) -> User:
    return User(
        id=r.id,
        name=r.name,
        is_admin=bool(r.is_admin),
        disabled=bool(r.disabled),
        is_reviewer=bool(getattr(r, "is_reviewer", False)),
    )


def _assignment(r: Any, project: str, user: str, expires: datetime) -> Assignment:
    return Assignment(
        id=r.id,
        project=project,
        user=user,
        pair=Pair.from_row(r.data),
        shown_order=(r.shown_left, r.shown_right),
        claimed_at=r.claimed_at,
        expires_at=expires,
        is_calibration=bool(r.is_calibration),
    )


def _check_judgement(j: Judgement, pair: Pair) -> None:
    if j.pair_id != pair.pair_id:
        raise DataError(f"judgement is for pair {j.pair_id}, the assignment is pair {pair.pair_id}", field="pair_id")
    if j.preferred is not None and j.preferred not in (pair.a.id, pair.b.id):
        raise DataError(f"preferred {j.preferred!r} is not a response of pair {pair.pair_id}", field="preferred")
    bad = [r for r in j.unsafe if r not in (pair.a.id, pair.b.id)]
    if bad:
        raise DataError(f"unsafe flags name responses not in pair {pair.pair_id}: {bad}", field="unsafe")


def _judgement_values(j: Judgement, pair: Pair, shown: tuple[str, str]) -> dict[str, Any]:
    _no_nul(j.rationale, "rationale")
    _no_nul(j.edited, "edited")
    return dict(
        preferred=j.preferred,
        strength=j.strength.value,
        score=j.signed_score(pair),
        shown_left=shown[0],
        shown_right=shown[1],
        unsafe=list(j.unsafe),
        rationale=j.rationale,
        seconds=j.seconds,
        edited=j.edited,
    )


def _judgement(r: Any, pair_id: str, annotator: str) -> Judgement:
    return Judgement(
        pair_id=pair_id,
        annotator=annotator,
        preferred=r.preferred,
        strength=Strength(r.strength),
        shown_order=(r.shown_left, r.shown_right),
        unsafe=tuple(r.unsafe or ()),
        rationale=r.rationale,
        seconds=r.seconds,
        created_at=r.created_at,
        suggestion=getattr(r, "suggestion", None),
        edited=getattr(r, "edited", None),
    )
