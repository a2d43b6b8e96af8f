"""The store's tables (SQLAlchemy 2 ORM): projects, pairs, users, sign-in sessions, assignments
(claims/leases), judgements, and what models said about pairs (predictions, model judgements).
(claims/leases) and judgements; and for quality control, gold pairs and the answers given on
them, projects' quality settings, lifted pauses and reviewers' decisions.

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
    false,
    text,
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
    # Model suggestions on the Label page (`Store.set_suggestions`): off, after (shown once the
    # annotator has chosen) or before (shown up front); from which prediction source (None: the
    # pair's latest), and the share of `before` claims held out (shown nothing, for the
    # dashboard's anchoring comparison).
    suggestions: Mapped[str] = mapped_column(String(8), default="off", server_default="off")
    suggestion_source: Mapped[str | None] = mapped_column(String(300), nullable=True)
    suggestion_holdout: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Edit-and-rank (Llama 3): the Label page lets annotators edit the answer they prefer. Off by
    # default; a store made before this column gets it as false (`add_missing_columns`).
    edits: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


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
    # May settle disagreements on the Review page (admins may too); a store made before the role
    # gets the column with every user not a reviewer.
    is_reviewer: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


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
    withdrawn. An expired claim is reused if the same user claims the pair again; one an undo
    put down (`put_down_at`) is offered to that user before any other pair."""

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
    # When an undo put this (expired) claim's pair down: it comes back to its user first, from
    # whichever process serves the next claim. Cleared when the claim is taken up again.
    put_down_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "user_id", name="uq_assignments_pair_user"),
        Index("ix_assignments_user_status", "user_id", "project_id", "status"),
        Index("ix_assignments_status_expiry", "status", "expires_at"),
        # The claim's look for a pair put down by an undo: only the (few) marked rows.
        Index(
            "ix_assignments_put_down",
            "user_id",
            "project_id",
            sqlite_where=text("put_down_at IS NOT NULL"),
            postgresql_where=text("put_down_at IS NOT NULL"),
        ),
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
    # The model suggestion the annotator was shown with this pair, if any: {"when": "before" |
    # "after" | "holdout", "source", "preferred", "strength", "probability"} (`Suggestion`);
    # None when the project showed none (suggestions off, or no prediction for the pair).
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The annotator's edit of the preferred response (edit-and-rank), null when not edited.
    edited: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "user_id", name="uq_judgements_pair_user"),
        Index("ix_judgements_project_created", "project_id", "created_at"),
        Index("ix_judgements_user_created", "user_id", "created_at"),
    )


class SignInRow(Base):
    """One sign-in attempt with a token: who it named (when the token's key matched a user),
    from which address (`ip:…`, or `local` when there is none; rows of earlier versions may name
    a browser tab), and how it went: `ok`, `bad-token`, `unknown` (no such key), `disabled`, or
    `reset` (an admin lifted the wait of this account or address, reset its token or re-enabled
    it). Failures within 15 minutes and after the last `reset` slow down the answer to the next
    wrong token of that account and of that address (`prefkit.annotate.store.sign_in`); a correct
    token is never slowed. (`throttled`: refused unchecked, written by earlier versions only.)"""

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


class PredictionRow(Base):
    """What a model predicted for a pair: a reward model's P(b better than a) turned into a side
    and a level, or an AI judge's verdict. One row per (pair, source); recording the same source
    again replaces it. `source` names the model (a reward model's path and weights' sha256, a
    judge's engine and model); `side` is "a" or "b" in generation order (None: unsure) and
    `preferred` that response's id; `probability` is the model's probability that `preferred` is
    better (None when the model gives none, e.g. a judge's verdict)."""

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))  # reward_model | judge
    side: Mapped[str | None] = mapped_column(String(1), nullable=True)
    preferred: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strength: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "source", name="uq_predictions_pair_source"),
        Index("ix_predictions_project_source", "project_id", "source"),
    )


