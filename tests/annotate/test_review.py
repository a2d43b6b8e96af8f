"""Adjudication on SQLite and PostgreSQL: reviewers, which pairs disagree (opposite sides, or
levels more than `review_steps` apart on the nine-choice row), and decisions."""

from __future__ import annotations

import pytest

from prefkit.annotate.gold import GoldAnswer, GoldItem
from prefkit.annotate.store import Store
from prefkit.annotate.store.review import disagreement
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Strength
from prefkit.data.sources import Location


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def test_what_counts_as_a_disagreement() -> None:
    assert disagreement([-3, -2], 1) == (1, False, False)  # A better vs A slightly better
    assert disagreement([-3, -1], 1) == (2, False, True)  # A better vs A negligibly better
    assert disagreement([-3, -1], 2) == (2, False, False)  # ... unless the threshold allows two steps
    assert disagreement([-1, 1], 5) == (2, True, True)  # opposite sides, whatever the threshold
    assert disagreement([0, -1], 1) == (1, False, False)  # unsure vs A negligibly better
    assert disagreement([0, 2], 1) == (2, False, True)  # unsure vs B slightly better
    assert disagreement([0, 0], 0) == (0, False, False)


def _judge(store: Store, user: str, point: int) -> str:
    """`user` judges the pair they are given, `point` in generation order (negative: a)."""
    a = store.claim("p", user)
    pair = a.pair
    preferred = None if point == 0 else (pair.a.id if point < 0 else pair.b.id)
    strength = Strength.NEGLIGIBLY_BETTER if point == 0 else Strength.from_level(abs(point) - 1)
    store.submit(a.id, user, Judgement(pair.pair_id, user, preferred, strength, rationale=f"{user} says {point}"))
    return pair.pair_id


def test_disputes_decisions_and_who_may_make_them(store, make_pairs) -> None:
    gold = make_pairs(1, start=40)
    store.import_gold("p", [GoldItem(gold[0], GoldAnswer("a", Strength.BETTER), Location("g", 1))], pairs=make_pairs(4))
    store.set_quality("p", gold_rate=0.0)
    for u in ("lan", "minh", "rev", "boss"):
        store.add_user(u, admin=u == "boss")
    assert store.set_role("rev", "reviewer").role == "reviewer"
    points = {"lan": [-4, -3, 2, 0], "minh": [3, -1, 2, -2]}
    pids = [_judge(store, "lan", p) for p in points["lan"]]
    assert [_judge(store, "minh", p) for p in points["minh"]] == pids
    # opposite sides; 2 steps apart; the same; unsure vs A slightly better (2 steps)
    disputes = store.disputes("p")
    assert [(d.pair_id, d.spread, d.opposite) for d in disputes] == sorted(
        [(pids[0], 7, True), (pids[1], 2, False), (pids[3], 2, False)], key=lambda t: (-t[1], t[0])
    )
    assert [d.pair_id for d in store.disputes("p", steps=2)] == [pids[0]]
    store.set_quality("p", review_steps=2)
    assert [d.pair_id for d in store.disputes("p")] == [pids[0]]  # the project's setting is the default

    pair, js, review = store.dispute("p", pids[0])
    assert pair.pair_id == pids[0] and review is None
    assert [(j.annotator, j.rationale) for j in js] == [("lan", "lan says -4"), ("minh", "minh says 3")]

    with pytest.raises(ConfigError, match="'lan' may not review"):
        store.decide("p", pids[0], "lan", pair.b.id, "better")
    with pytest.raises(DataError, match="not a response of pair"):
        store.decide("p", pids[0], "rev", "nope", "better")
    r = store.decide("p", pids[0], "rev", pair.b.id, "better", note="  B is right  ")
    assert (r.preferred, r.strength, r.note) == (pair.b.id, Strength.BETTER, "B is right")
    r = store.decide("p", pids[0], "boss", None, "significantly_better")  # admins review too; unsure
    assert (r.reviewer, r.preferred, r.strength) == ("boss", None, Strength.NEGLIGIBLY_BETTER)
    assert store.reviews("p")[pids[0]].reviewer == "boss"  # deciding again replaces it
    store.set_quality("p", review_steps=1)
    assert [d.pair_id for d in store.disputes("p")][-1] == pids[0]  # decided ones come last
    store.clear_decision("p", pids[0], "rev")
    assert store.reviews("p") == {}
    # A reviewer taken off a closed project may not decide there.
    store.assign("p", "lan")
    with pytest.raises(ConfigError, match="not assigned to project"):
        store.decide("p", pids[0], "rev", pair.a.id, "better")
    with pytest.raises(ConfigError, match="unknown role"):
        store.set_role("rev", "owner")


def test_a_store_made_before_roles_and_quality_control_opens_with_them(db_url) -> None:
    from sqlalchemy import create_engine, inspect, text

    with Store.open(db_url) as s:
        s.add_user("lan")
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the store as an earlier prefkit left it
        conn.execute(text("ALTER TABLE users DROP COLUMN is_reviewer"))
        for table in ("reviews", "quality_lifts", "project_quality", "gold_answers", "gold_pairs"):
            conn.execute(text(f"DROP TABLE {table}"))
    with Store.open(db_url) as s:
        assert "is_reviewer" in {c["name"] for c in inspect(engine).get_columns("users")}
        assert s.get_user("lan").role == "annotator"  # every user there before is not a reviewer
        assert s.set_role("lan", "reviewer").may_review
        s.create_project("p")
        assert s.disputes("p") == [] and s.gold_pair_ids("p") == set()
    engine.dispose()
