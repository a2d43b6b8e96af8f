"""Sign-in limits (issue 22), on SQLite and on a real PostgreSQL server: a correct token always
signs in, wrong ones are slowed per account and per address, nothing a guesser controls resets
the count (a new tab is not a client; a success clears nothing), admins list and lift waits, and
old attempts are purged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from prefkit.annotate.store import (
    FREE_FAILURES_PER_ADDRESS,
    FREE_FAILURES_PER_USER,
    LOCAL,
    MAX_SIGN_IN_WAIT,
    SignInThrottled,
    Store,
)
from prefkit.annotate.tables import SignInRow
from prefkit.core.errors import ConfigError

OFFICE = "ip:203.0.113.9"  # an office NAT: the victim and the guesser share it


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _wrong(token: str) -> str:
    """The same account's public key with a wrong secret (the key half is not secret)."""
    prefix, key, _ = token.split("_", 2)
    return f"{prefix}_{key}_not-the-secret"


def _guess(store: Store, token: str, client: str | None = None) -> float:
    """A wrong guess: returns how long its answer is held (0: answered at once)."""
    try:
        assert store.authenticate(token, client=client) is None
    except SignInThrottled as e:
        return e.wait_seconds
    return 0.0


def test_the_correct_token_always_signs_in_while_a_guesser_shares_the_address(sqlite_url, clock):
    """Issue 22's reproduction: someone at the victim's address who knows the public half of their
    token guesses once a minute for 40 minutes; the victim signs in at about one request a minute
    from the same address. Before, the right token was refused 27 of 30 times; now every time,
    at once. (SQLite only: each attempt is a scrypt check, and the queries are the other tests'.)"""
    store = Store.open(sqlite_url, clock=clock)
    token = store.add_user("lan")
    signed_in = held = 0
    for minute in range(40):
        held += _guess(store, _wrong(token), OFFICE) > 0
        clock.advance(60)
        if minute % 4 != 3:  # 30 sign-ins
            assert store.authenticate(token, client=OFFICE).name == "lan"  # never SignInThrottled
            signed_in += 1
    store.close()
    assert signed_in == 30
    assert held == 40 - FREE_FAILURES_PER_USER  # while every wrong token past the free ones was answered late


def test_wrong_tokens_are_slowed_per_account_from_anywhere(store, clock):
    token = store.add_user("lan")
    waits = [_guess(store, _wrong(token), f"ip:10.0.0.{i}") for i in range(FREE_FAILURES_PER_USER + 9)]
    cap = MAX_SIGN_IN_WAIT.total_seconds()
    assert waits == [0.0] * FREE_FAILURES_PER_USER + [1, 2, 4, 8, 16, 32, cap, cap, cap]
    with pytest.raises(SignInThrottled, match=r"for this account in the last 15 minutes: .* answered after 60 s"):
        store.authenticate(_wrong(token), client="ip:10.0.1.1")
    assert store.authenticate(token, client="ip:10.0.1.1").name == "lan"  # the right one: at once
    # a success clears nothing: the next wrong token is still slowed
    assert _guess(store, _wrong(token), LOCAL) == cap
    # failures older than the window no longer count
    clock.advance(15 * 60 + 1)
    assert _guess(store, _wrong(token), LOCAL) == 0.0


def test_wrong_tokens_are_slowed_per_address_whatever_account_they_name(store, clock):
    token = store.add_user("lan")
    for i in range(FREE_FAILURES_PER_ADDRESS):  # guessing keys: no account to count against
        assert _guess(store, f"pk_{i:016x}_guess", OFFICE) == 0.0
    with pytest.raises(SignInThrottled, match="from this address"):
        store.authenticate(f"pk_{99:016x}_guess", client=OFFICE)
    assert _guess(store, "pk_00ff_guess", "ip:198.51.100.1") == 0.0  # other addresses are not held up
    assert store.authenticate(token, client=OFFICE).name == "lan"  # nor the right token at this one


def test_admins_list_and_lift_waits(store, clock):
    lan, minh = store.add_user("lan"), store.add_user("minh")
    for _ in range(FREE_FAILURES_PER_USER + 1):
        _guess(store, _wrong(lan), OFFICE)
        clock.advance(1)
    for i in range(FREE_FAILURES_PER_ADDRESS):
        _guess(store, f"pk_{i:016x}_x", OFFICE)
    waits = {(w.kind, w.name): w for w in store.sign_in_waits()}
    assert set(waits) == {("account", "lan"), ("address", OFFICE)}
    assert waits[("account", "lan")].failures == FREE_FAILURES_PER_USER + 1
    assert waits[("account", "lan")].next_wait_seconds == 2.0
    assert waits[("address", OFFICE)].failures == FREE_FAILURES_PER_ADDRESS + FREE_FAILURES_PER_USER + 1
    status = store.sign_in_status()
    assert status["lan"].slowed_until == waits[("account", "lan")].until and status["lan"].next_wait_seconds == 2.0
    assert status["minh"].slowed_until is None and status["minh"].failures_24h == 0

    assert store.lift_waits(["lan"]) == ["lan"]
    assert [(w.kind, w.name) for w in store.sign_in_waits()] == [("address", OFFICE)]
    assert _guess(store, _wrong(lan), "ip:192.0.2.1") == 0.0  # the account's count starts again
    assert store.lift_waits(addresses=["203.0.113.9"]) == ["address 203.0.113.9"]  # as `users waits` shows it
    assert store.sign_in_waits() == []
    for _ in range(FREE_FAILURES_PER_USER + 1):
        _guess(store, _wrong(minh), LOCAL)
    assert store.lift_waits(everyone=True) == ["minh"]
    with pytest.raises(ConfigError, match="no user named 'ghost'"):
        store.lift_waits(["ghost"])


def test_a_token_reset_or_re_enabling_lifts_the_accounts_wait(store, clock):
    old = store.add_user("lan")
    session = store.start_session("lan")
    for _ in range(FREE_FAILURES_PER_USER + 3):
        _guess(store, _wrong(old))
    assert store.sign_in_status()["lan"].slowed_until is not None
    new = store.reset_token("lan")
    assert new != old and store.sign_in_status()["lan"].slowed_until is None
    assert store.authenticate(old) is None and store.session_user(session) is None
    assert store.authenticate(new).name == "lan"
    for _ in range(FREE_FAILURES_PER_USER + 1):
        _guess(store, _wrong(new))
    store.disable_user("lan")
    assert _guess(store, new) > 0  # a disabled account's token is a failure too
    store.enable_user("lan")
    assert store.sign_in_status()["lan"].slowed_until is None
    assert store.authenticate(new).name == "lan" and not store.get_user("lan").disabled


def test_old_attempts_are_purged_by_any_attempt(store, clock):
    token = store.add_user("lan")
    for _ in range(3):
        _guess(store, _wrong(token), OFFICE)
    clock.advance(31 * 24 * 3600)  # the record keeps 30 days; a guesser's own attempt purges it
    _guess(store, f"pk_{0:016x}_x", OFFICE)
    with store.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(SignInRow)).scalar_one() == 1
    clock.advance(timedelta(days=31).total_seconds())
    assert store.authenticate(token).name == "lan"
    with store.engine.connect() as c:
        assert c.execute(select(SignInRow.outcome)).scalars().all() == ["ok"]
