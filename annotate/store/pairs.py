"""A project's pairs: importing them (with the project when it is new; idempotent by `pair_id`;
queue position and calibration membership from the project's seed and the pair's id) and reading
them back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefkit.annotate.store.projects import ProjectStore
from prefkit.annotate.store.records import ImportResult, Project, _no_nul
from prefkit.annotate.store.statements import P
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Pair

_IMPORT_CHUNK = 2000


def _hash_int(*parts: Any, bits: int = 56) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> (64 - bits)


class PairStore(ProjectStore):
    """The pairs of each project."""

    def import_project(
        self,
        name: str,
        pairs: Iterable[Pair],
        *,
        guidelines: str | None = None,
        overlap: int | None = None,
        calibration: float | None = None,
        calibration_overlap: int | None = None,
        seed: int = 0,
        safety_labels: bool = False,
    ) -> ImportResult:
        """`ensure_project` and `import_pairs` in one transaction (`prefkit annotate import`):
        if reading the pairs fails, a new project is not created either, so a retry may use
        other settings. Idempotent by `pair_id`, like `import_pairs`. `safety_labels` makes the
        project ask for Llama 2's safety label of each pair (never turned off here)."""
        _no_nul(name, "project name", ConfigError)
        try:
            with self._tx(write=True) as conn:
                proj = self._ensure_project(
                    conn,
                    name,
                    guidelines=guidelines,
                    overlap=overlap,
                    calibration=calibration,
                    calibration_overlap=calibration_overlap,
                    seed=seed,
                )
                if safety_labels:
                    self._set_safety_labels(conn, self._project(conn, name), True)
                return self._import_pairs(conn, proj, pairs)
        except IntegrityError:  # PostgreSQL: another import created the same project meanwhile
            raise ConfigError(f"project {name!r} was created by another import meanwhile; run this one again") from None

    def import_pairs(self, project: str, pairs: Iterable[Pair]) -> ImportResult:
        """Add pairs to a project in one transaction. Idempotent by `pair_id`: importing the same
        pairs again adds nothing. Queue order and calibration membership come from the project's
        seed and each pair's id, so they do not depend on import order."""
        with self._tx(write=True) as conn:
            return self._import_pairs(conn, self._project(conn, project), pairs)

    def _import_pairs(self, conn: Connection, proj: Project, pairs: Iterable[Pair]) -> ImportResult:
        seen = set(conn.execute(select(P.pair_id).where(P.project_id == proj.id)).scalars())
        now = self.now()
        added = skipped = 0
        batch: list[dict[str, Any]] = []
        for pair in pairs:
            if pair.pair_id in seen:
                skipped += 1
                continue
            seen.add(pair.pair_id)
            cal = _hash_int("calibration", proj.seed, pair.pair_id, bits=53) / 2**53 < proj.calibration
            position = _hash_int("position", proj.seed, pair.pair_id) - (2**56 if cal else 0)
            batch.append(
                dict(
                    project_id=proj.id,
                    pair_id=pair.pair_id,
                    data=pair.to_row(),
                    position=position,
                    is_calibration=cal,
                    required=proj.calibration_overlap if cal else proj.overlap,
                    done=0,
                    held=0,
                    complete=False,
                    created_at=now,
                )
            )
            if len(batch) >= _IMPORT_CHUNK:
                conn.execute(insert(P), batch)
                added += len(batch)
                batch = []
        if batch:
            conn.execute(insert(P), batch)
            added += len(batch)
        return ImportResult(added=added, skipped=skipped)

    def pairs(self, project: str) -> list[Pair]:
        """All pairs of a project, in import order."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(select(P.data).where(P.project_id == pid).order_by(P.id)).scalars()
            return [Pair.from_row(d) for d in rows]

    def count_pairs(self, project: str) -> int:
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return conn.execute(select(func.count()).select_from(P).where(P.project_id == pid)).scalar_one()
