"""Accounts: users and their tokens, sessions (who is signed in across Streamlit reruns), and
sign-in limits (failures slow further attempts down; admins reset tokens, enable users).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefkit.annotate import auth
from prefkit.annotate.store.connection import StoreBase, _utc
from prefkit.annotate.store.records import User, _no_nul, _user
from prefkit.annotate.store.statements import _USER, A, U, _release
from prefkit.annotate.tables import ACTIVE, EXPIRED, SessionRow, SignInRow
from prefkit.core.errors import ConfigError

SESSION_TTL = timedelta(hours=12)
# Sign-in: failures counted since the last success within this window; beyond the free ones,
# each further attempt waits 1, 2, 4, ... s after the last failure, at most MAX_SIGN_IN_WAIT.
SIGN_IN_WINDOW = timedelta(minutes=15)
FREE_FAILURES_PER_USER = 5
FREE_FAILURES_PER_CLIENT = 20  # higher: many people may share one address (an office, a proxy)
MAX_SIGN_IN_WAIT = timedelta(minutes=15)
SIGN_IN_KEPT = timedelta(days=30)  # how long attempts stay on record


class AccountStore(StoreBase):
    """Users, sessions and sign-in."""

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
                        name=name,
                        token_key=key,
                        token_hash=hashed,
                        is_admin=admin,
                        disabled=False,
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
            released = (
                conn.execute(
                    update(A)
                    .where(A.user_id == uid, A.status == ACTIVE)
                    .values(status=EXPIRED)
                    .returning(A.pair_row_id)
                )
                .scalars()
                .all()
            )
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
                select(U)
                .join(SessionRow, SessionRow.user_id == U.id)
                .where(SessionRow.key_hash == auth.session_key_hash(key), SessionRow.expires_at > self.now())
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
            day = dict(
                conn.execute(
                    select(SignInRow.user_id, func.count())
                    .where(SignInRow.outcome.in_(_SIGN_IN_FAILURES), SignInRow.at > now - timedelta(days=1))
                    .group_by(SignInRow.user_id)
                ).all()
            )
            last = dict(
                conn.execute(
                    select(SignInRow.user_id, func.max(SignInRow.at))
                    .where(SignInRow.outcome.in_(_SIGN_IN_FAILURES))
                    .group_by(SignInRow.user_id)
                ).all()
            )
            for uid, name in users:
                wait, _ = self._sign_in_wait(conn, uid, None, now)
                out[name] = SignInStatus(
                    failures_24h=day.get(uid, 0),
                    last_failure=_utc(last[uid]) if uid in last else None,
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
