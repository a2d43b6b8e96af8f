"""`prefkit data ...`: validate, dedup, export, stats, audit.

Each command only parses options and calls the module that owns the work; nothing heavy is
imported at module level (this must start in well under a second).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from prefkit.core.options import CONFIG_HELP, SET_HELP, App, command_config, option
from prefkit.data.audit_config import AUDIT_JSON, AuditConfig
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
    columns: str | None = option(ExportConfig, "columns"),
) -> None:
    """Read any supported format and report rows, columns, empty/over-long fields and errors."""
    from rich.console import Console

    from prefkit.core.config import parse_mapping
    from prefkit.core.errors import DataError
    from prefkit.data.validate import validate_source

    mapping = parse_mapping(columns, "--columns")
    report = validate_source(source, max_chars=max_chars, max_errors=max_errors, split=split, columns=mapping)
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
    columns: str | None = option(DedupConfig, "columns"),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """MinHash near-duplicate removal (exact duplicates first), with a report beside the output."""
    # OUT, the report and (with --skip-invalid) the rejected file go through the output guard
    # first: none may be an input, and an existing one is replaced only with --overwrite and only
    # when `prefkit data dedup` wrote it.
    from prefkit.core.config import parse_mapping
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
        columns=parse_mapping(columns, "--columns") if columns is not None else {},
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
        columns=cfg.columns,
    )
    if invalid:
        typer.echo(skipped_line(invalid, rejected), err=True)
    typer.echo(rep.summary())
    typer.echo(f"kept rows: {out}")
    typer.echo(f"report:    {report_path}")
    if rejected is not None:
        typer.echo(f"rejected:  {rejected} ({len(invalid or ())} rows)")


def reliability_line(reliability: dict[str, float]) -> str:
    """The `ability` rule's estimates, best first, for an export's summary."""
    ranked = sorted(reliability.items(), key=lambda kv: -kv[1])
    return "annotator reliability (Dawid-Skene): " + ", ".join(f"{a} {r:.2f}" for a, r in ranked)


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
    columns: str | None = option(ExportConfig, "columns"),
    edit_pairs: str = option(ExportConfig, "edit_pairs"),
    edit_strength: str = option(ExportConfig, "edit_strength"),
    audit: bool = option(ExportConfig, "audit"),
    overwrite: bool = OVERWRITE,
    skip_invalid: bool = SKIP_INVALID,
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Build the Vi-Alpaca-style DatasetDict (train/test by prompt) with a dataset card."""
    from rich.console import Console

    from prefkit.core.config import parse_mapping
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
        edit_pairs=edit_pairs,
        edit_strength=edit_strength,
        audit=audit,
        push_to_hub=push_to_hub,
        private=private,
        columns=parse_mapping(columns, "--columns") if columns is not None else {},
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
        if report.reliability:
            typer.echo(reliability_line(report.reliability))  # one line, however narrow the terminal
    if done.invalid:
        typer.echo(skipped_line(done.invalid, done.rejected), err=True)
    if done.kept_splits:
        console.print(f"kept the splits of {source} ({', '.join(done.kept_splits)}): every row, none re-split")
    if done.sets:
        for set_name in done.sets:
            console.print(f"wrote {out / set_name} ({set_name} set; card {out / set_name / 'README.md'})")
    else:
        sizes = ", ".join(f"{s} {ds.num_rows}" for s, ds in done.dsdict.items())
        console.print(f"wrote {out} ({sizes}; margin {cfg.margin}; card {out / 'README.md'})")
    for folder in [out / s for s in done.sets] or [out]:
        _echo_audit_flags(folder / AUDIT_JSON)
    if cfg.push_to_hub:
        from prefkit.data.hub import push_to_hub as push

        url = push(out, cfg.push_to_hub, private=cfg.private)
        console.print(f"pushed to {url}")


