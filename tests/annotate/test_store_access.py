"""The store's project access, skipped pairs going back to the queue, calibration defaults and
undo, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from prefkit.annotate.store import Store
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Strength


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _judge(store: Store, project: str, user: str, point: int = -2) -> Judgement:
    a = store.claim(project, user)
    assert a is not None
    return store.submit(a.id, user, Judgement.from_choice(a.pair.pair_id, user, point, a.shown_order))


def test_assigned_projects_are_for_their_members_only(store, make_pairs):
    for name in ("open", "team"):
        store.create_project(name, overlap=1)
        store.import_pairs(name, make_pairs(4))
    for user in ("an", "binh"):
        store.add_user(user)
    store.add_user("boss", admin=True)
    assert [p.name for p in store.projects_for("an")] == ["open", "team"]  # no members: open to all

    store.assign("team", "an")
    store.assign("team", "an")  # twice is once
    assert store.members("team") == ["an"] and store.members("open") == []
    assert [p.name for p in store.projects_for("an")] == ["open", "team"]
    assert [p.name for p in store.projects_for("binh")] == ["open"]
    assert [p.name for p in store.projects_for("boss")] == ["open", "team"]
    assert store.claim("team", "an") is not None
    assert store.claim("team", "boss") is not None  # admins may label anything
    with pytest.raises(ConfigError, match="'binh' is not assigned to project 'team'"):
        store.claim("team", "binh")
    assert store.claim("open", "binh") is not None

    # Taking an annotator off a project gives their held pair back and stops their claims.
    store.unassign("team", "an")
    store.assign("team", "binh")
    assert store.progress("team", "binh").left_in_queue == 3  # an's held pair is free again
    with pytest.raises(ConfigError, match="not assigned"):
        store.claim("team", "an")
    store.unassign("team", "binh")  # the last member gone: open to all again
    assert store.claim("team", "an") is not None


def test_a_skipped_pair_goes_to_the_next_annotator_even_one_already_past_it(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(10))
    for user in ("an", "binh", "chi"):
        store.add_user(user)
    first = store.claim("p", "an")
    for _ in range(3):  # binh walks on past an's pair
        _judge(store, "p", "binh")
    store.skip(first.id, "an")
    # binh's next pair is the skipped one, not the one after binh's last
    again = store.claim("p", "binh")
    assert again.pair.pair_id == first.pair.pair_id
    store.skip(again.id, "binh")
    got = store.claim("p", "chi")
    assert got.pair.pair_id == first.pair.pair_id  # chi too
    # the skippers never get it again
    seen_an = set()
    while (a := store.claim("p", "an")) is not None:
        seen_an.add(a.pair.pair_id)
        store.submit(a.id, "an", Judgement.from_choice(a.pair.pair_id, "an", 1, a.shown_order))
    assert first.pair.pair_id not in seen_an


def test_calibration_pairs_default_to_the_projects_overlap(store, make_pairs):
    store.create_project("p", overlap=3, calibration=0.5, seed=1)
    assert store.get_project("p").calibration_overlap == 3
    store.import_pairs("p", make_pairs(6))
    for user in ("an", "binh", "chi"):
        store.add_user(user)
    # a three-person team finishes every pair, calibration ones included
    for user in ("an", "binh", "chi"):
        while (a := store.claim("p", user)) is not None:
            store.submit(a.id, user, Judgement.from_choice(a.pair.pair_id, user, 2, a.shown_order))
    assert store.dashboard("p").summary["complete"] == 6
    store.create_project("q", overlap=2, calibration=0.1, calibration_overlap=4)
    assert store.get_project("q").calibration_overlap == 4  # still settable


def test_undo_takes_back_judgement_skip_and_report_within_the_lease(store, make_pairs, clock):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(8))
    store.add_user("an")
    store.add_user("binh")
    assert store.undo_last("p", "an") is None  # nothing done yet

    judged = store.claim("p", "an")
    store.submit(judged.id, "an", Judgement.from_choice(judged.pair.pair_id, "an", -1, judged.shown_order))
    clock.advance(1)
    skipped = store.claim("p", "an")
    store.skip(skipped.id, "an")
    clock.advance(1)
    reported = store.claim("p", "an")
    store.report(reported.id, "an", "Bad prompt")
    clock.advance(1)
    current = store.claim("p", "an")

    assert store.undo_last("p", "an", lease_seconds=600) == "report"
    assert store.claim("p", "an").pair.pair_id == reported.pair.pair_id
    assert store.undo_last("p", "an", lease_seconds=600) == "skip"
    assert store.claim("p", "an").pair.pair_id == skipped.pair.pair_id
    assert store.undo_last("p", "an", lease_seconds=600) == "judgement"
    back = store.claim("p", "an")
    assert back.pair.pair_id == judged.pair.pair_id
    assert store.my_judgements("an", "p") == []
    assert store.dashboard("p").summary["judgements"] == 0
    # judged again differently, then the pairs put down come back in order
    store.submit(back.id, "an", Judgement.from_choice(back.pair.pair_id, "an", 4, back.shown_order))
    ((_pair, j),) = store.my_judgements("an", "p")
    assert j.strength is Strength.SIGNIFICANTLY_BETTER and j.choice() == 4
    order = []
    for _ in range(3):
        a = store.claim("p", "an")
        order.append(a.pair.pair_id)
        store.skip(a.id, "an")
    assert order == [skipped.pair.pair_id, reported.pair.pair_id, current.pair.pair_id]
    # nothing is counted twice: every pair's counters add up
    summary = store.dashboard("p").summary
    assert summary["judgements"] == 1 and summary["complete"] == 1

    # too late: outside the lease nothing is undone
    clock.advance(3600)
    assert store.undo_last("p", "an", lease_seconds=600) is None

    # a skip whose pair another annotator has since taken stays a skip
    a = store.claim("p", "an")
    store.skip(a.id, "an")
    while (b := store.claim("p", "binh")).pair.pair_id != a.pair.pair_id:  # skipped ones come first
        store.skip(b.id, "binh")
    with pytest.raises(DataError, match="taken by other annotators"):
        store.undo_last("p", "an", lease_seconds=600)


def test_undo_hands_back_the_whole_judgement_and_the_report_reason(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(4))
    store.add_user("an")
    a = store.claim("p", "an")
    left, right = a.shown_order
    store.submit(
        a.id,
        "an",
        Judgement.from_choice(a.pair.pair_id, "an", 2, a.shown_order, unsafe=(left,), rationale="B cites a source"),
    )
    r = store.claim("p", "an")
    store.report(r.id, "an", "Other: the prompt is cut off")
    store.claim("p", "an")

    undone = store.undo("p", "an", lease_seconds=600)
    assert (undone.kind, undone.pair_id, undone.reason) == ("report", r.pair.pair_id, "Other: the prompt is cut off")
    assert undone.judgement is None
    undone = store.undo("p", "an", lease_seconds=600)
    assert (undone.kind, undone.pair_id) == ("judgement", a.pair.pair_id)
    j = undone.judgement
    assert j.choice() == 2 and j.preferred == right and j.strength is Strength.SLIGHTLY_BETTER
    assert j.unsafe == (left,) and j.rationale == "B cites a source" and j.shown_order == (left, right)
    back = store.claim("p", "an")
    assert back.id == a.id and back.shown_order == (left, right)  # shown as before
    assert store.undo("p", "an", lease_seconds=600) is None  # nothing further back


def test_the_pair_put_down_by_undo_comes_next_whichever_process_serves(db_url, clock, make_pairs):
    """Two `annotate serve` processes behind a proxy are two Store objects, each with its own
    memory: the pair an undo put down must come next from either of them (issue 21)."""
    one, two = Store.open(db_url, clock=clock), Store.open(db_url, clock=clock)
    try:
        one.create_project("p", overlap=1)
        one.import_pairs("p", make_pairs(6))
        one.add_user("an")
        w = one.claim("p", "an")
        one.submit(w.id, "an", Judgement.from_choice(w.pair.pair_id, "an", -1, w.shown_order))
        clock.advance(1)
        x = two.claim("p", "an")  # the next pair, served by the second process
        assert x.pair.pair_id != w.pair.pair_id
        assert one.undo("p", "an", lease_seconds=600).pair_id == w.pair.pair_id  # served by the first
        back = two.claim("p", "an")
        assert back.pair.pair_id == w.pair.pair_id
        two.submit(back.id, "an", Judgement.from_choice(back.pair.pair_id, "an", 3, back.shown_order))
        assert two.claim("p", "an").pair.pair_id == x.pair.pair_id  # the pair put down, from the second
        # Once taken up again it is an ordinary claim: the walk goes on after it, in any process.
        two.skip(x.id, "an")
        later = {one.claim("p", "an").pair.pair_id}
        assert x.pair.pair_id not in later and w.pair.pair_id not in later
        # The same from a process that has served nothing yet (its memory is empty).
        with Store.open(db_url, clock=clock) as three:
            held = three.claim("p", "an")
            three.submit(held.id, "an", Judgement.from_choice(held.pair.pair_id, "an", 1, held.shown_order))
            nxt = one.claim("p", "an")
            one.undo("p", "an", lease_seconds=600)
            assert three.claim("p", "an").pair.pair_id == held.pair.pair_id
            three.submit(held.id, "an", Judgement.from_choice(held.pair.pair_id, "an", 2, held.shown_order))
            assert three.claim("p", "an").pair.pair_id == nxt.pair.pair_id
    finally:
        one.close()
        two.close()


def test_a_store_made_before_the_undo_mark_gets_it(db_url, clock, make_pairs):
    """An earlier store has no `assignments.put_down_at` (nor its index): opening it adds both,
    its claims are kept, and an undo's put-down pair comes next."""
    from sqlalchemy import create_engine, inspect, text

    with Store.open(db_url, clock=clock) as store:
        store.create_project("p", overlap=1)
        store.import_pairs("p", make_pairs(4))
        store.add_user("an")
        held = store.claim("p", "an")
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the store as an earlier version left it
        conn.execute(text("DROP INDEX ix_assignments_put_down"))
        conn.execute(text("ALTER TABLE assignments DROP COLUMN put_down_at"))
    with Store.open(db_url, clock=clock) as store:
        seen = inspect(engine)
        assert "put_down_at" in {c["name"] for c in seen.get_columns("assignments")}
        assert "ix_assignments_put_down" in {i["name"] for i in seen.get_indexes("assignments")}
        assert store.claim("p", "an").id == held.id  # the claim it held is still its own
        store.submit(held.id, "an", Judgement.from_choice(held.pair.pair_id, "an", 1, held.shown_order))
        x = store.claim("p", "an")
        store.undo("p", "an", lease_seconds=600)
        store.submit(held.id, "an", Judgement.from_choice(held.pair.pair_id, "an", -1, held.shown_order))
        assert store.claim("p", "an").pair.pair_id == x.pair.pair_id
    engine.dispose()
