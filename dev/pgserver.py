"""A throwaway PostgreSQL server for development and tests (not used by prefkit itself, not in
the wheel).

`throwaway_postgres()` starts one from Debian's `postgresql` package: initdb into a temporary
folder, `pg_ctl start` on a free loopback port (run as the `postgres` user when we are root),
and stops and removes it on exit (a watchdog process does it if we are killed first). The
annotate tests' `pg_server` fixture and
`bench/annotate_store.py` use it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from prefkit.annotate.server import free_port


class PgServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def new_database(self) -> str:
        """Create a fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class NoPostgres(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PgServer]:
    """Start a PostgreSQL server in a temporary folder on a free loopback port; stop and remove it
    on exit. Raises NoPostgres, saying why, when none can be started."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise NoPostgres("PostgreSQL server binaries not found (apt-get install postgresql; `make system-deps`)")
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise NoPostgres("running as root but there is no 'postgres' user to run the server as") from None
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="prefkit-pg-"))
    if as_root:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sock, log = root / "data", root / "sock", root / "server.log"
    port = free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run([*run_as, "mkdir", "-p", str(sock)], check=True)
        # fsync off (-F): a throwaway server; durability is not what the tests measure
        opts = f"-p {port} -h 127.0.0.1 -k {sock} -F -c max_connections=400 -c shared_buffers=64MB"
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace")[-300:]
        server_log = log.read_text(errors="replace")[-500:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"could not start a PostgreSQL server: {e} {detail} {server_log}") from None
    stop = [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
    watchdog = _watchdog(stop, root)
    try:
        yield PgServer(port)
    finally:
        subprocess.run(stop, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        watchdog.kill()
        watchdog.wait()


# Stops the server and removes its folder if the process that started it dies without doing so
# (a test run killed with kill -9): pg_ctl daemonises the server, so nothing else would.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, stop, root = int(sys.argv[1]), sys.argv[3:], sys.argv[2]
while os.getppid() == parent:
    time.sleep(1)
subprocess.run(stop, capture_output=True)
shutil.rmtree(root, ignore_errors=True)
"""


def _watchdog(stop: list[str], root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(root), *stop],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
