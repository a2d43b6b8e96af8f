"""Setting up annotation stores fast for the store's own tests: many users in one insert."""

from __future__ import annotations

import secrets

from sqlalchemy import insert

from prefkit.annotate.store import Store
from prefkit.annotate.tables import UserRow


def bulk_users(store: Store, names: list[str]) -> None:
    """Many users at once for a test's setup (their tokens are never used: no scrypt per user)."""
    with store.engine.begin() as c:
        c.execute(
            insert(UserRow),
            [dict(name=n, token_key=secrets.token_hex(8), token_hash="unused", created_at=store.now()) for n in names],
        )
