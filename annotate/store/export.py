"""Export: a project's aggregated dataset, its judgement table, and how complete its pairs are."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import false, func, select, true

from prefkit.annotate.store.pairs import PairStore
from prefkit.annotate.store.results import ResultStore
from prefkit.annotate.store.statements import P
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.export_config import ExportConfig

if TYPE_CHECKING:
    from prefkit.data.aggregate import AggregateReport


_E = ExportConfig()  # the export defaults below are its fields' (one place: `prefkit.data.export_config`)


class ExportStore(ResultStore, PairStore):
    """Writing what a project produced."""

    def export(
        self,
        project: str,
        out: str | Path,
        *,
        rule: str = _E.rule,
        margin: str = _E.margin,
        test_size: float = _E.test_size,
        seed: int = _E.seed,
        parquet: bool = _E.parquet,
        jsonl: bool = _E.jsonl,
        name: str | None = _E.name,
        marker: str | None = None,
        complete_only: bool = False,
        trl: bool = _E.trl,
        sets: tuple[str, ...] = (),
    ) -> AggregateReport:
        """Aggregate the project's judgements and write the dataset with
        `prefkit.data.export.export_judged`: what `prefkit data export --judgements` does. Every pair of the
        project goes in, so the card counts the ones not yet judged; with `complete_only`, only the
        pairs that have all the judgements their overlap asks for. The card and the returned
        report say how many judged pairs are complete and how many are below their overlap.
        `trl` adds TRL's conversational columns; `sets` writes Llama 2's helpfulness / safety sets
        under `out` (as `prefkit data export --trl --sets` does)."""
        from prefkit.data.export import export_judged

        judgements = self.judgements(project)
        if not judgements:
            raise DataError(f"project {project!r} has no judgements to export")
        pairs = self.pairs(project)
        completeness = self.completeness(project, complete_only=complete_only)
        if complete_only:
            keep = self._complete_pair_ids(project)
            pairs = [p for p in pairs if p.pair_id in keep]
            judgements = [j for j in judgements if j.pair_id in keep]
            if not judgements:
                raise DataError(f"project {project!r} has no pair with all its judgements yet (--complete-only)")
        _, report = export_judged(
            pairs,
            judgements,
            Path(out),
            rule=rule,
            margin=margin,
            test_size=test_size,
            seed=seed,
            parquet=parquet,
            jsonl=jsonl,
            name=name or project,
            provenance={
                "source": "prefkit annotate",
                "project": project,
                "pairs": len(pairs),
                "completeness": completeness,
            },
            marker=marker,
            trl=trl,
            sets=tuple(sets),
        )
        report.complete_pairs = completeness["complete_pairs"]
        report.below_overlap_pairs = completeness["below_overlap_pairs"]
        report.complete_only = complete_only
        return report

    def _complete_pair_ids(self, project: str) -> set[str]:
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return set(conn.execute(select(P.pair_id).where(P.project_id == pid, P.complete == true())).scalars())

    def completeness(self, project: str, complete_only: bool = False) -> dict[str, Any]:
        """Judged pairs at their full overlap (`complete_pairs`) and judged pairs still below it
        (`below_overlap_pairs`), for the export's summary and dataset card."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            row = conn.execute(
                select(
                    func.count().filter(P.complete == true()),
                    func.count().filter(P.complete == false(), P.done > 0),
                ).where(P.project_id == pid)
            ).one()
        return {"complete_pairs": int(row[0]), "below_overlap_pairs": int(row[1]), "complete_only": complete_only}

    def export_judgements(
        self, project: str, out: str | Path, *, replace: bool = False, marker: str | None = None
    ) -> int:
        """Write the project's judgement table (`pair_id`, `annotator`, `preferred`, `strength`,
        shown order, flags, rationale, seconds, `created_at`; JSONL, JSON or Parquet by the file's
        suffix): what `prefkit data export --judgements` and `prefkit round run --judgements`
        read. Refuses to overwrite a file unless `replace` (the CLI's output guard has checked it is
        a previous export's); `marker` marks the file as that command's output (`prefkit.core.outputs`).
        Returns the number of judgements written."""
        from prefkit.core.outputs import mark_output
        from prefkit.data.writers import write_judgements

        out = Path(out)
        if out.exists() and not replace:
            raise ConfigError(f"{out} already exists; give a new file name")
        judgements = self.judgements(project)
        if not judgements:
            raise DataError(f"project {project!r} has no judgements to export")
        n = write_judgements(judgements, out)
        if marker is not None:
            mark_output(out, marker, folder=False)
        return n
