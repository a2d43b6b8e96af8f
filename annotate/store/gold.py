"""Gold pairs and quality control: importing gold pairs with their expected answers, serving them
in the claim (`_gold_step`, called by `QueueStore.claim` before the ordinary walk), recording
each user's first answer on each (`_note_gold_answer`, called by `submit`), the project's
settings, annotators' states (qualifying, paused, free) and lifting a pause.

A gold pair is a row of `pairs` like any other, so claims, leases, submit, skip and undo treat it
as they treat the rest, and the Label page cannot tell it apart; it has `required` 0 and
`complete` true, so the ordinary walk (which takes open pairs only) never hands it out, and
`gold_pairs` holds its expected answer. A user gets a gold pair from `_gold_step` only: while
qualifying (nothing else), or when a draw seeded by the project, the user and how many claims
they have had falls under the project's `gold_rate`; never one they have had before.
"""

from __future__ import annotations

import random
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, String, cast, exists, false, func, insert, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefkit.annotate.gold import GoldItem, check
from prefkit.annotate.quality import (
    PAUSED,
    QUALIFYING,
    QualityConfig,
    QualityPaused,
    QualityStatus,
    quality_status,
)
from prefkit.annotate.store.accounts import AccountStore
from prefkit.annotate.store.connection import _utc
from prefkit.annotate.store.pairs import PairStore, _hash_int
from prefkit.annotate.store.records import Project, User, _no_nul
from prefkit.annotate.store.statements import _PICK, A, P, U, _b
from prefkit.annotate.tables import (
    EXPIRED,
    GoldAnswerRow,
    GoldPairRow,
    ProjectQualityRow,
    QualityLiftRow,
    UTCDateTime,
)
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Pair

G, GA, Q, L = GoldPairRow, GoldAnswerRow, ProjectQualityRow, QualityLiftRow
IS_GOLD = exists().where(G.pair_row_id == P.id)  # a condition on `pairs`: a gold pair
NOT_GOLD = ~IS_GOLD

# Built once (see `statements`): the claim runs these.
_QUALITY = select(
    select(Q.settings).where(Q.project_id == _b("pid")).scalar_subquery().label("settings"),
    exists().where(G.project_id == _b("pid")).label("has_gold"),
)
_ANSWERS = (
    select(GA.preferred, GA.strength, GA.created_at, G.preferred.label("expected"), G.strength.label("want"), G.minimum)
    .join(G, G.pair_row_id == GA.pair_row_id)
    .where(GA.user_id == _b("uid"), GA.project_id == _b("pid"))
    .order_by(GA.created_at, GA.id)
)
_LAST_LIFT = select(func.max(L.at)).where(L.user_id == _b("uid"), L.project_id == _b("pid"))
_CLAIMS = select(func.count()).select_from(A).where(A.user_id == _b("uid"), A.project_id == _b("pid"))
_UNSEEN_GOLD = (
    select(G.pair_row_id)
    .where(
        G.project_id == _b("pid"),
        ~exists().where(A.pair_row_id == G.pair_row_id, A.user_id == _b("uid"), A.status != EXPIRED),
    )
    .order_by(G.pair_row_id)
)
# The walk's row shape (whatever columns the claim reads from its candidate), for one gold pair.
_GOLD_CANDIDATE = select(
    *_PICK.selected_columns,
    literal(True).label("returned"),  # the ordinary walk's place is left as it was
).where(P.id == _b("prid"), exists().where(U.id == _b("uid"), U.disabled == false()))
_NOTE_ANSWER = insert(GA).from_select(
    ["pair_row_id", "user_id", "project_id", "preferred", "strength", "created_at"],
    select(
        cast(_b("prid", type_=Integer), Integer),
        cast(_b("uid", type_=Integer), Integer),
        cast(_b("pid", type_=Integer), Integer),
        cast(_b("preferred", type_=String), String(100)),
        cast(_b("strength", type_=String), String(32)),
        _b("now", type_=UTCDateTime),
    ).where(
        exists().where(G.pair_row_id == _b("prid")),
        ~exists().where(GA.pair_row_id == _b("prid"), GA.user_id == _b("uid")),
    ),
)