@app.command()
def stats(
    source: str = typer.Argument(..., help="A file, save_to_disk folder or Hub id."),
    split: str | None = typer.Option(None, help="Split to read from a DatasetDict."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    columns: str | None = option(ExportConfig, "columns"),
) -> None:
    """Counts, length distributions, strength distribution, duplicate rate."""
    import json

    from prefkit.core.config import parse_mapping
    from prefkit.data.stats import compute_stats

    figures = compute_stats(source, split, columns=parse_mapping(columns, "--columns"))
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


@app.command()
def audit(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="An export folder (every split) or any preference file."),
    split: str | None = option(AuditConfig, "split"),
    judgements: str | None = option(AuditConfig, "judgements"),
    reward_summary: str | None = option(AuditConfig, "reward_summary"),
    against: list[str] | None = typer.Option(
        None, "--against", help=AuditConfig.__dataclass_fields__["against"].metadata["help"] + " (repeatable)"
    ),
    decontaminate: str | None = option(AuditConfig, "decontaminate"),
    ngram: int = option(AuditConfig, "ngram"),
    threshold: float = option(AuditConfig, "threshold"),
    tokenizer: str | None = option(AuditConfig, "tokenizer"),
    length_share: float = option(AuditConfig, "length_share"),
    style_accuracy: float = option(AuditConfig, "style_accuracy"),
    position_share: float = option(AuditConfig, "position_share"),
    truncated_share: float = option(AuditConfig, "truncated_share"),
    refusal_share: float = option(AuditConfig, "refusal_share"),
    min_pairs: int = option(AuditConfig, "min_pairs"),
    out: Path | None = typer.Option(
        None, help="A new folder for audit.json, audit.svg (length figure) and audit.md (the dataset card's section)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    overwrite: bool = OVERWRITE,
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Before training: length and style confounds per strength, position bias, the agreement ceiling,
    leakage and contamination, bad answers; red flags that `prefkit train` warns about (or stops on)."""
    import json

    from prefkit.data.audit import audit_source, card_section, write_audit

    cfg = command_config(
        AuditConfig,
        ctx,
        config,
        set_,
        split=split,
        judgements=judgements,
        reward_summary=reward_summary,
        against=list(against or []),
        decontaminate=decontaminate,
        ngram=ngram,
        threshold=threshold,
        tokenizer=tokenizer,
        length_share=length_share,
        style_accuracy=style_accuracy,
        position_share=position_share,
        truncated_share=truncated_share,
        refusal_share=refusal_share,
        min_pairs=min_pairs,
    )
    if out is not None:
        from prefkit.core.outputs import check_output

        inputs = [source, cfg.judgements, cfg.reward_summary, cfg.decontaminate, *cfg.against]
        check_output(out, "data audit", inputs=inputs, overwrite=overwrite, folder=True)
    report = audit_source(source, cfg)
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    else:
        _print_audit(report)
    if out is not None:
        from prefkit.core.atomic import atomic_path
        from prefkit.core.outputs import mark_output

        with atomic_path(out, directory=True) as tmp:
            write_audit(report, tmp)
            (tmp / "audit.md").write_text(card_section(report, figure="audit.svg"), encoding="utf-8")
            mark_output(tmp, "data audit", folder=True)
        typer.echo(f"wrote {out}/audit.json, audit.svg, audit.md", err=json_out)


def _echo_audit_flags(path: Path) -> None:
    """One line per red flag of the audit an export wrote (nothing without an audit)."""
    import json

    if not path.is_file():
        return
    flags = json.loads(path.read_text(encoding="utf-8"))["red_flags"]
    typer.echo(f"audit: {len(flags)} red flag(s) ({path})" + ("" if flags else ": none"))
    for f in flags:
        typer.echo(f"  {f['name']}: {f['message']}")


def _print_audit(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from prefkit.data.audit import FEATURES

    console = Console()

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x:.0%}"

    summary = Table(title=f"audit {escape(str(report['source']))}", show_header=False)
    summary.add_row("rows", ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    if report["pairs_from_edits"]:
        summary.add_row("pairs made from edits", str(report["pairs_from_edits"]))
    summary.add_row("lengths in", report["length_unit"])
    a = report["answers"]
    summary.add_row(
        "answers",
        f"{a['identical']} identical, {report['unreadable']} unreadable rows, "
        f"{a['truncated_chosen'] + a['truncated_rejected']} cut off, refusals chosen {a['refusals_chosen']} / "
        f"rejected {a['refusals_rejected']} of {a['helpfulness_pairs']} helpfulness pairs",
    )
    if a["adversarial_pairs"]:
        summary.add_row(
            "adversarial pairs",
            f"{a['adversarial_pairs']}: refusals chosen {a['refusals_chosen_adversarial']} / rejected "
            f"{a['refusals_rejected_adversarial']}",
        )
    leak = report["leakage"]
    if leak.get("train_test"):
        t = leak["train_test"]
        summary.add_row("train/test leakage", f"{t['leaked']} of {t['test_prompts']} test prompts")
    for name, x in leak["against"].items():
        summary.add_row(f"near-duplicates of {escape(name)}", f"{x['near_duplicates']} of {x['prompts']} prompts")
    if report.get("contamination"):
        c = report["contamination"]
        summary.add_row(f"{c['ngram']}-gram overlap with {escape(c['file'])}", f"{c['overlapping']} prompts")
    bias = report.get("position_bias")
    if bias:
        summary.add_row("left-answer share", f"{pct(bias['left_share'])} of {bias['decided']} decided votes")
    console.print(summary)

    style = Table(title="chosen vs rejected per strength")
    rm = report.get("reward_model")
    columns = ["strength", "pairs", "chosen longer", "length ratio", "style-only acc", "human ceiling"]
    for col in columns + ([f"{rm['stage']} acc"] if rm else []):
        style.add_column(col, justify="left" if col == "strength" else "right")
    coefs = Table(title="style control: standardised coefficients (Chatbot Arena's, on training pairs)")
    for col in ("strength", *FEATURES):
        coefs.add_column(col, justify="left" if col == "strength" else "right")
    for name, s in report["style"].items():
        c = report["agreement"].get(name)
        cells = [
            name.replace("_", " "),
            str(s["pairs"]),
            pct(s["chosen_longer_share"]),
            str(s["median_length_ratio"]),
            pct(s["style_accuracy"]),
            f"{pct(c['ceiling'])} ({c['pairs']})" if c else "–",
        ]
        if rm:
            cells.append(pct(rm["by_strength"].get(name, rm["accuracy"] if name == "all" else None)))
        style.add_row(*cells)
        coef = s["coefficients"] or {}
        coefs.add_row(name.replace("_", " "), *(f"{coef.get(f, 0.0):+.2f}" for f in FEATURES))
    console.print(style)
    console.print(coefs)
    if bias and bias["by_annotator"]:
        per = Table(title="position bias per annotator")
        for col in ("annotator", "decided votes", "left share"):
            per.add_column(col)
        for name, t in bias["by_annotator"].items():
            per.add_row(escape(name), str(t["decided"]), pct(t["left_share"]))
        console.print(per)
    flags = report["red_flags"]
    if flags:
        console.print(f"[bold red]red flags ({len(flags)})[/]")
        for f in flags:
            console.print(f"  [red]{f['name']}[/]: {escape(f['message'])}")
    else:
        console.print("no red flags")
