"""`prefkit annotate ...`: init, import, users add|list|disable|enable|reset-token, assign, unassign,
export, serve.

Every command takes `--db` (a SQLite path or a `postgresql+psycopg://` URL; default `$PREFKIT_DB`
or `annotations.db`). Nothing heavy is imported at module level: the store, readers and
Streamlit load inside the commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from prefkit.core.options import App, option
from prefkit.data.export_config import ExportConfig

if TYPE_CHECKING:
    from prefkit.annotate.store import Store

app = App(no_args_is_help=True, add_completion=False)
users_app = App(
    no_args_is_help=True, add_completion=False, help="Add, list, disable and re-enable annotators; reset a token."
)
app.add_typer(users_app, name="users")

DB_OPTION = typer.Option(
    "annotations.db",
    "--db",
    envvar="PREFKIT_DB",
    help="Store: a SQLite file path or a SQLAlchemy URL (postgresql+psycopg://user@host/db).",
)


DB_POOL_OPTION = typer.Option(
    None,
    "--db-pool",
    min=0,
    help="Store connections kept open for reuse (default 16; 0 = a new connection per transaction). "
    "Also settable in the URL as ?pool=N.",
)


def _open(db: str) -> Store:
    from prefkit.annotate.store import Store, one_line_errors

    with one_line_errors(db):
        return Store.open(db)


@contextlib.contextmanager
def _store(db: str) -> Iterator[Store]:
    """The store, opened for one command and closed after; a database that cannot be reached
    (now or midway) is one line on stderr, exit 2."""
    from prefkit.annotate.store import one_line_errors

    store = _open(db)
    try:
        with one_line_errors(db):
            yield store
    finally:
        store.close()


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
    project: str = typer.Option(..., "--project", help="Project name; created by the first import that succeeds."),
    overlap: int | None = typer.Option(
        None, help="Judgements each pair needs from different annotators (new project: 2)."
    ),
    calibration: float | None = typer.Option(None, help="Share of pairs that get more judgements (new project: 0)."),
    calibration_overlap: int | None = typer.Option(
        None, help="Judgements a calibration pair needs (default: the overlap)."
    ),
    seed: int = typer.Option(0, help="Seed for queue order and the calibration draw (new project)."),
    guidelines: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Markdown file of instructions."),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Skip bad rows instead of stopping: counted on stderr, written with reasons to PROJECT.rejected.jsonl "
        "beside a SQLite store (in the current folder for a server store), or to --rejected.",
    ),
    rejected: Path | None = typer.Option(None, help="Where --skip-invalid writes the bad rows."),
    safety_labels: bool = typer.Option(
        False,
        "--safety-labels",
        help="Make the project ask for Llama 2's safety label of each pair on the Label page (the preferred "
        "response is safe and the other not / both safe / both unsafe), required before a choice is recorded.",
    ),
    db: str = DB_OPTION,
) -> None:
    """Load pairs into a project. Importing the same pairs again adds nothing."""
    from prefkit.data.readers import read_pairs

    text = _read_guidelines(guidelines) if guidelines else None
    invalid, rejected = (
        _rejected_target(pairs, rejected or _default_rejected(project, db), db) if skip_invalid else (None, None)
    )
    read = read_pairs(pairs, errors=invalid)
    if invalid and rejected is not None:
        _write_rejected(invalid, rejected)
    with _store(db) as store:
        # one transaction: a store error half-way creates no project (a retry may change settings)
        result = store.import_project(
            project,
            read,
            guidelines=text,
            overlap=overlap,
            calibration=calibration,
            calibration_overlap=calibration_overlap,
            seed=seed,
            safety_labels=safety_labels,
        )
        total = store.count_pairs(project)
    typer.echo(f"{project}: added {result.added} pairs, {result.skipped} already there; {total} in the project")


def _read_guidelines(path: Path) -> str:
    from prefkit.core.errors import DataError

    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text: {e.reason}", file=path, line=line, field="guidelines") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=path, field="guidelines") from None


def store_paths(db: str) -> list[Path]:
    """The files of a SQLite store (the database and its WAL/SHM companions); none for a server URL."""
    if "://" in db:
        if not db.startswith("sqlite:///") or db in ("sqlite://", "sqlite:///:memory:"):
            return []
        db = db[len("sqlite:///") :].split("?", 1)[0]
    path = Path(db).expanduser()
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _default_rejected(project: str, db: str) -> Path:
    """`PROJECT.rejected.jsonl` beside a SQLite store; in the current folder for a server store."""
    files = store_paths(db)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in project).lstrip(".") or "project"
    return (files[0].parent if files else Path(".")) / f"{safe}.rejected.jsonl"


def _rejected_target(pairs: str, target: Path, db: str) -> tuple[list, Path]:
    """The list that collects bad rows and the checked path they go to. A rejected file is a
    log of one import: it replaces a previous one of `annotate import` only."""
    from prefkit.core.errors import DataError
    from prefkit.core.outputs import check_not_input, check_output, written_by

    check_not_input(target, [pairs, *store_paths(db)], option="the rejected file")
    if target.is_file() and target.stat().st_size and written_by(target, folder=False) != "annotate import":
        raise DataError(
            "the rejected file already exists and was not written by prefkit annotate import; "
            "choose another path with --rejected",
            file=target,
        )
    check_output(target, "annotate import", overwrite=True, option="the rejected file")
    return [], target


def _write_rejected(invalid: list, path: Path) -> None:
    from prefkit.core.outputs import mark_output
    from prefkit.core.rejects import skipped_line, write_rejected

    write_rejected(invalid, path)
    mark_output(path, "annotate import", folder=False)
    typer.echo(skipped_line(invalid, path), err=True)


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
    """List users: name, role, status, and failed sign-ins (last 24 h; when the last was; and
    until when sign-in is refused unchecked, if it is)."""
    with _store(db) as store:
        users = store.list_users()
        sign_ins = store.sign_in_status()
    if not users:
        typer.echo("no users yet: prefkit annotate users add NAME", err=True)
    for u in users:
        st = sign_ins.get(u.name)
        failures = f"{st.failures_24h if st else 0} failed sign-ins (24 h)"
        if st and st.last_failure:
            failures += f", last {st.last_failure:%Y-%m-%d %H:%M:%S} UTC"
        if st and st.locked_until:
            failures += f", waiting until {st.locked_until:%H:%M:%S} UTC"
        role, status = "admin" if u.is_admin else "annotator", "disabled" if u.disabled else "active"
        typer.echo(f"{u.name}\t{role}\t{status}\t{failures}")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Disable a user: their token and sessions stop working; their claims go back to the queue."""
    with _store(db) as store:
        store.disable_user(name)
    typer.echo(f"{name!r} disabled")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Re-enable a user (their token works again) and clear any wait after failed sign-ins."""
    with _store(db) as store:
        store.enable_user(name)
    typer.echo(f"{name!r} enabled")


@users_app.command("reset-token")
def users_reset_token(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Give a user a new sign-in token (printed only now): the old one and their sessions stop
    working, and any wait after failed sign-ins is cleared."""
    with _store(db) as store:
        token = store.reset_token(name)
    typer.echo(f"new sign-in token for {name!r} (shown only now; the old one no longer works):", err=True)
    typer.echo(token)


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
    rule: str = option(ExportConfig, "rule"),
    margin: str = option(ExportConfig, "margin"),
    test_size: float = option(ExportConfig, "test_size"),
    seed: int = option(ExportConfig, "seed"),
    parquet: bool = option(ExportConfig, "parquet"),
    jsonl: bool = option(ExportConfig, "jsonl"),
    name: str | None = option(ExportConfig, "name", help="Dataset name for the card (default: the project's)."),
    complete_only: bool = typer.Option(
        False, "--complete-only", help="Export only pairs that have all the judgements their overlap asks for."
    ),
    trl: bool = option(ExportConfig, "trl"),
    sets: str | None = option(ExportConfig, "sets"),
    judgements: bool = typer.Option(
        False,
        "--judgements",
        help="Write the raw judgement table to OUT (.jsonl, .json or .parquet) instead: what "
        "`prefkit round run --judgements` and `prefkit data export --judgements` read.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUT, but only a previous `annotate export` (never the store)."
    ),
    db: str = DB_OPTION,
) -> None:
    """Aggregate the project's judgements and write the dataset, as `prefkit data export` does
    (or, with --judgements, write the judgements themselves)."""
    from prefkit.core.errors import ConfigError
    from prefkit.core.outputs import check_output
    from prefkit.data.export import parse_sets

    set_names = parse_sets(sets)
    if judgements and (trl or set_names):
        raise ConfigError("--judgements writes the raw judgement table: --trl and --sets apply to the dataset export")
    check_output(
        out, "annotate export", inputs=store_paths(db), overwrite=overwrite, folder=not judgements, what="store"
    )
    with _store(db) as store:
        if judgements:
            n = store.export_judgements(project, out, replace=overwrite, marker="annotate export")
            typer.echo(f"wrote {out}: {n} judgements of project {project}")
            return
        report = store.export(
            project,
            out,
            rule=rule,
            margin=margin,
            test_size=test_size,
            seed=seed,
            parquet=parquet,
            jsonl=jsonl,
            name=name,
            complete_only=complete_only,
            marker="annotate export",
            trl=trl,
            sets=set_names,
        )
    figures = report.to_dict()
    typer.echo(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in figures.items() if k != "strength_counts"))


