"""Export: a project's aggregated dataset, its judgement table, and how complete its pairs are.
Reviewers' decisions win over the aggregation rule; gold pairs stay out unless asked for."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import false, func, select, true

from prefkit.annotate.store.calibration import CalibrationStore
from prefkit.annotate.store.gold import NOT_GOLD
from prefkit.annotate.store.priorities import PriorityStore
from prefkit.annotate.store.results import ResultStore
from prefkit.annotate.store.review import ReviewStore
from prefkit.annotate.store.statements import P
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.export_config import ExportConfig
from prefkit.data.schema import Judgement

if TYPE_CHECKING:
    from prefkit.data.aggregate import AggregateReport


_E = ExportConfig()  # the export defaults below are its fields' (one place: `prefkit.data.export_config`)


class ExportStore(ReviewStore, ResultStore, PriorityStore, CalibrationStore):
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
        include_model_judgements: bool = False,
        include_gold: bool = False,
        edit_pairs: str = _E.edit_pairs,
        edit_strength: str = _E.edit_strength,
    ) -> AggregateReport:
        """Aggregate the project's judgements and write the dataset with
        `prefkit.data.export.export_judged`: what `prefkit data export --judgements` does. Every pair of the
        project goes in, so the card counts the ones not yet judged; with `complete_only`, only the
        pairs that have all the judgements their overlap asks for. The card and the returned
        report say how many judged pairs are complete and how many are below their overlap.
        `trl` adds TRL's conversational columns; `sets` writes Llama 2's helpfulness / safety sets
        under `out` (as `prefkit data export --trl --sets` does). People's judgements only, unless
        `include_model_judgements` adds the AI judges' (`prefkit annotate judge`): the dataset is
        then mixed, or AI-only when no person judged; the card says which, and how each judge
        agrees with people (`model_report`). `edit_pairs` / `edit_strength` add the pairs annotators'
        edits make (`prefkit.data.edits`). Each row's `selected_by` says how the queue chose its pair
        (`Store.selected_by`).

        A reviewer's decision on a pair wins over `rule` (`decided_by: review`; "unsure" leaves the
        pair out). Gold pairs and their judgements are left out; with `include_gold` they go in,
        decided by their expected answer (`decided_by: gold`; for a minimum level, that level)."""
        from prefkit.data.aggregate import Decision
        from prefkit.data.export import export_judged
        from prefkit.data.schema import Strength

        gold = self.gold_decisions(project)
        judgements = self._export_judgements(project, include_model_judgements, set() if include_gold else set(gold))
        pairs = [p for p in self.pairs(project) if include_gold or p.pair_id not in gold]
        decisions = {pid: r.decision() for pid, r in self.reviews(project).items()}
        if include_gold:
            decisions.update({pid: Decision(pref, Strength(s), "gold") for pid, (pref, s, _) in gold.items()})
        completeness = self.completeness(project, complete_only=complete_only)
        calibration = self.model_report(project).card() if self.model_annotators(project) else {}
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
                **({"calibration": calibration} if calibration else {}),
                "gold": (
                    f"{len(gold)} included, decided by their expected answer (`decided_by: gold`)."
                    if include_gold
                    else f"{len(gold)} gold pairs (pairs with a known answer, served to check annotators) left out."
                )
                if gold
                else None,
            },
            marker=marker,
            trl=trl,
            sets=tuple(sets),
            decisions=decisions,
            edit_pairs=edit_pairs,
            edit_strength=edit_strength,  # selected_by: carried by the judgements (_export_judgements)
        )
        report.complete_pairs = completeness["complete_pairs"]
        report.below_overlap_pairs = completeness["below_overlap_pairs"]
        report.complete_only = complete_only
        return report

    def _export_judgements(
        self, project: str, include_model_judgements: bool, leave_out: set[str] | frozenset[str] = frozenset()
    ) -> list[Judgement]:
        """People's judgements, and the model annotators' too when asked, but none on the pairs of
        `leave_out` (gold pairs not asked for); refused when none."""
        judgements = self.judgements(project)
        if include_model_judgements:
            judgements += self.model_judgements(project)
        how = self.selected_by(project)  # how the queue chose each pair, carried by every judgement on it
        judgements = [
            dataclasses.replace(j, selected_by=how.get(j.pair_id)) for j in judgements if j.pair_id not in leave_out
        ]
        if not judgements:
            hint = (
                "; it has AI judges' judgements: add --include-model-judgements"
                if not include_model_judgements and self.model_annotators(project)
                else ""
            )
            raise DataError(f"project {project!r} has no judgements to export{hint}")
        return judgements

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
                ).where(P.project_id == pid, NOT_GOLD)
            ).one()
        return {"complete_pairs": int(row[0]), "below_overlap_pairs": int(row[1]), "complete_only": complete_only}

    def export_judgements(
        self,
        project: str,
        out: str | Path,
        *,
        replace: bool = False,
        marker: str | None = None,
        include_model_judgements: bool = False,
        include_gold: bool = False,
    ) -> int:
        """Write the project's judgement table (`pair_id`, `annotator`, `preferred`, `strength`,
        shown order, flags, rationale, seconds, `created_at`, `annotator_kind`; JSONL, JSON or Parquet by the file's
        suffix): what `prefkit data export --judgements` and `prefkit round run --judgements`
        read. Refuses to overwrite a file unless `replace` (the CLI's output guard has checked it is
        a previous export's); `marker` marks the file as that command's output (`prefkit.core.outputs`).
        `include_model_judgements` adds the AI judges' judgements (`annotator_kind` says whose is
        whose). Judgements of gold pairs are left out unless `include_gold`. Returns the number of
        judgements written."""
        from prefkit.data.writers import write_judgements

        out = Path(out)
        if out.exists() and not replace:
            raise ConfigError(f"{out} already exists; give a new file name")
        gold = set() if include_gold else self.gold_pair_ids(project)
        judgements = self._export_judgements(project, include_model_judgements, gold)
        return write_judgements(judgements, out, marker=marker)
