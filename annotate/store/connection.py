"""Opening a store and running its transactions: the engine and its connection pool (`pool`,
`?pool=N`), SQLite's setup (WAL, busy timeout, `BEGIN IMMEDIATE` for writes), one short
transaction per call, retrying the races the database refused, and one-line errors for a store
that cannot be reached. Every part of `Store` builds on `StoreBase`.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateColumn

from prefkit.annotate.store.records import Project
from prefkit.annotate.tables import Base
from prefkit.core.errors import ConfigError
from prefkit.data.schema import utcnow

# Connections kept open between bursts (`pool`, `--db-pool`, `?pool=N`); up to `max_connections`
# (one per concurrent caller, e.g. Streamlit sessions) while busy. Connections beyond the pool are
# closed when returned, so a pool smaller than the busy callers opens a new one per transaction.
_IDLE_CONNECTIONS = 16


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class StoreBase:
    """The engine, the clock and the hot path's caches (project and user ids, each user's place in
    the queue, when each project was last reaped). Open with `Store.open(url)`."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"
        self._projects: dict[str, Project] = {}
        self._user_ids: dict[str, int] = {}
        self._last_reap: dict[int, datetime] = {}
        self._cursor: dict[tuple[int, int], int] = {}  # (project, user) -> queue position last claimed
        # SQLite has one writer at a time; queueing this process's writers on a lock wakes them
        # promptly, where SQLite's busy handler polls with sleeps of up to 100 ms (a long tail).
        self._write_lock = threading.Lock() if not self._pg else contextlib.nullcontext()

    # -----------------------------------------------------------------------------------------
    # Opening
    # -----------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, *, clock: Callable[[], datetime] = utcnow, max_connections: int = 40, pool: int | None = None
    ) -> Self:
        """Open (and create the tables of) a store. `url` is a SQLAlchemy URL
        (`sqlite:///path.db`, `postgresql+psycopg://user@host:port/db`) or a plain file path.

        SQLite gets WAL mode, a 30 s busy timeout, foreign keys on, and `BEGIN IMMEDIATE` for
        writes. `clock` returns aware UTC datetimes (tests pass their own to expire leases).
        `max_connections` bounds the pool: callers beyond it wait for a free connection. `pool`
        (or `?pool=N` in the URL) is how many connections stay open for reuse (default 16);
        0 opens a new connection for every transaction.
        """
        url, pool = _split_pool(url, pool)
        idle = min(pool, max_connections)
        pool_args: dict[str, Any] = (
            {"poolclass": NullPool} if idle == 0 else {"pool_size": idle, "max_overflow": max_connections - idle}
        )
        if url.startswith("sqlite"):
            if url in ("sqlite://", "sqlite:///:memory:"):
                raise ConfigError("an in-memory SQLite store is not shared between connections; give a file path")
            db_file = url.split(":///", 1)[-1].split("?", 1)[0]
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, **pool_args)
            _sqlite_setup(engine)
        elif url.startswith("postgresql"):
            # No pre-ping (a round trip per transaction): a dropped connection fails one attempt,
            # the pool discards it, and `_retrying` runs the transaction again.
            engine = create_engine(url, **pool_args)
        else:
            raise ConfigError(f"unsupported store URL {url!r}: use a SQLite path or postgresql+psycopg://…")
        with one_line_errors(engine.url):
            Base.metadata.create_all(engine)
            add_missing_columns(engine)
        return cls(engine, clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        return _utc(self._clock())

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One transaction; `write=True` takes SQLite's write lock up front (BEGIN IMMEDIATE)."""
        with self._write_lock if write else contextlib.nullcontext(), self.engine.connect() as conn:
            conn = conn.execution_options(prefkit_write=write)
            with conn.begin():
                yield conn

    def _retrying(self, fn: Callable[[Connection], Any], attempts: int = 20) -> Any:
        """Run `fn` in a write transaction, retrying races the database refused (a unique
        constraint hit by a concurrent claim, a lock that outlived the busy timeout)."""
        attempt = 0
        while True:
            try:
                with self._tx(write=True) as conn:
                    return fn(conn)
            except (IntegrityError, OperationalError, _LookAgain):
                attempt += 1
                if attempt >= attempts:
                    raise
                time.sleep(0.005 * attempt * random.random())  # jitter: racers retry apart


class _LookAgain(Exception):
    """Raised inside a claim to run it again in a fresh transaction (see `Store.claim`)."""


def with_pool(url: str, pool: int | None) -> str:
    """`url` with `?pool=N` set (a plain path becomes a `sqlite:///` URL); unchanged for None."""
    if pool is None:
        return url
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    return make_url(url).update_query_dict({"pool": str(pool)}).render_as_string(hide_password=False)


def _split_pool(url: str, pool: int | None) -> tuple[str, int]:
    """(URL without our `pool` setting, pool size): the argument wins over `?pool=N`."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}", _IDLE_CONNECTIONS if pool is None else pool
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a store URL: {url!r}") from None
    in_url = parsed.query.get("pool")
    if in_url is not None:
        try:
            from_url = int(in_url if isinstance(in_url, str) else in_url[-1])
        except ValueError:
            raise ConfigError(f"?pool= in the store URL must be a whole number, got {in_url!r}") from None
        url = parsed.difference_update_query(["pool"]).render_as_string(hide_password=False)
        pool = from_url if pool is None else pool
    pool = _IDLE_CONNECTIONS if pool is None else pool
    if pool < 0:
        raise ConfigError(f"the store's pool size must be 0 or more, got {pool}")
    return url, pool


@contextlib.contextmanager
def one_line_errors(url: Any) -> Iterator[None]:
    """A database that cannot be reached or refuses the connection (now or midway through a
    command) becomes one ConfigError line naming the store, not a driver's multi-line report."""
    try:
        yield
    except (OperationalError, InterfaceError) as e:
        shown = make_url(url) if isinstance(url, str) and "://" in url else url
        shown = shown.render_as_string(hide_password=True) if hasattr(shown, "render_as_string") else str(shown)
        raise ConfigError(f"cannot use store {shown}: {_one_line(e.orig)}") from None


def _one_line(e: BaseException | None) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def add_missing_columns(engine: Engine) -> list[str]:
    """Bring a store made by an earlier prefkit up to the tables' current columns: `create_all`
    adds missing tables, this adds missing columns (`ALTER TABLE … ADD COLUMN`) to tables that
    exist. Only additive: a column added to `tables.py` must be nullable or carry a
    `server_default`, so the rows already there get a value. Two processes opening the same old
    store at once may both try; the loser finds the column there and goes on. Returns the
    `table.column`s it added."""
    added: list[str] = []
    seen = inspect(engine)  # caches what it read: one look at each table
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in seen.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in have]
        for column in missing:
            if not column.nullable and column.server_default is None:
                raise ConfigError(
                    f"column {table.name}.{column.name} is new and NOT NULL without a server default: "
                    "a store made before it cannot get it"
                )
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            except (OperationalError, ProgrammingError):
                # added meanwhile by another process opening the same store
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
        if missing:
            for index in table.indexes:  # an index over a new column: create_all skipped the table
                index.create(engine, checkfirst=True)
    return added


def _sqlite_setup(engine: Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; our own BEGIN so that writes can
    take the lock up front (pysqlite's implicit BEGIN is deferred, which deadlocks upgraders)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it consistent
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("prefkit_write") else "BEGIN")