@dataclass(frozen=True)
class GoldImportResult:
    added: int
    updated: int  # already gold in the project, with another expected answer now
    skipped: int  # already gold in the project with this answer


@dataclass(frozen=True)
class GoldAnswer:
    """One user's (first) answer on one gold pair, scored."""

    annotator: str
    pair_id: str
    side: bool
    level: bool
    created_at: datetime

    @property
    def passed(self) -> bool:
        return self.side and self.level


class GoldStore(PairStore, AccountStore):
    """Gold pairs, quality settings and annotators' states."""

    # -----------------------------------------------------------------------------------------
    # Importing gold pairs
    # -----------------------------------------------------------------------------------------

    def import_gold(
        self,
        project: str,
        gold: Iterable[GoldItem],
        *,
        pairs: Iterable[Pair] = (),
        guidelines: str | None = None,
        overlap: int | None = None,
        calibration: float | None = None,
        calibration_overlap: int | None = None,
        seed: int = 0,
    ) -> tuple[Any, GoldImportResult]:
        """Add gold pairs (and, with `pairs`, ordinary ones) to a project, created if missing as
        `import_project` does, all in one transaction: nothing is added if anything is refused.
        A gold pair already in the project gets the answer given now; one that is an ordinary
        pair of the project is refused (its judgements would count as gold answers)."""
        _no_nul(project, "project name", ConfigError)
        try:
            with self._tx(write=True) as conn:
                proj = self._ensure_project(
                    conn,
                    project,
                    guidelines=guidelines,
                    overlap=overlap,
                    calibration=calibration,
                    calibration_overlap=calibration_overlap,
                    seed=seed,
                )
                added = self._import_pairs(conn, proj, pairs)
                return added, self._import_gold(conn, proj, gold)
        except IntegrityError:
            raise ConfigError(
                f"project {project!r} was changed by another import meanwhile; run this one again"
            ) from None

    def _import_gold(self, conn: Connection, proj: Project, gold: Iterable[GoldItem]) -> GoldImportResult:
        have = {
            r.pair_id: r
            for r in conn.execute(
                select(P.id, P.pair_id, G.preferred, G.strength, G.minimum)
                .outerjoin(G, G.pair_row_id == P.id)
                .where(P.project_id == proj.id)
            )
        }
        now = self.now()
        new: list[GoldItem] = []
        updated = skipped = 0
        for item in gold:
            pair, answer = item.pair, item.answer
            expected = answer.preferred(pair)
            row = have.get(pair.pair_id)
            if row is None:
                new.append(item)
                continue
            if row.preferred is None:
                raise item.where.error(
                    f"pair {pair.pair_id} is already in project {proj.name!r} as a pair to label; a gold pair must "
                    "be one annotators have not been given",
                    "pair_id",
                )
            if (row.preferred, row.strength, bool(row.minimum)) == (expected, answer.strength.value, answer.minimum):
                skipped += 1
                continue
            conn.execute(
                update(G)
                .where(G.pair_row_id == row.id)
                .values(preferred=expected, strength=answer.strength.value, minimum=answer.minimum)
            )
            updated += 1
        if new:
            conn.execute(
                insert(P),
                [
                    dict(
                        project_id=proj.id,
                        pair_id=item.pair.pair_id,
                        data=item.pair.to_row(),
                        position=_hash_int("position", proj.seed, item.pair.pair_id),
                        is_calibration=False,
                        required=0,  # needs no judgement for the dataset: never in the ordinary walk
                        done=0,
                        held=0,
                        complete=True,
                        created_at=now,
                    )
                    for item in new
                ],
            )
            ids = dict(
                conn.execute(
                    select(P.pair_id, P.id).where(
                        P.project_id == proj.id, P.pair_id.in_([item.pair.pair_id for item in new])
                    )
                ).all()
            )
            conn.execute(
                insert(G),
                [
                    dict(
                        pair_row_id=ids[item.pair.pair_id],
                        project_id=proj.id,
                        preferred=item.answer.preferred(item.pair),
                        strength=item.answer.strength.value,
                        minimum=item.answer.minimum,
                        created_at=now,
                    )
                    for item in new
                ],
            )
        return GoldImportResult(added=len(new), updated=updated, skipped=skipped)

    def gold_pair_ids(self, project: str) -> set[str]:
        """The ids of the project's gold pairs."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return set(
                conn.execute(select(P.pair_id).join(G, G.pair_row_id == P.id).where(G.project_id == pid)).scalars()
            )

    def gold_decisions(self, project: str) -> dict[str, tuple[str, str, bool]]:
        """Each gold pair's expected answer: pair id -> (response id, strength, minimum)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(P.pair_id, G.preferred, G.strength, G.minimum)
                .join(G, G.pair_row_id == P.id)
                .where(G.project_id == pid)
            ).all()
        return {r.pair_id: (r.preferred, r.strength, bool(r.minimum)) for r in rows}

    # -----------------------------------------------------------------------------------------
    # Settings, states, lifting a pause
    # -----------------------------------------------------------------------------------------

    def quality_settings(self, project: str) -> QualityConfig:
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return QualityConfig.from_stored(conn.execute(select(Q.settings).where(Q.project_id == pid)).scalar())

    def set_quality(self, project: str, **changes: Any) -> QualityConfig:
        """Change some of the project's quality settings (`QualityConfig` fields); the others keep
        their values. Returns the settings now in force."""

        def run(conn: Connection) -> QualityConfig:
            pid = self._project(conn, project).id
            stored = conn.execute(select(Q.settings).where(Q.project_id == pid)).first()
            current = QualityConfig.from_stored(stored[0] if stored else None)
            unknown = sorted(set(changes) - set(current.to_stored()))
            if unknown:
                raise ConfigError(f"unknown quality setting(s): {', '.join(unknown)}")
            cfg = QualityConfig(**{**current.to_stored(), **changes})  # checks the values
            if stored is None:
                conn.execute(insert(Q).values(project_id=pid, settings=cfg.to_stored(), updated_at=self.now()))
            else:
                conn.execute(
                    update(Q).where(Q.project_id == pid).values(settings=cfg.to_stored(), updated_at=self.now())
                )
            return cfg

        return self._retrying(run)

    def lift_pause(self, project: str, user: User | str, by: str, note: str | None = None) -> QualityStatus:
        """Let `user` go on in `project`: a failed (or unfinished) qualification counts as passed,
        and a pause looks only at gold answers given from now on. Returns their state now."""
        _no_nul(note, "note")

        def run(conn: Connection) -> None:
            pid, uid = self._project(conn, project).id, self._user(conn, user).id
            conn.execute(insert(L).values(project_id=pid, user_id=uid, by=by, note=note, at=self.now()))

        self._retrying(run)
        return self.quality_status(project, user)

    def quality_status(self, project: str, user: User | str) -> QualityStatus:
        """Where `user` stands in `project` (qualifying, paused and why, or free to label)."""
        with self._tx() as conn:
            proj, uid = self._project(conn, project), self._user(conn, user).id
            cfg = QualityConfig.from_stored(conn.execute(select(Q.settings).where(Q.project_id == proj.id)).scalar())
            return self._status(conn, cfg, proj.id, uid)

    def quality_statuses(self, project: str) -> dict[str, QualityStatus]:
        """Every user's state in `project`, by name: those who answered a gold pair or had a pause
        lifted there, and anyone qualifying (so, with a qualification, every user)."""
        with self._tx() as conn:
            proj = self._project(conn, project)
            cfg = QualityConfig.from_stored(conn.execute(select(Q.settings).where(Q.project_id == proj.id)).scalar())
            users = conn.execute(select(U.id, U.name).order_by(U.name)).all()
            return {name: self._status(conn, cfg, proj.id, uid) for uid, name in users}

    def gold_answers(self, project: str) -> list[GoldAnswer]:
        """Every user's first answer on each gold pair of `project`, scored, oldest first."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(
                    U.name,
                    P.pair_id,
                    GA.preferred,
                    GA.strength,
                    GA.created_at,
                    G.preferred.label("expected"),
                    G.strength.label("want"),
                    G.minimum,
                )
                .join(G, G.pair_row_id == GA.pair_row_id)
                .join(P, P.id == GA.pair_row_id)
                .join(U, U.id == GA.user_id)
                .where(GA.project_id == pid)
                .order_by(GA.created_at, GA.id)
            ).all()
        out = []
        for r in rows:
            c = check(r.expected, r.want, bool(r.minimum), r.preferred, r.strength)
            out.append(GoldAnswer(r.name, r.pair_id, c.side, c.level, r.created_at))
        return out

    def _status(self, conn: Connection, cfg: QualityConfig, pid: int, uid: int) -> QualityStatus:
        answers = conn.execute(_ANSWERS, {"uid": uid, "pid": pid}).all()
        lifted_at = conn.execute(_LAST_LIFT, {"uid": uid, "pid": pid}).scalar()
        passes = [check(r.expected, r.want, bool(r.minimum), r.preferred, r.strength).passed for r in answers]
        if lifted_at is None:
            since = passes
        else:
            since = [ok for ok, r in zip(passes, answers, strict=True) if _utc(r.created_at) > _utc(lifted_at)]
        return quality_status(cfg, passes, since, lifted=lifted_at is not None)

    # -----------------------------------------------------------------------------------------
    # The claim's gold step and the submit's note
    # -----------------------------------------------------------------------------------------

    def _gold_step(self, conn: Connection, proj: Project, uid: int, params: dict[str, Any]) -> Row[Any] | None:
        """Called by `claim` before the ordinary walk: a gold pair this user has not had (a row
        shaped like the walk's), or None to go on with the walk. Raises `QualityPaused` when the
        user may not be given a pair now. A project with no gold pairs and no qualification costs
        one query."""
        settings, has_gold = conn.execute(_QUALITY, {"pid": proj.id}).one()
        cfg = QualityConfig.from_stored(settings)
        if not has_gold and cfg.qualify == 0:
            return None
        status = self._status(conn, cfg, proj.id, uid)
        if status.state == PAUSED:
            raise QualityPaused(status)
        claims = conn.execute(_CLAIMS, {"uid": uid, "pid": proj.id}).scalar_one()
        draw = random.Random(f"{proj.seed}:gold:{uid}:{claims}")
        if status.state != QUALIFYING and draw.random() >= cfg.gold_rate:
            return None
        unseen = conn.execute(_UNSEEN_GOLD, {"uid": uid, "pid": proj.id}).scalars().all() if has_gold else []
        if not unseen:
            if status.state == QUALIFYING:
                raise QualityPaused(QualityStatus(PAUSED, "no-gold", status.gold_answered, status.gold_passed))
            return None
        cand = conn.execute(_GOLD_CANDIDATE, {"prid": draw.choice(unseen), "uid": uid}).first()
        return typing.cast("Row[Any] | None", cand)

    def _note_gold_answer(self, conn: Connection, a: Row[Any], values: dict[str, Any], now: datetime) -> None:
        """Called by `submit` with the assignment and the stored values: keep the user's first
        answer on a gold pair (nothing for an ordinary pair, or a gold pair answered before)."""
        conn.execute(
            _NOTE_ANSWER,
            {
                "prid": a.pair_row_id,
                "uid": a.user_id,
                "pid": a.project_id,
                "preferred": values["preferred"],
                "strength": values["strength"],
                "now": now,
            },
        )
