"""The store's tables (SQLAlchemy 2 ORM): projects, pairs, users, sign-in sessions, assignments
(claims/leases) and judgements.

The queue's invariants live in the schema where they can: one assignment and one judgement per
(pair, user) ever, so nobody judges a pair twice and a double submit cannot record twice even if
two processes race. `pairs.done` / `pairs.held` are counters kept in the same transaction as the
rows they count, so the claim query reads one row per candidate pair.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Assignment statuses: a claim is `active` until submitted, skipped, reported, or its lease
# runs out (`expired`); `withdrawn` when its judgement was withdrawn.
ACTIVE, SUBMITTED, SKIPPED, REPORTED, EXPIRED, WITHDRAWN = (
    "active",
    "submitted",
    "skipped",
    "reported",
    "expired",
    "withdrawn",
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite keeps no zone; it gets naive UTC and back)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(DateTime(timezone=dialect.name != "sqlite"))


class Base(DeclarativeBase):
    pass


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer)
    calibration: Mapped[float] = mapped_column(Float)
    calibration_overlap: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PairRow(Base):
    __tablename__ = "pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    pair_id: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # Pair.to_row()
    # Seeded shuffle: the queue hands pairs out in this order (calibration pairs first).
    position: Mapped[int] = mapped_column(BigInteger)
    is_calibration: Mapped[bool] = mapped_column(Boolean, default=False)
    required: Mapped[int] = mapped_column(Integer)  # judgements this pair needs
    done: Mapped[int] = mapped_column(Integer, default=0)  # judgements recorded (not withdrawn)
    held: Mapped[int] = mapped_column(Integer, default=0)  # active leases
    complete: Mapped[bool] = mapped_column(Boolean, default=False)  # done >= required
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("project_id", "pair_id", name="uq_pairs_project_pair"),
        # The claim query walks open pairs of one project in queue order; the counters ride
        # along so that counting open pairs never reads the (large) rows themselves.
        Index("ix_pairs_queue", "project_id", "complete", "position", "done", "held", "required"),
    )


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_key: Mapped[str] = mapped_column(String(64), unique=True)  # public half of the token
    token_hash: Mapped[str] = mapped_column(String(256))  # salted hash of the secret half
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProjectMemberRow(Base):
    """Who may label a project. A project with no members is open to every annotator; once an
    admin assigns someone, only its members (and admins) may claim its pairs."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProjectSafetyLabelsRow(Base):
    """Projects that ask for Llama 2's safety label of each pair (the preferred response is safe
    and the other not / both safe / both unsafe): the Label page then requires it. A table of its
    own, so a store made before it opens unchanged (`create_all` adds missing tables)."""

    __tablename__ = "project_safety_labels"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SessionRow(Base):
    """Who is signed in: a browser tab keeps only the session key; the store knows the user."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssignmentRow(Base):
    """A claim on one pair by one user. status: active, submitted, skipped, reported, expired,
    withdrawn. An expired claim is reused if the same user claims the pair again."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    shown_left: Mapped[str] = mapped_column(String(100))
    shown_right: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # for reports

    __table_args__ = (
        UniqueConstraint("pair_row_id", "user_id", name="uq_assignments_pair_user"),
        Index("ix_assignments_user_status", "user_id", "project_id", "status"),
        Index("ix_assignments_status_expiry", "status", "expires_at"),
    )


class JudgementRow(Base):
    __tablename__ = "judgements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    preferred: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strength: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer)  # -3..3 in generation order (negative prefers a)
    shown_left: Mapped[str] = mapped_column(String(100))
    shown_right: Mapped[str] = mapped_column(String(100))
    unsafe: Mapped[list[str]] = mapped_column(JSON, default=list)
    rationale: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "user_id", name="uq_judgements_pair_user"),
        Index("ix_judgements_project_created", "project_id", "created_at"),
        Index("ix_judgements_user_created", "user_id", "created_at"),
    )


class SignInRow(Base):
    """One sign-in attempt with a token: who it named (when the token's key matched a user),
    from which client (an IP address, or the browser tab when there is none), and how it went:
    `ok`, `bad-token`, `unknown` (no such key), `disabled`, `throttled` (refused unchecked while
    waiting out earlier failures), or `reset` (an admin reset the token or re-enabled the user,
    which clears the wait). Failures since the last success slow the next attempt down."""

    __tablename__ = "sign_ins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    client: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_sign_ins_user_at", "user_id", "at"),
        Index("ix_sign_ins_client_at", "client", "at"),
    )
