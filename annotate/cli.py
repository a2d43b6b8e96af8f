"""`prefkit annotate ...`: init, import, users add|list|disable, assign, unassign, export, serve.

Every command takes `--db` (a SQLite path or a `postgresql+psycopg://` URL; default `$PREFKIT_DB`
or `annotations.db`). Nothing heavy is imported at module level: the store, readers and
Streamlit load inside the commands.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from annotate.store import Store

app = typer.Typer(no_args_is_help=True, add_completion=False)
users_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Add, list and disable annotators.")
app.add_typer(users_app, name="users")

DB_OPTION = typer.Option(
    "annotations.db", "--db", envvar="PREFKIT_DB",
    help="Store: a SQLite file path or a SQLAlchemy URL (postgresql+psycopg://user@host/db).",
)


def _store(db: str) -> "Store":
    """The store, opened for one command: `with _store(db) as store:` closes it after."""
    from annotate.store import Store

    return Store.open(db)


@app.command()
def init(db: str = DB_OPTION) -> None:
    """Create the store's tables (SQLite in WAL mode, or PostgreSQL). Safe to run again."""
    with _store(db) as store:
        typer.echo(f"store ready: {store.engine.url.render_as_string(hide_password=True)}")


@app.command("import")
def import_(
    pairs: str = typer.Argument(
        ..., help="Pairs from `prefkit generate` (Parquet shards folder) or any preference file."
    ),
    project: str = typer.Option(..., "--project", help="Project name; created on first import."),
    overlap: Optional[int] = typer.Option(
        None, help="Judgements each pair needs from different annotators (new project: 2)."
    ),
    calibration: Optional[float] = typer.Option(None, help="Share of pairs that get more judgements (new project: 0)."),
    calibration_overlap: Optional[int] = typer.Option(
        None, help="Judgements a calibration pair needs (default: the overlap)."
    ),
    seed: int = typer.Option(0, help="Seed for queue order and the calibration draw (new project)."),
    guidelines: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Markdown file of instructions."),
    db: str = DB_OPTION,
) -> None:
    """Load pairs into a project. Importing the same pairs again adds nothing."""
    from data.readers import read_pairs

    with _store(db) as store:
        store.ensure_project(
            project, guidelines=guidelines.read_text(encoding="utf-8") if guidelines else None, overlap=overlap,
            calibration=calibration, calibration_overlap=calibration_overlap, seed=seed,
        )
        result = store.import_pairs(project, read_pairs(pairs))
        total = store.count_pairs(project)
    typer.echo(f"{project}: added {result.added} pairs, {result.skipped} already there; {total} in the project")


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="May see the dashboard, export and manage users."),
    db: str = DB_OPTION,
) -> None:
    """Create a user and print their sign-in token (shown only now; the store keeps a hash)."""
    with _store(db) as store:
        token = store.add_user(name, admin=admin)
    typer.echo(f"{'admin' if admin else 'annotator'} {name!r} added; sign-in token (shown only now):", err=True)
    typer.echo(token)


@users_app.command("list")
def users_list(db: str = DB_OPTION) -> None:
    """List users with their role and status."""
    with _store(db) as store:
        users = store.list_users()
    if not users:
        typer.echo("no users yet: prefkit annotate users add NAME", err=True)
    for u in users:
        typer.echo(f"{u.name}\t{'admin' if u.is_admin else 'annotator'}\t{'disabled' if u.disabled else 'active'}")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Disable a user: their token and sessions stop working; their claims go back to the queue."""
    with _store(db) as store:
        store.disable_user(name)
    typer.echo(f"{name!r} disabled")


@app.command()
def assign(
    names: list[str] = typer.Argument(..., help="User names."),
    project: str = typer.Option(..., "--project", help="Project they may label."),
    db: str = DB_OPTION,
) -> None:
    """Let annotators label a project. A project with no one assigned is open to every annotator;
    once someone is assigned, only its members (and admins) see and label it."""
    with _store(db) as store:
        for name in names:
            store.assign(project, name)
        members = store.members(project)
    typer.echo(f"{project}: {', '.join(members)}")


@app.command()
def unassign(
    names: list[str] = typer.Argument(..., help="User names."),
    project: str = typer.Option(..., "--project", help="Project to take them off."),
    db: str = DB_OPTION,
) -> None:
    """Take annotators off a project (a pair they hold there goes back to the queue). With no
    one left assigned, the project is open to every annotator again."""
    with _store(db) as store:
        for name in names:
            store.unassign(project, name)
        members = store.members(project)
    typer.echo(f"{project}: {', '.join(members) if members else 'open to every annotator'}")


@app.command()
def export(
    out: Path = typer.Argument(
        ..., help="Output folder (save_to_disk layout + README.md dataset card); with --judgements, a new file."
    ),
    project: str = typer.Option(..., "--project", help="Project to export."),
    rule: str = typer.Option("mean", help="How several judgements become one row: mean or majority."),
    margin: str = typer.Option("small", help="Margin scheme: none, small or large (Llama 2, Table 28)."),
    test_size: float = typer.Option(0.1, help="Share of prompts in the test split."),
    seed: int = typer.Option(42, help="Seed for the train/test split."),
    parquet: bool = typer.Option(False, "--parquet", help="Also write Parquet files per split."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write JSONL files per split."),
    name: Optional[str] = typer.Option(None, help="Dataset name for the card (default: the project's)."),
    complete_only: bool = typer.Option(
        False, "--complete-only", help="Export only pairs that have all the judgements their overlap asks for."
    ),
    judgements: bool = typer.Option(
        False, "--judgements",
        help="Write the raw judgement table to OUT (.jsonl, .json or .parquet) instead: what "
        "`prefkit round run --judgements` and `prefkit data export --judgements` read.",
    ),
    db: str = DB_OPTION,
) -> None:
    """Aggregate the project's judgements and write the dataset, as `prefkit data export` does
    (or, with --judgements, write the judgements themselves)."""
    with _store(db) as store:
        if judgements:
            n = store.export_judgements(project, out)
            typer.echo(f"wrote {out}: {n} judgements of project {project}")
            return
        report = store.export(
            project, out, rule=rule, margin=margin, test_size=test_size, seed=seed, parquet=parquet, jsonl=jsonl,
            name=name, complete_only=complete_only,
        )
    figures = report.to_dict()
    typer.echo(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in figures.items() if k != "strength_counts"))


@app.command()
def serve(
    db: str = DB_OPTION,
    port: int = typer.Option(8501, help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 to serve a team)."),
    session_hours: float = typer.Option(
        12.0, "--session-hours", envvar="PREFKIT_SESSION_HOURS",
        help="How long a sign-in lasts (closing the tab does not end it; signing out does).",
    ),
) -> None:
    """Start the annotation app (Streamlit, headless) on this store."""
    from annotate.server import streamlit_command

    if not session_hours > 0:
        raise typer.BadParameter(f"must be above 0, got {session_hours}", param_hint="--session-hours")
    _store(db).close()  # create the tables and fail here, not in the browser, on a bad URL
    typer.echo(f"annotation app on http://{address}:{port} (Ctrl-C to stop)", err=True)
    try:
        code = subprocess.run(streamlit_command(port, address), env={**os.environ, "PREFKIT_DB": db, "PREFKIT_SESSION_HOURS": str(session_hours)}).returncode
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
