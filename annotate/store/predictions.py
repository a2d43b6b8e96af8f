"""What models said about a project's pairs, and the Label page's suggestions.

A prediction is one model's verdict on one pair: a side ("a" or "b", generation order; none for
unsure), a level on Llama 2's scale and, for a reward model, the probability of that side. A
reward model's Bradley–Terry probability P(b better than a) = σ(r_b − r_a) is recorded in one
call per model (`record_predictions`); an AI judge's verdicts come with its judgements
(`ModelJudgementStore.record_model_judgements`). The side and level of a probability follow
Llama 2's small margins (Table 27), read as reward differences: a reward model trained with the
margin loss separates a pair of level k by at least m(k), so |r_b − r_a| = |logit p| ≥ 1 is
"significantly better" (p ≥ 0.731), ≥ 2/3 "better" (p ≥ 0.661), ≥ 1/3 "slightly better"
(p ≥ 0.583), anything else "negligibly better"; exactly 0.5 is unsure.

Suggestions (`set_suggestions`): a project shows annotators a prediction `after` they chose
(the page waits for a key before the next pair) or `before` (up front, for review workflows),
or none (`off`, the default). The app never loads a model: it shows what is stored here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.projects import ProjectStore
from prefkit.annotate.store.records import Project, User
from prefkit.annotate.store.statements import P
from prefkit.annotate.tables import PredictionRow, ProjectRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import CHOICE_LABELS, Strength

R = PredictionRow
SUGGESTION_MODES = ("off", "after", "before")
PREDICTION_KINDS = ("reward_model", "judge")
# |logit p| at or above which a reward model's probability is each level (Llama 2's small margins).
LEVEL_LOGITS: tuple[tuple[float, Strength], ...] = (
    (1.0, Strength.SIGNIFICANTLY_BETTER),
    (2.0 / 3.0, Strength.BETTER),
    (1.0 / 3.0, Strength.SLIGHTLY_BETTER),
)
_CHUNK = 2000  # predictions recorded per transaction (each short, so annotators' writes go between)


def verdict_from_probability(p_b: float) -> tuple[str | None, Strength, float]:
    """(side, level, probability of that side) from P(b better than a): side "b" above 0.5, "a"
    below, None (unsure) at exactly 0.5; the level from |logit p| (`LEVEL_LOGITS`)."""
    if isinstance(p_b, bool) or not isinstance(p_b, (int, float)) or not 0.0 <= p_b <= 1.0:
        raise ValueError(f"a probability must be a number from 0 to 1, got {p_b!r}")
    if p_b == 0.5:
        return None, Strength.NEGLIGIBLY_BETTER, 0.5
    q = max(p_b, 1.0 - p_b)
    d = math.inf if q == 1.0 else math.log(q / (1.0 - q))
    level = next((s for t, s in LEVEL_LOGITS if d >= t - 1e-12), Strength.NEGLIGIBLY_BETTER)
    return ("b" if p_b > 0.5 else "a"), level, float(q)


@dataclass(frozen=True)
class Prediction:
    """One model's verdict on one pair. `side` is "a" / "b" in generation order (None: unsure),
    `preferred` that response's id; `probability` that the preferred side is better (None: the
    model gives none, e.g. a judge)."""

    pair_id: str
    source: str
    kind: str
    side: str | None
    preferred: str | None
    strength: Strength
    probability: float | None
    created_at: datetime

    def signed_level(self) -> int:
        """-4..4 in generation order (negative prefers a; |value| = level + 1), 0 unsure."""
        if self.side is None:
            return 0
        return (self.strength.level + 1) * (-1 if self.side == "a" else 1)

    def choice(self, shown_order: tuple[str, str]) -> int:
        """The choice-row value (-4..4) as the annotator sees the pair: negative the left response."""
        if self.preferred is None:
            return 0
        level = self.strength.level + 1
        return -level if self.preferred == shown_order[0] else level

    def label(self, shown_order: tuple[str, str]) -> str:
        """E.g. "B slightly better" for the pair shown in `shown_order`."""
        return CHOICE_LABELS[self.choice(shown_order)]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "side": self.side,
            "preferred": self.preferred,
            "strength": self.strength.value,
            "probability": self.probability,
        }


@dataclass(frozen=True)
class Suggestion:
    """What the Label page did with a prediction for one annotator's claim: showed it `before`
    they chose, `after` they chose, or held it back (`holdout`: a `before` project's control
    share, shown nothing). Stored with the judgement (`Store.submit(..., suggestion=...)`)."""

    when: str  # before | after | holdout
    prediction: Prediction

    @property
    def shown_before(self) -> bool:
        return self.when == "before"

    def to_json(self) -> dict[str, Any]:
        return {"when": self.when, **self.prediction.to_json()}


def _prediction(r: Any) -> Prediction:
    return Prediction(
        pair_id=r.pair_id,
        source=r.source,
        kind=r.kind,
        side=r.side,
        preferred=r.preferred,
        strength=Strength(r.strength),
        probability=r.probability,
        created_at=r.created_at,
    )


_COLUMNS = (R.source, R.kind, R.side, R.preferred, R.strength, R.probability, R.created_at)


class PredictionStore(ProjectStore):
    """Predictions per pair and the project's suggestion setting."""

    def record_predictions(
        self, project: str, source: str, p_b: Mapping[str, float], *, kind: str = "reward_model"
    ) -> int:
        """Record a model's P(b better than a) for each pair (`{pair_id: p}`, `a` and `b` in the
        pair's generation order) as side + level + probability (`verdict_from_probability`).
        `source` names the model (e.g. its path and the sha256 of its weights); recording the
        same source again replaces its predictions. A pair id not in the project is refused
        (DataError naming it; nothing of that chunk is recorded). Written in transactions of 2,000
        pairs. Returns the number recorded."""
        rows: list[tuple[str, str | None, Strength, float | None]] = []
        for pair_id, p in p_b.items():
            try:
                side, level, q = verdict_from_probability(p)
            except ValueError as e:
                raise DataError(f"pair {pair_id}: {e}", field="probability") from None
            rows.append((pair_id, side, level, q))
        return self._record(project, source, kind, rows)

    def _record(
        self,
        project: str,
        source: str,
        kind: str,
        rows: Sequence[tuple[str, str | None, Strength, float | None]],
        conn: Connection | None = None,
    ) -> int:
        """(pair_id, side, level, probability) rows as `source`'s predictions; in `conn` when
        given (the caller's transaction), else in chunks of their own."""
        _check_source(source, kind)
        if conn is not None:
            return self._record_chunk(conn, self._project(conn, project), source, kind, rows)
        done = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]

            def run(c: Connection, chunk: Sequence[tuple[str, str | None, Strength, float | None]] = chunk) -> int:
                return self._record_chunk(c, self._project(c, project), source, kind, chunk)

            done += self._retrying(run)
        return done

    def _record_chunk(
        self,
        conn: Connection,
        proj: Project,
        source: str,
        kind: str,
        rows: Sequence[tuple[str, str | None, Strength, float | None]],
    ) -> int:
        ids = [pair_id for pair_id, *_ in rows]
        found = _pair_rows(conn, proj, ids)
        now = self.now()
        conn.execute(delete(R).where(R.source == source, R.pair_row_id.in_([found[i].id for i in ids])))
        values = [
            dict(
                project_id=proj.id,
                pair_row_id=found[pair_id].id,
                source=source,
                kind=kind,
                side=side,
                preferred=None if side is None else getattr(found[pair_id], side),
                strength=level.value,
                probability=q,
                created_at=now,
            )
            for pair_id, side, level, q in rows
        ]
        if values:
            conn.execute(insert(R), values)
        return len(values)

    def pair_ids(self, project: str) -> set[str]:
        """The ids of the project's pairs (to check a file of predictions before recording it)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return set(conn.execute(select(P.pair_id).where(P.project_id == pid)).scalars())

    def predictions(self, project: str, source: str | None = None) -> list[Prediction]:
        """The project's predictions (of one `source`, or all), by pair id then source."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            q = select(P.pair_id, *_COLUMNS).join(P, P.id == R.pair_row_id).where(R.project_id == pid)
            if source is not None:
                q = q.where(R.source == source)
            rows = conn.execute(q.order_by(P.pair_id, R.source)).all()
        return [_prediction(r) for r in rows]

    def prediction_sources(self, project: str) -> list[dict[str, Any]]:
        """Each model with predictions in the project: source, kind, pairs, and when it last recorded."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(R.source, R.kind, func.count().label("pairs"), func.max(R.created_at).label("last_at"))
                .where(R.project_id == pid)
                .group_by(R.source, R.kind)
                .order_by(R.source)
            ).all()
        return [r._asdict() for r in rows]

    def prediction(self, project: str, pair_id: str, source: str | None = None) -> Prediction | None:
        """`source`'s prediction for the pair (None: the latest of any source), or None."""
        with self._tx() as conn:
            return self._prediction(conn, self._project(conn, project).id, pair_id, source)

    def _prediction(self, conn: Connection, pid: int, pair_id: str, source: str | None) -> Prediction | None:
        q = select(P.pair_id, *_COLUMNS).join(P, P.id == R.pair_row_id).where(P.project_id == pid, P.pair_id == pair_id)
        if source is not None:
            q = q.where(R.source == source)
        row = conn.execute(q.order_by(R.created_at.desc(), R.id.desc()).limit(1)).first()
        return None if row is None else _prediction(row)

    def suggestion(self, project: str | Project, pair_id: str, user: User | str) -> Suggestion | None:
        """What the Label page shows `user` with this pair under the project's setting: None when
        suggestions are off or no prediction is stored for the pair; else the prediction of the
        project's source (or the pair's latest) to show `before` or `after` the choice. In a
        `before` project a seeded share (`suggestion_holdout`, drawn per pair and user, so a
        rerun draws the same) is a `holdout`: shown nothing, recorded for the anchoring figure.
        Given a `Project` (as just read), a project with suggestions off costs no query."""
        name = user.name if isinstance(user, User) else user
        if isinstance(project, Project) and project.suggestions == "off":
            return None
        with self._tx() as conn:
            proj = project if isinstance(project, Project) else self._project(conn, project)
            if proj.suggestions == "off":
                return None
            found = self._prediction(conn, proj.id, pair_id, proj.suggestion_source)
        if found is None:
            return None
        when = proj.suggestions
        draw = random.Random(f"{proj.seed}:holdout:{pair_id}:{name}").random()
        if when == "before" and draw < proj.suggestion_holdout:
            when = "holdout"
        return Suggestion(when, found)

    def set_suggestions(
        self, project: str, mode: str, *, source: str | None = None, holdout: float | None = None
    ) -> Project:
        """Show annotators model suggestions `after` they choose, `before`, or not at all (`off`).
        `source` picks whose predictions (None: each pair's latest); `holdout` is the share of a
        `before` project's claims shown nothing (a randomised control for the dashboard's
        anchoring figure; left as it is when None)."""
        if mode not in SUGGESTION_MODES:
            raise ConfigError(f"suggestions must be {', '.join(SUGGESTION_MODES)}, got {mode!r}")
        if holdout is not None and not 0.0 <= holdout < 1.0:
            raise ConfigError(f"the suggestion holdout must be a share from 0 to below 1, got {holdout}")
        with self._tx(write=True) as conn:
            proj = self._project(conn, project)
            values: dict[str, Any] = {"suggestions": mode, "suggestion_source": source}
            if holdout is not None:
                values["suggestion_holdout"] = holdout
            conn.execute(update(ProjectRow).where(ProjectRow.id == proj.id).values(**values))
            return self._project(conn, project)


def _pair_rows(conn: Connection, proj: Project, pair_ids: Sequence[str]) -> dict[str, Any]:
    """{pair_id: row (id, pair_id, a, b: the responses' ids)} of the project's pairs; a pair id
    not in the project is a DataError naming it."""
    found = {
        r.pair_id: r
        for r in conn.execute(
            select(P.id, P.pair_id, P.data["a_id"].as_string().label("a"), P.data["b_id"].as_string().label("b")).where(
                P.project_id == proj.id, P.pair_id.in_(pair_ids)
            )
        )
    }
    missing = [i for i in pair_ids if i not in found]
    if missing:
        raise DataError(f"pair {missing[0]} is not in project {proj.name!r}", field="pair_id")
    return found


def _check_source(source: str, kind: str) -> None:
    if kind not in PREDICTION_KINDS:
        raise ConfigError(f"prediction kind must be {' or '.join(PREDICTION_KINDS)}, got {kind!r}")
    if not isinstance(source, str) or not source.strip() or len(source) > 300 or "\x00" in source:
        raise ConfigError(f"a prediction source must be a name of 1 to 300 characters, got {source!r}")
