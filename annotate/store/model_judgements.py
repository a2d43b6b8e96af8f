"""Judgements of model annotators (AI judges, `prefkit annotate judge`), kept apart from people's.

A model judgement is stored in a table of its own, so nothing that counts people's work sees it:
a pair's `done` / `held` counters and `complete` flag never move, and the dashboard's figures,
`judgements()`, progress and the export (unless asked) stay human-only. Recording one also
records the judge's verdict as a prediction (source = the model annotator's name, kind `judge`),
so it can be suggested to annotators and compared with people like a reward model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from prefkit.annotate.store.predictions import PredictionStore, _check_source, _pair_rows
from prefkit.annotate.store.records import _no_nul
from prefkit.annotate.store.statements import P
from prefkit.annotate.tables import ModelJudgementRow
from prefkit.core.errors import DataError
from prefkit.data.schema import Judgement, Strength

MJ = ModelJudgementRow


def _verdict_text(verdicts: Sequence[dict[str, Any]]) -> str | None:
    """The judge's answers in each order, as the judgement's rationale (for reading the export)."""
    parts = [f"shown {'/'.join(v.get('shown', []))}: {str(v.get('answer', '')).strip()}" for v in verdicts]
    return "\n".join(parts) or None


class ModelJudgementStore(PredictionStore):
    """Model annotators' judgements."""

    def record_model_judgements(
        self, project: str, annotator: str, items: Sequence[tuple[Judgement, Sequence[dict[str, Any]]]]
    ) -> int:
        """Record `annotator`'s (a model's) judgements, each with what it answered in each order
        (`[{"shown": [left id, right id], "answer": text, "choice": -4..4 as shown or None when
        unreadable, "signed": the same in generation order}]`), in one
        transaction; a pair it judged before is judged again (replaced). Each also becomes the
        model's prediction for the pair (kind `judge`). Pairs' counters are not touched.
        Returns the number recorded."""
        _check_source(annotator, "judge")

        def run(conn: Connection) -> int:
            proj = self._project(conn, project)
            found = _pair_rows(conn, proj, [j.pair_id for j, _ in items])
            rows, predictions = [], []
            now = self.now()
            for j, verdicts in items:
                pair = found[j.pair_id]
                if j.preferred not in (None, pair.a, pair.b):
                    raise DataError(
                        f"preferred {j.preferred!r} is not a response of pair {j.pair_id}", field="preferred"
                    )
                side = None if j.preferred is None else ("a" if j.preferred == pair.a else "b")
                rationale = _verdict_text(verdicts)
                _no_nul(rationale, "verdicts")
                shown = j.shown_order or (pair.a, pair.b)
                rows.append(
                    dict(
                        project_id=proj.id,
                        pair_row_id=pair.id,
                        annotator=annotator,
                        preferred=j.preferred,
                        strength=j.strength.value,
                        score=0 if side is None else j.strength.level * (-1 if side == "a" else 1),
                        shown_left=shown[0],
                        shown_right=shown[1],
                        verdicts=[dict(v) for v in verdicts],
                        created_at=now,
                    )
                )
                predictions.append((j.pair_id, side, j.strength, None))
            replaced = [r.id for r in found.values()]
            conn.execute(delete(MJ).where(MJ.annotator == annotator, MJ.pair_row_id.in_(replaced)))
            if rows:
                conn.execute(insert(MJ), rows)
            self._record(project, annotator, "judge", predictions, conn=conn)
            return len(rows)

        return self._retrying(run)

    def model_judgements(self, project: str, annotator: str | None = None) -> list[Judgement]:
        """Model annotators' judgements in the project (kind `model`; of one `annotator` or all),
        oldest first; `rationale` holds the judge's answer in each order."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            q = select(MJ, P.pair_id).join(P, P.id == MJ.pair_row_id).where(MJ.project_id == pid)
            if annotator is not None:
                q = q.where(MJ.annotator == annotator)
            rows = conn.execute(q.order_by(MJ.created_at, MJ.id)).all()
        return [
            Judgement(
                pair_id=r.pair_id,
                annotator=r.annotator,
                preferred=r.preferred,
                strength=Strength(r.strength),
                shown_order=(r.shown_left, r.shown_right),
                rationale=_verdict_text(r.verdicts or []),
                created_at=r.created_at,
                kind="model",
            )
            for r in rows
        ]

    def model_verdicts(self, project: str, annotator: str) -> dict[str, list[dict[str, Any]]]:
        """{pair_id: what `annotator` answered in each order} for the pairs it judged."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(P.pair_id, MJ.verdicts)
                .join(P, P.id == MJ.pair_row_id)
                .where(MJ.project_id == pid, MJ.annotator == annotator)
            ).all()
        return {r.pair_id: list(r.verdicts or []) for r in rows}

    def model_annotators(self, project: str) -> list[str]:
        """Names of the model annotators that judged pairs of the project."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return list(
                conn.execute(
                    select(MJ.annotator).where(MJ.project_id == pid).group_by(MJ.annotator).order_by(MJ.annotator)
                ).scalars()
            )
