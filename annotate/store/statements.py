"""The queue's statements, built once: building SQLAlchemy statements costs more than running
them on SQLite, and these run on every claim and submit. `_release` gives held slots back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, false, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.tables import (
    ACTIVE,
    EXPIRED,
    SKIPPED,
    SUBMITTED,
    AssignmentRow,
    JudgementRow,
    PairRow,
    ProjectMemberRow,
    ProjectRow,
    ProjectSafetyLabelsRow,
    UserRow,
)

A, J, M, P, U = AssignmentRow, JudgementRow, ProjectMemberRow, PairRow, UserRow

_b = bindparam
_SAFETY_LABELS = exists().where(ProjectSafetyLabelsRow.project_id == ProjectRow.id).label("safety_labels")
_REAP_EVERY = timedelta(seconds=1)
_BEFORE_ALL = -(2**56) - 1  # below every queue position (calibration pairs sit in [-2^56, 0))
_USER = select(U.id, U.name, U.is_admin, U.disabled, U.is_reviewer).where(U.name == _b("name"))
# Whether an assignment's user may still label its project (admins always; others while the
# project is open or they are a member): checked by every write on an assignment.
_ADMIN = UserRow.__table__.alias("admin")  # its own name: the statements below also join users
_MAY_LABEL_A = or_(
    exists().where(_ADMIN.c.id == A.user_id, _ADMIN.c.is_admin),
    ~exists().where(M.project_id == A.project_id),
    exists().where(M.project_id == A.project_id, M.user_id == A.user_id),
).label("may_label")
_REAP = (
    update(A)
    .where(A.project_id == _b("pid"), A.status == ACTIVE, A.expires_at <= _b("now"))
    .values(status=EXPIRED)
    .returning(A.pair_row_id)
)
_HELD = (
    select(A.id, A.shown_left, A.shown_right, A.claimed_at, P.data, P.is_calibration, A.pair_row_id, _MAY_LABEL_A)
    .join(P, P.id == A.pair_row_id)
    .where(A.user_id == _b("uid"), A.project_id == _b("pid"), A.status == ACTIVE)
    .order_by(A.claimed_at, A.id)
    .limit(1)
)
_RENEW = update(A).where(A.id == _b("aid")).values(expires_at=_b("expires"))
# What every pick reads of its candidate pair, and what makes a pair open to this user now.
_CANDIDATE = (P.id, P.pair_id, P.data, P.is_calibration, P.position)
_OPEN = (
    exists().where(U.id == _b("uid"), U.disabled == false()),
    P.complete == false(),
    P.done + P.held < P.required,
)
_EXPIRED_ID = (
    select(A.id)
    .where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status == EXPIRED)
    .scalar_subquery()
    .label("expired_id")
)
_NEVER_MINE = ~exists().where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status != EXPIRED)
_PICK = (
    select(*_CANDIDATE, _EXPIRED_ID)
    .where(*_OPEN, P.project_id == _b("pid"), P.position > _b("after"), _NEVER_MINE)
    .order_by(P.position)
    .limit(1)
)
# A pair someone skipped, open, and never this user's: found from the skipped assignments.
_SKIPPER = AssignmentRow.__table__.alias("skipper")
_PICK_SKIPPED = (
    select(*_CANDIDATE, _EXPIRED_ID, literal(True).label("returned"))
    .select_from(_SKIPPER)
    .join(P, P.id == _SKIPPER.c.pair_row_id)
    .where(
        _SKIPPER.c.status == SKIPPED,
        _SKIPPER.c.project_id == _b("pid"),
        _SKIPPER.c.user_id != _b("uid"),
        *_OPEN,
        _NEVER_MINE,
    )
    .order_by(P.position)
    .limit(1)
)
_PICK_SKIPPED_PG = _PICK_SKIPPED.with_for_update(skip_locked=True, of=P)
# A pair this user put down when an undo brought back an earlier one (`undo`): theirs first, in
# queue order, while it is still open. Kept in the store, so any process serves it next.
_PICK_PUT_DOWN = (
    select(*_CANDIDATE, A.id.label("expired_id"), literal(True).label("returned"))
    .join(P, P.id == A.pair_row_id)
    .where(
        A.user_id == _b("uid"),
        A.project_id == _b("pid"),
        A.status == EXPIRED,
        A.put_down_at.is_not(None),
        *_OPEN,
    )
    .order_by(P.position)
    .limit(1)
)
_PICK_PUT_DOWN_PG = _PICK_PUT_DOWN.with_for_update(skip_locked=True, of=P)
_MAY_LABEL = select(
    or_(
        U.is_admin,
        ~exists().where(M.project_id == _b("pid")),
        exists().where(M.project_id == _b("pid"), M.user_id == U.id),
    )
).where(U.id == _b("uid"))
# PostgreSQL: lock the chosen pair and let concurrent claims pass over it to the next one.
_PICK_PG = _PICK.with_for_update(skip_locked=True, of=P)
_PICK_PG_WAIT = _PICK.with_for_update(of=P)
_ANY_OPEN = _PICK.with_only_columns(P.id)  # the same test, unlocked, in a fresh snapshot
_LOCK_USER = select(U.id).where(U.id == _b("uid")).with_for_update(key_share=True)  # FOR NO KEY UPDATE
_LEASE: dict[str, Any] = dict(
    shown_left=_b("left"),
    shown_right=_b("right"),
    status=ACTIVE,
    claimed_at=_b("now"),
    expires_at=_b("expires"),
    finished_at=None,
    reason=None,
    put_down_at=None,
)
_REUSE = update(A).where(A.id == _b("aid")).values(**_LEASE)
_NEW = insert(A).values(pair_row_id=_b("prid"), user_id=_b("uid"), project_id=_b("pid"), **_LEASE).returning(A.id)
_HOLD = update(P).where(P.id == _b("prid")).values(held=P.held + 1)
_RELEASE = update(P).where(P.id == _b("prid")).values(held=P.held - _b("n"))
_OWN = (
    select(
        A.id,
        A.user_id,
        A.status,
        A.pair_row_id,
        A.project_id,
        A.shown_left,
        A.shown_right,
        P.data,
        U.name.label("user_name"),
        U.disabled,
        J.id.label("judgement_id"),
        P.pair_id,
        P.done,
        P.held,
        P.required,
        ProjectRow.name.label("project_name"),
        _MAY_LABEL_A,
    )
    .join(P, P.id == A.pair_row_id)
    .join(U, U.id == A.user_id)
    .join(ProjectRow, ProjectRow.id == A.project_id)
    .outerjoin(J, and_(J.pair_row_id == A.pair_row_id, J.user_id == A.user_id))
    .where(A.id == _b("aid"))
)
# Serialises two submits of the same assignment, and a submit with a claim of the same pair (the
# pair's counters decide whether a lease that ran out may still be judged).
_OWN_PG = _OWN.with_for_update(of=(A, P))
_JUDGEMENT = select(J).where(J.id == _b("jid"))
_INSERT_JUDGEMENT = insert(J)
_SUBMITTED = update(A).where(A.id == _b("aid")).values(status=SUBMITTED, finished_at=_b("now"))
_DONE = (
    update(P)
    .where(P.id == _b("prid"))
    .values(done=P.done + 1, held=P.held - _b("release"), complete=P.done + 1 >= P.required)
)


def _release(conn: Connection, pair_row_ids: Iterable[int]) -> None:
    """Give back one held slot per id (a pair may appear several times)."""
    for prid, n in Counter(pair_row_ids).items():
        conn.execute(_RELEASE, {"prid": prid, "n": n})
