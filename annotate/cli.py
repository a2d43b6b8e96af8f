"""`prefkit annotate ...`: init, import, users add|list|role|disable|enable|reset-token|waits|lift,
assign, unassign, quality set|show|lift, export, suggestions, predictions, serve (and `judge`, which
runs a model: it lives in `prefkit.train` and is mounted here by `prefkit.cli`).

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

from prefkit.annotate.quality import QualityConfig
from prefkit.core.options import App, given, option
from prefkit.data.export_config import ExportConfig

if TYPE_CHECKING:
    from prefkit.annotate.store import Store

app = App(no_args_is_help=True, add_completion=False)
users_app = App(
    no_args_is_help=True,
    add_completion=False,
    help="Add, list, disable and re-enable annotators; reset a token; list and lift sign-in waits.",
)
app.add_typer(users_app, name="users")
quality_app = App(
    no_args_is_help=True,
    add_completion=False,
    help="Quality control of a project: gold pairs' rate, qualification, pauses, review threshold; each "
    "annotator's figures; lifting a pause.",
)
app.add_typer(quality_app, name="quality")
ROLE_HELP = "annotator (labels), reviewer (labels and settles disagreements on the Review page) or admin."

DB_DEFAULT = "annotations.db"
DB_OPTION = typer.Option(
    DB_DEFAULT,
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


def store_name(store: Store) -> str:
    """Where the store is, as a user finds it again: a SQLite file's absolute path, else the URL
    without its password."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(Path(url.database).resolve())
    return url.render_as_string(hide_password=True)


@app.command()
def init(db: str = DB_OPTION) -> None:
    """Create the store's tables (SQLite in WAL mode, or PostgreSQL). Safe to run again."""
    with _store(db) as store:
        typer.echo(f"store ready: {store.engine.url.render_as_string(hide_password=True)}")


