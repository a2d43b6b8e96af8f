"""Undo: take back a user's last action in a project (a judgement, a skip or a report) and hand
back what it was, so the page can put the whole judgement (choice, rationale, flags, safety
label) back on screen. The pair put down meanwhile is marked in the store (`put_down_at`) and
comes next from whichever process serves the next claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.claims import NotAssigned
from prefkit.annotate.store.queue import QueueStore
from prefkit.annotate.store.records import User, _judgement
from prefkit.annotate.store.statements import A, J, P, _release
from prefkit.annotate.tables import ACTIVE, EXPIRED, REPORTED, SKIPPED, SUBMITTED
from prefkit.core.errors import DataError
from prefkit.data.schema import Judgement

UNDONE_KINDS = {SUBMITTED: "judgement", SKIPPED: "skip", REPORTED: "report"}


@dataclass(frozen=True)
class Undone:
    """What an undo took back: `kind` is "judgement", "skip" or "report"; `judgement` the deleted
    judgement (with its shown order, flags and rationale) for a judgement, `reason` the report's
    reason for a report. The pair is the user's again, as assignment `assignment_id` (the next
    `claim` returns it)."""

    kind: str
    pair_id: str
    assignment_id: int
    judgement: Judgement | None = None
    reason: str | None = None


class UndoStore(QueueStore):
    """Undo, one action at a time."""

    def undo(self, project: str, user: User | str, lease_seconds: float = 900) -> Undone | None:
        """Take back the user's last action in `project` (a judgement, a skip or a report) done
        within the last `lease_seconds`: the judgement is deleted (or the skip/report undone) and
        the pair is theirs again as a fresh lease, shown by the next `claim`, in the order it was
        shown before; the pair they held meanwhile is put down, to come next after it (from any
        process: the mark is in the store). Called again, it goes one action further back.
        Returns what was undone, or None when there is nothing to undo. A skipped or reported
        pair another annotator has taken since (it needs no more judgements) cannot be undone:
        DataError."""
        proj = self._cached_project(project)
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> Undone | None:
            u = self._active_user(conn, name)
            if not self._may_label(conn, proj.id, u.id):  # taken off the project: nothing comes back
                raise NotAssigned(name, proj.name)
            now = self.now()
            last = conn.execute(
                select(A.id, A.status, A.pair_row_id, A.reason, P.done, P.held, P.required, P.pair_id)
                .join(P, P.id == A.pair_row_id)
                .where(
                    A.user_id == u.id,
                    A.project_id == proj.id,
                    A.status.in_([SUBMITTED, SKIPPED, REPORTED]),
                    A.finished_at >= now - timedelta(seconds=lease_seconds),
                )
                .order_by(A.finished_at.desc(), A.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            judgement = None
            if last.status == SUBMITTED:
                row = conn.execute(select(J).where(J.assignment_id == last.id)).first()
                judgement = _judgement(row, last.pair_id, name) if row is not None else None
                conn.execute(delete(J).where(J.assignment_id == last.id))
                conn.execute(  # one judgement fewer, one lease more: done + held is unchanged
                    update(P)
                    .where(P.id == last.pair_row_id)
                    .values(done=P.done - 1, held=P.held + 1, complete=P.done - 1 >= P.required)
                )
            else:
                # The pair is taken back only while it has room, decided by the update itself (not
                # by the counters read above: on PostgreSQL a claim may hold the pair between that
                # read and this write; the update waits for it and checks the new row). A gold
                # pair (required 0) needs no judgements: always free.
                taken = conn.execute(
                    update(P)
                    .where(P.id == last.pair_row_id, or_(P.required == 0, P.done + P.held < P.required))
                    .values(held=P.held + 1)
                )
                if taken.rowcount != 1:
                    raise DataError(
                        f"pair {last.pair_id} was taken by other annotators since; the "
                        f"{UNDONE_KINDS[last.status]} stays",
                        field="undo",
                    )
            held = conn.execute(  # the pair on screen is put down, to come back first
                update(A)
                .where(A.user_id == u.id, A.project_id == proj.id, A.status == ACTIVE)
                .values(status=EXPIRED, put_down_at=now)
                .returning(A.pair_row_id)
            ).all()
            _release(conn, [h.pair_row_id for h in held])
            conn.execute(
                update(A)
                .where(A.id == last.id)
                .values(
                    status=ACTIVE,
                    claimed_at=now,
                    expires_at=now + timedelta(seconds=lease_seconds),
                    finished_at=None,
                    reason=None,
                    put_down_at=None,
                )
            )
            return Undone(
                UNDONE_KINDS[last.status],
                last.pair_id,
                last.id,
                judgement=judgement,
                reason=last.reason if last.status == REPORTED else None,
            )

        result: Undone | None = self._retrying(run)
        return result

    def undo_last(self, project: str, user: User | str, lease_seconds: float = 900) -> str | None:
        """`undo`, answering only what was undone: "judgement", "skip", "report", or None."""
        undone = self.undo(project, user, lease_seconds)
        return undone.kind if undone is not None else None
