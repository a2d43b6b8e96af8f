"""Adjudication: reviewers, the pairs whose judgements disagree, and reviewers' final decisions
(which the export takes over the aggregation rule, as `decided_by: review`).

Two judgements of a pair disagree when they take opposite sides, or sit more than `steps` apart
on the nine-choice row (A significantly … A negligibly, unsure, B negligibly … B significantly;
unsure in the middle): with the default 1, "A better" against "A slightly better" agrees, "A
better" against "A negligibly better" or against unsure does not. Gold pairs are never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.gold import NOT_GOLD, GoldStore
from prefkit.annotate.store.members import MemberStore
from prefkit.annotate.store.records import User, _judgement, _no_nul
from prefkit.annotate.store.statements import J, P, U
from prefkit.annotate.tables import ReviewRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.aggregate import Decision
from prefkit.data.schema import Judgement, Pair, Strength, signed_level

R = ReviewRow
ROLES = ("annotator", "reviewer", "admin")


@dataclass(frozen=True)
class Review:
    """A reviewer's decision: `preferred` response id (None: unsure) and `strength`, with a note."""

    pair_id: str
    reviewer: str
    preferred: str | None
    strength: Strength
    note: str | None
    decided_at: datetime

    def decision(self) -> Decision:
        return Decision(self.preferred, self.strength, "review")


@dataclass(frozen=True)
class Dispute:
    """A pair whose judgements disagree: how many, the widest distance between two of them on
    the nine-choice row, whether two take opposite sides, and the decision if there is one."""

    pair_id: str
    judgements: int
    spread: int
    opposite: bool
    review: Review | None


def disagreement(points: list[int], steps: int) -> tuple[int, bool, bool]:
    """(spread, opposite sides, disputed) of one pair's judgements as signed points on the
    nine-choice row (-4 … 4 in one orientation, 0 unsure)."""
    spread = max(points) - min(points) if points else 0
    opposite = any(p < 0 for p in points) and any(p > 0 for p in points)
    return spread, opposite, opposite or spread > steps


