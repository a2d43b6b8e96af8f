"""`prefkit data ...`: validate, dedup, export, stats.

Each command only parses options and calls the module that owns the work; nothing heavy is
imported at module level (this must start in well under a second).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from prefkit.core.options import CONFIG_HELP, SET_HELP, App, command_config, option
from prefkit.data.dedup_config import DedupConfig
from prefkit.data.export_config import ExportConfig

if TYPE_CHECKING:
    from rich.console import Console

    from prefkit.data.validate import ValidationReport

app = App(no_args_is_help=True, add_completion=False)

OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace an existing output, but only one this same command wrote (never an input)."
)
SKIP_INVALID = typer.Option(
    False,
    "--skip-invalid",
    help="Skip bad rows instead of stopping: counted on stderr, written with reasons to *.rejected.jsonl "
    "beside the output.",
)


@app.command()
def validate(
    source: str = typer.Argument(..., help="A file (JSONL, JSON, Parquet), a save_to_disk folder, or a Hub id."),
    max_chars: int = typer.Option(32_000, help="Flag fields longer than this many characters."),
    max_errors: int = typer.Option(20, help="Show at most this many errors."),
    split: str | None = typer.Option(None, help="Split to read from a DatasetDict folder or Hub id."),
) -> None:
    """Read any supported format and report rows, columns, empty/over-long fields and errors."""
    from rich.console import Console

    from prefkit.core.errors import DataError
    from prefkit.data.validate import validate_source

    report = validate_source(source, max_chars=max_chars, max_errors=max_errors, split=split)
    console = Console()
    _print_validation(console, report)
    if not report.ok:  # exit code 2 when any record is bad
        first = report.errors[0]
        if report.rows > report.n_errors:
            console.print(
                f"To go on without the {report.n_errors} bad record(s): fix them, or pass --skip-invalid to "
                "`prefkit data dedup`, `prefkit data export` or `prefkit annotate import`, which skip them and "
                "write them with their reasons to a *.rejected.jsonl beside the output."
            )
        raise DataError(f"{report.n_errors} bad record(s); first: {first}")


def _print_validation(console: Console, report: ValidationReport) -> None:
    from rich.table import Table

    summary = Table(title=f"validate {report.source}", show_header=False)
    summary.add_row("format", report.format or "?")
    summary.add_row("rows", str(report.rows))
    summary.add_row("columns", ", ".join(report.columns))
    summary.add_row("errors", str(report.n_errors))
    summary.add_row("warnings", str(report.n_warnings))
    console.print(summary)

    fields = Table(title="fields")
    for col in ("field", "present", "empty", "max chars", "over-long"):
        fields.add_column(col, justify="left" if col == "field" else "right")
    for name, st in report.fields.items():
        fields.add_row(name, str(st.present), str(st.empty), str(st.max_chars), str(st.over_long))
    console.print(fields)

    for title, items, total in (
        ("errors", report.errors, report.n_errors),
        ("warnings", report.warnings, report.n_warnings),
    ):
        if not items:
            continue
        table = Table(title=f"first {len(items)} of {total} {title}")
        for col in ("where", "field", "problem"):
            table.add_column(col, overflow="fold")
        for e in items:
            where = e.file or ""
            if e.line is not None:
                where += f":{e.line}"
            elif e.row is not None:
                where += f" row {e.row}"
            table.add_row(where, e.field or "", e.message)
        console.print(table)


@app.command()
def dedup(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="Input file/folder/Hub id (any supported format)."),
    out: Path = typer.Argument(..., help="Output file (.jsonl, .json or .parquet)."),
    on: str = option(DedupConfig, "on"),
    threshold: float = option(DedupConfig, "threshold"),
    num_perm: int = option(DedupConfig, "num_perm"),
    ngram: int = option(DedupConfig, "ngram"),
    seed: int = option(DedupConfig, "seed"),
    verify: str = option(DedupConfig, "verify"),
    workers: int = option(DedupConfig, "workers"),
    report: Path | None = option(DedupConfig, "report"),
    overwrite: bool = OVERWRITE,
    skip_invalid: bool = SKIP_INVALID,
    engine: str = option(DedupConfig, "engine"),
    address: str | None = option(DedupConfig, "address"),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """MinHash near-duplicate removal (exact duplicates first), with a report beside the output."""
    # OUT, the report and (with --skip-invalid) the rejected file go through the output guard
    # first: none may be an input, and an existing one is replaced only with --overwrite and only
    # when `prefkit data dedup` wrote it.
    from prefkit.core.errors import DataError
    from prefkit.core.outputs import check_distinct, check_output
    from prefkit.core.rejects import rejected_path, skipped_line
    from prefkit.core.writers import output_suffix
    from prefkit.data.dedup import _report_path, dedup_file

    cfg = command_config(
        DedupConfig,
        ctx,
        config,
        set_,
        on=on,
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        seed=seed,
        verify=verify,
        workers=workers,
        report=str(report) if report is not None else None,
        engine=engine,
        address=address,
    )
    command = "data dedup"
    output_suffix(out)
    report_path = Path(cfg.report) if cfg.report is not None else _report_path(out)
    rejected = rejected_path(out) if skip_invalid else None
    check_distinct(("OUT", out), ("--report", report_path), ("the rejected file", rejected))
    for name, path in (("OUT", out), ("--report", report_path), ("the rejected file", rejected)):
        if path is not None:
            check_output(path, command, inputs=[source], overwrite=overwrite, option=name)
    invalid: list[DataError] | None = [] if skip_invalid else None
    rep = dedup_file(
        source,
        out,
        on=cfg.on,
        threshold=cfg.threshold,
        num_perm=cfg.num_perm,
        ngram=cfg.ngram,
        seed=cfg.seed,
        verify=cfg.verify,
        workers=cfg.workers,
        report=report_path,
        progress=True,
        invalid=invalid,
        rejected=rejected,
        marker=command,
        engine=cfg.engine,
        address=cfg.address,
    )
    if invalid:
        typer.echo(skipped_line(invalid, rejected), err=True)
    typer.echo(rep.summary())
    typer.echo(f"kept rows: {out}")
    typer.echo(f"report:    {report_path}")
    if rejected is not None:
        typer.echo(f"rejected:  {rejected} ({len(invalid or ())} rows)")


@app.command()
def export(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="A labelled preference file, or a pairs file with --judgements."),
    out: Path = typer.Argument(..., help="Output folder (save_to_disk layout + README.md dataset card)."),
    judgements: Path | None = typer.Option(
        None, help="A judgement table (JSONL/Parquet) to aggregate with SOURCE's pairs."
    ),
    test_size: float = option(ExportConfig, "test_size"),
    seed: int = option(ExportConfig, "seed"),
    margin: str = option(ExportConfig, "margin"),
    rule: str = option(ExportConfig, "rule"),
    parquet: bool = option(ExportConfig, "parquet"),
    jsonl: bool = option(ExportConfig, "jsonl"),
    push_to_hub: str | None = option(ExportConfig, "push_to_hub"),
    private: bool = option(ExportConfig, "private"),
    name: str | None = option(ExportConfig, "name"),
    license: str = option(ExportConfig, "license"),
    language: str | None = option(ExportConfig, "language"),
    trl: bool = option(ExportConfig, "trl"),
    sets: str | None = option(ExportConfig, "sets"),
    dedup_report: Path | None = option(ExportConfig, "dedup_report"),
    adversarial: bool = option(ExportConfig, "adversarial"),
    overwrite: bool = OVERWRITE,
    skip_invalid: bool = SKIP_INVALID,
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Build the Vi-Alpaca-style DatasetDict (train/test by prompt) with a dataset card."""
    from rich.console import Console

    from prefkit.core.rejects import skipped_line
    from prefkit.data.export import export_file

    cfg = command_config(
        ExportConfig,
        ctx,
        config,
        set_,
        test_size=test_size,
        seed=seed,
        margin=margin,
        rule=rule,
        parquet=parquet,
        jsonl=jsonl,
        trl=trl,
        sets=sets,
        name=name,
        license=license,
        language=language,
        dedup_report=str(dedup_report) if dedup_report is not None else None,
        adversarial=adversarial,
        push_to_hub=push_to_hub,
        private=private,
    )
    done = export_file(source, out, cfg, judgements=judgements, overwrite=overwrite, skip_invalid=skip_invalid)
    console = Console()
    if done.aggregate is not None:
        report = done.aggregate
        console.print(
            f"aggregated {report.judgements} judgements of {report.pairs} pairs ({cfg.rule}): "
            f"{report.exported} rows, {report.ties_dropped} ties dropped, "
            f"{report.unsafe_chosen_dropped} unsafe-chosen dropped, {report.unjudged_pairs} unjudged"
        )
    if done.invalid:
        typer.echo(skipped_line(done.invalid, done.rejected), err=True)
    if done.sets:
        for set_name in done.sets:
            console.print(f"wrote {out / set_name} ({set_name} set; card {out / set_name / 'README.md'})")
    else:
        sizes = ", ".join(f"{s} {ds.num_rows}" for s, ds in done.dsdict.items())
        console.print(f"wrote {out} ({sizes}; margin {cfg.margin}; card {out / 'README.md'})")
    if cfg.push_to_hub:
        from prefkit.data.hub import push_to_hub as push

        url = push(out, cfg.push_to_hub, private=cfg.private)
        console.print(f"pushed to {url}")


