"""The output guard every writing command goes through: no command destroys an input, a store,
or something it did not write.

`check_output` runs before any work: an output that is, contains, or lies inside an input (or
the store) is always refused; an existing non-empty output is refused unless `overwrite`, and even
then only when its marker says the same command wrote it; an output whose folder cannot be
written is refused. `mark_output` writes that marker with every output: `OUT/.prefkit-output.json`
inside a folder output, `.OUT.prefkit-output.json` beside a file output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prefkit.core.errors import DataError

MARKER = ".prefkit-output.json"


def marker_path(out: str | Path, *, folder: bool) -> Path:
    out = Path(out)
    return out / MARKER if folder else out.with_name(f".{out.name}{MARKER}")


def written_by(out: str | Path, *, folder: bool) -> str | None:
    """The command whose marker sits with `out`, or None (no marker, or not ours)."""
    try:
        data = json.loads(marker_path(out, folder=folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    return command if isinstance(command, str) else None


def mark_output(out: str | Path, command: str, *, folder: bool) -> Path:
    """Record that `prefkit {command}` wrote `out` (written then renamed, like every output)."""
    from prefkit.core.atomic import atomic_path

    path = marker_path(out, folder=folder)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")
    return path


def _non_empty(path: Path) -> bool:
    if path.is_dir():
        return any(p.name != MARKER for p in path.iterdir())
    return path.stat().st_size > 0


def _same(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return a == b


def _writable_ancestor(out: Path) -> Path:
    """The nearest existing folder above `out` (where the first new entry will be made)."""
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_not_input(
    out: str | Path, inputs: Iterable[str | Path | None], *, option: str = "OUT", what: str = "input"
) -> None:
    """Refuse an output that is, contains, or lies inside one of `inputs` (missing ones, e.g. Hub
    ids, are ignored); `what` names them in the error ("input", "store")."""
    out = Path(out)
    where = str(out)
    resolved = out.resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        inp = Path(given).resolve()
        if resolved == inp or (out.exists() and _same(out, inp)):
            raise DataError(
                f"{option} is the {what} {given}; choose another output ({what}s are never overwritten)", file=where
            )
        if inp.is_relative_to(resolved):
            raise DataError(
                f"{option} contains the {what} {given}; choose another output ({what}s are never overwritten)",
                file=where,
            )
        if resolved.is_relative_to(inp):
            raise DataError(f"{option} lies inside the {what} {given}; choose an output outside it", file=where)


def check_writable(out: str | Path, *, option: str = "OUT", into: bool = False) -> None:
    """Refuse an output whose folder cannot be written: the nearest existing folder above `out`
    (or `out` itself with `into`, for a folder written into in place) gets a probe file."""
    out = Path(out)
    parent = out if into and out.is_dir() else _writable_ancestor(out)
    if not parent.is_dir():
        raise DataError(f"{parent} is not a folder, so {option} cannot be created", file=str(out))
    try:
        fd, probe = tempfile.mkstemp(prefix=".prefkit-probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"cannot write into {parent}: {e.strerror or e}", file=str(out)) from None


def check_output(
    out: str | Path,
    command: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    folder: bool = False,
    option: str = "OUT",
    what: str = "input",
) -> Path:
    """Refuse (`DataError`, one line naming `out`) an output that would destroy something; see the
    module text. `inputs` are the paths the command reads (missing ones, e.g. Hub ids, are
    ignored); `folder` says whether the output is a folder or a file; `option` names it in errors."""
    from prefkit.core.atomic import clean_stale

    out = Path(out)
    where = str(out)
    check_not_input(out, inputs, option=option, what=what)
    clean_stale(out)  # a previous output left mid-swap by a killed run is put back before it is judged
    if out.exists() or out.is_symlink():
        if folder and not out.is_dir():
            raise DataError(f"{option} is a file; the output must be a folder", file=where)
        if not folder and out.is_dir():
            raise DataError(f"{option} is a folder; the output must be a file (e.g. {out / 'out.jsonl'})", file=where)
        if _non_empty(out):
            by = written_by(out, folder=folder)
            if not overwrite:
                raise DataError(
                    f"{option} already exists"
                    + (f" (written by prefkit {by})" if by else "")
                    + "; pass --overwrite to replace it, or choose another output",
                    file=where,
                )
            if by != command:
                raise DataError(
                    f"{option} was not written by prefkit {command} ("
                    + (f"written by prefkit {by}" if by else "no prefkit marker")
                    + "); --overwrite replaces only a previous output of the same command: "
                    "move it away yourself or choose another output",
                    file=where,
                )
    check_writable(out, option=option)
    return out


def check_distinct(*outputs: tuple[str, str | Path | None]) -> None:
    """Refuse two outputs of one command that name the same path, e.g. OUT and --report."""
    seen: dict[Path, str] = {}
    for name, path in outputs:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise DataError(f"{name} and {seen[key]} are the same path; give them different names", file=str(path))
        seen[key] = name
