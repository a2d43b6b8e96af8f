"""A store made by an earlier prefkit opens with the current tables: missing tables and missing
columns are added (the rows already there keep theirs), on SQLite and PostgreSQL, also when two
processes open the same old store at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Column, Integer, Table, create_engine, inspect, text

from prefkit.annotate.store import Store
from prefkit.annotate.store.connection import add_missing_columns
from prefkit.annotate.tables import Base
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Judgement


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _drop(url: str, table: str, column: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    finally:
        engine.dispose()


def test_an_old_store_gets_the_new_columns_and_keeps_its_rows(db_url, make_pairs):
    with Store.open(db_url) as store:
        store.create_project("p", overlap=1)
        store.import_pairs("p", make_pairs(3))
        store.add_user("ann")
        a = store.claim("p", "ann")
        store.submit(a.id, "ann", Judgement.from_choice(a.pair.pair_id, "ann", -3, a.shown_order, rationale="clear"))
    # the store as an earlier version left it: no rationale column yet
    _drop(db_url, "judgements", "rationale")
    assert "rationale" not in _columns(db_url, "judgements")
    with Store.open(db_url) as store:
        assert "rationale" in _columns(db_url, "judgements")
        (judgement,) = store.judgements("p")
        assert judgement.strength.value == "better" and judgement.rationale is None
        b = store.claim("p", "ann")
        store.submit(b.id, "ann", Judgement.from_choice(b.pair.pair_id, "ann", 2, b.shown_order, rationale="kept"))
        assert sorted(j.rationale or "" for j in store.judgements("p")) == ["", "kept"]


def test_two_processes_upgrading_the_same_store_at_once_both_open_it(db_url):
    Store.open(db_url).close()
    _drop(db_url, "judgements", "rationale")
    _drop(db_url, "assignments", "reason")
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Store.open(db_url, pool=0).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert "rationale" in _columns(db_url, "judgements")
    assert "reason" in _columns(db_url, "assignments")


def test_a_new_column_that_old_rows_cannot_fill_is_refused_with_one_line(sqlite_url):
    Store.open(sqlite_url).close()
    extra = Table("judgements", Base.metadata, Column("must_have", Integer, nullable=False), extend_existing=True)
    engine = create_engine(sqlite_url)
    try:
        with pytest.raises(ConfigError, match=r"judgements\.must_have is new and NOT NULL"):
            add_missing_columns(engine)
    finally:
        extra._columns.remove(extra.c.must_have)  # leave the shared metadata as it was
        engine.dispose()
    assert "must_have" not in {c.name for c in Base.metadata.tables["judgements"].columns}
