"""Who may label which project: a project's members (none: open to all), admins everywhere."""

from __future__ import annotations

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.accounts import AccountStore
from prefkit.annotate.store.projects import ProjectStore
from prefkit.annotate.store.records import Project, User, _project
from prefkit.annotate.store.statements import _MAY_LABEL, A, M, U, _release
from prefkit.annotate.tables import ACTIVE, EXPIRED, ProjectRow


class MemberStore(ProjectStore, AccountStore):
    """Projects' members."""

    def _may_label(self, conn: Connection, project_id: int, user_id: int) -> bool:
        """Admins always; others when the project has no members (open) or they are one."""
        return bool(conn.execute(_MAY_LABEL, {"pid": project_id, "uid": user_id}).scalar())

    def assign(self, project: str, user: str) -> None:
        """Let `user` label `project` (from then on, only its members and admins may)."""

        def run(conn: Connection) -> None:
            proj, u = self._project(conn, project), self._user(conn, user)
            if conn.execute(select(M.user_id).where(M.project_id == proj.id, M.user_id == u.id)).first() is None:
                conn.execute(insert(M).values(project_id=proj.id, user_id=u.id, created_at=self.now()))

        self._retrying(run)

    def unassign(self, project: str, user: str) -> None:
        """Take `user` off `project`; a pair they hold there goes back to the queue. When the
        last member goes, the project is open to every annotator again."""

        def run(conn: Connection) -> None:
            proj, u = self._project(conn, project), self._user(conn, user)
            conn.execute(delete(M).where(M.project_id == proj.id, M.user_id == u.id))
            held = (
                conn.execute(
                    update(A)
                    .where(A.user_id == u.id, A.project_id == proj.id, A.status == ACTIVE)
                    .values(status=EXPIRED)
                    .returning(A.pair_row_id)
                )
                .scalars()
                .all()
            )
            _release(conn, held)

        self._retrying(run)

    def members(self, project: str) -> list[str]:
        """Names of the annotators assigned to `project` (empty: open to all)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return list(
                conn.execute(
                    select(U.name).join(M, M.user_id == U.id).where(M.project_id == pid).order_by(U.name)
                ).scalars()
            )

    def projects_for(self, user: User | str) -> list[Project]:
        """The projects `user` may label: every one for an admin; otherwise the open ones and
        those they are assigned to."""
        with self._tx() as conn:
            u = self._user(conn, user)
            q = select(ProjectRow).order_by(ProjectRow.name)
            if not u.is_admin:
                q = q.where(
                    or_(
                        ~exists().where(M.project_id == ProjectRow.id),
                        exists().where(M.project_id == ProjectRow.id, M.user_id == u.id),
                    )
                )
            return [_project(r) for r in conn.execute(q).all()]
