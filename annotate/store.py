"""The annotation store: projects, pairs, users and sign-in, the work queue (claims as leases),
judgements, progress, dashboard figures and export. SQLite file by default, PostgreSQL for teams.

Everything a Streamlit rerun needs lives here, not in `session_state`: who is signed in (a
session key), what they hold (their active claim, returned again by `claim`), and what they did.

Concurrency: every write is one short transaction. On SQLite it starts with `BEGIN IMMEDIATE`
(one writer at a time, WAL keeps readers going, `busy_timeout` makes writers wait instead of
failing); on PostgreSQL the claim picks its pair with `SELECT … FOR UPDATE SKIP LOCKED`, so
concurrent annotators never wait on each other's candidate. Unique (pair, user) constraints on
assignments and judgements are the last line: nobody judges a pair twice, a double submit
records once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from sqlalchemy import (
    Engine,
    Row,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    false,
    literal,
    or_,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from annotate import auth
from annotate.models import (
    ACTIVE,
    EXPIRED,
    REPORTED,
    SKIPPED,
    SUBMITTED,
    WITHDRAWN,
    AssignmentRow,
    Base,
    JudgementRow,
    PairRow,
    ProjectMemberRow,
    ProjectRow,
    ProjectSafetyLabelsRow,
    SessionRow,
    SignInRow,
    UserRow,
)
from data.errors import ConfigError, DataError
from data.schema import Judgement, Pair, Response, Strength, utcnow

if TYPE_CHECKING:
    from annotate.dashboard_data import Dashboard
    from data.aggregate import AggregateReport

A, J, M, P, U = AssignmentRow, JudgementRow, ProjectMemberRow, PairRow, UserRow

_IMPORT_CHUNK = 2000
# Connections kept open between bursts (`pool`, `--db-pool`, `?pool=N`); up to `max_connections`
# (one per concurrent caller, e.g. Streamlit sessions) while busy. Connections beyond the pool are
# closed when returned, so a pool smaller than the busy callers opens a new one per transaction.
_IDLE_CONNECTIONS = 16
SESSION_TTL = timedelta(hours=12)
# Sign-in: failures counted since the last success within this window; beyond the free ones,
# each further attempt waits 1, 2, 4, ... s after the last failure, at most MAX_SIGN_IN_WAIT.
SIGN_IN_WINDOW = timedelta(minutes=15)
FREE_FAILURES_PER_USER = 5
FREE_FAILURES_PER_CLIENT = 20  # higher: many people may share one address (an office, a proxy)
MAX_SIGN_IN_WAIT = timedelta(minutes=15)
SIGN_IN_KEPT = timedelta(days=30)  # how long attempts stay on record


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    guidelines: str
    overlap: int
    calibration: float
    calibration_overlap: int
    seed: int
    created_at: datetime
    safety_labels: bool = False  # the Label page asks for the pair's safety label (Llama 2's bins)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    disabled: bool


@dataclass(frozen=True)
class ImportResult:
    added: int
    skipped: int  # already in the project (same pair_id), or repeated in the input


@dataclass(frozen=True)
class Assignment:
    """A claim (lease) on one pair. `shown_order` is (left, right) response ids as shown."""

    id: int
    project: str
    user: str
    pair: Pair
    shown_order: tuple[str, str]
    claimed_at: datetime
    expires_at: datetime
    is_calibration: bool

    @property
    def left(self) -> Response:
        return self.pair.response(self.shown_order[0])

    @property
    def right(self) -> Response:
        return self.pair.response(self.shown_order[1])


@dataclass(frozen=True)
class Progress:
    done_today: int  # this user's judgements in this project since 00:00 UTC
    left_in_queue: int  # pairs this user could still be given now, besides the one they hold
    done_total: int  # this user's judgements in this project


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _hash_int(*parts: Any, bits: int = 56) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") >> (64 - bits)


class Store:
    """Open with `Store.open(url)`; all methods are safe to call from many threads/processes."""

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
    ) -> "Store":
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
        return cls(engine, clock)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
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

    # -----------------------------------------------------------------------------------------
    # Projects
    # -----------------------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        guidelines: str = "",
        overlap: int = 2,
        calibration: float = 0.0,
        calibration_overlap: int | None = None,
        seed: int = 0,
    ) -> Project:
        """A new project. Each pair needs `overlap` judgements from different annotators; a
        seeded `calibration` share of pairs needs `calibration_overlap` (default: `overlap`, so
        a team of `overlap` annotators can finish them) and is handed out first, so agreement
        figures appear early."""
        values = self._new_project_values(name, guidelines, overlap, calibration, calibration_overlap, seed)
        try:
            with self._tx(write=True) as conn:
                conn.execute(insert(ProjectRow).values(**values))
        except IntegrityError:
            raise ConfigError(f"project {name!r} already exists") from None
        return self.get_project(name)

    def ensure_project(
        self,
        name: str,
        *,
        guidelines: str | None = None,
        overlap: int | None = None,
        calibration: float | None = None,
        calibration_overlap: int | None = None,
        seed: int = 0,
    ) -> Project:
        """The project `name`, created if it is missing (settings left None get
        `create_project`'s defaults; `seed` is used only then). An existing project keeps its
        queue settings: asking for different ones is a ConfigError; given `guidelines` replace
        its guidelines. One write transaction, so concurrent callers create it once."""
        _no_nul(name, "project name", ConfigError)

        def run(conn: Connection) -> Project:
            return self._ensure_project(
                conn, name, guidelines=guidelines, overlap=overlap, calibration=calibration,
                calibration_overlap=calibration_overlap, seed=seed,
            )

        return self._retrying(run)  # a concurrent creator's insert wins; the retry finds its project

    def import_project(
        self,
        name: str,
        pairs: Iterable[Pair],
        *,
        guidelines: str | None = None,
        overlap: int | None = None,
        calibration: float | None = None,
        calibration_overlap: int | None = None,
        seed: int = 0,
        safety_labels: bool = False,
    ) -> ImportResult:
        """`ensure_project` and `import_pairs` in one transaction (`prefkit annotate import`):
        if reading the pairs fails, a new project is not created either, so a retry may use
        other settings. Idempotent by `pair_id`, like `import_pairs`. `safety_labels` makes the
        project ask for Llama 2's safety label of each pair (never turned off here)."""
        _no_nul(name, "project name", ConfigError)
        try:
            with self._tx(write=True) as conn:
                proj = self._ensure_project(
                    conn, name, guidelines=guidelines, overlap=overlap, calibration=calibration,
                    calibration_overlap=calibration_overlap, seed=seed,
                )
                if safety_labels:
                    self._set_safety_labels(conn, self._project(conn, name), True)
                return self._import_pairs(conn, proj, pairs)
        except IntegrityError:  # PostgreSQL: another import created the same project meanwhile
            raise ConfigError(f"project {name!r} was created by another import meanwhile; run this one again") from None

    def _ensure_project(
        self,
        conn: Connection,
        name: str,
        *,
        guidelines: str | None,
        overlap: int | None,
        calibration: float | None,
        calibration_overlap: int | None,
        seed: int,
    ) -> Project:
        """The body of `ensure_project`, inside the caller's write transaction."""
        asked = {"overlap": overlap, "calibration": calibration, "calibration_overlap": calibration_overlap}
        row = conn.execute(select(ProjectRow).where(ProjectRow.name == name)).first()
        if row is None:
            conn.execute(
                insert(ProjectRow).values(
                    **self._new_project_values(
                        name, guidelines or "", 2 if overlap is None else overlap,
                        0.0 if calibration is None else calibration, calibration_overlap, seed,
                    )
                )
            )
            return self._project(conn, name)
        existing = _project(row)
        clash = [k for k, v in asked.items() if v is not None and v != getattr(existing, k)]
        if clash:
            have = ", ".join(f"{k}={getattr(existing, k)}" for k in clash)
            raise ConfigError(f"project {name!r} already exists with {have}; queue settings cannot change")
        if guidelines is not None and guidelines != existing.guidelines:
            _no_nul(guidelines, "guidelines")
            conn.execute(update(ProjectRow).where(ProjectRow.id == existing.id).values(guidelines=guidelines))
            return self._project(conn, name)
        return existing

    def _new_project_values(
        self, name: str, guidelines: str, overlap: int, calibration: float, calibration_overlap: int | None, seed: int
    ) -> dict[str, Any]:
        if not name.strip():
            raise ConfigError("project name is empty")
        _no_nul(name, "project name", ConfigError)
        _no_nul(guidelines, "guidelines")
        if overlap < 1:
            raise ConfigError(f"overlap must be at least 1, got {overlap}")
        if not 0.0 <= calibration <= 1.0:
            raise ConfigError(f"calibration must be a share between 0 and 1, got {calibration}")
        cal_overlap = calibration_overlap if calibration_overlap is not None else overlap
        if cal_overlap < overlap:
            raise ConfigError(f"calibration_overlap ({cal_overlap}) must be at least overlap ({overlap})")
        return dict(
            name=name, guidelines=guidelines, overlap=overlap, calibration=calibration,
            calibration_overlap=cal_overlap, seed=seed, created_at=self.now(),
        )

    def get_project(self, name: str) -> Project:
        with self._tx() as conn:
            return self._project(conn, name)

    def list_projects(self) -> list[Project]:
        with self._tx() as conn:
            rows = conn.execute(select(ProjectRow, _SAFETY_LABELS).order_by(ProjectRow.name)).all()
        return [_project(r) for r in rows]

    def set_safety_labels(self, name: str, on: bool = True) -> Project:
        """Make the project ask for (or stop asking for) Llama 2's safety label of each pair."""
        with self._tx(write=True) as conn:
            self._set_safety_labels(conn, self._project(conn, name), on)
            return self._project(conn, name)

    def _set_safety_labels(self, conn: Connection, project: Project, on: bool) -> None:
        if on and not project.safety_labels:
            conn.execute(insert(ProjectSafetyLabelsRow).values(project_id=project.id, created_at=self.now()))
        elif not on and project.safety_labels:
            conn.execute(delete(ProjectSafetyLabelsRow).where(ProjectSafetyLabelsRow.project_id == project.id))

    def set_guidelines(self, name: str, markdown: str) -> None:
        _no_nul(markdown, "guidelines")
        with self._tx(write=True) as conn:
            pid = self._project(conn, name).id
            conn.execute(update(ProjectRow).where(ProjectRow.id == pid).values(guidelines=markdown))

    def _project(self, conn: Connection, name: str) -> Project:
        row = None if "\x00" in name else conn.execute(
            select(ProjectRow, _SAFETY_LABELS).where(ProjectRow.name == name)).first()
        if row is None:
            raise ConfigError(f"no project named {name!r} in this store")
        return _project(row)

    # -----------------------------------------------------------------------------------------
    # Pairs
    # -----------------------------------------------------------------------------------------

    def import_pairs(self, project: str, pairs: Iterable[Pair]) -> ImportResult:
        """Add pairs to a project in one transaction. Idempotent by `pair_id`: importing the same
        pairs again adds nothing. Queue order and calibration membership come from the project's
        seed and each pair's id, so they do not depend on import order."""
        with self._tx(write=True) as conn:
            return self._import_pairs(conn, self._project(conn, project), pairs)

    def _import_pairs(self, conn: Connection, proj: Project, pairs: Iterable[Pair]) -> ImportResult:
        seen = set(conn.execute(select(P.pair_id).where(P.project_id == proj.id)).scalars())
        now = self.now()
        added = skipped = 0
        batch: list[dict[str, Any]] = []
        for pair in pairs:
            if pair.pair_id in seen:
                skipped += 1
                continue
            seen.add(pair.pair_id)
            cal = _hash_int("calibration", proj.seed, pair.pair_id, bits=53) / 2**53 < proj.calibration
            position = _hash_int("position", proj.seed, pair.pair_id) - (2**56 if cal else 0)
            batch.append(
                dict(
                    project_id=proj.id, pair_id=pair.pair_id, data=pair.to_row(), position=position,
                    is_calibration=cal, required=proj.calibration_overlap if cal else proj.overlap,
                    done=0, held=0, complete=False, created_at=now,
                )
            )
            if len(batch) >= _IMPORT_CHUNK:
                conn.execute(insert(P), batch)
                added += len(batch)
                batch = []
        if batch:
            conn.execute(insert(P), batch)
            added += len(batch)
        return ImportResult(added=added, skipped=skipped)

    def pairs(self, project: str) -> list[Pair]:
        """All pairs of a project, in import order."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(select(P.data).where(P.project_id == pid).order_by(P.id)).scalars()
            return [Pair.from_row(d) for d in rows]

    def count_pairs(self, project: str) -> int:
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return conn.execute(select(func.count()).select_from(P).where(P.project_id == pid)).scalar_one()

    # -----------------------------------------------------------------------------------------
    # Users, tokens, sessions
    # -----------------------------------------------------------------------------------------

    def add_user(self, name: str, admin: bool = False) -> str:
        """Create a user and return their sign-in token. It is shown only now: the store keeps a
        salted hash of it."""
        name = name.strip()
        if not name:
            raise ConfigError("user name is empty")
        _no_nul(name, "user name", ConfigError)
        token, key, hashed = auth.new_token()
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    insert(U).values(
                        name=name, token_key=key, token_hash=hashed, is_admin=admin, disabled=False,
                        created_at=self.now(),
                    )
                )
        except IntegrityError:
            raise ConfigError(f"user {name!r} already exists") from None
        return token

    def authenticate(self, token: str, client: str | None = None) -> User | None:
        """The enabled user this token belongs to, or None. Every attempt is recorded (for
        `sign_in_status`). After `FREE_FAILURES_PER_USER` failures on one account, or
        `FREE_FAILURES_PER_CLIENT` from one `client` (an IP address, a browser tab), since its
        last success and within `SIGN_IN_WINDOW`, each further attempt must wait 1, 2, 4, …
        seconds (at most `MAX_SIGN_IN_WAIT`) after the last failure: until then it is refused
        unchecked with `SignInThrottled`, which says how long to wait."""
        parts = None if "\x00" in token else auth.split_token(token)
        client = client[:200] if client else None
        now = self.now()
        with self._tx() as conn:
            row = conn.execute(select(U).where(U.token_key == parts[0])).first() if parts else None
            uid = row.id if row is not None else None
            wait, whose = self._sign_in_wait(conn, uid, client, now)
        if wait > 0:
            self._record_sign_in(uid, client, "throttled", now)
            raise SignInThrottled(
                f"too many failed sign-ins {whose}; try again in {math.ceil(wait)} s", wait_seconds=wait
            )
        if parts is None or row is None:
            outcome = "unknown"
        elif row.disabled:
            outcome = "disabled"
        elif not auth.verify_secret(parts[1], row.token_hash):
            outcome = "bad-token"
        else:
            outcome = "ok"
        self._record_sign_in(uid, client, outcome, now)
        return _user(row) if outcome == "ok" else None

    def get_user(self, name: str) -> User:
        with self._tx() as conn:
            return self._user(conn, name)

    def list_users(self) -> list[User]:
        with self._tx() as conn:
            return [_user(r) for r in conn.execute(select(U).order_by(U.name))]

    def disable_user(self, name: str) -> None:
        """Disable a user: their token and sessions stop working and their claims go back."""
        with self._tx(write=True) as conn:
            uid = self._user(conn, name).id
            conn.execute(update(U).where(U.id == uid).values(disabled=True))
            conn.execute(delete(SessionRow).where(SessionRow.user_id == uid))
            released = conn.execute(
                update(A).where(A.user_id == uid, A.status == ACTIVE).values(status=EXPIRED).returning(A.pair_row_id)
            ).scalars().all()
            _release(conn, released)

    def start_session(self, user: User | str, ttl: timedelta = SESSION_TTL) -> str:
        """Sign a user in for `ttl` (a working day by default): returns a session key for the
        browser tab to keep. Only its hash is stored. Expired sessions are purged here."""
        key, key_hash = auth.new_session_key()
        with self._tx(write=True) as conn:
            uid = self._active_user(conn, user).id
            now = self.now()
            conn.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            conn.execute(
                insert(SessionRow).values(key_hash=key_hash, user_id=uid, created_at=now, expires_at=now + ttl)
            )
        return key

    def session_user(self, key: str) -> User | None:
        """The enabled user signed in with this unexpired session key, or None."""
        with self._tx() as conn:
            row = conn.execute(
                select(U).join(SessionRow, SessionRow.user_id == U.id).where(
                    SessionRow.key_hash == auth.session_key_hash(key), SessionRow.expires_at > self.now()
                )
            ).first()
        return None if row is None or row.disabled else _user(row)

    def end_session(self, key: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(delete(SessionRow).where(SessionRow.key_hash == auth.session_key_hash(key)))

    # -----------------------------------------------------------------------------------------
    # Sign-in: slowing down failures, admin reset
    # -----------------------------------------------------------------------------------------

    def _sign_in_wait(self, conn: Connection, uid: int | None, client: str | None, now: datetime) -> tuple[float, str]:
        """Seconds the next attempt must still wait, and for what ("for this account", "from
        this client"); 0 when it may be checked now."""
        worst, whose = 0.0, ""
        for column, value, free, label in (
            (SignInRow.user_id, uid, FREE_FAILURES_PER_USER, "for this account"),
            (SignInRow.client, client, FREE_FAILURES_PER_CLIENT, "from this client"),
        ):
            if value is None:
                continue
            cleared = conn.execute(
                select(func.max(SignInRow.at)).where(column == value, SignInRow.outcome.in_(_SIGN_IN_CLEARS))
            ).scalar()
            since = max(now - SIGN_IN_WINDOW, _utc(cleared)) if cleared is not None else now - SIGN_IN_WINDOW
            n, last = conn.execute(
                select(func.count(), func.max(SignInRow.at)).where(
                    column == value, SignInRow.outcome.in_(_SIGN_IN_FAILURES), SignInRow.at > since
                )
            ).one()
            if n >= free:
                delay = min(2.0 ** (n - free), MAX_SIGN_IN_WAIT.total_seconds())
                left = (_utc(last) + timedelta(seconds=delay) - now).total_seconds()
                if left > worst:
                    worst, whose = left, label
        return worst, whose

    def _record_sign_in(self, uid: int | None, client: str | None, outcome: str, now: datetime) -> None:
        with self._tx(write=True) as conn:
            conn.execute(insert(SignInRow).values(user_id=uid, client=client, outcome=outcome, at=now))
            if outcome == "ok":  # as sessions are purged at sign-in: the record keeps 30 days
                conn.execute(delete(SignInRow).where(SignInRow.at < now - SIGN_IN_KEPT))

    def sign_in_status(self) -> dict[str, SignInStatus]:
        """Failed sign-ins per user, for admins (`prefkit annotate users list`)."""
        now = self.now()
        out: dict[str, SignInStatus] = {}
        with self._tx() as conn:
            users = conn.execute(select(U.id, U.name).order_by(U.name)).all()
            day = dict(conn.execute(
                select(SignInRow.user_id, func.count()).where(
                    SignInRow.outcome.in_(_SIGN_IN_FAILURES), SignInRow.at > now - timedelta(days=1)
                ).group_by(SignInRow.user_id)
            ).all())
            last = dict(conn.execute(
                select(SignInRow.user_id, func.max(SignInRow.at)).where(SignInRow.outcome.in_(_SIGN_IN_FAILURES))
                .group_by(SignInRow.user_id)
            ).all())
            for uid, name in users:
                wait, _ = self._sign_in_wait(conn, uid, None, now)
                out[name] = SignInStatus(
                    failures_24h=day.get(uid, 0), last_failure=_utc(last[uid]) if uid in last else None,
                    locked_until=now + timedelta(seconds=wait) if wait > 0 else None,
                )
        return out

    def reset_token(self, name: str) -> str:
        """A new sign-in token for `name` (returned once; the old one stops working), their
        sessions ended and any sign-in wait cleared."""
        token, key, hashed = auth.new_token()
        with self._tx(write=True) as conn:
            uid = self._user(conn, name).id
            conn.execute(update(U).where(U.id == uid).values(token_key=key, token_hash=hashed))
            conn.execute(delete(SessionRow).where(SessionRow.user_id == uid))
            conn.execute(insert(SignInRow).values(user_id=uid, client=None, outcome="reset", at=self.now()))
        return token

    def enable_user(self, name: str) -> None:
        """Re-enable a disabled user (their token works again) and clear any sign-in wait."""
        with self._tx(write=True) as conn:
            uid = self._user(conn, name).id
            conn.execute(update(U).where(U.id == uid).values(disabled=False))
            conn.execute(insert(SignInRow).values(user_id=uid, client=None, outcome="reset", at=self.now()))

    def _user(self, conn: Connection, user: User | str) -> User:
        name = user.name if isinstance(user, User) else user
        row = None if "\x00" in name else conn.execute(_USER, {"name": name}).first()
        if row is None:
            raise ConfigError(f"no user named {name!r} in this store")
        return _user(row)

    def _active_user(self, conn: Connection, user: User | str) -> User:
        u = self._user(conn, user)
        if u.disabled:
            raise ConfigError(f"user {u.name!r} is disabled")
        return u

    # -----------------------------------------------------------------------------------------
    # The queue
    # -----------------------------------------------------------------------------------------

    def claim(self, project: str, user: User | str, lease_seconds: float = 900) -> Assignment | None:
        """The next pair for this user, as a lease of `lease_seconds`, or None when nothing is left.

        The user's still-held claim comes first (renewed), so a rerun shows the same pair. Never a
        pair the user judged, skipped or reported; never more live claims plus judgements on a
        pair than it needs. Expired leases go back to the queue here (at most once a second).
        """
        proj = self._cached_project(project)
        name = user.name if isinstance(user, User) else user
        uid = self._user_id(name)

        def run(conn: Connection) -> Assignment | None:
            now = self.now()
            expires = now + timedelta(seconds=lease_seconds)
            if self._pg:
                # One claim at a time per user (two tabs clicking at once get the same pair, as on
                # SQLite, whose writers are serialised anyway). NO KEY UPDATE: inserts that only
                # reference the user (their FK check) are not blocked.
                conn.execute(_LOCK_USER, {"uid": uid})
            if self._reap_due(proj.id, now):
                _release(conn, conn.execute(_REAP, {"pid": proj.id, "now": now}).scalars().all())
            held = conn.execute(_HELD, {"uid": uid, "pid": proj.id}).first()
            if held is not None:
                conn.execute(_RENEW, {"aid": held.id, "expires": expires})
                return _assignment(held, proj.name, name, expires)

            if not self._may_label(conn, proj.id, uid):
                raise ConfigError(f"{name!r} is not assigned to project {proj.name!r}; ask an admin")
            # Resume the walk after this user's last pair, so that pairs they judged and others
            # have not finished yet are not rescanned on every claim; from the start only when
            # nothing is left ahead (pairs freed behind them are meanwhile others' to take).
            after = self._cursor.get((proj.id, uid))
            params = {"pid": proj.id, "uid": uid, "after": _BEFORE_ALL}
            cand = self._pick_skipped(conn, params) or self._pick(conn, params, after)
            if cand is None:
                # Before saying "nothing left": free the leases that ran out since the last reap.
                # On PostgreSQL this also waits for a concurrent claim that is reaping them right
                # now (its rows are locked until it commits), so the next look sees its freed pairs.
                _release(conn, conn.execute(_REAP, {"pid": proj.id, "now": now}).scalars().all())
                self._last_reap[proj.id] = now
                cand = self._pick_skipped(conn, params) or self._pick(conn, params, None)
            if cand is None and self._pg:
                # SKIP LOCKED also skips pairs that are only busy for a moment (another claim or a
                # submit updating them): before saying "nothing left", wait for those.
                cand = conn.execute(_PICK_PG_WAIT, params).first()
                if cand is None and conn.execute(_ANY_OPEN, params).first() is not None:
                    # A pair freed by a transaction that committed after our statements began:
                    # look again in a fresh transaction (bounded by `_retrying`).
                    raise _LookAgain()
            if cand is None:
                self._active_user(conn, name)  # a disabled user is told so, not "nothing left"
                return None
            pair = Pair.from_row(cand.data)
            order = (pair.a.id, pair.b.id)
            if random.Random(f"{proj.seed}:{cand.pair_id}:{uid}").random() < 0.5:
                order = (pair.b.id, pair.a.id)
            lease = {"left": order[0], "right": order[1], "now": now, "expires": expires}
            if cand.expired_id is not None:  # this user's lease on it ran out earlier: reuse it
                aid = cand.expired_id
                conn.execute(_REUSE, {"aid": aid, **lease})
            else:
                aid = conn.execute(_NEW, {"prid": cand.id, "uid": uid, "pid": proj.id, **lease}).scalar_one()
            conn.execute(_HOLD, {"prid": cand.id})
            if not getattr(cand, "returned", False):  # a skipped pair taken out of turn leaves the walk where it was
                self._cursor[(proj.id, uid)] = cand.position
            return Assignment(aid, proj.name, name, pair, order, now, expires, cand.is_calibration)

        try:
            return self._retrying(run)
        except _LookAgain:  # still racing after every retry: "nothing now", never a crash
            return None

    def _pick(self, conn: Connection, params: dict[str, Any], after: int | None) -> Row[Any] | None:
        """The first open pair for this user after queue position `after` (then from the start);
        on PostgreSQL passing over pairs other transactions hold locked."""
        for start in ([after] if after is not None else []) + [_BEFORE_ALL]:
            cand = conn.execute(_PICK_PG if self._pg else _PICK, {**params, "after": start}).first()
            if cand is not None:
                return cand
        return None

    def _pick_skipped(self, conn: Connection, params: dict[str, Any]) -> Row[Any] | None:
        """A pair someone skipped that this user may take, before the walk: the walk resumes
        after each user's last pair, so a pair skipped behind them would otherwise reach them
        only at the end of the queue. Driven from the (few) skipped assignments."""
        return conn.execute(_PICK_SKIPPED_PG if self._pg else _PICK_SKIPPED, params).first()

    # -----------------------------------------------------------------------------------------
    # Who may label which project
    # -----------------------------------------------------------------------------------------

    def _may_label(self, conn: Connection, project_id: int, user_id: int) -> bool:
        """Admins always; others when the project has no members (open) or they are one."""
        return bool(conn.execute(_MAY_LABEL, {"pid": project_id, "uid": user_id}).scalar())

    def assign(self, project: str, user: str) -> None:
        """Let `user` label `project` (from then on, only its members and admins may)."""

        def run(conn: Connection) -> None:
            proj, u = self._project(conn, project), self._user(conn, user)
            if conn.execute(select(M.user_id).where(M.project_id == proj.id, M.user_id == u.id)).first() is None:
                conn.execute(insert(M).values(project_id=proj.id, user_id=u.id, created_at=self.now()))

        self._retrying(run)

    def unassign(self, project: str, user: str) -> None:
        """Take `user` off `project`; a pair they hold there goes back to the queue. When the
        last member goes, the project is open to every annotator again."""

        def run(conn: Connection) -> None:
            proj, u = self._project(conn, project), self._user(conn, user)
            conn.execute(delete(M).where(M.project_id == proj.id, M.user_id == u.id))
            held = conn.execute(
                update(A).where(A.user_id == u.id, A.project_id == proj.id, A.status == ACTIVE)
                .values(status=EXPIRED).returning(A.pair_row_id)
            ).scalars().all()
            _release(conn, held)

        self._retrying(run)

    def members(self, project: str) -> list[str]:
        """Names of the annotators assigned to `project` (empty: open to all)."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return list(conn.execute(
                select(U.name).join(M, M.user_id == U.id).where(M.project_id == pid).order_by(U.name)
            ).scalars())

    def projects_for(self, user: User | str) -> list[Project]:
        """The projects `user` may label: every one for an admin; otherwise the open ones and
        those they are assigned to."""
        with self._tx() as conn:
            u = self._user(conn, user)
            q = select(ProjectRow).order_by(ProjectRow.name)
            if not u.is_admin:
                q = q.where(or_(
                    ~exists().where(M.project_id == ProjectRow.id),
                    exists().where(M.project_id == ProjectRow.id, M.user_id == u.id),
                ))
            return [_project(r) for r in conn.execute(q).all()]

    def _cached_project(self, name: str) -> Project:
        """Projects' ids and seeds never change, so the hot path looks them up once."""
        proj = self._projects.get(name)
        if proj is None:
            proj = self._projects[name] = self.get_project(name)
        return proj

    def _user_id(self, name: str) -> int:
        """Users' ids never change (users are disabled, never deleted); whether one is disabled is
        checked inside each claim and submit."""
        uid = self._user_ids.get(name)
        if uid is None:
            uid = self._user_ids[name] = self.get_user(name).id
        return uid

    def _reap_due(self, project_id: int, now: datetime) -> bool:
        last = self._last_reap.get(project_id)
        if last is not None and timedelta(0) <= now - last < _REAP_EVERY:
            return False
        self._last_reap[project_id] = now
        return True

    def submit(self, assignment_id: int, user: User | str, judgement: Judgement) -> Judgement:
        """Record the user's judgement on their assignment and return what is stored.

        Idempotent per (user, pair): a second submit (double click, rerun, another tab) returns
        the first judgement unchanged — use `change_judgement` to change it. The shown order and
        annotator are taken from the assignment, not from `judgement`. A submit after the lease
        expired is still recorded (a human's work is not thrown away) unless the user skipped,
        reported or withdrew the pair.
        """
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> Judgement:
            a = self._own_assignment(conn, assignment_id, name)
            pair = Pair.from_row(a.data)
            if a.judgement_id is not None:
                return _judgement(conn.execute(_JUDGEMENT, {"jid": a.judgement_id}).one(), pair.pair_id, name)
            if a.status in (SKIPPED, REPORTED, WITHDRAWN):
                raise DataError(f"assignment {assignment_id} was {a.status}; it takes no judgement", field="status")
            _check_judgement(judgement, pair)
            now = self.now()
            row = _judgement_values(judgement, pair, (a.shown_left, a.shown_right))
            conn.execute(
                _INSERT_JUDGEMENT,
                {"pair_row_id": a.pair_row_id, "user_id": a.user_id, "project_id": a.project_id, "assignment_id": a.id,
                 "created_at": now, "updated_at": now, **row},
            )
            conn.execute(_SUBMITTED, {"aid": a.id, "now": now})
            conn.execute(_DONE, {"prid": a.pair_row_id, "release": 1 if a.status == ACTIVE else 0})
            return Judgement(
                pair_id=pair.pair_id, annotator=name, preferred=row["preferred"], strength=judgement.strength,
                shown_order=(a.shown_left, a.shown_right), unsafe=tuple(row["unsafe"]), rationale=row["rationale"],
                seconds=row["seconds"], created_at=now,
            )

        return self._retrying(run)

    def skip(self, assignment_id: int, user: User | str) -> None:
        """Give the pair back for others; this user is not offered it again."""
        self._finish(assignment_id, user, SKIPPED, None)

    def report(self, assignment_id: int, user: User | str, reason: str) -> None:
        """Report a problem with the pair (bad prompt, both unusable); admins see it on the
        dashboard. Like skip, the user is not offered the pair again."""
        if not reason or not reason.strip():
            raise DataError("a report needs a reason", field="reason")
        _no_nul(reason, "reason")
        self._finish(assignment_id, user, REPORTED, reason.strip())

    def _finish(self, assignment_id: int, user: User | str, status: str, reason: str | None) -> None:
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> None:
            a = self._own_assignment(conn, assignment_id, name)
            if a.status not in (ACTIVE, EXPIRED):
                return  # already submitted/skipped/reported: a repeated click changes nothing
            conn.execute(
                update(A).where(A.id == a.id).values(status=status, finished_at=self.now(), reason=reason)
            )
            if a.status == ACTIVE:
                _release(conn, [a.pair_row_id])

        self._retrying(run)

    def undo_last(self, project: str, user: User | str, lease_seconds: float = 900) -> str | None:
        """Take back the user's last action in `project` (a judgement, a skip or a report) done
        within the last `lease_seconds`: the judgement is deleted (or the skip/report undone) and
        the pair is theirs again as a fresh lease, shown by the next `claim`; the pair they held
        meanwhile goes back to the queue, to come next after it. Called again, it goes one
        action further back. Returns what was undone ("judgement", "skip", "report"), or None
        when there is nothing to undo. A skipped or reported pair another annotator has taken
        since (it needs no more judgements) cannot be undone: DataError."""
        proj = self._cached_project(project)
        name = user.name if isinstance(user, User) else user

        def run(conn: Connection) -> str | None:
            u = self._active_user(conn, name)
            now = self.now()
            last = conn.execute(
                select(A.id, A.status, A.pair_row_id, P.done, P.held, P.required, P.pair_id)
                .join(P, P.id == A.pair_row_id)
                .where(
                    A.user_id == u.id, A.project_id == proj.id, A.status.in_([SUBMITTED, SKIPPED, REPORTED]),
                    A.finished_at >= now - timedelta(seconds=lease_seconds),
                )
                .order_by(A.finished_at.desc(), A.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            if last.status == SUBMITTED:
                conn.execute(delete(J).where(J.assignment_id == last.id))
                conn.execute(  # one judgement fewer, one lease more: done + held is unchanged
                    update(P).where(P.id == last.pair_row_id)
                    .values(done=P.done - 1, held=P.held + 1, complete=P.done - 1 >= P.required)
                )
            else:
                if last.done + last.held >= last.required:
                    raise DataError(
                        f"pair {last.pair_id} was taken by other annotators since; the "
                        f"{'skip' if last.status == SKIPPED else 'report'} stays",
                        field="undo",
                    )
                conn.execute(_HOLD, {"prid": last.pair_row_id})
            held = conn.execute(
                update(A).where(A.user_id == u.id, A.project_id == proj.id, A.status == ACTIVE)
                .values(status=EXPIRED).returning(A.pair_row_id)
            ).all()
            _release(conn, [h.pair_row_id for h in held])
            positions = conn.execute(select(P.position).where(P.id.in_([h.pair_row_id for h in held]))).scalars().all()
            if positions:  # the pair put down comes next after the undone one
                key = (proj.id, u.id)
                self._cursor[key] = min([self._cursor.get(key, min(positions))] + [p - 1 for p in positions])
            conn.execute(
                update(A).where(A.id == last.id).values(
                    status=ACTIVE, claimed_at=now, expires_at=now + timedelta(seconds=lease_seconds),
                    finished_at=None, reason=None,
                )
            )
            return {SUBMITTED: "judgement", SKIPPED: "skip", REPORTED: "report"}[last.status]

        return self._retrying(run)

    def _own_assignment(self, conn: Connection, assignment_id: int, name: str) -> Row[Any]:
        """The assignment with its pair, owner and any judgement; it must be `name`'s, and
        `name` must not be disabled."""
        a = conn.execute(_OWN_PG if self._pg else _OWN, {"aid": assignment_id}).first()
        if a is None or a.user_name != name:
            raise DataError(f"assignment {assignment_id} is not held by {name!r}", field="assignment_id")
        if a.disabled:
            raise ConfigError(f"user {name!r} is disabled")
        return a

    # -----------------------------------------------------------------------------------------
    # My work
    # -----------------------------------------------------------------------------------------

    def my_judgements(
        self, user: User | str, project: str | None = None, limit: int = 50
    ) -> list[tuple[Pair, Judgement]]:
        """The user's most recent judgements (newest first), optionally in one project."""
        with self._tx() as conn:
            u = self._user(conn, user)
            q = select(J, P.data, P.pair_id).join(P, P.id == J.pair_row_id).where(J.user_id == u.id)
            if project is not None:
                q = q.where(J.project_id == self._project(conn, project).id)
            rows = conn.execute(q.order_by(J.updated_at.desc(), J.id.desc()).limit(limit)).all()
        return [(Pair.from_row(r.data), _judgement(r, r.pair_id, u.name)) for r in rows]

    def change_judgement(
        self, user: User | str, pair_id: str, judgement: Judgement, project: str | None = None
    ) -> Judgement:
        """Replace the user's judgement on a pair (choice, strength, flags, rationale)."""

        def run(conn: Connection) -> Judgement:
            u = self._user(conn, user)
            row = self._my_judgement(conn, u, pair_id, project)  # with its pair: the one read needed
            pair = Pair.from_row(row.data)
            _check_judgement(judgement, pair)
            values = _judgement_values(judgement, pair, (row.shown_left, row.shown_right))
            conn.execute(update(J).where(J.id == row.id).values(updated_at=self.now(), **values))
            return _judgement(SimpleNamespace(**{**row._asdict(), **values}), pair_id, u.name)  # as now stored

        return self._retrying(run)

    def withdraw(self, user: User | str, pair_id: str, project: str | None = None) -> None:
        """Delete the user's judgement on a pair; the pair goes back to the queue for others."""

        def run(conn: Connection) -> None:
            u = self._user(conn, user)
            row = self._my_judgement(conn, u, pair_id, project)
            conn.execute(delete(J).where(J.id == row.id))
            conn.execute(update(A).where(A.id == row.assignment_id).values(status=WITHDRAWN, finished_at=self.now()))
            conn.execute(
                update(P).where(P.id == row.pair_row_id).values(done=P.done - 1, complete=P.done - 1 >= P.required)
            )

        self._retrying(run)

    def _my_judgement(self, conn: Connection, user: User, pair_id: str, project: str | None) -> Row[Any]:
        q = select(J, P.data).join(P, P.id == J.pair_row_id).where(J.user_id == user.id, P.pair_id == pair_id)
        if project is not None:
            q = q.where(J.project_id == self._project(conn, project).id)
        rows = conn.execute(q).all()
        if not rows:
            raise DataError(f"{user.name!r} has no judgement on pair {pair_id}", field="pair_id")
        if len(rows) > 1:
            raise DataError(f"pair {pair_id} is in several projects; name the project", field="project")
        return rows[0]

    def progress(self, project: str, user: User | str, pairs: int | None = None) -> Progress:
        """Done today (UTC), pairs left for this user now (besides the one they hold), and done
        in total. `pairs` is the project's number of pairs when the caller knows it (pairs are
        only ever added, so a count from a few seconds ago serves, e.g. `count_pairs` cached);
        else it is counted here."""
        proj = self._cached_project(project)
        uid = self._user_id(user.name if isinstance(user, User) else user)
        with self._tx() as conn:
            now = self.now()
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            mine = (J.user_id == uid, J.project_id == proj.id)
            total = conn.execute(select(func.count()).select_from(J).where(*mine)).scalar_one()
            today = conn.execute(select(func.count()).select_from(J).where(*mine, J.created_at >= midnight)).scalar_one()
            # Open pairs (not complete, done + held < required), counted without walking the open
            # ones (100,000 pairs: ~15 ms): all pairs, less the complete ones, less the busy ones.
            # A pair that is not complete but busy is held by an active lease (done < required), so
            # the busy ones are found from the (few) active assignments.
            if pairs is None:
                pairs = conn.execute(select(func.count()).select_from(P).where(P.project_id == proj.id)).scalar_one()
            n_complete = conn.execute(
                select(func.count()).select_from(P).where(P.project_id == proj.id, P.complete == true())
            ).scalar_one()
            n_busy = conn.execute(
                select(func.count()).select_from(P).where(
                    P.id.in_(select(A.pair_row_id).where(A.status == ACTIVE, A.project_id == proj.id)),
                    P.complete == false(), P.done + P.held >= P.required,
                )
            ).scalar_one()
            n_mine = conn.execute(  # open pairs this user holds, judged, skipped or reported
                select(func.count()).select_from(A).where(
                    A.user_id == uid, A.project_id == proj.id, A.status != EXPIRED,
                    exists().where(P.id == A.pair_row_id, P.complete == false(), P.done + P.held < P.required),
                )
            ).scalar_one()
            left = max(0, pairs - n_complete - n_busy - n_mine)
        return Progress(done_today=today, left_in_queue=left, done_total=total)

    # -----------------------------------------------------------------------------------------
    # Results
    # -----------------------------------------------------------------------------------------

    def judgements(self, project: str) -> list[Judgement]:
        """Every recorded judgement of a project (withdrawn ones are gone), oldest first."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            rows = conn.execute(
                select(J, P.pair_id, U.name.label("annotator"))
                .join(P, P.id == J.pair_row_id)
                .join(U, U.id == J.user_id)
                .where(J.project_id == pid)
                .order_by(J.created_at, J.id)
            ).all()
        return [_judgement(r, r.pair_id, r.annotator) for r in rows]

    def dashboard(self, project: str) -> Dashboard:
        """Admin figures: progress, per-annotator counts and speed, labels per hour, strength
        distribution, position bias, agreement on overlapping pairs, and reports."""
        from annotate.dashboard_data import build_dashboard

        with self._tx() as conn:
            proj = self._project(conn, project)
            pair_stats = conn.execute(
                select(
                    func.count(), func.coalesce(func.sum(P.required), 0), func.count().filter(P.complete == true())
                ).where(P.project_id == proj.id)
            ).one()
            judgements = conn.execute(
                select(
                    U.name.label("annotator"), P.pair_id, J.score, J.strength, J.preferred, J.shown_left,
                    J.shown_right, J.seconds, J.created_at,
                )
                .join(U, U.id == J.user_id)
                .join(P, P.id == J.pair_row_id)
                .where(J.project_id == proj.id)
            ).all()
            finished = conn.execute(
                select(U.name.label("annotator"), P.pair_id, A.status, A.reason, A.finished_at)
                .join(U, U.id == A.user_id)
                .join(P, P.id == A.pair_row_id)
                .where(A.project_id == proj.id, A.status.in_([SKIPPED, REPORTED]))
            ).all()
        return build_dashboard(
            n_pairs=pair_stats[0], needed=pair_stats[1], complete=pair_stats[2],
            judgements=[r._asdict() for r in judgements], finished=[r._asdict() for r in finished], now=self.now(),
        )

    def project_summaries(self) -> dict[str, dict[str, int]]:
        """Every project's `Dashboard.summary` figures (pairs, complete, judgements, needed,
        annotators, skipped, reported), by project name: three grouped queries in all, for the
        dashboard's table of projects, instead of a full dashboard per project."""
        with self._tx() as conn:
            projects = conn.execute(select(ProjectRow.id, ProjectRow.name).order_by(ProjectRow.name)).all()
            pairs = {
                r.project_id: r for r in conn.execute(
                    select(
                        P.project_id, func.count().label("pairs"), func.sum(P.required).label("needed"),
                        func.count().filter(P.complete == true()).label("complete"),
                    ).group_by(P.project_id)
                )
            }
            judged = {
                r.project_id: r for r in conn.execute(
                    select(
                        J.project_id, func.count().label("judgements"),
                        func.count(J.user_id.distinct()).label("annotators"),
                    ).group_by(J.project_id)
                )
            }
            finished = {
                r.project_id: r for r in conn.execute(
                    select(
                        A.project_id, func.count().filter(A.status == SKIPPED).label("skipped"),
                        func.count().filter(A.status == REPORTED).label("reported"),
                    ).where(A.status.in_([SKIPPED, REPORTED])).group_by(A.project_id)
                )
            }
        out: dict[str, dict[str, int]] = {}
        for pid, name in projects:
            p, j, f = pairs.get(pid), judged.get(pid), finished.get(pid)
            out[name] = {
                "pairs": p.pairs if p else 0,
                "complete": p.complete if p else 0,
                "judgements": j.judgements if j else 0,
                "needed": int(p.needed) if p else 0,
                "annotators": j.annotators if j else 0,
                "skipped": f.skipped if f else 0,
                "reported": f.reported if f else 0,
            }
        return out

    def export(
        self,
        project: str,
        out: str | Path,
        *,
        rule: str = "mean",
        margin: str = "small",
        test_size: float = 0.1,
        seed: int = 42,
        parquet: bool = False,
        jsonl: bool = False,
        name: str | None = None,
        marker: str | None = None,
        complete_only: bool = False,
        trl: bool = False,
        sets: tuple[str, ...] = (),
    ) -> AggregateReport:
        """Aggregate the project's judgements and write the dataset with
        `data.export.export_judged`: what `prefkit data export --judgements` does. Every pair of the
        project goes in, so the card counts the ones not yet judged; with `complete_only`, only the
        pairs that have all the judgements their overlap asks for. The card and the returned
        report say how many judged pairs are complete and how many are below their overlap.
        `trl` adds TRL's conversational columns; `sets` writes Llama 2's helpfulness / safety sets
        under `out` (as `prefkit data export --trl --sets` does)."""
        from data.export import export_judged

        judgements = self.judgements(project)
        if not judgements:
            raise DataError(f"project {project!r} has no judgements to export")
        pairs = self.pairs(project)
        completeness = self.completeness(project, complete_only=complete_only)
        if complete_only:
            keep = self._complete_pair_ids(project)
            pairs = [p for p in pairs if p.pair_id in keep]
            judgements = [j for j in judgements if j.pair_id in keep]
            if not judgements:
                raise DataError(f"project {project!r} has no pair with all its judgements yet (--complete-only)")
        _, report = export_judged(
            pairs, judgements, Path(out), rule=rule, margin=margin, test_size=test_size, seed=seed, parquet=parquet,
            jsonl=jsonl, name=name or project,
            provenance={"source": "prefkit annotate", "project": project, "pairs": len(pairs),
                        "completeness": completeness}, marker=marker, trl=trl, sets=tuple(sets),
        )
        report.complete_pairs = completeness["complete_pairs"]
        report.below_overlap_pairs = completeness["below_overlap_pairs"]
        report.complete_only = complete_only
        return report

    def _complete_pair_ids(self, project: str) -> set[str]:
        with self._tx() as conn:
            pid = self._project(conn, project).id
            return set(conn.execute(select(P.pair_id).where(P.project_id == pid, P.complete == true())).scalars())

    def completeness(self, project: str, complete_only: bool = False) -> dict[str, Any]:
        """Judged pairs at their full overlap (`complete_pairs`) and judged pairs still below it
        (`below_overlap_pairs`), for the export's summary and dataset card."""
        with self._tx() as conn:
            pid = self._project(conn, project).id
            row = conn.execute(
                select(
                    func.count().filter(P.complete == true()),
                    func.count().filter(P.complete == false(), P.done > 0),
                ).where(P.project_id == pid)
            ).one()
        return {"complete_pairs": int(row[0]), "below_overlap_pairs": int(row[1]), "complete_only": complete_only}

    def export_judgements(self, project: str, out: str | Path, *, replace: bool = False,
                          marker: str | None = None) -> int:
        """Write the project's judgement table (`pair_id`, `annotator`, `preferred`, `strength`,
        shown order, flags, rationale, seconds, `created_at`; JSONL, JSON or Parquet by the file's
        suffix): what `prefkit data export --judgements` and `prefkit round run --judgements`
        read. Refuses to overwrite a file unless `replace` (the CLI's output guard has checked it is
        a previous export's); `marker` marks the file as that command's output (`data.outputs`).
        Returns the number of judgements written."""
        from data.outputs import mark_output
        from data.writers import write_judgements

        out = Path(out)
        if out.exists() and not replace:
            raise ConfigError(f"{out} already exists; give a new file name")
        judgements = self.judgements(project)
        if not judgements:
            raise DataError(f"project {project!r} has no judgements to export")
        n = write_judgements(judgements, out)
        if marker is not None:
            mark_output(out, marker, folder=False)
        return n


# ---------------------------------------------------------------------------------------------
# The queue's statements, built once: building SQLAlchemy statements costs more than running
# them on SQLite, and these run on every claim and submit.
# ---------------------------------------------------------------------------------------------

_b = bindparam
_SAFETY_LABELS = exists().where(ProjectSafetyLabelsRow.project_id == ProjectRow.id).label("safety_labels")
_REAP_EVERY = timedelta(seconds=1)
_BEFORE_ALL = -(2**56) - 1  # below every queue position (calibration pairs sit in [-2^56, 0))
_USER = select(U.id, U.name, U.is_admin, U.disabled).where(U.name == _b("name"))
_REAP = (
    update(A).where(A.project_id == _b("pid"), A.status == ACTIVE, A.expires_at <= _b("now"))
    .values(status=EXPIRED).returning(A.pair_row_id)
)
_HELD = (
    select(A.id, A.shown_left, A.shown_right, A.claimed_at, P.data, P.is_calibration)
    .join(P, P.id == A.pair_row_id)
    .where(A.user_id == _b("uid"), A.project_id == _b("pid"), A.status == ACTIVE)
    .order_by(A.claimed_at, A.id)
    .limit(1)
)
_RENEW = update(A).where(A.id == _b("aid")).values(expires_at=_b("expires"))
_PICK = (
    select(
        P.id, P.pair_id, P.data, P.is_calibration, P.position,
        select(A.id).where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status == EXPIRED)
        .scalar_subquery().label("expired_id"),
    )
    .where(
        exists().where(U.id == _b("uid"), U.disabled == false()),
        P.project_id == _b("pid"), P.complete == false(), P.position > _b("after"),
        P.done + P.held < P.required,
        ~exists().where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status != EXPIRED),
    )
    .order_by(P.position)
    .limit(1)
)
# A pair someone skipped, open, and never this user's: found from the skipped assignments.
_SKIPPER = AssignmentRow.__table__.alias("skipper")
_PICK_SKIPPED = (
    select(
        P.id, P.pair_id, P.data, P.is_calibration, P.position,
        select(A.id).where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status == EXPIRED)
        .scalar_subquery().label("expired_id"),
        literal(True).label("returned"),
    )
    .select_from(_SKIPPER)
    .join(P, P.id == _SKIPPER.c.pair_row_id)
    .where(
        _SKIPPER.c.status == SKIPPED, _SKIPPER.c.project_id == _b("pid"), _SKIPPER.c.user_id != _b("uid"),
        exists().where(U.id == _b("uid"), U.disabled == false()),
        P.complete == false(), P.done + P.held < P.required,
        ~exists().where(A.pair_row_id == P.id, A.user_id == _b("uid"), A.status != EXPIRED),
    )
    .order_by(P.position)
    .limit(1)
)
_PICK_SKIPPED_PG = _PICK_SKIPPED.with_for_update(skip_locked=True, of=P)
_MAY_LABEL = select(
    or_(
        U.is_admin,
        ~exists().where(M.project_id == _b("pid")),
        exists().where(M.project_id == _b("pid"), M.user_id == U.id),
    )
).where(U.id == _b("uid"))
# PostgreSQL: lock the chosen pair and let concurrent claims pass over it to the next one.
_PICK_PG = _PICK.with_for_update(skip_locked=True, of=P)
_PICK_PG_WAIT = _PICK.with_for_update(of=P)
_ANY_OPEN = _PICK.with_only_columns(P.id)  # the same test, unlocked, in a fresh snapshot
_LOCK_USER = select(U.id).where(U.id == _b("uid")).with_for_update(key_share=True)  # FOR NO KEY UPDATE
_LEASE = dict(
    shown_left=_b("left"), shown_right=_b("right"), status=ACTIVE, claimed_at=_b("now"), expires_at=_b("expires"),
    finished_at=None, reason=None,
)
_REUSE = update(A).where(A.id == _b("aid")).values(**_LEASE)
_NEW = insert(A).values(pair_row_id=_b("prid"), user_id=_b("uid"), project_id=_b("pid"), **_LEASE).returning(A.id)
_HOLD = update(P).where(P.id == _b("prid")).values(held=P.held + 1)
_RELEASE = update(P).where(P.id == _b("prid")).values(held=P.held - _b("n"))
_OWN = (
    select(
        A.id, A.user_id, A.status, A.pair_row_id, A.project_id, A.shown_left, A.shown_right, P.data,
        U.name.label("user_name"), U.disabled, J.id.label("judgement_id"),
    )
    .join(P, P.id == A.pair_row_id)
    .join(U, U.id == A.user_id)
    .outerjoin(J, and_(J.pair_row_id == A.pair_row_id, J.user_id == A.user_id))
    .where(A.id == _b("aid"))
)
_OWN_PG = _OWN.with_for_update(of=A)  # serialises two submits of the same assignment
_JUDGEMENT = select(J).where(J.id == _b("jid"))
_INSERT_JUDGEMENT = insert(J)
_SUBMITTED = update(A).where(A.id == _b("aid")).values(status=SUBMITTED, finished_at=_b("now"))
_DONE = (
    update(P).where(P.id == _b("prid"))
    .values(done=P.done + 1, held=P.held - _b("release"), complete=P.done + 1 >= P.required)
)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _no_nul(value: str | None, field: str, error: type[DataError] | type[ConfigError] = DataError) -> None:
    """PostgreSQL text cannot hold a NUL character (SQLite could); the store refuses it on both
    backends, with one line naming the field, rather than keep it on one and fail on the other."""
    if value is not None and "\x00" in value:
        message = f"{field} contains a NUL character (\\x00), which the store cannot keep; remove it"
        raise error(message, field=field) if error is DataError else ConfigError(message)