@app.command()
def stats(
    source: str = typer.Argument(..., help="A file, save_to_disk folder or Hub id."),
    split: str | None = typer.Option(None, help="Split to read from a DatasetDict."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Counts, length distributions, strength distribution, duplicate rate."""
    import json

    from prefkit.data.stats import compute_stats

    figures = compute_stats(source, split)
    if json_out:
        typer.echo(json.dumps(figures, ensure_ascii=False, indent=1))
    else:
        _print_stats(figures)


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"stats {stats['source']}", show_header=False)
    for key in ("format", "rows", "bad_rows", "prompts", "annotators"):
        if key in stats:
            summary.add_row(key, str(stats[key]))
    summary.add_row("exact duplicate rows", f"{stats['exact_duplicate_rows']} ({stats['exact_duplicate_rate']:.1%})")
    summary.add_row("repeated prompts", f"{stats['duplicate_prompt_rate']:.1%}")
    if "near_duplicate_prompt_rate" in stats:
        summary.add_row("near-duplicate prompts", f"{stats['near_duplicate_prompt_rate']:.1%}")
    if stats["strength"]:
        summary.add_row("strength", ", ".join(f"{k} {v}" for k, v in stats["strength"].items()))
    console.print(summary)
    if stats["lengths"]:
        table = Table(title="lengths")
        table.add_column("field")
        table.add_column("unit")
        for col in ("min", "mean", "p50", "p90", "p99", "max"):
            table.add_column(col, justify="right")
        for name, d in stats["lengths"].items():
            for unit in ("chars", "words"):
                table.add_row(name, unit, *(f"{d[unit][c]:g}" for c in ("min", "mean", "p50", "p90", "p99", "max")))
        console.print(table)
