"""Write-then-rename, so an interrupted or failed write never leaves a half-written output.

Temporary paths sit beside their target and are named `.{target}.{pid}.{random}.tmp` (an old
folder being replaced: `.{target}.{pid}.old`), so the next write to the same target can tell the
leftovers of a killed run (their process is gone) from a write in progress, and clean them up
(`clean_stale`). A folder is swapped into place with one atomic `renameat2(RENAME_EXCHANGE)` where
the kernel offers it; elsewhere with two renames, and a run killed between them leaves the old
folder under its `.old` name, which the next write to that target puts back first.

`PREFKIT_FAULT_AT=STEP` (tests only) kills the process with SIGKILL at the named step, to prove
that each rename step leaves a whole output behind: see `FAULT_STEPS`. `STEP@N` does it the Nth
time the step is reached (e.g. in a later shard of a run), and `PREFKIT_FAULT_SIGNAL=SIGINT` sends
that signal instead (a Ctrl-C at exactly that point).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefkit.core.errors import DataError

FAULT_ENV = "PREFKIT_FAULT_AT"
FAULT_SIGNAL_ENV = "PREFKIT_FAULT_SIGNAL"  # a signal's name (default SIGKILL)
# Set to 1 to swap folders with two renames even where RENAME_EXCHANGE works (tests of the fallback).
NO_EXCHANGE_ENV = "PREFKIT_NO_RENAME_EXCHANGE"
FAULT_STEPS = (
    "file:written",  # a file's temp is complete, not yet renamed
    "dir:written",  # a folder's temp is complete, not yet swapped
    "dir:exchanged",  # new folder in place, the old one not yet removed (RENAME_EXCHANGE)
    "dir:old-moved",  # two-rename fallback: old folder moved aside, new one not yet in place
    "dir:renamed",  # two-rename fallback: new folder in place, old one not yet removed
    "files:written",  # several files' temps complete, not committed: the previous set stays
    "files:committed",  # the commit record written, nothing renamed: the next write finishes it
    "files:renamed-0",  # the first (main) file renamed, the rest not yet (files:renamed-N: the N+1th)
    "files:done",  # every file renamed, the commit record not yet removed
)


_fault_hits: dict[str, int] = {}


def fault_point(step: str) -> None:
    """Tests only: SIGKILL this process at `step` when $PREFKIT_FAULT_AT names it (`STEP@N`: the
    Nth time it is reached); $PREFKIT_FAULT_SIGNAL names another signal to send."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != step:
        return
    _fault_hits[step] = _fault_hits.get(step, 0) + 1
    if _fault_hits[step] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, os.environ.get(FAULT_SIGNAL_ENV, "SIGKILL")))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _leftovers(target: Path) -> Iterator[tuple[Path, bool]]:
    """(path, is_old_folder) of temp paths of `target` whose writing process is gone."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(\d+)\.(?:[0-9a-f]+\.tmp|old)$")
    with contextlib.suppress(OSError):
        for p in target.parent.iterdir():
            m = pattern.match(p.name)
            if m and not _pid_alive(int(m.group(1))):
                yield p, p.name.endswith(".old")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# A unit of several files is committed with a record written before the first rename, one copy in
# each folder the unit writes to: `.{first target}.{pid}.{random}.commit`, listing the renames
# (temp -> target) and the previous unit's files to remove. Until every copy is written nothing is
# renamed (a killed run is rolled back: its temps are removed); once they are, the next write to
# any of the unit's targets finishes the renames (rolled forward). Copies being written are
# `….commit.part`.
_COMMIT = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.commit(\.part)?$")
_RECORD_START = '{"renames": '  # how every commit record begins: a file that does not is left alone


def _finish_commits(folder: Path) -> list[Path]:
    """Settle the commits that killed runs left in `folder` (see above); returns the targets
    renamed into place."""
    done: list[Path] = []
    try:
        found = sorted(folder.iterdir())
    except OSError:
        return done
    for path in found:
        m = _COMMIT.match(path.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            continue
        if not _RECORD_START.startswith(text[: len(_RECORD_START)]):
            continue  # not ours, whatever its name
        if m.group(2):  # a copy being written: the commit never happened
            _remove(path)
            continue
        try:
            record = json.loads(text)
            renames = [(Path(a), Path(b)) for a, b in record["renames"]]
            copies = [Path(c) for c in record["copies"]]
            remove = [Path(r) for r in record.get("remove", [])]
        except (ValueError, KeyError, TypeError):
            continue  # never written half (it is renamed into place whole): not ours
        if all(c.exists() for c in copies):  # committed: roll forward
            for tmp, target in renames:
                if tmp.exists():
                    os.replace(tmp, target)
                    done.append(target)
            for old in remove:
                _remove(old)
        else:  # a copy is missing: killed while committing, nothing was renamed yet
            for tmp, _ in renames:
                _remove(tmp)
        for c in copies:
            _remove(c)
    return done


def clean_stale(target: str | Path) -> list[Path]:
    """Settle what killed runs left beside `target` (never a live run's): a unit committed but not
    renamed is finished, one not committed is dropped, temp paths are removed; when a run was
    killed between the two renames of a folder swap and `target` is missing, the old folder is put
    back first. Returns what was finished, removed or restored."""
    from prefkit.core.outputs import MARKER

    target = Path(target)
    done = _finish_commits(target.parent)
    for path, is_old in list(_leftovers(target)):
        if is_old and not target.exists() and not target.is_symlink():
            path.rename(target)  # the swap never finished: the previous output is the output
        else:
            _remove(path)
        done.append(path)
    for path, _ in list(_leftovers(target.with_name(f".{target.name}{MARKER}"))):  # its marker's temps
        _remove(path)
        done.append(path)
    return done


def _temp_name(target: Path) -> str:
    return f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _new_temp(target: Path, *, directory: bool) -> Path:
    tmp = target.with_name(_temp_name(target))
    if directory:
        tmp.mkdir()
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        # A plain open() mode (umask applied), created exclusively.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
    return tmp


_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _libc
    if os.environ.get(NO_EXCHANGE_ENV) == "1":
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _check_unchanged(target: Path) -> None:
    from prefkit.core.outputs import check_unchanged

    check_unchanged(target)


def _swap_folder(tmp: Path, target: Path) -> None:
    _check_unchanged(target)  # what the output guard judged is still what is there
    if not target.exists():
        tmp.rename(target)
        return
    if _exchange(tmp, target):
        fault_point("dir:exchanged")
        shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    target.rename(old)
    fault_point("dir:old-moved")
    tmp.rename(target)
    fault_point("dir:renamed")
    shutil.rmtree(old, ignore_errors=True)


def write_error(e: OSError, target: Path, tmp: Path | None = None) -> DataError:
    """An OS error met while writing `target` (through its temp path `tmp`) as one line naming the
    path: the target (the user's name for it) unless the error names another path."""
    from prefkit.core.errors import DataError, first_line

    where: str | Path = target
    if e.filename and tmp is not None:
        named = Path(os.fsdecode(e.filename))
        if named != tmp and not named.is_relative_to(tmp) and not named.name.startswith(f".{target.name}."):
            where = named
    reason = e.strerror or first_line(e)
    return DataError(f"cannot write: {reason}", file=where)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    On any exception the temporary path is removed and `target` is left as it was; an OS error
    (a full disk, a file too large, a folder made read-only) becomes a `DataError` naming the
    path. With `directory=True` the yielded path is a fresh empty folder (for `save_to_disk` and
    multi-file outputs); an existing target folder is replaced only after the new one is complete,
    and only if it is unchanged since the output guard judged it. Leftovers of killed runs at the
    same target are settled first (`clean_stale`).
    """
    target = Path(target)
    if directory:
        tmp: Path | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(target)
            tmp = _new_temp(target, directory=True)
            yield tmp
            fault_point("dir:written")
            _swap_folder(tmp, target)
        except BaseException as e:
            if tmp is not None:
                _remove(tmp)
            if isinstance(e, OSError):
                raise write_error(e, target, tmp) from None
            raise
        return
    with atomic_files([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_files(targets: Sequence[str | Path], *, marker: str | None = None) -> Iterator[list[Path]]:
    """Write several files as one unit: yield a temp path per target; on success commit them all.

    With `marker` (a command's name), each target also gets its marker (`prefkit.core.outputs`),
    listing its size and SHA-256, in the same unit; the previous unit's files that this one does not
    write again (a rejected file from an earlier `--skip-invalid` run), when still as prefkit wrote
    them, are removed with it. A unit of one file is renamed into place; a larger one is committed
    first (a record in each folder it writes to, see `_finish_commits`), then renamed file by file:
    a run killed before the commit leaves the previous set as it was, one killed after it is
    finished by the next write to any of its targets. Never a new file beside a previous run's
    companion once that write has run. All temps are created before anything is renamed, so an
    unwritable companion folder fails before the main file is touched; OS errors are `DataError`s
    naming the path; a target the output guard judged is replaced only if unchanged since.
    """
    paths = [Path(t) for t in targets]
    temps: list[Path] = []
    committed = False
    current = paths[0]
    try:
        for target in paths:
            current = target
            target.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(target)
            temps.append(_new_temp(target, directory=False))
        try:
            yield list(temps)
        except OSError:  # while the caller wrote: the file being written is the last one begun
            begun = [t for t, p in zip(temps, paths, strict=True) if t.exists() and t.stat().st_size]
            current = paths[temps.index(begun[-1])] if begun else paths[0]
            raise
        renames = list(zip(temps, paths, strict=True))
        remove: list[Path] = []
        if marker is not None:
            extra, remove = _markers(paths, temps, marker)
            temps.extend(t for t, _ in extra)
            renames.extend(extra)
        fault_point("files:written" if len(renames) > 1 else "file:written")
        for _, target in renames:
            current = target
            _check_unchanged(target)
        if len(renames) == 1:
            os.replace(*renames[0])
            return
        copies = _write_commit(renames, remove)
        committed = True
        fault_point("files:committed")
        for i, (tmp, target) in enumerate(renames):
            current = target
            os.replace(tmp, target)
            fault_point(f"files:renamed-{i}")
        for old in remove:
            _remove(old)
        fault_point("files:done")
        for c in copies:
            _remove(c)
    except BaseException as e:
        if not committed:  # after the commit, the next write finishes the renames
            for tmp in temps:
                _remove(tmp)
        if isinstance(e, OSError):
            raise write_error(e, current, dict(zip(paths, temps, strict=False)).get(current)) from None
        raise


def _markers(paths: list[Path], temps: list[Path], command: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(temp, marker path) of each target's marker, written from its finished temp; and the files
    of the previous unit (named in the first target's old marker) that this one does not write,
    with their markers, when they are still what prefkit wrote."""
    from prefkit.core.outputs import foreign_entry, marker_path, marker_record, read_marker

    # the unit's names (beside each other) or absolute paths (in several folders)
    together = all(p.parent == paths[0].parent for p in paths)
    names = [p.name for p in paths] if together else [str(p.absolute()) for p in paths]
    out: list[tuple[Path, Path]] = []
    for tmp, target in zip(temps, paths, strict=True):
        record = marker_record(tmp, command, folder=False, name=target.name)
        # the unit's names (beside each other) or absolute paths (in several folders)
        record["unit"] = (
            names if all(p.parent == paths[0].parent for p in paths) else [str(p.absolute()) for p in paths]
        )
        mpath = marker_path(target, folder=False)
        mtmp = _new_temp(mpath, directory=False)
        mtmp.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        out.append((mtmp, mpath))
    old = read_marker(paths[0], folder=False) or {}
    remove: list[Path] = []
    for name in old.get("unit") or ():
        if not isinstance(name, str):
            continue
        prev = paths[0].parent / name
        if prev in paths or not prev.is_file():
            continue
        by = read_marker(prev, folder=False)
        if by is not None and by.get("command") == command and foreign_entry(prev, folder=False) is None:
            remove += [prev, marker_path(prev, folder=False)]
    return out, remove


def _write_commit(renames: list[tuple[Path, Path]], remove: list[Path]) -> list[Path]:
    """Write the unit's commit record into every folder it writes to (see `_finish_commits`)."""
    folders = list(dict.fromkeys(target.parent for _, target in renames))
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    copies = [folder / f".{renames[0][1].name}.{tag}.commit" for folder in folders]
    record = {
        "renames": [[str(t.absolute()), str(p.absolute())] for t, p in renames],
        "remove": [str(r.absolute()) for r in remove],
        "copies": [str(c.absolute()) for c in copies],
    }
    text = json.dumps(record, ensure_ascii=False) + "\n"
    for copy in copies:
        part = copy.with_name(copy.name + ".part")
        part.write_text(text, encoding="utf-8")
        os.replace(part, copy)
    return copies
