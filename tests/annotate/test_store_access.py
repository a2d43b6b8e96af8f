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
