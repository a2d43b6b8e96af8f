"""Shared fixtures for the annotate room: store URLs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session from Debian's `postgresql` package (initdb into
a temporary folder, `pg_ctl start` on a free loopback port, run as the `postgres` user when we
are root) and stopped at the end. Each test gets a fresh database. PostgreSQL tests skip, saying
why, only when no server can be started.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest


class PgServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class NoPostgres(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PgServer]:
    """Start a PostgreSQL server in a temporary folder on a free loopback port; stop and remove it
    on exit. Raises NoPostgres, saying why, when none can be started. (bench/annotate_store.py
    uses this too.)"""
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
    port = _free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )
        subprocess.run([*run_as, "mkdir", "-p", str(sock)], check=True)
        # fsync off (-F): a throwaway server; durability is not what the tests measure
        opts = f"-p {port} -h 127.0.0.1 -k {sock} -F -c max_connections=400 -c shared_buffers=64MB"
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace")[-300:]
        server_log = log.read_text(errors="replace")[-500:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"could not start a PostgreSQL server: {e} {detail} {server_log}") from None
    try:
        yield PgServer(port)
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server on loopback for the whole test session."""
    try:
        server_cm = throwaway_postgres()
        server = server_cm.__enter__()
    except NoPostgres as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'annotations.db'}"


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on a real PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


class FakeClock:
    """A clock the test moves by hand (lease expiry without sleeping)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_pairs(n: int, start: int = 0) -> list:
    from data.schema import Pair, Prompt, Response

    return [
        Pair(
            Prompt(f"Câu hỏi số {i}: hãy giải thích?", source="test"),
            Response(f"Trả lời A cho câu {i}", model="m-a", temperature=0.7, seed=i),
            Response(f"Trả lời B cho câu {i}", model="m-b", temperature=1.0, seed=i),
        )
        for i in range(start, start + n)
    ]


@pytest.fixture(name="make_pairs")
def make_pairs_fixture():
    """`make_pairs(n, start=0)`: n distinct, deterministic pairs (Vietnamese text)."""
    return make_pairs