class SignInThrottled(ConfigError):
    """A sign-in refused unchecked because of earlier failures; `wait_seconds` until the next try."""

    def __init__(self, message: str, wait_seconds: float) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class SignInStatus:
    failures_24h: int  # failed sign-ins naming this user in the last 24 hours
    last_failure: datetime | None
    locked_until: datetime | None  # when a sign-in is refused unchecked until


_SIGN_IN_FAILURES = ("bad-token", "unknown", "disabled")
_SIGN_IN_CLEARS = ("ok", "reset")


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
        shown = (make_url(url) if isinstance(url, str) and "://" in url else url)
        shown = shown.render_as_string(hide_password=True) if hasattr(shown, "render_as_string") else str(shown)
        raise ConfigError(f"cannot use store {shown}: {_one_line(e.orig)}") from None


def _one_line(e: BaseException | None) -> str:
    return " ".join(str(e).split()) or type(e).__name__


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


def _release(conn: Connection, pair_row_ids: Iterable[int]) -> None:
    """Give back one held slot per id (a pair may appear several times)."""
    for prid, n in Counter(pair_row_ids).items():
        conn.execute(_RELEASE, {"prid": prid, "n": n})


def _project(r: Any) -> Project:
    return Project(
        id=r.id, name=r.name, guidelines=r.guidelines, overlap=r.overlap, calibration=r.calibration,
        calibration_overlap=r.calibration_overlap, seed=r.seed, created_at=r.created_at,
        safety_labels=bool(getattr(r, "safety_labels", False)),
    )


