"""Edit-and-rank (Llama 3): whether a project lets annotators edit the answer they prefer, and the
check a judgement carrying an edit passes. Off by default: `set_edits` turns it on per project
(`prefkit annotate import --edits`); the edit is stored with the judgement (`judgements.edited`)
and exported as the `edited` column (`prefkit.data.edits` makes pairs of it).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from prefkit.annotate.store.projects import ProjectStore
from prefkit.annotate.store.records import Project
from prefkit.annotate.tables import ProjectRow
from prefkit.core.errors import DataError


class EditStore(ProjectStore):
    """The per-project edit-and-rank switch."""

    def set_edits(self, name: str, on: bool = True) -> Project:
        """Let the project's annotators edit the preferred answer on the Label page (or stop)."""
        with self._tx(write=True) as conn:
            pid = self._project(conn, name).id
            conn.execute(update(ProjectRow).where(ProjectRow.id == pid).values(edits=on))
            return self._project(conn, name)


def check_edit_allowed(conn: Connection, project_id: int) -> None:
    """Refuse an edited judgement on a project that does not take edits (nothing is recorded)."""
    if not conn.execute(select(ProjectRow.edits).where(ProjectRow.id == project_id)).scalar():
        raise DataError(
            "this project does not take edits (turn them on with `annotate import --edits`)", field="edited"
        )
