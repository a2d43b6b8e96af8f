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
- `accounts`: users, tokens and sessions
- `sign_in`: signing in with a token; wrong tokens slowed per account and per address
- `members`: who may label which project
- `priorities`: reward models' priorities per open pair, the ranked queue, `selected_by`
- `queue`: claims (leases), submit, skip, report
- `undo`: taking back the last action, handing back the whole judgement (`Undone`)
- `gold`: gold pairs, quality settings, qualification and pauses (the claim's gold step)
- `review`: reviewers, pairs whose judgements disagree, reviewers' decisions
- `claims`: why a write on a claim that is no longer valid is refused (`ClaimRefused`)
- `my_work`: a user's own judgements and progress
- `results`: judgements and dashboard figures for admins
- `predictions`: what models predicted per pair, and the Label page's suggestion setting
- `model_judgements`: AI judges' judgements, apart from people's (never counted toward overlap)
- `calibration`: models against people (agreement per level, kappa, anchoring)
- `annotators`: the per-annotator view for the lead (speed, bias, gold accuracy, consensus)
- `export`: the aggregated dataset and the judgement table
- `edits`: whether a project takes annotators' edits of the preferred answer (edit-and-rank)

`from prefkit.annotate.store import Store` (and the names below) is the public API.
"""

from __future__ import annotations

from prefkit.annotate.store.accounts import SESSION_TTL
from prefkit.annotate.store.annotators import AnnotatorStore
from prefkit.annotate.store.claims import ClaimRefused, LeaseLost, NotAssigned
from prefkit.annotate.store.connection import one_line_errors, with_pool
from prefkit.annotate.store.edits import EditStore
from prefkit.annotate.store.export import ExportStore
from prefkit.annotate.store.gold import GoldAnswer, GoldImportResult
from prefkit.annotate.store.my_work import MyWorkStore
from prefkit.annotate.store.predictions import Prediction, Suggestion, verdict_from_probability
from prefkit.annotate.store.priorities import (
    DEFAULT_RANDOM_SHARE,
    SELECTED_BY,
    PriorityRun,
    QueueEntry,
    in_random_share,
    interleave,
)
from prefkit.annotate.store.records import Assignment, ImportResult, Progress, Project, User
from prefkit.annotate.store.review import ROLES, Dispute, Review
from prefkit.annotate.store.sign_in import (
    FREE_FAILURES_PER_ADDRESS,
    FREE_FAILURES_PER_USER,
    LOCAL,
    MAX_SIGN_IN_WAIT,
    SIGN_IN_KEPT,
    SIGN_IN_WINDOW,
    SignInStatus,
    SignInStore,
    SignInThrottled,
    SignInWait,
)
from prefkit.annotate.store.undo import Undone, UndoStore

__all__ = [
    "DEFAULT_RANDOM_SHARE",
    "FREE_FAILURES_PER_ADDRESS",
    "FREE_FAILURES_PER_USER",
    "LOCAL",
    "MAX_SIGN_IN_WAIT",
    "ROLES",
    "SELECTED_BY",
    "SESSION_TTL",
    "SIGN_IN_KEPT",
    "SIGN_IN_WINDOW",
    "Assignment",
    "ClaimRefused",
    "Dispute",
    "GoldAnswer",
    "GoldImportResult",
    "ImportResult",
    "LeaseLost",
    "NotAssigned",
    "Prediction",
    "PriorityRun",
    "Progress",
    "Project",
    "QueueEntry",
    "Review",
    "SignInStatus",
    "SignInThrottled",
    "SignInWait",
    "Store",
    "Suggestion",
    "Undone",
    "User",
    "in_random_share",
    "interleave",
    "one_line_errors",
    "verdict_from_probability",
    "with_pool",
]


class Store(UndoStore, MyWorkStore, ExportStore, AnnotatorStore, EditStore, SignInStore):
    """Open with `Store.open(url)`; all methods are safe to call from many threads/processes."""