def _user(r: Any) -> User:
    return User(id=r.id, name=r.name, is_admin=bool(r.is_admin), disabled=bool(r.disabled))


def _assignment(r: Any, project: str, user: str, expires: datetime) -> Assignment:
    return Assignment(
        id=r.id, project=project, user=user, pair=Pair.from_row(r.data), shown_order=(r.shown_left, r.shown_right),
        claimed_at=r.claimed_at, expires_at=expires, is_calibration=bool(r.is_calibration),
    )


def _check_judgement(j: Judgement, pair: Pair) -> None:
    if j.pair_id != pair.pair_id:
        raise DataError(f"judgement is for pair {j.pair_id}, the assignment is pair {pair.pair_id}", field="pair_id")
    if j.preferred is not None and j.preferred not in (pair.a.id, pair.b.id):
        raise DataError(f"preferred {j.preferred!r} is not a response of pair {pair.pair_id}", field="preferred")
    bad = [r for r in j.unsafe if r not in (pair.a.id, pair.b.id)]
    if bad:
        raise DataError(f"unsafe flags name responses not in pair {pair.pair_id}: {bad}", field="unsafe")


def _judgement_values(j: Judgement, pair: Pair, shown: tuple[str, str]) -> dict[str, Any]:
    _no_nul(j.rationale, "rationale")
    return dict(
        preferred=j.preferred, strength=j.strength.value, score=j.signed_score(pair), shown_left=shown[0],
        shown_right=shown[1], unsafe=list(j.unsafe), rationale=j.rationale, seconds=j.seconds,
    )


def _judgement(r: Any, pair_id: str, annotator: str) -> Judgement:
    return Judgement(
        pair_id=pair_id, annotator=annotator, preferred=r.preferred, strength=Strength(r.strength),
        shown_order=(r.shown_left, r.shown_right), unsafe=tuple(r.unsafe or ()), rationale=r.rationale,
        seconds=r.seconds, created_at=r.created_at,
    )
