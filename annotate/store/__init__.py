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

One module per concept, each a part of `Store` built on the ones it needs:

- `connection`: opening a store, transactions, retries, pool settings, one-line errors (`StoreBase`)
- `records`: the records the store hands out (`Project`, `User`, `Assignment`, `Progress`, ...)
- `statements`: the queue's SQL statements, built once
- `projects`, `pairs`: projects and their settings; importing pairs (with their project) and reading them
- `accounts`: users, tokens, sessions and sign-in limits
- `members`: who may label which project
- `queue`: claims (leases), submit, skip, report, undo
- `my_work`: a user's own judgements and progress
- `results`: judgements and dashboard figures for admins
- `export`: the aggregated dataset and the judgement table

`from prefkit.annotate.store import Store` (and the names below) is the public API.
"""

from __future__ import annotations

from prefkit.annotate.store.accounts import (
    FREE_FAILURES_PER_CLIENT,
    FREE_FAILURES_PER_USER,
    MAX_SIGN_IN_WAIT,
    SESSION_TTL,
    SIGN_IN_KEPT,
    SIGN_IN_WINDOW,
    SignInStatus,
    SignInThrottled,
)
from prefkit.annotate.store.connection import one_line_errors, with_pool
from prefkit.annotate.store.export import ExportStore
from prefkit.annotate.store.my_work import MyWorkStore
from prefkit.annotate.store.queue import QueueStore
from prefkit.annotate.store.records import Assignment, ImportResult, Progress, Project, User

__all__ = [
    "FREE_FAILURES_PER_CLIENT",
    "FREE_FAILURES_PER_USER",
    "MAX_SIGN_IN_WAIT",
    "SESSION_TTL",
    "SIGN_IN_KEPT",
    "SIGN_IN_WINDOW",
    "Assignment",
    "ImportResult",
    "Progress",
    "Project",
    "SignInStatus",
    "SignInThrottled",
    "Store",
    "User",
    "one_line_errors",
    "with_pool",
]


class Store(QueueStore, MyWorkStore, ExportStore):
    """Open with `Store.open(url)`; all methods are safe to call from many threads/processes."""
