"""`prefkit`: mounts `data`, `generate`, `annotate`, `train` and `round`.

Rooms' CLI modules import nothing heavy at module level (torch, vLLM, Streamlit load inside the
commands), so `prefkit data ...` starts fast. A `PrefkitError` (bad input, bad config) becomes
one line on stderr and exit code 2, never a traceback (`prefkit --debug ...` shows the traceback
behind that line as well).

Domain modules report progress and warnings with `logging.getLogger(__name__)`, never `print`;
this entry point sends prefkit's loggers (data, generate, annotate, train, prefkit) to stderr:
INFO and above as bare lines, and with `--debug` DEBUG as well, each line naming its level and
module.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback

import typer

from prefkit.core.errors import PrefkitError, RunFailed
from prefkit.core.options import App

app = App(
    name="prefkit",
    help="Build human-preference data (generate, annotate, dedup, export) and train on it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens
    add_completion=False,
)


_debug = False
PACKAGES = ("prefkit",)  # the loggers `--debug` turns up (every module logs as prefkit.<room>.<module>)


class _StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment (a test runner swaps it), not the one at start-up."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(debug: bool = False) -> None:
    """prefkit's loggers to stderr: INFO as plain lines; with `debug`, DEBUG too, with level and module.
    Calling it again (a second command in one process) replaces the handler, never adds one."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if debug else "%(message)s"))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefkit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"prefkit {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_show_version, help="Print prefkit's version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback behind a one-line error, and debug log lines on stderr."
    ),
) -> None:
    """Build human-preference data (generate, annotate, dedup, export) and train on it."""
    global _debug
    _debug = debug
    setup_logging(debug)


def _mount() -> None:
    from prefkit.annotate.cli import app as annotate_app
    from prefkit.data.cli import app as data_app
    from prefkit.demo import demo
    from prefkit.generate.cli import generate as generate_command
    from prefkit.train.cli import app as train_app
    from prefkit.train.cli import judge, prioritise, round_app

    app.add_typer(data_app, name="data", help="Validate, deduplicate, export and describe datasets.")
    app.command("generate", help="Sample response pairs at varied temperatures (vLLM or Hugging Face).")(
        generate_command
    )
    # `annotate judge` runs a model through the generate room's engines and writes to the store:
    # it lives in `train` (which may import both), mounted here under `annotate`.
    annotate_app.command("judge")(judge)
    annotate_app.command("prioritise")(prioritise)  # loads reward models: train's, shown under annotate
    app.add_typer(annotate_app, name="annotate", help="The annotation store and the Streamlit app.")
    app.add_typer(train_app, name="train", help="SFT, margin reward model, DPO, PPO, RLOO/GRPO, best-of-K.")
    app.add_typer(round_app, name="round", help="Iterative rounds: each round's policy makes the next pairs.")
    app.command("demo", help="Run the data pipeline on the bundled sample and open the annotation app.")(demo)


_mount()


# File-system refusals that reach the top (a folder made read-only mid-run, a full disk) are the
# user's to fix, like bad input: one line naming the path, not a traceback.
_FS_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EFBIG,
    errno.ENOENT,
    errno.EEXIST,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.EMFILE,
    errno.EIO,
}


def main() -> None:
    try:
        app()
    except PrefkitError as e:
        if _debug:
            traceback.print_exc()
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except RunFailed as e:
        if _debug:
            traceback.print_exc()
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except OSError as e:
        # Any OS error that reaches the top is one line: naming the path when the error has one (a
        # file too large, a dangling link, a folder made read-only mid-run), exit 2 when the path or
        # the file system is the user's to fix; other OS errors (a dropped connection) exit 1.
        if _debug:
            traceback.print_exc()
        from prefkit.core.errors import first_line

        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        typer.secho(f"error: {where}cannot write or read: {e.strerror or first_line(e)}", err=True, fg=typer.colors.RED)
        sys.exit(2 if e.filename or e.errno in _FS_ERRNOS else 1)


if __name__ == "__main__":
    main()