class ModelJudgementRow(Base):
    """A model annotator's judgement (an AI judge, `prefkit annotate judge`): apart from people's
    judgements, so it never counts toward a pair's overlap (`pairs.done` / `held` / `complete`
    never move) nor into people's figures. `verdicts` keeps what the judge answered in each order
    it was shown the pair ([{"shown": [left, right], "answer": text, "choice": -4..4 as shown,
    "signed": the same in generation order}]; both None for an answer it could not read)."""

    __tablename__ = "model_judgements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(300))
    preferred: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strength: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer)  # -3..3 in generation order (negative prefers a)
    shown_left: Mapped[str] = mapped_column(String(100))
    shown_right: Mapped[str] = mapped_column(String(100))
    verdicts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "annotator", name="uq_model_judgements_pair_annotator"),
        Index("ix_model_judgements_project_annotator", "project_id", "annotator"),
    )


# ---------------------------------------------------------------------------------------------
# Quality control: gold pairs and the answers given on them, per-project settings, lifted
# pauses, reviewers' decisions. Tables of their own, so a store made before them opens unchanged.
# ---------------------------------------------------------------------------------------------


class GoldPairRow(Base):
    """A gold pair: a pair of the project (in `pairs`, with `required` 0 and `complete` true, so
    the ordinary walk never hands it out) whose right answer is known. `preferred` is the
    expected response id; `strength` the expected level, or the lowest accepted one when
    `minimum` is true."""

    __tablename__ = "gold_pairs"

    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    preferred: Mapped[str] = mapped_column(String(100))
    strength: Mapped[str] = mapped_column(String(32))
    minimum: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_gold_pairs_project", "project_id"),)


class GoldAnswerRow(Base):
    """The first answer a user gave on a gold pair, kept when the judgement is later undone,
    changed or withdrawn: gold accuracy, qualification and pauses read these."""

    __tablename__ = "gold_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    preferred: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strength: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("pair_row_id", "user_id", name="uq_gold_answers_pair_user"),
        Index("ix_gold_answers_user", "user_id", "project_id", "created_at"),
    )


class ProjectQualityRow(Base):
    """A project's quality-control settings (`prefkit annotate quality set`); a project without a
    row has `prefkit.annotate.quality.QualityConfig`'s defaults."""

    __tablename__ = "project_quality"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QualityLiftRow(Base):
    """An admin let a user go on in a project: a failed qualification counts as passed, and a
    pause's window starts again after `at`."""

    __tablename__ = "quality_lifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_quality_lifts_user", "user_id", "project_id", "at"),)


class ReviewRow(Base):
    """A reviewer's final decision on a pair whose judgements disagree: a side and a level, or
    unsure (`preferred` null), with a note. One per pair; deciding again replaces it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    preferred: Mapped[str | None] = mapped_column(String(100), nullable=True)
    strength: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_reviews_project", "project_id"),)


class PriorityRunRow(Base):
    """One scoring of a project's open pairs by one or more reward models (`prefkit annotate
    prioritise`): the models (`[{"path", "weights", "sha256"}]`, the sha256 of each one's weights
    file), how their predictions became a priority (`method`: uncertainty or disagreement), the
    random share the queue kept, and when. `finished_at` is null while it scores; a rerun with the
    same models resumes it. The queue is ranked from a run when it finishes (`queue_ranks`)."""

    __tablename__ = "priority_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(32))
    models: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    random_share: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ranked: Mapped[int | None] = mapped_column(Integer, nullable=True)  # open pairs ranked when it finished

    __table_args__ = (Index("ix_priority_runs_project", "project_id", "started_at"),)


class PriorityScoreRow(Base):
    """A pair's priority from one run, with each model's predicted probability that response `a`
    is preferred (Bradley–Terry: sigmoid of the reward difference), in the run's model order."""

    __tablename__ = "priority_scores"

    run_id: Mapped[int] = mapped_column(ForeignKey("priority_runs.id", ondelete="CASCADE"), primary_key=True)
    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), primary_key=True)
    priority: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[float]] = mapped_column(JSON)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QueueRankRow(Base):
    """A pair's place in a prioritised queue and how it was chosen (`selected_by`: calibration,
    random or uncertainty). The claim walks open pairs by `rank` before the seeded shuffle
    (`position`); a pair with no row here is served by the shuffle (selected at random). Each
    ranking takes ranks above every earlier one; a pair complete at a ranking keeps its row with
    `rank` null, so the export still says how it was chosen."""

    __tablename__ = "queue_ranks"

    pair_row_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rank: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    selected_by: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("priority_runs.id", ondelete="SET NULL"), nullable=True)

    __table_args__ = (Index("ix_queue_ranks_walk", "project_id", "rank"),)
