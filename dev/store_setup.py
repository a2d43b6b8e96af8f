"""Setting up and driving annotation stores for the store's own tests: many users in one insert,
and threads released together (the concurrency tests' races)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import insert

from prefkit.annotate.store import Assignment, Store
from prefkit.annotate.tables import UserRow
from prefkit.data.schema import Judgement


def bulk_users(store: Store, names: list[str]) -> None:
    """Many users at once for a test's setup (their tokens are never used: no scrypt per user)."""
    with store.engine.begin() as c:
        c.execute(
            insert(UserRow),
            [dict(name=n, token_key=secrets.token_hex(8), token_hash="unused", created_at=store.now()) for n in names],
        )


def together(work: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> list[Any]:
    """`work(*call)` for each call on a thread of its own, all released at the same instant (a
    barrier); their results in the calls' order. A thread's failure fails the caller: every
    failure is listed once all threads have ended."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(*calls[i])
        except BaseException as e:  # surfaced below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def claim_together_then_finish(
    stores: Sequence[Store], project: str, users: Sequence[str], judge: Callable[[Assignment, str], Judgement]
) -> dict[str, Assignment | None]:
    """`users` (on the stores in turn) claim at the same instant; once every first claim is in,
    each submits `judge(assignment, user)` and claims again until nothing is left. Returns each
    user's first claim (None: they were told nothing is left)."""
    all_claimed = threading.Barrier(len(users))

    def one(i: int, user: str) -> Assignment | None:
        store = stores[i % len(stores)]
        try:
            first = a = store.claim(project, user)
            all_claimed.wait()  # all first claims are in before anyone works through the rest
            while a is not None:
                store.submit(a.id, user, judge(a, user))
                a = store.claim(project, user)
        except BaseException:
            all_claimed.abort()
            raise
        return first

    return dict(zip(users, together(one, list(enumerate(users))), strict=True))
