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
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

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
    "files:written",  # several files' temps complete, nothing renamed
    "files:companions-removed",  # the previous companions (e.g. a report) removed, nothing renamed
    "files:renamed-0",  # the first (main) file renamed, its companions not yet
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


def clean_stale(target: str | Path) -> list[Path]:
    """Remove the temp paths that killed runs left beside `target` (never a live run's); when a
    run was killed between the two renames of a folder swap and `target` is missing, put the old
    folder back first. Returns what was removed or restored."""
    target = Path(target)
    done = []
    for path, is_old in list(_leftovers(target)):
        if is_old and not target.exists() and not target.is_symlink():
            path.rename(target)  # the swap never finished: the previous output is the output
        else:
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


def _swap_folder(tmp: Path, target: Path) -> None:
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


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    On any exception the temporary path is removed and `target` is left as it was.
    With `directory=True` the yielded path is a fresh empty folder (for `save_to_disk` and
    multi-file outputs); an existing target folder is replaced only after the new one is complete.
    Leftovers of killed runs at the same target are cleaned first (`clean_stale`).
    """
    target = Path(target)
    if directory:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        tmp = _new_temp(target, directory=True)
        try:
            yield tmp
            fault_point("dir:written")
            _swap_folder(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
        return
    with atomic_files([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_files(targets: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Write several files as one unit: yield a temp path per target; on success, remove the
    previous versions of `targets[1:]` (the companions, e.g. a report), then rename the first
    target, then the rest. A run killed at any step leaves either the previous main file with
    its companions or without them, or the new main file with or without its new companions;
    never a new main file beside a previous run's companion. All temps are created before any
    rename, so an unwritable companion folder fails before the main file is touched.
    """
    paths = [Path(t) for t in targets]
    temps: list[Path] = []
    try:
        for target in paths:
            target.parent.mkdir(parents=True, exist_ok=True)
            clean_stale(target)
            temps.append(_new_temp(target, directory=False))
        yield list(temps)
        fault_point("files:written" if len(paths) > 1 else "file:written")
        for companion in paths[1:]:
            with contextlib.suppress(FileNotFoundError):
                companion.unlink()
        if len(paths) > 1:
            fault_point("files:companions-removed")
        for i, (tmp, target) in enumerate(zip(temps, paths, strict=True)):
            os.replace(tmp, target)
            if len(paths) > 1:
                fault_point(f"files:renamed-{i}")
    except BaseException:
        for tmp in temps:
            _remove(tmp)
        raise
