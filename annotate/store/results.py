"""Results for admins: a project's judgements, its dashboard figures and every project's summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, true

from prefkit.annotate.store.gold import NOT_GOLD
from prefkit.annotate.store.projects import ProjectStore
from prefkit.annotate.store.records import _judgement
from prefkit.annotate.store.statements import A, J, P, U
from prefkit.annotate.tables import REPORTED, SKIPPED, ProjectRow
from prefkit.data.schema import Judgement

if TYPE_CHECKING:
    from prefkit.annotate.dashboard_data import Dashboard


class ResultStore(ProjectStore):
    """Judgements and dashboard figures."""

    def judgements(self, project: str) -> list[Judgement]:
        """Every recorded judgement of a project (withdrawn ones are gone), oldest first."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(J, P.pair_id, U.name.label("annotator"))
                .join(P, P.id == J.pair_row_id)
                .join(U, U.id == J.user_id)
                .where(J.project_id == pid)
                .order_by(J.created_at, J.id)
            ).all()
        return [_judgement(r, r.pair_id, r.annotator) for r in rows]

    def dashboard(self, project: str) -> Dashboard:
        """Admin figures: progress, per-annotator counts and speed, labels per hour, strength
        distribution, position bias, agreement on overlapping pairs, and reports."""
        from prefkit.annotate.dashboard_data import build_dashboard

        with self._tx() as conn:
            proj = self._project(conn, project)
            pair_stats = conn.execute(
                select(
                    func.count(), func.coalesce(func.sum(P.required), 0), func.count().filter(P.complete == true())
                ).where(P.project_id == proj.id, NOT_GOLD)
            ).one()
            judgements = conn.execute(
                select(
                    U.name.label("annotator"),
                    P.pair_id,
                    P.data["a_id"].as_string().label("a_id"),  # the side in generation order
                    J.strength,
                    J.preferred,
                    J.shown_left,
                    J.shown_right,
                    J.seconds,
                    J.created_at,
                )
                .join(U, U.id == J.user_id)
                .join(P, P.id == J.pair_row_id)
                .where(J.project_id == proj.id, NOT_GOLD)
            ).all()
            finished = conn.execute(
                select(U.name.label("annotator"), P.pair_id, A.status, A.reason, A.finished_at)
                .join(U, U.id == A.user_id)
                .join(P, P.id == A.pair_row_id)
                .where(A.project_id == proj.id, A.status.in_([SKIPPED, REPORTED]), NOT_GOLD)
            ).all()
        return build_dashboard(
            n_pairs=pair_stats[0],
            needed=pair_stats[1],
            complete=pair_stats[2],
            judgements=[r._asdict() for r in judgements],
            finished=[r._asdict() for r in finished],
            now=self.now(),
        )

    def project_summaries(self) -> dict[str, dict[str, int]]:
        """Every project's `Dashboard.summary` figures (pairs, complete, judgements, needed,
        annotators, skipped, reported), by project name: three grouped queries in all, for the
        dashboard's table of projects, instead of a full dashboard per project."""
        with self._tx() as conn:
            projects = conn.execute(select(ProjectRow.id, ProjectRow.name).order_by(ProjectRow.name)).all()
            pairs = {
                r.project_id: r
                for r in conn.execute(
                    select(
                        P.project_id,
                        func.count().label("pairs"),
                        func.sum(P.required).label("needed"),
                        func.count().filter(P.complete == true()).label("complete"),
                    )
                    .where(NOT_GOLD)
                    .group_by(P.project_id)
                )
            }
            judged = {
                r.project_id: r
                for r in conn.execute(
                    select(
                        J.project_id,
                        func.count().label("judgements"),
                        func.count(J.user_id.distinct()).label("annotators"),
                    )
                    .join(P, P.id == J.pair_row_id)
                    .where(NOT_GOLD)
                    .group_by(J.project_id)
                )
            }
            finished = {
                r.project_id: r
                for r in conn.execute(
                    select(
                        A.project_id,
                        func.count().filter(A.status == SKIPPED).label("skipped"),
                        func.count().filter(A.status == REPORTED).label("reported"),
                    )
                    .join(P, P.id == A.pair_row_id)
                    .where(A.status.in_([SKIPPED, REPORTED]), NOT_GOLD)
                    .group_by(A.project_id)
                )
            }
        out: dict[str, dict[str, int]] = {}
        for pid, name in projects:
            p, j, f = pairs.get(pid), judged.get(pid), finished.get(pid)
            out[name] = {
                "pairs": p.pairs if p else 0,
                "complete": p.complete if p else 0,
                "judgements": j.judgements if j else 0,
                "needed": int(p.needed) if p else 0,
                "annotators": j.annotators if j else 0,
                "skipped": f.skipped if f else 0,
                "reported": f.reported if f else 0,
            }
        return out
