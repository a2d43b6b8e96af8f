"""The output guard every writing command goes through: no command destroys an input, a store,
or something it did not write.

`check_output` runs before any work: an output that is, contains, or lies inside an input (or
the store) is always refused; a symbolic link is refused (prefkit would replace the link, not
write where it points); an existing non-empty output is refused unless `overwrite`, and even
then only when its marker says the same command wrote it *and* lists everything there: each file
with the size and SHA-256 it had when written, each folder. A file or folder the marker does not
list (a note, a report the command reads, a store moved in), or a listed file whose size or hash
has changed, refuses the whole `--overwrite` with one line naming the first such path. What was
checked is remembered (`check_unchanged`): if the output changes while the command runs, nothing
is replaced. An output whose folder cannot be written is refused.

The marker (`OUT/.prefkit-output.json` inside a folder output, `.OUT.prefkit-output.json`
beside a file output) is a record of what prefkit wrote, written in the same commit as the output
(`prefkit.core.atomic`): it is not a lock and not a signature. A marker written by hand that
lists files with their true sizes and hashes is taken at its word, as `rm` would be; a marker of
an earlier prefkit, which names only the command, lists no files, so `--overwrite` refuses such an
output (move it away, or delete it yourself).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prefkit.core.errors import DataError

MARKER = ".prefkit-output.json"
MARKER_FORMAT = 2  # 1: {"command"} only (prefkit before the file lists); 2: with "files" (and "dirs")


def marker_path(out: str | Path, *, folder: bool) -> Path:
    out = Path(out)
    return out / MARKER if folder else out.with_name(f".{out.name}{MARKER}")


def read_marker(out: str | Path, *, folder: bool) -> dict[str, Any] | None:
    """The marker that sits with `out` as a dict, or None (none, unreadable, not ours)."""
    try:
        data = json.loads(marker_path(out, folder=folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def written_by(out: str | Path, *, folder: bool) -> str | None:
    """The command whose marker sits with `out`, or None (no marker, or not ours)."""
    data = read_marker(out, folder=folder)
    return data["command"] if data is not None else None


def sha256_file(path: Path) -> str:
    """A file's SHA-256 (hex), read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What a marker keeps of a file: its size and SHA-256."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _entries(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of everything under `folder`, sorted, depth first; symbolic
    links are entries, never followed."""
    with os.scandir(folder) as it:
        items = sorted(it, key=lambda e: e.name)
    for e in items:
        path = Path(e.path)
        rel = path.relative_to(folder).as_posix()
        yield rel, path
        if e.is_dir(follow_symlinks=False):
            for sub, p in _entries(path):
                yield f"{rel}/{sub}", p


def marker_record(
    out: str | Path, command: str, *, folder: bool, listed: bool = True, name: str | None = None
) -> dict[str, Any]:
    """The marker of `out` as written by `command`: with `listed`, every file (size and SHA-256)
    and, for a folder, every sub-folder; without, only the command (a folder written into over time,
    such as a training run's, which `--overwrite` never replaces). `name` is the file's final name
    when `out` is still its temporary path."""
    out = Path(out)
    data: dict[str, Any] = {"command": command, "format": MARKER_FORMAT}
    if not listed:
        data["files"] = None
        return data
    if folder:
        files, dirs = {}, []
        for rel, path in _entries(out):
            if rel == MARKER:
                continue
            if path.is_dir() and not path.is_symlink():
                dirs.append(rel)
            else:
                files[rel] = file_record(path)
        data["files"], data["dirs"] = files, dirs
    else:
        data["files"] = {name or out.name: file_record(out)}
    return data


def mark_output(out: str | Path, command: str, *, folder: bool, listed: bool = True) -> Path:
    """Record that `prefkit {command}` wrote `out` (see `marker_record`), written then renamed. For a
    folder call it on the finished temporary folder, before it is swapped into place; a file output
    gets its marker in the same commit as the file (`prefkit.core.atomic.atomic_files(marker=…)`)."""
    from prefkit.core.atomic import atomic_path

    path = marker_path(out, folder=folder)
    record = marker_record(out, command, folder=folder, listed=listed)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
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


def check_kind(out: str | Path, *, folder: bool, option: str = "OUT") -> None:
    """Refuse an output path that is a symbolic link, or a file where a folder is written (or the
    reverse)."""
    out = Path(out)
    where = str(out)
    if out.is_symlink():
        target = os.readlink(out)
        missing = "" if out.exists() else ", which does not exist"
        raise DataError(
            f"{option} is a symbolic link (to {target}{missing}); prefkit writes a real "
            f"{'folder' if folder else 'file'} in its place and never replaces a link: give the path it points to, "
            "or another output",
            file=where,
        )
    if out.exists():
        if folder and not out.is_dir():
            raise DataError(f"{option} is a file; the output must be a folder", file=where)
        if not folder and out.is_dir():
            raise DataError(f"{option} is a folder; the output must be a file (e.g. {out / 'out.jsonl'})", file=where)


def _matches(path: Path, record: Any) -> bool:
    if not isinstance(record, dict) or path.is_symlink() or not path.is_file():
        return False
    try:
        if path.stat().st_size != record.get("size"):
            return False
        return bool(file_record(path)["sha256"] == record.get("sha256"))
    except OSError:
        return False


def foreign_entry(out: str | Path, *, folder: bool) -> tuple[str, str] | None:
    """The first thing at `out` its marker does not vouch for, as (path relative to `out`, or
    its name for a file output; why), or None when everything there is what the marker lists."""
    out = Path(out)
    data = read_marker(out, folder=folder) or {}
    files = data.get("files")
    by = data.get("command", "?")
    if not isinstance(files, dict):
        return ".", (
            f"its marker lists no files (written by an earlier prefkit, or a folder prefkit {by} writes into "
            "over time), so --overwrite cannot tell what it wrote from what you put there"
        )
    if not folder:
        if not _matches(out, files.get(out.name)):
            return out.name, f"changed after prefkit {by} wrote it (its size or SHA-256 differs from the marker)"
        return None
    dirs = set(data.get("dirs") or ())
    for rel, path in _entries(out):
        if rel == MARKER:
            continue
        if path.is_symlink():
            return rel, f"a symbolic link prefkit {by} did not write"
        if path.is_dir():
            if rel not in dirs:
                return rel, f"a folder prefkit {by} did not write"
            continue
        if rel not in files:
            return rel, f"not written by prefkit {by}"
        if not _matches(path, files[rel]):
            return rel, f"changed after prefkit {by} wrote it (its size or SHA-256 differs from the marker)"
    return None


# What each guarded output looked like when `check_output` judged it (None: it did not exist), so
# that the writer can refuse to replace it if it changed meanwhile (`check_unchanged`).
_checked: dict[Path, tuple[tuple[str, int, int], ...] | None] = {}


def _snapshot(out: Path) -> tuple[tuple[str, int, int], ...] | None:
    """(relative path, size, mtime in ns) of `out` and everything under it; None when missing."""
    if not out.exists() and not out.is_symlink():
        return None
    st = out.lstat()
    rows = [(".", st.st_size if not out.is_dir() else 0, st.st_mtime_ns if not out.is_dir() else 0)]
    if out.is_dir() and not out.is_symlink():
        for rel, path in _entries(out):
            s = path.lstat()
            rows.append((rel, 0 if path.is_dir() else s.st_size, 0 if path.is_dir() else s.st_mtime_ns))
    return tuple(rows)


def check_unchanged(target: str | Path) -> None:
    """Called by the atomic writers just before `target` is replaced: when `check_output` judged
    it, refuse (`DataError`, nothing replaced) if it changed since: a file appeared in it, one was
    edited, or a missing output appeared. Targets the guard did not judge pass."""
    target = Path(target)
    key = target.absolute()
    if key not in _checked:
        return
    before, now = _checked[key], _snapshot(target)
    if before == now:
        return
    if before is None:
        what = "it appeared"
    elif now is None:
        what = "it was removed"
    else:
        seen = {r[0]: r for r in before}
        what = next(
            (f"{r[0]} appeared or changed" for r in now if seen.get(r[0]) != r),
            next((f"{r[0]} was removed" for r in before if r not in now), "it changed"),
        )
    raise DataError(
        f"changed while this command ran ({what}); nothing was replaced: look at it and run the command again",
        file=str(target),
    )


def forget_checked(target: str | Path) -> None:
    """Drop what `check_output` remembered of `target` (after it was written)."""
    _checked.pop(Path(target).absolute(), None)


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
    clean_stale(out)  # a previous output left mid-swap or mid-commit by a killed run is settled first
    check_kind(out, folder=folder, option=option)
    if out.exists() and _non_empty(out):
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
        foreign = foreign_entry(out, folder=folder)
        if foreign is not None:
            rel, why = foreign
            if rel == ".":
                raise DataError(f"{option}: {why}; move it away yourself or choose another output", file=where)
            thing = f"{option} holds {rel}" if folder else option
            raise DataError(
                f"{thing}: {why}; --overwrite replaces only what a previous run wrote: move it away yourself "
                "or choose another output",
                file=where,
            )
    check_writable(out, option=option)
    _checked[out.absolute()] = _snapshot(out)
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
