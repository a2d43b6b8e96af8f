"""Sign-in with a token, and the limits on wrong guesses (issue 22).

Modelled on what long-lived servers do (PAM's and Dovecot's delay on a failed login, per-source
penalties in OpenSSH, the real address from a proxy's `X-Forwarded-For` only when that proxy is
configured), without the lock-out that lets anyone who shares your address, or knows the public
half of your token, keep you out:

- Every attempt is checked. A correct token of an enabled account always signs in, at once,
  whatever failed before and from wherever: no wait ever applies to it.
- Wrong tokens are slowed down, per account (when the token's public key names one) and per
  address (`client`: an IP address, or `local` when there is none, as on localhost or behind a
  same-host proxy that is not trusted). Within `SIGN_IN_WINDOW`, the first `FREE_FAILURES_PER_USER`
  failures on an account (`FREE_FAILURES_PER_ADDRESS` from an address, which many people may share)
  are answered at once; each further wrong token is answered only after 1, 2, 4, … s (at most
  `MAX_SIGN_IN_WAIT`): `authenticate` raises `SignInThrottled` with that wait, and the app holds
  its answer that long.
- Nothing a guesser controls lifts a wait: not a new browser tab (the tab is not a client), not a
  correct sign-in (it clears nothing). Waits end when the failures age out of the window, or when
  an admin lifts them (`lift_waits`: `prefkit annotate users lift`), resets the account's token
  or re-enables it.
- Every attempt is recorded (`sign_ins`), for `sign_in_status` and `sign_in_waits`; attempts
  older than `SIGN_IN_KEPT` are purged (at most once an hour per process).

What this does not do: a guesser who gives up on an answer after a few milliseconds learns that
the token was wrong without waiting, since a right one is answered at once. The tokens carry the
real protection: the secret half is 192 random bits, far beyond any online guessing; the limits
keep guessers from burning the server's scrypt time and make them visible to admins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from prefkit.annotate import auth
from prefkit.annotate.store.accounts import AccountStore
from prefkit.annotate.store.connection import _utc
from prefkit.annotate.store.records import User, _user
from prefkit.annotate.store.statements import U
from prefkit.annotate.tables import SignInRow
from prefkit.core.errors import ConfigError

SIGN_IN_WINDOW = timedelta(minutes=15)  # failures older than this no longer count
FREE_FAILURES_PER_USER = 5  # answered at once, per account, within the window
FREE_FAILURES_PER_ADDRESS = 20  # higher: many people may share one address (an office, a proxy)
MAX_SIGN_IN_WAIT = timedelta(seconds=60)  # the longest a wrong token's answer is held
SIGN_IN_KEPT = timedelta(days=30)  # how long attempts stay on record
LOCAL = "local"  # the address of clients the server cannot tell apart (localhost, an untrusted proxy)
_PURGE_EVERY = timedelta(hours=1)
_FAILURES = ("bad-token", "unknown", "disabled")
_LIFTS = ("reset",)  # an admin's lift, token reset or re-enable: failures before it no longer count


def address_key(address: str) -> str:
    """How an address is recorded: `ip:ADDR`, or `local` (as `prefkit annotate users lift
    --address` takes it, with or without the `ip:`)."""
    address = address.strip()
    return address if address == LOCAL or address.startswith("ip:") else f"ip:{address}"


def shown_address(key: str) -> str:
    return key.removeprefix("ip:")


def wait_after(failures: int, free: int) -> float:
    """Seconds the answer to a wrong token is held when it is the `failures`-th in the window."""
    if failures <= free:
        return 0.0
    return min(2.0 ** (failures - free - 1), MAX_SIGN_IN_WAIT.total_seconds())


class SignInStore(AccountStore):
    """Signing in with a token, and the waits after wrong ones."""

    def authenticate(self, token: str, client: str | None = None) -> User | None:
        """The enabled user this token belongs to, or None when it is wrong. A correct token
        always signs in; a wrong one beyond the free failures of its account or of `client`
        raises `SignInThrottled` (a `ConfigError`) with how long its answer is to be held. Every
        attempt is recorded. `client` is the address (`ip:…`, or `LOCAL`); None counts for no
        address (tests, scripts)."""
        parts = None if "\x00" in token else auth.split_token(token)
        client = client[:200] if client else None
        now = self.now()
        with self._tx() as conn:
            row = conn.execute(select(U).where(U.token_key == parts[0])).first() if parts else None
        if parts is None or row is None:
            outcome = "unknown"
        elif row.disabled:
            outcome = "disabled"
        elif not auth.verify_secret(parts[1], row.token_hash):
            outcome = "bad-token"
        else:
            outcome = "ok"
        uid = row.id if row is not None else None
        with self._tx(write=True) as conn:
            conn.execute(insert(SignInRow).values(user_id=uid, client=client, outcome=outcome, at=now))
            self._purge_sign_ins(conn, now)
            if outcome == "ok":
                return _user(row)
            worst, whose, count = 0.0, "", 0
            for column, value, free, label in (
                (SignInRow.user_id, uid, FREE_FAILURES_PER_USER, "for this account"),
                (SignInRow.client, client, FREE_FAILURES_PER_ADDRESS, "from this address"),
            ):
                if value is None:
                    continue
                n = len(self._failures(conn, column, value, now))
                wait = wait_after(n, free)
                if wait > worst:
                    worst, whose, count = wait, label, n
        if worst > 0:
            raise SignInThrottled(
                f"{count} failed sign-ins {whose} in the last {SIGN_IN_WINDOW.total_seconds() / 60:g} minutes: "
                f"a wrong token is now answered after {math.ceil(worst)} s",
                wait_seconds=worst,
            )
        return None

    def _failures(self, conn: Connection, column: Any, value: Any, now: datetime) -> list[datetime]:
        """When the failures still counted against `column == value` happened (oldest first):
        those within the window and recorded after the last lift."""
        lifted = conn.execute(
            select(func.max(SignInRow.id)).where(column == value, SignInRow.outcome.in_(_LIFTS))
        ).scalar()
        times = conn.execute(
            select(SignInRow.at)
            .where(
                column == value,
                SignInRow.outcome.in_(_FAILURES),
                SignInRow.at > now - SIGN_IN_WINDOW,
                SignInRow.id > (lifted or 0),
            )
            .order_by(SignInRow.at, SignInRow.id)
        ).scalars()
        return [_utc(t) for t in times]

    def _wait(self, conn: Connection, column: Any, value: Any, free: int, now: datetime) -> SignInWait | None:
        """The wait on one account or address, or None when its next wrong token is answered at once."""
        times = self._failures(conn, column, value, now)
        if len(times) < free:
            return None
        # the next wrong token is the (n+1)-th; the wait ends when failures age out down to free - 1
        ends = times[len(times) - free] + SIGN_IN_WINDOW
        return SignInWait(
            kind="account" if column is SignInRow.user_id else "address",
            name=str(value),
            failures=len(times),
            next_wait_seconds=wait_after(len(times) + 1, free),
            until=ends,
            last_failure=times[-1],
        )

    def _purge_sign_ins(self, conn: Connection, now: datetime) -> None:
        last = getattr(self, "_last_sign_in_purge", None)
        if last is not None and timedelta(0) <= now - last < _PURGE_EVERY:
            return
        self._last_sign_in_purge = now
        conn.execute(delete(SignInRow).where(SignInRow.at < now - SIGN_IN_KEPT))

    def sign_in_waits(self) -> list[SignInWait]:
        """Accounts and addresses whose next wrong token would be held (`prefkit annotate users
        waits`): accounts first, by name; then addresses."""
        now = self.now()
        out: list[SignInWait] = []
        with self._tx() as conn:
            limits = ((SignInRow.user_id, FREE_FAILURES_PER_USER), (SignInRow.client, FREE_FAILURES_PER_ADDRESS))
            for column, free in limits:
                candidates = conn.execute(
                    select(column)
                    .where(column.is_not(None), SignInRow.outcome.in_(_FAILURES), SignInRow.at > now - SIGN_IN_WINDOW)
                    .group_by(column)
                    .having(func.count() >= free)
                ).scalars()
                for value in candidates:
                    wait = self._wait(conn, column, value, free, now)
                    if wait is not None:
                        out.append(wait)
            names = dict(conn.execute(select(U.id, U.name)).all())
        for i, w in enumerate(out):
            if w.kind == "account":
                out[i] = SignInWait(**{**w.__dict__, "name": names.get(int(w.name), w.name)})
        return sorted(out, key=lambda w: (w.kind != "account", w.name))

    def lift_waits(
        self, users: Sequence[str] = (), addresses: Sequence[str] = (), *, everyone: bool = False
    ) -> list[str]:
        """Lift the waits on these accounts and addresses (with `everyone`, on every one in a
        wait, `sign_in_waits`): the failures so far no longer count against them. Returns what
        was lifted (user names, `address ADDR`). An unknown user name is a `ConfigError`."""
        waits = self.sign_in_waits() if everyone else []
        names = list(dict.fromkeys([*users, *(w.name for w in waits if w.kind == "account")]))
        places = list(dict.fromkeys([*map(address_key, addresses), *(w.name for w in waits if w.kind == "address")]))
        now = self.now()
        with self._tx(write=True) as conn:
            keys: list[tuple[int | None, str | None]] = [(self._user(conn, n).id, None) for n in names]
            keys += [(None, a) for a in places]
            for uid, client in keys:
                conn.execute(insert(SignInRow).values(user_id=uid, client=client, outcome="reset", at=now))
        return names + [f"address {shown_address(a)}" for a in places]

    def sign_in_status(self) -> dict[str, SignInStatus]:
        """Failed sign-ins per user, for admins (`prefkit annotate users list`)."""
        now = self.now()
        out: dict[str, SignInStatus] = {}
        with self._tx() as conn:
            users = conn.execute(select(U.id, U.name).order_by(U.name)).all()
            day = dict(
                conn.execute(
                    select(SignInRow.user_id, func.count())
                    .where(SignInRow.outcome.in_(_FAILURES), SignInRow.at > now - timedelta(days=1))
                    .group_by(SignInRow.user_id)
                ).all()
            )
            last = dict(
                conn.execute(
                    select(SignInRow.user_id, func.max(SignInRow.at))
                    .where(SignInRow.outcome.in_(_FAILURES))
                    .group_by(SignInRow.user_id)
                ).all()
            )
            for uid, name in users:
                wait = self._wait(conn, SignInRow.user_id, uid, FREE_FAILURES_PER_USER, now) if uid in day else None
                out[name] = SignInStatus(
                    failures_24h=day.get(uid, 0),
                    last_failure=_utc(last[uid]) if uid in last else None,
                    slowed_until=wait.until if wait is not None else None,
                    next_wait_seconds=wait.next_wait_seconds if wait is not None else 0.0,
                )
        return out


class SignInThrottled(ConfigError):
    """A wrong token beyond the free failures: `wait_seconds` is how long its answer is held
    (the app waits that long before saying the token is not valid)."""

    def __init__(self, message: str, wait_seconds: float) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


@dataclass(frozen=True)
class SignInStatus:
    failures_24h: int  # failed sign-ins naming this user in the last 24 hours
    last_failure: datetime | None
    slowed_until: datetime | None  # until when the account's wrong tokens are answered late
    next_wait_seconds: float  # how long the next wrong token's answer would be held


@dataclass(frozen=True)
class SignInWait:
    """An account or address whose next wrong token would be answered late."""

    kind: str  # "account" or "address"
    name: str  # the user's name, or the address (`ip:…`, `local`)
    failures: int  # failures still counted (within the window, since the last lift)
    next_wait_seconds: float
    until: datetime  # when enough failures have aged out for wrong tokens to be answered at once
    last_failure: datetime
