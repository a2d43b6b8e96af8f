"""Shared fixtures for the annotate room: store URLs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session by `dev.pgserver.throwaway_postgres`
(Debian's `postgresql` package on a free loopback port) and stopped at the end. Each test gets a
fresh database. PostgreSQL tests skip, saying why, only when no server can be started.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dev.browser_driver import CHROMIUM, CHROMIUM_ARGS, watch_runs
from dev.pgserver import NoPostgres, PgServer, throwaway_postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server on loopback for the whole test session."""
    try:
        server_cm = throwaway_postgres()
        server = server_cm.__enter__()
    except NoPostgres as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'annotations.db'}"


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on a SQLite file and on a real PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


class _WatchingBrowser:
    """The Playwright browser, whose every new context logs its pages' script runs
    (`dev.browser_driver.watch_runs`, read by `after_run`)."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, **kwargs: Any) -> Any:
        context = self._browser.new_context(**kwargs)
        watch_runs(context)
        return context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, one per test module (browser tests skip
    without /usr/bin/chromium before asking for it); its pages log the app's runs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield _WatchingBrowser(b)
        b.close()


class FakeClock:
    """A clock the test moves by hand (lease expiry without sleeping)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_pairs(n: int, start: int = 0) -> list:
    from prefkit.data.schema import Pair, Prompt, Response

    return [
        Pair(
            Prompt(f"Câu hỏi số {i}: hãy giải thích?", source="test"),
            Response(f"Trả lời A cho câu {i}", model="m-a", temperature=0.7, seed=i),
            Response(f"Trả lời B cho câu {i}", model="m-b", temperature=1.0, seed=i),
        )
        for i in range(start, start + n)
    ]


@pytest.fixture(name="make_pairs")
def make_pairs_fixture():
    """`make_pairs(n, start=0)`: n distinct, deterministic pairs (Vietnamese text)."""
    return make_pairs