@app.command("import")
def import_(
    pairs: str | None = typer.Argument(
        None, help="Pairs from `prefkit generate` (Parquet shards folder) or any preference file."
    ),
    gold: str | None = typer.Option(
        None,
        "--gold",
        help="Gold pairs: a pairs file whose rows also give the expected answer (gold: a or b, and gold_strength, "
        "or gold_min_strength for a lowest level). Served to annotators among the others to measure them.",
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
    columns: str | None = option(ExportConfig, "columns"),
    safety_labels: bool = typer.Option(
        False,
        "--safety-labels",
        help="Make the project ask for Llama 2's safety label of each pair on the Label page (the preferred "
        "response is safe and the other not / both safe / both unsafe), required before a choice is recorded.",
    ),
    edits: bool = typer.Option(
        False,
        "--edits",
        help="Let the project's annotators edit the answer they prefer on the Label page (Llama 3's edit-and-rank: "
        "edited > chosen > rejected; key E). Off unless given.",
    ),
    db: str = DB_OPTION,
) -> None:
    """Load pairs into a project (and, with --gold, gold pairs). Importing the same pairs again adds nothing."""
    from prefkit.annotate.gold import read_gold
    from prefkit.core.atomic import atomic_files
    from prefkit.core.config import parse_mapping
    from prefkit.core.errors import ConfigError
    from prefkit.core.rejects import nothing_valid, rejected_rows, skipped_line
    from prefkit.core.writers import write_rows_to
    from prefkit.data.readers import read_pairs

    if pairs is None and gold is None:
        raise ConfigError("give a pairs file, --gold FILE, or both")
    text = _read_guidelines(guidelines) if guidelines else None
    invalid, rejected = (
        _rejected_target([pairs, guidelines, gold], rejected or _default_rejected(project, db), db)
        if skip_invalid and pairs is not None
        else (None, None)
    )
    read = read_pairs(pairs, errors=invalid, columns=parse_mapping(columns, "--columns")) if pairs is not None else []
    if pairs is not None and not read:  # nothing valid: no project, no settings, no rejected file
        raise nothing_valid(pairs, invalid)
    gold_items = read_gold(gold) if gold is not None else None  # the whole file is read before any write
    gold_result = None
    # The rejected rows are written first and renamed into place only once the pairs are in the
    # store, so a store that refuses them leaves neither behind.
    with contextlib.ExitStack() as stack:
        if invalid and rejected is not None:
            (tmp,) = stack.enter_context(atomic_files([rejected], marker="annotate import"))
            write_rows_to(rejected_rows(invalid), tmp, ".jsonl")
        with _store(db) as store:
            if gold_items is not None:
                result, gold_result = store.import_gold(
                    project,
                    gold_items,
                    pairs=read,
                    guidelines=text,
                    overlap=overlap,
                    calibration=calibration,
                    calibration_overlap=calibration_overlap,
                    seed=seed,
                )
                if safety_labels:
                    store.set_safety_labels(project, True)
            else:
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
            if edits:
                store.set_edits(project, True)
            total = store.count_pairs(project) - len(store.gold_pair_ids(project))  # gold pairs are not to label
    if invalid and rejected is not None:
        typer.echo(skipped_line(invalid, rejected), err=True)
    if gold_result is not None:
        typer.echo(
            f"{project}: added {result.added} pairs, {result.skipped} already there; {total} in the project; "
            f"gold pairs: {gold_result.added} added, {gold_result.updated} with a new answer, "
            f"{gold_result.skipped} already there"
        )
        return
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


def _rejected_target(inputs: list[str | Path | None], target: Path, db: str) -> tuple[list, Path]:
    """The list that collects bad rows and the checked path they go to (never one of `inputs`,
    the pairs and guidelines read, nor the store). A rejected file is a log of one import: it
    replaces a previous one of `annotate import` only, unchanged."""
    from prefkit.core.errors import DataError
    from prefkit.core.outputs import check_not_input, check_output, written_by

    check_not_input(target, [*inputs, *store_paths(db)], option="the rejected file")
    if target.is_file() and target.stat().st_size and written_by(target, folder=False) != "annotate import":
        raise DataError(
            "the rejected file already exists and was not written by prefkit annotate import; "
            "choose another path with --rejected",
            file=target,
        )
    check_output(target, "annotate import", overwrite=True, option="the rejected file")
    return [], target


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="May see the dashboard, export and manage users (--role admin)."),
    role: str | None = typer.Option(None, "--role", help=ROLE_HELP + " Default: annotator."),
    db: str = DB_OPTION,
) -> None:
    """Create a user and print their sign-in token (shown only now; the store keeps a hash)."""
    from prefkit.annotate.store import ROLES
    from prefkit.core.errors import ConfigError

    if role is not None and role not in ROLES:
        raise ConfigError(f"unknown role {role!r} (expected {', '.join(ROLES)})")
    if admin and role not in (None, "admin"):
        raise ConfigError(f"--admin and --role {role} disagree; give one")
    role = "admin" if admin else role or "annotator"
    with _store(db) as store:
        token = store.add_user(name, admin=role == "admin")
        if role == "reviewer":
            store.set_role(name, role)
        where = store_name(store)
    typer.echo(f"{role} {name!r} added to {where}", err=True)
    if db == DB_DEFAULT and "PREFKIT_DB" not in os.environ:  # a store made here without being named
        typer.echo(f"(no --db given and $PREFKIT_DB unset: the default store {DB_DEFAULT} in {Path.cwd()})", err=True)
    typer.echo("sign-in token (shown only now):", err=True)
    typer.echo(token)


@users_app.command("role")
def users_role(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    db: str = DB_OPTION,
) -> None:
    """Change a user's role."""
    with _store(db) as store:
        user = store.set_role(name, role)
    typer.echo(f"{name!r} is now {user.role}")


@users_app.command("list")
def users_list(db: str = DB_OPTION) -> None:
    """List users: name, role, status, and failed sign-ins (last 24 h; when the last was; and,
    while the account's wrong tokens are slowed down, until when and by how much)."""
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
        if st and st.slowed_until:
            failures += (
                f", wrong tokens slowed until {st.slowed_until:%H:%M:%S} UTC "
                f"(next answered after {st.next_wait_seconds:g} s)"
            )
        status = "disabled" if u.disabled else "active"
        typer.echo(f"{u.name}\t{u.role}\t{status}\t{failures}")


