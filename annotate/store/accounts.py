"""Accounts: users and their tokens, sessions (who is signed in across Streamlit reruns), and
the admin's token reset and re-enabling. Signing in with a token, and the waits after wrong
ones, are `sign_in.py`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefkit.annotate import auth
from prefkit.annotate.store.connection import StoreBase
from prefkit.annotate.store.records import User, _no_nul, _user
from prefkit.annotate.store.statements import _USER, A, U, _release
from prefkit.annotate.tables import ACTIVE, EXPIRED, SessionRow, SignInRow
from prefkit.core.errors import ConfigError

SESSION_TTL = timedelta(hours=12)


class AccountStore(StoreBase):
    """Users, tokens and sessions."""

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
    # Admin: a new token, re-enabling (both lift the account's sign-in wait, `sign_in.py`)
    # -----------------------------------------------------------------------------------------

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
