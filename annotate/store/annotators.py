"""The per-annotator view for the lead (`prefkit.annotate.annotator_view`): the raw rows it is built
from, read in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from prefkit.annotate.store.gold import IS_GOLD, GoldStore
from prefkit.annotate.store.statements import J, P, U

if TYPE_CHECKING:
    import pandas as pd


class AnnotatorStore(GoldStore):
    """Each annotator's speed, position bias, unsure share, agreement with the consensus, gold
    accuracy and state."""

    def annotator_view(self, project: str) -> pd.DataFrame:
        """One row per annotator of `project` (see `prefkit.annotate.annotator_view` for the columns)."""
        from prefkit.annotate.annotator_view import annotator_view

        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(
                    U.name.label("annotator"),
                    P.pair_id,
                    J.preferred,
                    J.shown_left,
                    J.seconds,
                    J.created_at,
                    IS_GOLD.label("gold"),
                )
                .join(U, U.id == J.user_id)
                .join(P, P.id == J.pair_row_id)
                .where(J.project_id == pid)
            ).all()
        gold = [{"annotator": g.annotator, "side": g.side, "level": g.level} for g in self.gold_answers(project)]
        statuses = {name: s.label for name, s in self.quality_statuses(project).items()}
        return annotator_view([r._asdict() for r in rows], gold, statuses)