@users_app.command("waits")
def users_waits(db: str = DB_OPTION) -> None:
    """List the accounts and addresses whose wrong sign-in tokens are being slowed down: failures
    counted (last 15 minutes, since any lift), the wait of the next wrong token, and until when.
    A correct token always signs in; lift a wait with `prefkit annotate users lift`."""
    from prefkit.annotate.store.sign_in import shown_address

    with _store(db) as store:
        waits = store.sign_in_waits()
    if not waits:
        typer.echo("no waits: every wrong sign-in token is answered at once", err=True)
    for w in waits:
        name = w.name if w.kind == "account" else shown_address(w.name)
        typer.echo(
            f"{w.kind}\t{name}\t{w.failures} failures\tnext wrong token answered after {w.next_wait_seconds:g} s"
            f"\tuntil {w.until:%Y-%m-%d %H:%M:%S} UTC\tlast {w.last_failure:%H:%M:%S} UTC"
        )


@users_app.command("lift")
def users_lift(
    names: list[str] | None = typer.Argument(None, help="Users whose sign-in wait is lifted."),
    address: list[str] | None = typer.Option(
        None, "--address", help="An address whose wait is lifted (as `users waits` shows it; repeatable)."
    ),
    all_: bool = typer.Option(False, "--all", help="Lift every wait `users waits` lists."),
    db: str = DB_OPTION,
) -> None:
    """Lift sign-in waits: the failed sign-ins so far no longer slow down the next wrong token of
    these accounts or addresses (a correct token never waits)."""
    from prefkit.core.errors import ConfigError

    if not names and not address and not all_:
        raise ConfigError("name the users (or --address ADDR, or --all) whose sign-in wait to lift")
    with _store(db) as store:
        lifted = store.lift_waits(names or (), address or (), everyone=all_)
    typer.echo(f"lifted: {', '.join(lifted)}" if lifted else "no waits to lift")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Disable a user: their token and sessions stop working; their claims go back to the queue."""
    with _store(db) as store:
        store.disable_user(name)
    typer.echo(f"{name!r} disabled")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Re-enable a user (their token works again) and lift any wait after failed sign-ins."""
    with _store(db) as store:
        store.enable_user(name)
    typer.echo(f"{name!r} enabled")


@users_app.command("reset-token")
def users_reset_token(name: str = typer.Argument(..., help="User name."), db: str = DB_OPTION) -> None:
    """Give a user a new sign-in token (printed only now): the old one and their sessions stop
    working, and any wait after failed sign-ins is lifted."""
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
    edit_pairs: str = option(ExportConfig, "edit_pairs"),
    edit_strength: str = option(ExportConfig, "edit_strength"),
    judgements: bool = typer.Option(
        False,
        "--judgements",
        help="Write the raw judgement table to OUT (.jsonl, .json or .parquet) instead: what "
        "`prefkit round run --judgements` and `prefkit data export --judgements` read.",
    ),
    include_gold: bool = typer.Option(
        False,
        "--include-gold",
        help="Put the gold pairs in too (decided by their expected answer, decided_by: gold); with --judgements, "
        "the judgements on them. Left out by default.",
    ),
    push_to_hub: str | None = option(ExportConfig, "push_to_hub"),
    private: bool = option(ExportConfig, "private"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUT, but only a previous `annotate export` (never the store)."
    ),
    include_model_judgements: bool = typer.Option(
        False,
        "--include-model-judgements",
        help="Add the AI judges' judgements (`annotate judge`) to people's: the dataset is then mixed, or AI-only "
        "where no person judged; the card says which. Off: human-only.",
    ),
    db: str = DB_OPTION,
) -> None:
    """Aggregate the project's judgements and write the dataset, as `prefkit data export` does
    (or, with --judgements, write the judgements themselves). A reviewer's decision on a pair
    wins over the rule (decided_by: review); --push-to-hub also puts it on the Hub."""
    from prefkit.core.errors import ConfigError
    from prefkit.core.outputs import check_output
    from prefkit.data.export import parse_sets

    set_names = parse_sets(sets)
    if judgements and (trl or set_names):
        raise ConfigError("--judgements writes the raw judgement table: --trl and --sets apply to the dataset export")
    if judgements and push_to_hub:
        raise ConfigError("--judgements writes the raw judgement table: --push-to-hub applies to the dataset export")
    if push_to_hub:
        if set_names:
            raise ConfigError("--push-to-hub pushes one dataset: push each set folder with `prefkit data export`")
        from prefkit.data.hub import require_token

        require_token()  # before the work, not after it
    check_output(
        out, "annotate export", inputs=store_paths(db), overwrite=overwrite, folder=not judgements, what="store"
    )
    with _store(db) as store:
        if judgements:
            n = store.export_judgements(
                project,
                out,
                replace=overwrite,
                marker="annotate export",
                include_model_judgements=include_model_judgements,
                include_gold=include_gold,
            )
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
            include_model_judgements=include_model_judgements,
            include_gold=include_gold,
            edit_pairs=edit_pairs,
            edit_strength=edit_strength,
        )
    figures = report.to_dict()
    shown = {k: v for k, v in figures.items() if k not in ("strength_counts", "reliability")}
    typer.echo(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if report.reliability:
        from prefkit.data.cli import reliability_line

        typer.echo(reliability_line(report.reliability))

    below, complete = report.below_overlap_pairs or 0, report.complete_pairs or 0
    if below and not complete_only:
        typer.echo(
            f"warning: {below} of {below + complete} judged pairs have fewer judgements than their overlap asks "
            "for (a pair judged once agrees with itself: agreement 1.0)"
            + (
                "; no pair is complete, so mean_agreement measures no agreement between annotators. More "
                "annotators finish them; a project for one annotator is imported with --overlap 1"
                if not complete
                else "; --complete-only exports only the complete ones"
            ),
            err=True,
        )
    if push_to_hub:
        from prefkit.data.hub import push_to_hub as push

        typer.echo(f"pushed to {push(out, push_to_hub, private=private)}")


@quality_app.command("set")
def quality_set(
    ctx: typer.Context,
    project: str = typer.Option(..., "--project", help="Project to change."),
    gold_rate: float = option(QualityConfig, "gold_rate"),
    qualify: int = option(QualityConfig, "qualify"),
    qualify_accuracy: float = option(QualityConfig, "qualify_accuracy"),
    pause_below: float | None = option(QualityConfig, "pause_below"),
    pause_window: int = option(QualityConfig, "pause_window"),
    review_steps: int = option(QualityConfig, "review_steps"),
    db: str = DB_OPTION,
) -> None:
    """Change a project's quality settings: only the options given change, the others keep
    their values (a project starts with the defaults shown here)."""
    changes = given(
        ctx,
        gold_rate=gold_rate,
        qualify=qualify,
        qualify_accuracy=qualify_accuracy,
        pause_below=pause_below,
        pause_window=pause_window,
        review_steps=review_steps,
    )
    with _store(db) as store:
        cfg = store.set_quality(project, **changes)
        n_gold = len(store.gold_pair_ids(project))
    typer.echo(f"{project}: {_settings_line(cfg)}; {n_gold} gold pairs")


def _settings_line(cfg: QualityConfig) -> str:
    import dataclasses

    return ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg))


