"""A user's own work: their judgements (newest first), changing or withdrawing one, and their
progress in a project.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, delete, exists, false, func, select, true, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.claims import NotAssigned
from prefkit.annotate.store.edits import check_edit_allowed
from prefkit.annotate.store.members import MemberStore
from prefkit.annotate.store.records import Progress, User, _check_judgement, _judgement, _judgement_values
from prefkit.annotate.store.statements import A, J, P
from prefkit.annotate.tables import ACTIVE, EXPIRED, WITHDRAWN, ProjectRow
from prefkit.core.errors import DataError
from prefkit.data.schema import Judgement, Pair


class MyWorkStore(MemberStore):
    """What a user did and has left."""

    def my_judgements(
        self, user: User | str, project: str | None = None, limit: int = 50
    ) -> list[tuple[Pair, Judgement]]:
        """The user's most recent judgements (newest first), optionally in one project."""
        with self._tx() as conn:
            u = self._user(conn, user)
            q = select(J, P.data, P.pair_id).join(P, P.id == J.pair_row_id).where(J.user_id == u.id)
            if project is not None:
                q = q.where(J.project_id == self._project(conn, project).id)
            rows = conn.execute(q.order_by(J.updated_at.desc(), J.id.desc()).limit(limit)).all()
        return [(Pair.from_row(r.data), _judgement(r, r.pair_id, u.name)) for r in rows]

    def change_judgement(
        self, user: User | str, pair_id: str, judgement: Judgement, project: str | None = None
    ) -> Judgement:
        """Replace the user's judgement on a pair (choice, strength, flags, rationale): only while
        they are enabled and may still label its project. An edit of the preferred answer
        (edit-and-rank) stays while that answer is still preferred and `judgement` brings none; a
        new edit needs a project that takes edits."""

        def run(conn: Connection) -> Judgement:
            u = self._active_user(conn, user)
            row = self._my_judgement(conn, u, pair_id, project)  # with its pair: the one read needed
            pair = Pair.from_row(row.data)
            _check_judgement(judgement, pair)
            new = judgement
            if new.edited is not None:
                check_edit_allowed(conn, row.project_id)
            elif row.edited and new.preferred == row.preferred:  # the edit stays with the answer it improves
                new = dataclasses.replace(new, edited=row.edited)
            values = _judgement_values(new, pair, (row.shown_left, row.shown_right))
            conn.execute(update(J).where(J.id == row.id).values(updated_at=self.now(), **values))
            return _judgement(SimpleNamespace(**{**row._asdict(), **values}), pair_id, u.name)  # as now stored

        return self._retrying(run)

    def withdraw(self, user: User | str, pair_id: str, project: str | None = None) -> None:
        """Delete the user's judgement on a pair; the pair goes back to the queue for others. Only
        while they are enabled and may still label its project."""

        def run(conn: Connection) -> None:
            u = self._active_user(conn, user)
            row = self._my_judgement(conn, u, pair_id, project)
            conn.execute(delete(J).where(J.id == row.id))
            conn.execute(update(A).where(A.id == row.assignment_id).values(status=WITHDRAWN, finished_at=self.now()))
            conn.execute(
                update(P).where(P.id == row.pair_row_id).values(done=P.done - 1, complete=P.done - 1 >= P.required)
            )

        self._retrying(run)

    def _my_judgement(self, conn: Connection, user: User, pair_id: str, project: str | None) -> Row[Any]:
        q = select(J, P.data).join(P, P.id == J.pair_row_id).where(J.user_id == user.id, P.pair_id == pair_id)
        if project is not None:
            q = q.where(J.project_id == self._project(conn, project).id)
        rows = conn.execute(q).all()
        if not rows:
            raise DataError(f"{user.name!r} has no judgement on pair {pair_id}", field="pair_id")
        if len(rows) > 1:
            raise DataError(f"pair {pair_id} is in several projects; name the project", field="project")
        row = rows[0]
        if not self._may_label(conn, row.project_id, user.id):  # taken off the project: no changes
            name = conn.execute(select(ProjectRow.name).where(ProjectRow.id == row.project_id)).scalar_one()
            raise NotAssigned(user.name, name)
        return row

    def progress(self, project: str, user: User | str, pairs: int | None = None) -> Progress:
        """Done today (UTC), pairs left for this user now (besides the one they hold), and done
        in total. `pairs` is the project's number of pairs when the caller knows it (pairs are
        only ever added, so a count from a few seconds ago serves); else it is counted here."""
        with self._tx() as conn:
            proj = self._project(conn, project)
            u = self._user(conn, user)
            now = self.now()
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            mine = (J.user_id == u.id, J.project_id == proj.id)
            total = conn.execute(select(func.count()).select_from(J).where(*mine)).scalar_one()
            today = conn.execute(
                select(func.count()).select_from(J).where(*mine, J.created_at >= midnight)
            ).scalar_one()
            # Open pairs (not complete, done + held < required), counted without walking the open
            # ones (100,000 pairs: ~15 ms): all pairs, less the complete ones, less the busy ones.
            # A pair that is not complete but busy is held by an active lease (done < required), so
            # the busy ones are found from the (few) active assignments.
            if pairs is None:
                pairs = conn.execute(select(func.count()).select_from(P).where(P.project_id == proj.id)).scalar_one()
            n_complete = conn.execute(
                select(func.count()).select_from(P).where(P.project_id == proj.id, P.complete == true())
            ).scalar_one()
            n_busy = conn.execute(
                select(func.count())
                .select_from(P)
                .where(
                    P.id.in_(select(A.pair_row_id).where(A.status == ACTIVE, A.project_id == proj.id)),
                    P.complete == false(),
                    P.done + P.held >= P.required,
                )
            ).scalar_one()
            n_mine = conn.execute(  # open pairs this user holds, judged, skipped or reported
                select(func.count())
                .select_from(A)
                .where(
                    A.user_id == u.id,
                    A.project_id == proj.id,
                    A.status != EXPIRED,
                    exists().where(P.id == A.pair_row_id, P.complete == false(), P.done + P.held < P.required),
                )
            ).scalar_one()
            left = max(0, pairs - n_complete - n_busy - n_mine)
        return Progress(done_today=today, left_in_queue=left, done_total=total)
