"""A queue ordered by priority: the scores a reward model gave a project's open pairs (written by
`prefkit annotate prioritise`, which lives in `train`: the store never loads a model), the rank
they give each open pair, and the claim's walk in rank order.

Ranking (`finish_priority_run`, from the run's scores) puts, in this order:

1. the open calibration pairs, in their seeded-shuffle order (`selected_by: calibration`), so
   the calibration share is handed out first exactly as without priorities;
2. open pairs someone has already started (a judgement or a live claim), in the order they had,
   so that pairs with part of their overlap are finished before new ones are opened;
3. the other open pairs: a seeded `random_share` of them (by a hash of the project's seed and the
   pair id, like the calibration share; `selected_by: random`) kept in the seeded-shuffle order,
   interleaved at that share with the rest by priority, highest first (`selected_by:
   uncertainty`). Slot i (from 0) of this part is a random one when floor((i+1)·share) >
   floor(i·share); when one side runs out the other goes on.

The random share is what keeps the collected data an unbiased sample: which pairs are in it, and
in which order they are served, depend only on the project's seed and the pair ids, never on a
model's scores, so the labelled random pairs are at every moment a uniform sample of the project
(a researcher reweights with `selected_by`, see the export). Pairs added after a ranking, and
pairs that were open but not scored, have no rank: the claim serves them after the ranked ones,
in the seeded shuffle.

Each ranking takes ranks above every earlier one, so an annotator's place in the previous
ranking (the claim's per-user cursor) is behind the whole new one, and their next claim starts
at its front. The claim's guarantees (leases, overlap, SKIP LOCKED on PostgreSQL, never a pair
twice) are the ones of the seeded-shuffle walk: the ranked walk is the same statement with
another order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, exists, false, func, insert, select, true, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.pairs import PairStore, _hash_int
from prefkit.annotate.store.records import Project
from prefkit.annotate.store.statements import _BEFORE_ALL, _PICK, P, _b
from prefkit.annotate.tables import PriorityRunRow, PriorityScoreRow, ProjectRow, QueueRankRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Pair

R, S, Q = PriorityRunRow, PriorityScoreRow, QueueRankRow

CALIBRATION, RANDOM, UNCERTAINTY = "calibration", "random", "uncertainty"
SELECTED_BY = (RANDOM, UNCERTAINTY, CALIBRATION)  # the export's `selected_by` values
DEFAULT_RANDOM_SHARE = 0.2
METHODS = ("uncertainty", "disagreement")
_RANK_CHUNK = 2000
_NO_RANK = -1  # below every rank (ranks start at 0)

# The ranked walk: `_PICK` (its columns, and its test: open, not this user's, user not disabled)
# with the pair's rank, in rank order after `after_rank` (its `after` is left below every position).
_PICK_RANKED = (
    _PICK.add_columns(Q.rank)
    .join(Q, Q.pair_row_id == P.id)
    .where(Q.project_id == _b("pid"), Q.rank > _b("after_rank"))
    .order_by(None)
    .order_by(Q.rank)
)
_PICK_RANKED_PG = _PICK_RANKED.with_for_update(skip_locked=True, of=P)


@dataclass(frozen=True)
class PriorityRun:
    """One scoring of a project's open pairs (table `priority_runs`)."""

    id: int
    project: str
    method: str
    models: list[dict[str, Any]]  # [{"path", "weights", "sha256"}], in the order of each score's probabilities
    random_share: float
    started_at: datetime
    finished_at: datetime | None
    ranked: int | None  # open pairs it ranked (None while it scores)
    scored: int = 0  # pairs it has scores for


@dataclass(frozen=True)
class QueueEntry:
    """An open pair's place in the prioritised queue (`Store.queue_order`)."""

    pair_id: str
    rank: int
    selected_by: str
    priority: float | None  # None for pairs ranked without a score (calibration, started, random)


def in_random_share(seed: int, pair_id: str, share: float) -> bool:
    """Whether a pair is in the project's random share (a hash of the seed and the pair id, like
    the calibration share, drawn independently of it)."""
    return _hash_int("random", seed, pair_id, bits=53) / 2**53 < share


