"""Models against people, from the store: each model's agreement with the people who judged the
same pairs, the model annotators' own figures, and the anchoring comparison
(`prefkit.annotate.calibration` computes them; the dashboard and the export card show them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import exists, select

from prefkit.annotate.store.model_judgements import MJ, ModelJudgementStore
from prefkit.annotate.store.predictions import R
from prefkit.annotate.store.statements import J, P

if TYPE_CHECKING:
    from prefkit.annotate.calibration import ModelReport


class CalibrationStore(ModelJudgementStore):
    """Figures on models against people."""

    def model_report(self, project: str) -> ModelReport:
        """Agreement per level, Cohen's kappa and the confusion matrix of each prediction source
        (reward models, AI judges) against people's judgements of the same pairs; the model
        annotators' counts; whether suggestions shown before the choice moved people toward them."""
        from prefkit.annotate.calibration import build_model_report

        with self._tx() as conn:
            pid = self._project(conn, project).id
            humans = conn.execute(
                select(
                    P.pair_id,
                    J.preferred,
                    J.strength,
                    J.suggestion,
                    P.data["a_id"].as_string().label("a_id"),
                )
                .join(P, P.id == J.pair_row_id)
                .where(J.project_id == pid, exists().where(R.pair_row_id == J.pair_row_id))
            ).all()
            predictions = conn.execute(
                select(P.pair_id, R.source, R.kind, R.side, R.strength)
                .join(P, P.id == R.pair_row_id)
                .where(R.project_id == pid)
            ).all()
            models = conn.execute(
                select(MJ.annotator, P.pair_id, MJ.preferred, MJ.strength, MJ.verdicts)
                .join(P, P.id == MJ.pair_row_id)
                .where(MJ.project_id == pid)
            ).all()
        return build_model_report(
            humans=[r._asdict() for r in humans],
            predictions=[r._asdict() for r in predictions],
            model_judgements=[r._asdict() for r in models],
        )
