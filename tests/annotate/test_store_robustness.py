"""The store's edges, on SQLite and on a real PostgreSQL server: NUL characters, an import that
fails half-way, and the connection pool (sign-in under repeated failures: `test_sign_in.py`)."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.pool import NullPool, QueuePool

from prefkit.annotate.store import Store, with_pool
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Pair, Prompt, Response


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def test_a_nul_character_is_one_clear_error_on_both_backends(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(3))
    store.add_user("lan")
    with pytest.raises(ConfigError, match=r"project name contains a NUL character"):
        store.create_project("bad\x00name")
    with pytest.raises(ConfigError, match=r"project name contains a NUL"):
        store.ensure_project("bad\x00name")
    with pytest.raises(ConfigError, match=r"user name contains a NUL"):
        store.add_user("l\x00an")
    with pytest.raises(ConfigError, match="no project named"):
        store.get_project("p\x00")
    with pytest.raises(ConfigError, match="no user named"):
        store.get_user("lan\x00")
    with pytest.raises(DataError, match=r"field 'guidelines': guidelines contains a NUL"):
        store.set_guidelines("p", "be kind\x00")
    a = store.claim("p", "lan")
    bad = Judgement.from_seven_point(a.pair.pair_id, "lan", 2, a.shown_order, rationale="vì\x00 nó hay hơn")
    with pytest.raises(DataError, match=r"field 'rationale': rationale contains a NUL character"):
        store.submit(a.id, "lan", bad)
    with pytest.raises(DataError, match=r"field 'reason'"):
        store.report(a.id, "lan", "broken\x00")
    assert store.authenticate("pk_ab\x00cd_secret") is None
    # nothing half-done: the same claim takes a clean judgement, and the text is kept as typed
    ok = Judgement.from_seven_point(a.pair.pair_id, "lan", 2, a.shown_order, rationale="vì nó hay hơn")
    assert store.submit(a.id, "lan", ok).rationale == "vì nó hay hơn"
    with pytest.raises(DataError, match=r"rationale contains a NUL"):
        store.change_judgement("lan", a.pair.pair_id, bad)
    # pair text is stored as JSON, where a NUL is an escape: it round-trips on both backends
    nul_pair = Pair(Prompt("hỏi\x00?", source="t"), Response("a\x00", model="m"), Response("b", model="m"))
    assert store.import_pairs("p", [nul_pair]).added == 1
    assert any(p.prompt.question == "hỏi\x00?" for p in store.pairs("p"))


def test_an_import_that_fails_half_way_creates_no_project(store, make_pairs):
    def pairs_then_bad_row():
        yield from make_pairs(3000)  # more than one insert batch before the failure
        raise DataError("a broken row", file="pairs.jsonl", line=3001, field="chosen")

    with pytest.raises(DataError, match="line 3001"):
        store.import_project("p", pairs_then_bad_row(), overlap=2, guidelines="g")
    assert store.list_projects() == []
    result = store.import_project("p", make_pairs(10), overlap=3)  # other settings: a fresh start
    assert (result.added, store.get_project("p").overlap) == (10, 3)
    again = store.import_project("p", make_pairs(12), overlap=3)  # idempotent, like import_pairs
    assert (again.added, again.skipped, store.count_pairs("p")) == (2, 10, 12)
    with pytest.raises(ConfigError, match="already exists with overlap=3"):
        store.import_project("p", make_pairs(1), overlap=2)


def _connects(store: Store) -> list[int]:
    opened = [0]

    @event.listens_for(store.engine, "connect")
    def _count(*_args) -> None:
        opened[0] += 1

    return opened


def test_the_pool_reuses_connections_and_can_be_sized(db_url, make_pairs):
    import threading

    setup = Store.open(db_url)
    setup.create_project("p", overlap=8)
    setup.import_pairs("p", make_pairs(30))
    for i in range(8):
        setup.add_user(f"u{i}")
    setup.close()

    def work(store: Store) -> int:
        """8 annotators at once, 5 claim+submit each: 80 transactions and more."""
        opened = _connects(store)

        def run(u: str) -> None:
            for _ in range(5):
                a = store.claim("p", u)
                store.submit(a.id, u, Judgement.from_seven_point(a.pair.pair_id, u, 1, a.shown_order))

        threads = [threading.Thread(target=run, args=(f"u{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        store.close()
        return opened[0]

    pooled = Store.open(db_url)  # default: 16 kept open
    assert isinstance(pooled.engine.pool, QueuePool) and pooled.engine.pool.size() == 16
    assert work(pooled) <= 8  # at most one connection per concurrent annotator, reused
    unpooled = Store.open(with_pool(db_url, 0))  # `--db-pool 0`: a connection per transaction
    assert isinstance(unpooled.engine.pool, NullPool)
    assert work(unpooled) >= 80
    small = Store.open(db_url + "?pool=2")  # the URL setting; it never reaches the driver
    assert small.engine.pool.size() == 2 and "pool" not in small.engine.url.query
    small.close()
    with pytest.raises(ConfigError, match=r"\?pool= in the store URL must be a whole number"):
        Store.open(db_url + "?pool=many")


def test_with_pool_sets_the_url_setting(tmp_path):
    assert with_pool("x.db", None) == "x.db"
    url = with_pool(str(tmp_path / "x.db"), 4)
    assert url == f"sqlite:///{tmp_path / 'x.db'}?pool=4"
    assert with_pool("postgresql+psycopg://u:pw@h:5/db?pool=2", 9) == "postgresql+psycopg://u:pw@h:5/db?pool=9"
