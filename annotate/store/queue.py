"""The work queue: claims as leases (the user's held pair first, then a pair an undo put down, then
a gold pair when one is due (`prefkit.annotate.store.gold`), then skipped pairs, then the walk in
queue order: a prioritised project's ranked pairs first, `priorities`), submit, skip and report.
Undo: `undo`.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.claims import LeaseLost, NotAssigned
from prefkit.annotate.store.connection import _LookAgain
from prefkit.annotate.store.edits import check_edit_allowed
from prefkit.annotate.store.gold import GoldStore
from prefkit.annotate.store.members import MemberStore
from prefkit.annotate.store.predictions import Suggestion
from prefkit.annotate.store.priorities import PriorityStore
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
    _PICK_PUT_DOWN,
    _PICK_PUT_DOWN_PG,
    _PICK_SKIPPED,
    _PICK_SKIPPED_PG,
    _REAP,
    _REAP_EVERY,
    _RENEW,
    _REUSE,
    _SUBMITTED,
    A,
    _release,
)
from prefkit.annotate.tables import ACTIVE, EXPIRED, REPORTED, SKIPPED, WITHDRAWN
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Pair


class QueueStore(GoldStore, PriorityStore, MemberStore):
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

        def run(conn: Connection) -> Assignment | NotAssigned | None:
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
            if held is not None and held.may_label:
                conn.execute(_RENEW, {"aid": held.id, "expires": expires})
                return _assignment(held, proj.name, name, expires)
            if held is not None:  # held, but taken off the project since: the pair goes back
                self._put_down(conn, uid, proj.id)
                return NotAssigned(name, proj.name)

            if not self._may_label(conn, proj.id, uid):
                raise NotAssigned(name, proj.name)
            # Resume the walk after this user's last pair, so that pairs they judged and others
            # have not finished yet are not rescanned on every claim; from the start only when
            # nothing is left ahead (pairs freed behind them are meanwhile others' to take).
            after = self._cursor.get((proj.id, uid))
            params = {"pid": proj.id, "uid": uid, "after": _BEFORE_ALL}
            cand = (
                self._pick_put_down(conn, params)  # a pair an undo put down (by any process) comes back first
                or self._gold_step(conn, proj, uid, params)  # a gold pair when due; raises when the user is paused
                or self._pick_skipped(conn, params)
                or self._pick(conn, params, after)
            )
            if cand is None:
                # Before saying "nothing left": free the leases that ran out since the last reap.
                # On PostgreSQL this also waits for a concurrent claim that is reaping them right
                # now (its rows are locked until it commits), so the next look sees its freed pairs.
                _release(conn, conn.execute(_REAP, {"pid": proj.id, "now": now}).scalars().all())
                self._last_reap[proj.id] = now
                cand = self._pick_put_down(conn, params) or self._pick_skipped(conn, params)
                cand = cand or self._pick(conn, params, None, restart=True)
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
                self._advance(proj.id, uid, cand)
            return Assignment(aid, proj.name, name, pair, order, now, expires, cand.is_calibration)

        try:
            found = self._retrying(run)
        except _LookAgain:  # still racing after every retry: "nothing now", never a crash
            return None
        if isinstance(found, NotAssigned):  # raised after the transaction put the pair down
            raise found
        return found if isinstance(found, Assignment) else None

    def _pick(
        self, conn: Connection, params: dict[str, Any], after: int | None, restart: bool = False
    ) -> Row[Any] | None:
        """The first open pair for this user: a ranked one when the project is prioritised
        (`_pick_ranked`; from the front with `restart`), else the first after queue position
        `after` (then from the start); on PostgreSQL passing over pairs other transactions hold
        locked."""
        ranked = self._pick_ranked(conn, params, resume=not restart)
        if ranked is not None:
            return ranked
        for start in ([after] if after is not None else []) + [_BEFORE_ALL]:
            cand = conn.execute(_PICK_PG if self._pg else _PICK, {**params, "after": start}).first()
            if cand is not None:
                return cand
        return None

    def _pick_put_down(self, conn: Connection, params: dict[str, Any]) -> Row[Any] | None:
        """A pair this user put down when an undo brought an earlier one back (`undo`): it
        comes next, whichever process serves the claim (the mark is in the store)."""
        return conn.execute(_PICK_PUT_DOWN_PG if self._pg else _PICK_PUT_DOWN, params).first()

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

    def submit(
        self, assignment_id: int, user: User | str, judgement: Judgement, suggestion: Suggestion | None = None
    ) -> Judgement:
        """Record the user's judgement on their assignment and return what is stored.

        Idempotent per (user, pair): a second submit (double click, rerun, another tab) returns
        the first judgement unchanged — use `change_judgement` to change it. The shown order and
        annotator are taken from the assignment, not from `judgement`.

        Only a valid claim takes a judgement (`ClaimRefused`, nothing recorded, otherwise): the
        user is enabled and may still label the project (`NotAssigned`), and either still holds
        the lease or, the lease having run out, the pair still needs the judgement (then a human's
        work is not thrown away; else `LeaseLost`): no pair ever ends over its overlap. A skipped,
        reported or withdrawn pair takes none. `suggestion` is the model suggestion the page showed
        with the pair (or held back), stored with the judgement.
        """
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> Judgement:
            a = self._own_assignment(conn, assignment_id, name)
            pair = Pair.from_row(a.data)
            if a.judgement_id is not None:
                return _judgement(conn.execute(_JUDGEMENT, {"jid": a.judgement_id}).one(), pair.pair_id, name)
            if a.status in (SKIPPED, REPORTED, WITHDRAWN):
                raise DataError(f"assignment {assignment_id} was {a.status}; it takes no judgement", field="status")
            if a.status == EXPIRED and a.done + a.held >= a.required:
                raise LeaseLost(a.pair_id)
            _check_judgement(judgement, pair)
            if judgement.edited is not None:  # only then: a plain submit reads nothing more
                check_edit_allowed(conn, a.project_id)
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
                    "suggestion": None if suggestion is None else suggestion.to_json(),
                    **row,
                },
            )
            self._note_gold_answer(conn, a, row, now)
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
                suggestion=None if suggestion is None else suggestion.to_json(),
                edited=row["edited"],
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
            a = self._own_assignment(conn, assignment_id, name)  # enabled, and still on the project
            if a.status not in (ACTIVE, EXPIRED):
                return  # already submitted/skipped/reported: a repeated click changes nothing
            conn.execute(update(A).where(A.id == a.id).values(status=status, finished_at=self.now(), reason=reason))
            if a.status == ACTIVE:
                _release(conn, [a.pair_row_id])

        self._retrying(run)

    def _own_assignment(self, conn: Connection, assignment_id: int, name: str) -> Row[Any]:
        """The assignment with its pair, owner and any judgement; it must be `name`'s, `name`
        must not be disabled, and must still be allowed to label its project (`NotAssigned`)."""
        a = conn.execute(_OWN_PG if self._pg else _OWN, {"aid": assignment_id}).first()
        if a is None or a.user_name != name:
            raise DataError(f"assignment {assignment_id} is not held by {name!r}", field="assignment_id")
        if a.disabled:
            raise ConfigError(f"user {name!r} is disabled")
        if not a.may_label:
            raise NotAssigned(name, a.project_name)
        return a

    def _put_down(self, conn: Connection, uid: int, project_id: int) -> None:
        """End the user's active leases in a project, giving their pairs back to the queue."""
        held = conn.execute(
            update(A)
            .where(A.user_id == uid, A.project_id == project_id, A.status == ACTIVE)
            .values(status=EXPIRED)
            .returning(A.pair_row_id)
        ).all()
        _release(conn, [h.pair_row_id for h in held])
