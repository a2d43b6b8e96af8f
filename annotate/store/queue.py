"""The work queue: claims as leases (the user's held pair first, then skipped pairs, then the
walk in queue order), submit, skip, report and undo.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.connection import _LookAgain
from prefkit.annotate.store.members import MemberStore
from prefkit.annotate.store.records import (
    Assignment,
    Project,
    User,
    _assignment,
    _check_judgement,
    _judgement,
    _judgement_values,
    _no_nul,
)
from prefkit.annotate.store.statements import (
    _ANY_OPEN,
    _BEFORE_ALL,
    _DONE,
    _HELD,
    _HOLD,
    _INSERT_JUDGEMENT,
    _JUDGEMENT,
    _LOCK_USER,
    _NEW,
    _OWN,
    _OWN_PG,
    _PICK,
    _PICK_PG,
    _PICK_PG_WAIT,
    _PICK_SKIPPED,
    _PICK_SKIPPED_PG,
    _REAP,
    _REAP_EVERY,
    _RENEW,
    _REUSE,
    _SUBMITTED,
    A,
    J,
    P,
    _release,
)
from prefkit.annotate.tables import ACTIVE, EXPIRED, REPORTED, SKIPPED, SUBMITTED, WITHDRAWN
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Pair


class QueueStore(MemberStore):
    """Claims and what a user does with them."""

    def claim(self, project: str, user: User | str, lease_seconds: float = 900) -> Assignment | None:
        """The next pair for this user, as a lease of `lease_seconds`, or None when nothing is left.

        The user's still-held claim comes first (renewed), so a rerun shows the same pair. Never a
        pair the user judged, skipped or reported; never more live claims plus judgements on a
        pair than it needs. Expired leases go back to the queue here (at most once a second).
        """
        proj = self._cached_project(project)
        name = user.name if isinstance(user, User) else user
        uid = self._user_id(name)

        def run(conn: Connection) -> Assignment | None:
            now = self.now()
            expires = now + timedelta(seconds=lease_seconds)
            if self._pg:
                # One claim at a time per user (two tabs clicking at once get the same pair, as on
                # SQLite, whose writers are serialised anyway). NO KEY UPDATE: inserts that only
                # reference the user (their FK check) are not blocked.
                conn.execute(_LOCK_USER, {"uid": uid})
            if self._reap_due(proj.id, now):
                _release(conn, conn.execute(_REAP, {"pid": proj.id, "now": now}).scalars().all())
            held = conn.execute(_HELD, {"uid": uid, "pid": proj.id}).first()
            if held is not None:
                conn.execute(_RENEW, {"aid": held.id, "expires": expires})
                return _assignment(held, proj.name, name, expires)

            if not self._may_label(conn, proj.id, uid):
                raise ConfigError(f"{name!r} is not assigned to project {proj.name!r}; ask an admin")
            # Resume the walk after this user's last pair, so that pairs they judged and others
            # have not finished yet are not rescanned on every claim; from the start only when
            # nothing is left ahead (pairs freed behind them are meanwhile others' to take).
            after = self._cursor.get((proj.id, uid))
            params = {"pid": proj.id, "uid": uid, "after": _BEFORE_ALL}
            cand = self._pick_skipped(conn, params) or self._pick(conn, params, after)
            if cand is None:
                # Before saying "nothing left": free the leases that ran out since the last reap.
                # On PostgreSQL this also waits for a concurrent claim that is reaping them right
                # now (its rows are locked until it commits), so the next look sees its freed pairs.
                _release(conn, conn.execute(_REAP, {"pid": proj.id, "now": now}).scalars().all())
                self._last_reap[proj.id] = now
                cand = self._pick_skipped(conn, params) or self._pick(conn, params, None)
            if cand is None and self._pg:
                # SKIP LOCKED also skips pairs that are only busy for a moment (another claim or a
                # submit updating them): before saying "nothing left", wait for those.
                cand = conn.execute(_PICK_PG_WAIT, params).first()
                if cand is None and conn.execute(_ANY_OPEN, params).first() is not None:
                    # A pair freed by a transaction that committed after our statements began:
                    # look again in a fresh transaction (bounded by `_retrying`).
                    raise _LookAgain()
            if cand is None:
                self._active_user(conn, name)  # a disabled user is told so, not "nothing left"
                return None
            pair = Pair.from_row(cand.data)
            order = (pair.a.id, pair.b.id)
            if random.Random(f"{proj.seed}:{cand.pair_id}:{uid}").random() < 0.5:
                order = (pair.b.id, pair.a.id)
            lease = {"left": order[0], "right": order[1], "now": now, "expires": expires}
            if cand.expired_id is not None:  # this user's lease on it ran out earlier: reuse it
                aid = cand.expired_id
                conn.execute(_REUSE, {"aid": aid, **lease})
            else:
                aid = conn.execute(_NEW, {"prid": cand.id, "uid": uid, "pid": proj.id, **lease}).scalar_one()
            conn.execute(_HOLD, {"prid": cand.id})
            if not getattr(cand, "returned", False):  # a skipped pair taken out of turn leaves the walk where it was
                self._cursor[(proj.id, uid)] = cand.position
            return Assignment(aid, proj.name, name, pair, order, now, expires, cand.is_calibration)

        try:
            return self._retrying(run)
        except _LookAgain:  # still racing after every retry: "nothing now", never a crash
            return None

    def _pick(self, conn: Connection, params: dict[str, Any], after: int | None) -> Row[Any] | None:
        """The first open pair for this user after queue position `after` (then from the start);
        on PostgreSQL passing over pairs other transactions hold locked."""
        for start in ([after] if after is not None else []) + [_BEFORE_ALL]:
            cand = conn.execute(_PICK_PG if self._pg else _PICK, {**params, "after": start}).first()
            if cand is not None:
                return cand
        return None

    def _pick_skipped(self, conn: Connection, params: dict[str, Any]) -> Row[Any] | None:
        """A pair someone skipped that this user may take, before the walk: the walk resumes
        after each user's last pair, so a pair skipped behind them would otherwise reach them
        only at the end of the queue. Driven from the (few) skipped assignments."""
        return conn.execute(_PICK_SKIPPED_PG if self._pg else _PICK_SKIPPED, params).first()

    def _cached_project(self, name: str) -> Project:
        """Projects' ids and seeds never change, so the hot path looks them up once."""
        proj = self._projects.get(name)
        if proj is None:
            proj = self._projects[name] = self.get_project(name)
        return proj

    def _user_id(self, name: str) -> int:
        """Users' ids never change (users are disabled, never deleted); whether one is disabled is
        checked inside each claim and submit."""
        uid = self._user_ids.get(name)
        if uid is None:
            uid = self._user_ids[name] = self.get_user(name).id
        return uid

    def _reap_due(self, project_id: int, now: datetime) -> bool:
        last = self._last_reap.get(project_id)
        if last is not None and timedelta(0) <= now - last < _REAP_EVERY:
            return False
        self._last_reap[project_id] = now
        return True

    def submit(self, assignment_id: int, user: User | str, judgement: Judgement) -> Judgement:
        """Record the user's judgement on their assignment and return what is stored.

        Idempotent per (user, pair): a second submit (double click, rerun, another tab) returns
        the first judgement unchanged — use `change_judgement` to change it. The shown order and
        annotator are taken from the assignment, not from `judgement`. A submit after the lease
        expired is still recorded (a human's work is not thrown away) unless the user skipped,
        reported or withdrew the pair.
        """
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> Judgement:
            a = self._own_assignment(conn, assignment_id, name)
            pair = Pair.from_row(a.data)
            if a.judgement_id is not None:
                return _judgement(conn.execute(_JUDGEMENT, {"jid": a.judgement_id}).one(), pair.pair_id, name)
            if a.status in (SKIPPED, REPORTED, WITHDRAWN):
                raise DataError(f"assignment {assignment_id} was {a.status}; it takes no judgement", field="status")
            _check_judgement(judgement, pair)
            now = self.now()
            row = _judgement_values(judgement, pair, (a.shown_left, a.shown_right))
            conn.execute(
                _INSERT_JUDGEMENT,
                {
                    "pair_row_id": a.pair_row_id,
                    "user_id": a.user_id,
                    "project_id": a.project_id,
                    "assignment_id": a.id,
                    "created_at": now,
                    "updated_at": now,
                    **row,
                },
            )
            conn.execute(_SUBMITTED, {"aid": a.id, "now": now})
            conn.execute(_DONE, {"prid": a.pair_row_id, "release": 1 if a.status == ACTIVE else 0})
            return Judgement(
                pair_id=pair.pair_id,
                annotator=name,
                preferred=row["preferred"],
                strength=judgement.strength,
                shown_order=(a.shown_left, a.shown_right),
                unsafe=tuple(row["unsafe"]),
                rationale=row["rationale"],
                seconds=row["seconds"],
                created_at=now,
            )

        return self._retrying(run)

    def skip(self, assignment_id: int, user: User | str) -> None:
        """Give the pair back for others; this user is not offered it again."""
        self._finish(assignment_id, user, SKIPPED, None)

    def report(self, assignment_id: int, user: User | str, reason: str) -> None:
        """Report a problem with the pair (bad prompt, both unusable); admins see it on the
        dashboard. Like skip, the user is not offered the pair again."""
        if not reason or not reason.strip():
            raise DataError("a report needs a reason", field="reason")
        _no_nul(reason, "reason")
        self._finish(assignment_id, user, REPORTED, reason.strip())

    def _finish(self, assignment_id: int, user: User | str, status: str, reason: str | None) -> None:
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> None:
            a = self._own_assignment(conn, assignment_id, name)
            if a.status not in (ACTIVE, EXPIRED):
                return  # already submitted/skipped/reported: a repeated click changes nothing
            conn.execute(update(A).where(A.id == a.id).values(status=status, finished_at=self.now(), reason=reason))
            if a.status == ACTIVE:
                _release(conn, [a.pair_row_id])

        self._retrying(run)

    def undo_last(self, project: str, user: User | str, lease_seconds: float = 900) -> str | None:
        """Take back the user's last action in `project` (a judgement, a skip or a report) done
        within the last `lease_seconds`: the judgement is deleted (or the skip/report undone) and
        the pair is theirs again as a fresh lease, shown by the next `claim`; the pair they held
        meanwhile goes back to the queue, to come next after it. Called again, it goes one
        action further back. Returns what was undone ("judgement", "skip", "report"), or None
        when there is nothing to undo. A skipped or reported pair another annotator has taken
        since (it needs no more judgements) cannot be undone: DataError."""
        proj = self._cached_project(project)
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> str | None:
            u = self._active_user(conn, name)
            now = self.now()
            last = conn.execute(
                select(A.id, A.status, A.pair_row_id, P.done, P.held, P.required, P.pair_id)
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
            if last.status == SUBMITTED:
                conn.execute(delete(J).where(J.assignment_id == last.id))
                conn.execute(  # one judgement fewer, one lease more: done + held is unchanged
                    update(P)
                    .where(P.id == last.pair_row_id)
                    .values(done=P.done - 1, held=P.held + 1, complete=P.done - 1 >= P.required)
                )
            else:
                if last.done + last.held >= last.required:
                    raise DataError(
                        f"pair {last.pair_id} was taken by other annotators since; the "
                        f"{'skip' if last.status == SKIPPED else 'report'} stays",
                        field="undo",
                    )
                conn.execute(_HOLD, {"prid": last.pair_row_id})
            held = conn.execute(
                update(A)
                .where(A.user_id == u.id, A.project_id == proj.id, A.status == ACTIVE)
                .values(status=EXPIRED)
                .returning(A.pair_row_id)
            ).all()
            _release(conn, [h.pair_row_id for h in held])
            positions = conn.execute(select(P.position).where(P.id.in_([h.pair_row_id for h in held]))).scalars().all()
            if positions:  # the pair put down comes next after the undone one
                key = (proj.id, u.id)
                self._cursor[key] = min([self._cursor.get(key, min(positions))] + [p - 1 for p in positions])
            conn.execute(
                update(A)
                .where(A.id == last.id)
                .values(
                    status=ACTIVE,
                    claimed_at=now,
                    expires_at=now + timedelta(seconds=lease_seconds),
                    finished_at=None,
                    reason=None,
                )
            )
            return {SUBMITTED: "judgement", SKIPPED: "skip", REPORTED: "report"}[last.status]

        return self._retrying(run)

    def _own_assignment(self, conn: Connection, assignment_id: int, name: str) -> Row[Any]:
        """The assignment with its pair, owner and any judgement; it must be `name`'s, and
        `name` must not be disabled."""
        a = conn.execute(_OWN_PG if self._pg else _OWN, {"aid": assignment_id}).first()
        if a is None or a.user_name != name:
            raise DataError(f"assignment {assignment_id} is not held by {name!r}", field="assignment_id")
        if a.disabled:
            raise ConfigError(f"user {name!r} is disabled")
        return a