def interleave(random_pairs: Sequence[Any], ranked: Sequence[Any], share: float) -> list[tuple[Any, bool]]:
    """`random_pairs` and `ranked` merged so that slot i holds a random one when
    floor((i+1)·share) > floor(i·share): one in 1/share. When one side runs out the other goes
    on. Returns (item, from_random) in serving order."""
    out: list[tuple[Any, bool]] = []
    r = u = 0
    while r < len(random_pairs) or u < len(ranked):
        i = len(out)
        random_slot = math.floor((i + 1) * share + 1e-9) > math.floor(i * share + 1e-9)
        if (random_slot and r < len(random_pairs)) or u >= len(ranked):
            out.append((random_pairs[r], True))
            r += 1
        else:
            out.append((ranked[u], False))
            u += 1
    return out


def _run(row: Any, project: str, scored: int = 0) -> PriorityRun:
    return PriorityRun(
        id=row.id,
        project=project,
        method=row.method,
        models=list(row.models),
        random_share=row.random_share,
        started_at=row.started_at,
        finished_at=row.finished_at,
        ranked=row.ranked,
        scored=scored,
    )


class PriorityStore(PairStore):
    """Priorities from reward models, the ranked queue, and how each pair was selected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (project, user) -> rank of the pair last claimed from the ranked walk (see `claim`)
        self._rank_cursor: dict[tuple[int, int], int] = {}

    # -----------------------------------------------------------------------------------------
    # Scoring runs
    # -----------------------------------------------------------------------------------------

    def start_priority_run(
        self,
        project: str,
        models: Sequence[Mapping[str, Any]],
        method: str,
        random_share: float | None = None,
    ) -> PriorityRun:
        """A new scoring run, or the project's unfinished one with the same models, method and
        share (a rerun after an interruption resumes it: `pairs_to_score` leaves out what it
        scored). `random_share` None: the project's, i.e. its last finished run's (0.2 at first)."""
        if method not in METHODS:
            raise ConfigError(f"unknown priority method {method!r} (expected {' or '.join(METHODS)})")
        if not models:
            raise ConfigError("a priority run needs at least one model")
        if method == "disagreement" and len(models) < 2:
            raise ConfigError("disagreement needs two or more reward models (one model: method uncertainty)")
        if random_share is not None and not 0.0 <= random_share <= 1.0:
            raise ConfigError(f"random share must be between 0 and 1, got {random_share}")
        models = [dict(m) for m in models]

        def run(conn: Connection) -> PriorityRun:
            proj = self._project(conn, project)
            share = random_share if random_share is not None else self._random_share(conn, proj.id)
            unfinished = conn.execute(
                select(R).where(R.project_id == proj.id, R.finished_at.is_(None)).order_by(R.id.desc())
            ).all()
            for row in unfinished:
                if row.models == models and row.method == method and row.random_share == share:
                    scored = conn.execute(select(func.count()).select_from(S).where(S.run_id == row.id)).scalar_one()
                    return _run(row, proj.name, scored)
            rid = conn.execute(
                insert(R)
                .values(project_id=proj.id, method=method, models=models, random_share=share, started_at=self.now())
                .returning(R.id)
            ).scalar_one()
            return _run(conn.execute(select(R).where(R.id == rid)).one(), proj.name)

        return self._retrying(run)

    def _random_share(self, conn: Connection, project_id: int) -> float:
        last = conn.execute(
            select(R.random_share)
            .where(R.project_id == project_id, R.finished_at.is_not(None))
            .order_by(R.finished_at.desc(), R.id.desc())
            .limit(1)
        ).scalar()
        return DEFAULT_RANDOM_SHARE if last is None else float(last)

    def pairs_to_score(self, run_id: int) -> list[Pair]:
        """The run's project's open pairs that it has not scored yet, calibration pairs left out
        (they are served first whatever their score), in queue order."""
        with self._tx() as conn:
            return _open_pairs(conn, self._run_row(conn, run_id).project_id, run_id)

    def open_pair_ids(self, project: str) -> list[str]:
        """The ids of the project's open pairs a priority run scores (calibration pairs left out),
        in queue order: what a scorer must cover before a run starts."""
        with self._tx() as conn:
            return [p.pair_id for p in _open_pairs(conn, self._project(conn, project).id, None)]

    def record_scores(self, run_id: int, scores: Iterable[tuple[str, float, Sequence[float]]]) -> int:
        """Store (pair_id, priority, probability per model, or none when not known) for pairs of
        the run's project; one transaction. A pair scored before in this run keeps its first score. Returns how many
        were added."""
        scores = list(scores)

        def run(conn: Connection) -> int:
            r = self._run_row(conn, run_id)
            if r.finished_at is not None:
                raise ConfigError(f"priority run {run_id} is finished; start a new one")
            ids: dict[str, int] = {}
            have: set[int] = set()
            for i in range(0, len(scores), _RANK_CHUNK):  # a bounded IN list (SQLite allows 32,766 variables)
                part = [s[0] for s in scores[i : i + _RANK_CHUNK]]
                found = dict(
                    conn.execute(select(P.pair_id, P.id).where(P.project_id == r.project_id, P.pair_id.in_(part))).all()
                )
                ids.update(found)
                have.update(
                    conn.execute(
                        select(S.pair_row_id).where(S.run_id == run_id, S.pair_row_id.in_(list(found.values())))
                    ).scalars()
                )
            now = self.now()
            rows = []
            for pair_id, priority, probabilities in scores:
                if pair_id not in ids:
                    raise DataError(f"pair {pair_id} is not in this run's project", field="pair_id")
                if not math.isfinite(priority) or len(probabilities) not in (0, len(r.models)):
                    raise DataError(
                        f"pair {pair_id}: a finite priority and one probability per model "
                        f"({len(r.models)}), or none, are needed",
                        field="priority",
                    )
                if ids[pair_id] in have:
                    continue
                have.add(ids[pair_id])
                rows.append(
                    dict(
                        run_id=run_id,
                        pair_row_id=ids[pair_id],
                        priority=float(priority),
                        probabilities=[float(p) for p in probabilities],
                        scored_at=now,
                    )
                )
            for i in range(0, len(rows), _RANK_CHUNK):
                conn.execute(insert(S), rows[i : i + _RANK_CHUNK])
            return len(rows)

        return self._retrying(run)

    def finish_priority_run(self, run_id: int) -> PriorityRun:
        """Rank the project's open pairs from the run's scores (the module docstring says how)
        and mark the run finished; one transaction, so claims see the old ranking or the new one."""

        def run(conn: Connection) -> PriorityRun:
            r = self._run_row(conn, run_id)
            if r.finished_at is not None:
                raise ConfigError(f"priority run {run_id} is finished already")
            proj = self._project_by_id(conn, r.project_id)
            ranked = self._rank(conn, proj, run_id, r.random_share)
            conn.execute(update(R).where(R.id == run_id).values(finished_at=self.now(), ranked=ranked))
            scored = conn.execute(select(func.count()).select_from(S).where(S.run_id == run_id)).scalar_one()
            return _run(conn.execute(select(R).where(R.id == run_id)).one(), proj.name, scored)

        return self._retrying(run)

    def set_priorities(
        self,
        project: str,
        priorities: Mapping[str, float],
        *,
        models: Sequence[Mapping[str, Any]] = ({"path": "given", "weights": None, "sha256": None},),
        method: str = "uncertainty",
        probabilities: Mapping[str, Sequence[float]] | None = None,
        random_share: float | None = None,
    ) -> PriorityRun:
        """Priorities computed elsewhere (pair_id -> priority, higher first) in one call: a run
        with `models`, the scores, and the ranking. `probabilities`: pair_id -> one per model,
        when known."""
        run = self.start_priority_run(project, models, method, random_share)
        self.record_scores(run.id, [(pid, p, (probabilities or {}).get(pid, ())) for pid, p in priorities.items()])
        return self.finish_priority_run(run.id)

    def clear_priorities(self, project: str) -> int:
        """Back to the seeded shuffle: the open pairs lose their rank (and their `selected_by`,
        unless someone started them); pairs judged already keep how they were chosen. Returns
        how many pairs left the ranked queue."""

        def run(conn: Connection) -> int:
            pid = self._project(conn, project).id
            n = conn.execute(
                select(func.count()).select_from(Q).where(Q.project_id == pid, Q.rank.is_not(None))
            ).scalar_one()
            started = (P.id == Q.pair_row_id) & ((P.done + P.held > 0) | (P.complete == true()))
            conn.execute(delete(Q).where(Q.project_id == pid, ~exists().where(started)))
            conn.execute(update(Q).where(Q.project_id == pid).values(rank=None))
            return int(n)

        return self._retrying(run)

    def priority_runs(self, project: str) -> list[PriorityRun]:
        """The project's scoring runs, oldest first."""
        with self._tx() as conn:
            proj = self._project(conn, project)
            counts = dict(
                conn.execute(
                    select(S.run_id, func.count())
                    .join(R, R.id == S.run_id)
                    .where(R.project_id == proj.id)
                    .group_by(S.run_id)
                ).all()
            )
            rows = conn.execute(select(R).where(R.project_id == proj.id).order_by(R.id)).all()
        return [_run(r, proj.name, counts.get(r.id, 0)) for r in rows]

    def priority_scores(self, run_id: int) -> dict[str, tuple[float, list[float]]]:
        """pair_id -> (priority, probability per model) of a run."""
        with self._tx() as conn:
            rows = conn.execute(
                select(P.pair_id, S.priority, S.probabilities).join(P, P.id == S.pair_row_id).where(S.run_id == run_id)
            ).all()
        return {r.pair_id: (r.priority, list(r.probabilities)) for r in rows}

    def queue_order(self, project: str) -> list[QueueEntry]:
        """The ranked queue as it stands: open pairs with a rank, in serving order (pairs without
        one come after them, in the seeded shuffle)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(P.pair_id, Q.rank, Q.selected_by, S.priority)
                .select_from(Q)
                .join(P, P.id == Q.pair_row_id)
                .outerjoin(
                    S, (S.run_id == Q.run_id) & (S.pair_row_id == Q.pair_row_id) & (Q.selected_by == UNCERTAINTY)
                )
                .where(Q.project_id == pid, Q.rank.is_not(None), P.complete == false())
                .order_by(Q.rank)
            ).all()
        return [QueueEntry(r.pair_id, r.rank, r.selected_by, r.priority) for r in rows]

    def selected_by(self, project: str) -> dict[str, str]:
        """How each pair of the project was (or will be) chosen for labelling: `calibration`
        (the calibration share), `random` (the seeded shuffle or the random share: chosen
        independently of any model) or `uncertainty` (served by a reward model's priority)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(P.pair_id, P.is_calibration, Q.selected_by)
                .select_from(P)
                .outerjoin(Q, Q.pair_row_id == P.id)
                .where(P.project_id == pid)
            ).all()
        return {r.pair_id: r.selected_by or (CALIBRATION if r.is_calibration else RANDOM) for r in rows}

    # -----------------------------------------------------------------------------------------
    # Ranking
    # -----------------------------------------------------------------------------------------

    def _rank(self, conn: Connection, proj: Project, run_id: int, share: float) -> int:
        """Write the ranks of the project's open pairs (module docstring); returns how many."""
        rows = conn.execute(
            select(
                P.id,
                P.pair_id,
                P.position,
                P.is_calibration,
                P.complete,
                (P.done + P.held).label("started"),
                Q.rank,
                Q.selected_by,
                S.priority,
            )
            .select_from(P)
            .outerjoin(Q, Q.pair_row_id == P.id)
            .outerjoin(S, (S.pair_row_id == P.id) & (S.run_id == run_id))
            .where(P.project_id == proj.id)
        ).all()
        top = conn.execute(select(func.max(Q.rank)).where(Q.project_id == proj.id)).scalar()
        base = 0 if top is None else int(top) + 1
        open_rows = [r for r in rows if not r.complete]
        calibration = sorted((r for r in open_rows if r.is_calibration), key=lambda r: r.position)
        rest = [r for r in open_rows if not r.is_calibration]
        started = sorted((r for r in rest if r.started > 0), key=lambda r: (r.rank is None, r.rank or 0, r.position))
        fresh = [r for r in rest if r.started == 0]
        random_side = sorted(
            (r for r in fresh if in_random_share(proj.seed, r.pair_id, share)), key=lambda r: r.position
        )
        in_random = {r.id for r in random_side}
        scored = sorted(
            (r for r in fresh if r.id not in in_random and r.priority is not None),
            key=lambda r: (-r.priority, r.position),
        )
        order: list[tuple[Any, str]] = [(r, CALIBRATION) for r in calibration]
        order += [(r, r.selected_by or RANDOM) for r in started]
        order += [(r, RANDOM if is_random else UNCERTAINTY) for r, is_random in interleave(random_side, scored, share)]

        # complete pairs keep how they were chosen, without a rank; open ones get their new row
        complete = exists().where(P.id == Q.pair_row_id, P.complete == true())
        conn.execute(update(Q).where(Q.project_id == proj.id, Q.rank.is_not(None), complete).values(rank=None))
        conn.execute(delete(Q).where(Q.project_id == proj.id, ~complete))
        values = [
            dict(pair_row_id=r.id, project_id=proj.id, rank=base + i, selected_by=how, run_id=run_id)
            for i, (r, how) in enumerate(order)
        ]
        for i in range(0, len(values), _RANK_CHUNK):
            conn.execute(insert(Q), values[i : i + _RANK_CHUNK])
        return len(values)

    def _run_row(self, conn: Connection, run_id: int) -> Any:
        row = conn.execute(select(R).where(R.id == run_id)).first()
        if row is None:
            raise ConfigError(f"no priority run {run_id} in this store")
        return row

    def _project_by_id(self, conn: Connection, project_id: int) -> Project:
        name = conn.execute(select(ProjectRow.name).where(ProjectRow.id == project_id)).scalar_one()
        return self._project(conn, name)

    # -----------------------------------------------------------------------------------------
    # The claim's ranked walk (called from `QueueStore.claim`)
    # -----------------------------------------------------------------------------------------

    def _pick_ranked(self, conn: Connection, params: dict[str, Any], resume: bool) -> Row[Any] | None:
        """The first open ranked pair for this user after the rank they last claimed (when
        `resume`), then from the front; None when no ranked pair is open for them."""
        cursor = self._rank_cursor.get((params["pid"], params["uid"])) if resume else None
        stmt = _PICK_RANKED_PG if self._pg else _PICK_RANKED
        for start in ([cursor] if cursor is not None else []) + [_NO_RANK]:
            cand = conn.execute(stmt, {**params, "after": _BEFORE_ALL, "after_rank": start}).first()
            if cand is not None:
                return cand
        return None

    def _advance(self, project_id: int, user_id: int, cand: Row[Any]) -> None:
        """Move this user's walk past the pair just claimed: the ranked walk's cursor for a
        ranked pair, the seeded shuffle's for any other."""
        rank = getattr(cand, "rank", None)
        if rank is not None:
            self._rank_cursor[(project_id, user_id)] = rank
        else:
            self._cursor[(project_id, user_id)] = cand.position


def _open_pairs(conn: Connection, project_id: int, run_id: int | None) -> list[Pair]:
    """The project's open, non-calibration pairs (those `run_id` has not scored, when given), in
    queue order."""
    where = [P.project_id == project_id, P.complete == false(), P.is_calibration == false()]
    if run_id is not None:
        where.append(~exists().where(S.run_id == run_id, S.pair_row_id == P.id))
    rows = conn.execute(select(P.data).where(*where).order_by(P.position)).scalars()
    return [Pair.from_row(d) for d in rows]