@quality_app.command("show")
def quality_show(
    project: str = typer.Option(..., "--project", help="Project to show."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the per-annotator table to this new CSV file."),
    db: str = DB_OPTION,
) -> None:
    """A project's quality settings and the lead's view of each annotator: state, judgements per
    hour, median time per pair, position bias, unsure share, agreement with the consensus and
    gold accuracy (tab-separated; the Dashboard shows the same)."""
    from prefkit.core.errors import ConfigError

    if csv is not None and csv.exists():
        raise ConfigError(f"{csv} already exists; give a new file name")
    with _store(db) as store:
        cfg = store.quality_settings(project)
        table = store.annotator_view(project)
        n_gold = len(store.gold_pair_ids(project))
    typer.echo(f"{project}: {_settings_line(cfg)}; {n_gold} gold pairs")
    typer.echo(table.to_csv(sep="\t", index=False, float_format="%.3f", na_rep="-"), nl=False)
    if csv is not None:
        from prefkit.core.atomic import atomic_path

        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
        typer.echo(f"wrote {csv}", err=True)


@quality_app.command("lift")
def quality_lift(
    names: list[str] = typer.Argument(..., help="User names."),
    project: str = typer.Option(..., "--project", help="Project where they may go on."),
    note: str | None = typer.Option(None, "--note", help="Why (kept with the lift)."),
    db: str = DB_OPTION,
) -> None:
    """Let paused annotators go on: a failed qualification counts as passed, and the pause looks
    only at gold answers given from now on."""
    with _store(db) as store:
        for name in names:
            status = store.lift_pause(project, name, by="prefkit annotate quality lift", note=note)
            typer.echo(f"{name}: {status.label} in {project}")


@app.command()
def suggestions(
    mode: str = typer.Argument(
        ..., help="off (nothing shown), after (shown once the annotator has chosen; N moves on) or before (up front)."
    ),
    project: str = typer.Option(..., "--project", help="Project to set."),
    source: str | None = typer.Option(
        None, "--source", help="Whose predictions to show (a source `predictions` names); default: each pair's latest."
    ),
    holdout: float | None = typer.Option(
        None,
        "--holdout",
        help="before: the share of claims shown nothing, a randomised control for the dashboard's anchoring figure "
        "(default: left as it is; a new project has 0).",
    ),
    db: str = DB_OPTION,
) -> None:
    """Show annotators what a model predicted for each pair (side, level, probability) on the
    Label page: after their choice, before it, or not at all. The app shows predictions already in
    the store (`annotate predictions`, `annotate judge`); it never loads a model."""
    with _store(db) as store:
        proj = store.set_suggestions(project, mode, source=source, holdout=holdout)
        sources = store.prediction_sources(project)
    whose = proj.suggestion_source or "each pair's latest prediction"
    shown = "" if proj.suggestions == "off" else f" from {whose}"
    holdout_text = f", holdout {proj.suggestion_holdout:g}" if proj.suggestions == "before" else ""
    typer.echo(f"{project}: suggestions {proj.suggestions}{shown}{holdout_text}")
    if proj.suggestions != "off" and not sources:
        typer.echo("no predictions in this project yet: nothing is shown until some are recorded", err=True)
    for s in sources:
        typer.echo(f"  {s['source']}\t{s['kind']}\t{s['pairs']} pairs")


@app.command()
def predictions(
    file: Path = typer.Argument(
        ..., help="JSONL, JSON, CSV or Parquet with a pair_id column and a p_b column: P(b better than a)."
    ),
    project: str = typer.Option(..., "--project", help="Project whose pairs they are."),
    source: str = typer.Option(
        ..., "--source", help="The model's name, e.g. its path and the sha256 of its weights; a new file replaces it."
    ),
    kind: str = typer.Option("reward_model", "--kind", help="reward_model or judge."),
    db: str = DB_OPTION,
) -> None:
    """Record a model's predictions for the project's pairs: P(b better than a) per pair, `a` and
    `b` in the pair's generation order, stored as side + level + probability."""
    from prefkit.data.sources import read_rows

    values: dict[str, float] = {}
    with _store(db) as store:
        known = store.pair_ids(project)
        for loc, rec in read_rows(file):
            pair_id, p = rec.get("pair_id"), rec.get("p_b")
            if not isinstance(pair_id, str) or not pair_id:
                raise loc.error("needs the pair's id (text)", "pair_id")
            if pair_id not in known:
                raise loc.error(f"pair {pair_id} is not in project {project!r}", "pair_id")
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise loc.error(f"must be a probability from 0 to 1, got {p!r}", "p_b")
            values[pair_id] = float(p)
        n = store.record_predictions(project, source, values, kind=kind)
    typer.echo(f"{project}: recorded {n} predictions of {source}")


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
    trusted_proxies: str | None = typer.Option(
        None,
        "--trusted-proxies",
        envvar="PREFKIT_TRUSTED_PROXIES",
        help="Addresses or networks of your reverse proxies (comma-separated, e.g. 127.0.0.1 or 10.0.0.0/8): "
        "only connections from these may name the client's address in X-Forwarded-For, which the sign-in "
        "limits count per address. Default: none (the connection's own address).",
    ),
) -> None:
    """Start the annotation app (Streamlit, headless) on this store. `kill` (SIGTERM) or Ctrl-C
    stops the server with it."""
    from prefkit.annotate.server import check_port, proxy_env, run_forwarding_signals, streamlit_command
    from prefkit.annotate.store import with_pool

    if not session_hours > 0:
        raise typer.BadParameter(f"must be above 0, got {session_hours}", param_hint="--session-hours")
    proxies = proxy_env(trusted_proxies)
    check_port(port, address)  # before anything is printed: a busy port is one line, exit 2
    db = with_pool(db, db_pool)
    _open(db).close()  # create the tables and fail here, not in the browser, on a bad URL
    typer.echo(f"annotation app on http://{address}:{port} (Ctrl-C to stop)", err=True)
    code = run_forwarding_signals(
        streamlit_command(port, address),
        env={**os.environ, "PREFKIT_DB": db, "PREFKIT_SESSION_HOURS": str(session_hours), **proxies},
    )
    raise typer.Exit(code)
