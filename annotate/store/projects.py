"""Projects: creating one (its queue settings: overlap, calibration share, seed), finding it,
its guidelines and whether it asks for safety labels.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefkit.annotate.store.connection import StoreBase
from prefkit.annotate.store.records import Project, _no_nul, _project
from prefkit.annotate.store.statements import _SAFETY_LABELS
from prefkit.annotate.tables import ProjectRow, ProjectSafetyLabelsRow
from prefkit.core.errors import ConfigError


class ProjectStore(StoreBase):
    """Projects of the store."""

    def create_project(
        self,
        name: str,
        guidelines: str = "",
        overlap: int = 2,
        calibration: float = 0.0,
        calibration_overlap: int | None = None,
        seed: int = 0,
    ) -> Project:
        """A new project. Each pair needs `overlap` judgements from different annotators; a
        seeded `calibration` share of pairs needs `calibration_overlap` (default: `overlap`, so
        a team of `overlap` annotators can finish them) and is handed out first, so agreement
        figures appear early."""
        values = self._new_project_values(name, guidelines, overlap, calibration, calibration_overlap, seed)
        try:
            with self._tx(write=True) as conn:
                conn.execute(insert(ProjectRow).values(**values))
        except IntegrityError:
            raise ConfigError(f"project {name!r} already exists") from None
        return self.get_project(name)

    def ensure_project(
        self,
        name: str,
        *,
        guidelines: str | None = None,
        overlap: int | None = None,
        calibration: float | None = None,
        calibration_overlap: int | None = None,
        seed: int = 0,
    ) -> Project:
        """The project `name`, created if it is missing (settings left None get
        `create_project`'s defaults; `seed` is used only then). An existing project keeps its
        queue settings: asking for different ones is a ConfigError; given `guidelines` replace
        its guidelines. One write transaction, so concurrent callers create it once."""
        _no_nul(name, "project name", ConfigError)

        def run(conn: Connection) -> Project:
            return self._ensure_project(
                conn,
                name,
                guidelines=guidelines,
                overlap=overlap,
                calibration=calibration,
                calibration_overlap=calibration_overlap,
                seed=seed,
            )

        return self._retrying(run)  # a concurrent creator's insert wins; the retry finds its project

    def _ensure_project(
        self,
        conn: Connection,
        name: str,
        *,
        guidelines: str | None,
        overlap: int | None,
        calibration: float | None,
        calibration_overlap: int | None,
        seed: int,
    ) -> Project:
        """The body of `ensure_project`, inside the caller's write transaction."""
        asked = {"overlap": overlap, "calibration": calibration, "calibration_overlap": calibration_overlap}
        row = conn.execute(select(ProjectRow).where(ProjectRow.name == name)).first()
        if row is None:
            conn.execute(
                insert(ProjectRow).values(
                    **self._new_project_values(
                        name,
                        guidelines or "",
                        2 if overlap is None else overlap,
                        0.0 if calibration is None else calibration,
                        calibration_overlap,
                        seed,
                    )
                )
            )
            return self._project(conn, name)
        existing = _project(row)
        clash = [k for k, v in asked.items() if v is not None and v != getattr(existing, k)]
        if clash:
            have = ", ".join(f"{k}={getattr(existing, k)}" for k in clash)
            raise ConfigError(f"project {name!r} already exists with {have}; queue settings cannot change")
        if guidelines is not None and guidelines != existing.guidelines:
            _no_nul(guidelines, "guidelines")
            conn.execute(update(ProjectRow).where(ProjectRow.id == existing.id).values(guidelines=guidelines))
            return self._project(conn, name)
        return existing

    def _new_project_values(
        self, name: str, guidelines: str, overlap: int, calibration: float, calibration_overlap: int | None, seed: int
    ) -> dict[str, Any]:
        if not name.strip():
            raise ConfigError("project name is empty")
        _no_nul(name, "project name", ConfigError)
        _no_nul(guidelines, "guidelines")
        if overlap < 1:
            raise ConfigError(f"overlap must be at least 1, got {overlap}")
        if not 0.0 <= calibration <= 1.0:
            raise ConfigError(f"calibration must be a share between 0 and 1, got {calibration}")
        cal_overlap = calibration_overlap if calibration_overlap is not None else overlap
        if cal_overlap < overlap:
            raise ConfigError(f"calibration_overlap ({cal_overlap}) must be at least overlap ({overlap})")
        return dict(
            name=name,
            guidelines=guidelines,
            overlap=overlap,
            calibration=calibration,
            calibration_overlap=cal_overlap,
            seed=seed,
            created_at=self.now(),
        )

    def get_project(self, name: str) -> Project:
        with self._tx() as conn:
            return self._project(conn, name)

    def list_projects(self) -> list[Project]:
        with self._tx() as conn:
            rows = conn.execute(select(ProjectRow, _SAFETY_LABELS).order_by(ProjectRow.name)).all()
        return [_project(r) for r in rows]

    def set_safety_labels(self, name: str, on: bool = True) -> Project:
        """Make the project ask for (or stop asking for) Llama 2's safety label of each pair."""
        with self._tx(write=True) as conn:
            self._set_safety_labels(conn, self._project(conn, name), on)
            return self._project(conn, name)

    def _set_safety_labels(self, conn: Connection, project: Project, on: bool) -> None:
        if on and not project.safety_labels:
            conn.execute(insert(ProjectSafetyLabelsRow).values(project_id=project.id, created_at=self.now()))
        elif not on and project.safety_labels:
            conn.execute(delete(ProjectSafetyLabelsRow).where(ProjectSafetyLabelsRow.project_id == project.id))

    def set_guidelines(self, name: str, markdown: str) -> None:
        _no_nul(markdown, "guidelines")
        with self._tx(write=True) as conn:
            pid = self._project(conn, name).id
            conn.execute(update(ProjectRow).where(ProjectRow.id == pid).values(guidelines=markdown))

    def _project(self, conn: Connection, name: str) -> Project:
        row = (
            None
            if "\x00" in name
            else conn.execute(select(ProjectRow, _SAFETY_LABELS).where(ProjectRow.name == name)).first()
        )
        if row is None:
            raise ConfigError(f"no project named {name!r} in this store")
        return _project(row)