class ReviewStore(GoldStore, MemberStore):
    """Reviewers, disputed pairs and decisions."""

    def set_role(self, name: str, role: str) -> User:
        """Make `name` an annotator, a reviewer (labels, and settles disagreements on the Review
        page) or an admin (everything, reviewing included)."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r} (expected {', '.join(ROLES)})")

        def run(conn: Connection) -> User:
            uid = self._user(conn, name).id
            conn.execute(update(U).where(U.id == uid).values(is_admin=role == "admin", is_reviewer=role == "reviewer"))
            return self._user(conn, name)

        return self._retrying(run)

    def disputes(self, project: str, steps: int | None = None) -> list[Dispute]:
        """The project's pairs (gold pairs aside) with two or more judgements that disagree (see
        the module docstring; `steps` defaults to the project's `review_steps`), undecided ones
        first, then the widest spread first."""
        if steps is None:
            steps = self.quality_settings(project).review_steps
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(J.pair_row_id, P.pair_id, J.preferred, J.strength)
                .join(P, P.id == J.pair_row_id)
                .where(J.project_id == pid, P.done >= 2, NOT_GOLD)
                .order_by(J.pair_row_id, J.id)
            ).all()
            reviews = self._reviews(conn, pid)
        by_pair: dict[str, list[Any]] = {}
        for r in rows:
            by_pair.setdefault(r.pair_id, []).append(r)
        out = []
        for pair_id, js in by_pair.items():
            ref = next((j.preferred for j in js if j.preferred is not None), None)
            spread, opposite, disputed = disagreement([signed_level(j.preferred, j.strength, ref) for j in js], steps)
            if len(js) >= 2 and disputed:
                out.append(Dispute(pair_id, len(js), spread, opposite, reviews.get(pair_id)))
        out.sort(key=lambda d: (d.review is not None, -d.spread, d.pair_id))
        return out

    def dispute(self, project: str, pair_id: str) -> tuple[Pair, list[Judgement], Review | None]:
        """One pair with every judgement on it (rationale included), oldest first, and its decision."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            row = conn.execute(select(P.id, P.data).where(P.project_id == pid, P.pair_id == pair_id)).first()
            if row is None:
                raise DataError(f"no pair {pair_id} in project {project!r}", field="pair_id")
            js = conn.execute(
                select(J, U.name.label("annotator"))
                .join(U, U.id == J.user_id)
                .where(J.pair_row_id == row.id)
                .order_by(J.created_at, J.id)
            ).all()
            review = self._reviews(conn, pid, row.id).get(pair_id)
        return Pair.from_row(row.data), [_judgement(j, pair_id, j.annotator) for j in js], review

    def decide(
        self,
        project: str,
        pair_id: str,
        reviewer: User | str,
        preferred: str | None,
        strength: Strength | str = Strength.NEGLIGIBLY_BETTER,
        note: str | None = None,
    ) -> Review:
        """Record `reviewer`'s final decision on a pair: `preferred` (a response id of the pair, or
        None for unsure) and `strength`; deciding again replaces it. Reviewers and admins only."""
        strength = Strength.parse(strength)
        if preferred is None:
            strength = Strength.NEGLIGIBLY_BETTER
        note = (note or "").strip() or None
        _no_nul(note, "note")

        def run(conn: Connection) -> Review:
            proj = self._project(conn, project)
            u = self._active_user(conn, reviewer)
            if not u.may_review:
                raise ConfigError(
                    f"{u.name!r} may not review; an admin makes them a reviewer: "
                    f"prefkit annotate users role {u.name} --role reviewer"
                )
            if not self._may_label(conn, proj.id, u.id):
                raise ConfigError(f"{u.name!r} is not assigned to project {proj.name!r}; ask an admin")
            row = conn.execute(select(P.id, P.data).where(P.project_id == proj.id, P.pair_id == pair_id)).first()
            if row is None:
                raise DataError(f"no pair {pair_id} in project {project!r}", field="pair_id")
            pair = Pair.from_row(row.data)
            if preferred is not None and preferred not in (pair.a.id, pair.b.id):
                raise DataError(f"preferred {preferred!r} is not a response of pair {pair_id}", field="preferred")
            now = self.now()
            values = dict(reviewer_id=u.id, preferred=preferred, strength=strength.value, note=note, updated_at=now)
            if conn.execute(select(R.id).where(R.pair_row_id == row.id)).first() is None:
                conn.execute(insert(R).values(pair_row_id=row.id, project_id=proj.id, created_at=now, **values))
            else:
                conn.execute(update(R).where(R.pair_row_id == row.id).values(**values))
            return Review(pair_id, u.name, preferred, strength, note, now)

        return self._retrying(run)

    def clear_decision(self, project: str, pair_id: str, reviewer: User | str) -> None:
        """Take a decision back: the pair goes back to the aggregation rule."""

        def run(conn: Connection) -> None:
            proj = self._project(conn, project)
            if not self._active_user(conn, reviewer).may_review:
                raise ConfigError("only reviewers and admins may take a decision back")
            prid = conn.execute(select(P.id).where(P.project_id == proj.id, P.pair_id == pair_id)).scalar()
            conn.execute(delete(R).where(R.pair_row_id == prid))

        self._retrying(run)

    def reviews(self, project: str) -> dict[str, Review]:
        """Every decision in the project, by pair id."""
        with self._tx() as conn:
            return self._reviews(conn, self._project(conn, project).id)

    def _reviews(self, conn: Connection, pid: int, pair_row_id: int | None = None) -> dict[str, Review]:
        q = (
            select(P.pair_id, U.name, R.preferred, R.strength, R.note, R.updated_at)
            .join(P, P.id == R.pair_row_id)
            .join(U, U.id == R.reviewer_id)
            .where(R.project_id == pid)
        )
        if pair_row_id is not None:
            q = q.where(R.pair_row_id == pair_row_id)
        return {
            r.pair_id: Review(r.pair_id, r.name, r.preferred, Strength(r.strength), r.note, r.updated_at)
            for r in conn.execute(q)
        }