@app.command()
def serve(
    db: str = DB_OPTION,
    port: int = typer.Option(8501, help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 to serve a team)."),
    db_pool: int | None = DB_POOL_OPTION,
    session_hours: float = typer.Option(
        12.0,
        "--session-hours",
        envvar="PREFKIT_SESSION_HOURS",
        help="How long a sign-in lasts (closing the tab does not end it; signing out does).",
    ),
) -> None:
    """Start the annotation app (Streamlit, headless) on this store. `kill` (SIGTERM) or Ctrl-C
    stops the server with it."""
    from prefkit.annotate.server import check_port, run_forwarding_signals, streamlit_command
    from prefkit.annotate.store import with_pool

    if not session_hours > 0:
        raise typer.BadParameter(f"must be above 0, got {session_hours}", param_hint="--session-hours")
    check_port(port, address)  # before anything is printed: a busy port is one line, exit 2
    db = with_pool(db, db_pool)
    _open(db).close()  # create the tables and fail here, not in the browser, on a bad URL
    typer.echo(f"annotation app on http://{address}:{port} (Ctrl-C to stop)", err=True)
    code = run_forwarding_signals(
        streamlit_command(port, address),
        env={**os.environ, "PREFKIT_DB": db, "PREFKIT_SESSION_HOURS": str(session_hours)},
    )
    raise typer.Exit(code)
