"""Membership and lease validity on every write (issue 22, and issue 23's removed annotator), on
SQLite and PostgreSQL: a user taken off a project can no longer submit, skip, report, undo,
change or withdraw there, a pair never ends over its overlap, and a refused write says why and
records nothing."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import select, update

from prefkit.annotate.store import ClaimRefused, LeaseLost, NotAssigned, Store
from prefkit.annotate.tables import ACTIVE, AssignmentRow, PairRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _j(a, user: str, point: int = -2, **kw) -> Judgement:
    return Judgement.from_choice(a.pair.pair_id, user, point, a.shown_order, **kw)


def _counters(store: Store) -> dict[str, tuple[int, int, int]]:
    with store.engine.connect() as c:
        rows = c.execute(select(PairRow.pair_id, PairRow.done, PairRow.held, PairRow.required)).all()
    return {r.pair_id: (r.done, r.held, r.required) for r in rows}


def test_an_annotator_taken_off_a_project_cannot_write_on_the_pair_they_held(store, make_pairs):
    """Issue 23's reproduction: the pair on lan's screen is released to another member while lan
    still has it open; lan's key is then refused, and the pair ends at its overlap, not over it."""
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(1))
    for u in ("lan", "minh", "hoa"):
        store.add_user(u)
        store.assign("p", u)
    on_screen = store.claim("p", "lan")
    minh = store.claim("p", "minh")
    assert on_screen.pair.pair_id == minh.pair.pair_id
    store.unassign("p", "lan")
    hoa = store.claim("p", "hoa")  # lan's slot went back to the queue: hoa takes it
    assert hoa is not None and hoa.pair.pair_id == on_screen.pair.pair_id

    for write in (
        lambda: store.submit(on_screen.id, "lan", _j(on_screen, "lan")),
        lambda: store.skip(on_screen.id, "lan"),
        lambda: store.report(on_screen.id, "lan", "Bad prompt"),
        lambda: store.undo_last("p", "lan"),
        lambda: store.claim("p", "lan"),
    ):
        with pytest.raises(NotAssigned, match=r"'lan' is not assigned to project 'p'.*nothing was recorded"):
            write()
    store.submit(minh.id, "minh", _j(minh, "minh"))
    store.submit(hoa.id, "hoa", _j(hoa, "hoa"))
    assert sorted(j.annotator for j in store.judgements("p")) == ["hoa", "minh"]
    assert _counters(store) == {on_screen.pair.pair_id: (2, 0, 2)}


def test_an_annotator_taken_off_a_project_keeps_their_judgements_unchanged(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(3))
    store.add_user("lan")
    store.add_user("boss", admin=True)
    store.assign("p", "lan")
    done = store.claim("p", "lan")
    store.submit(done.id, "lan", _j(done, "lan", -3))
    store.assign("p", "boss")  # the project stays closed to lan once lan is off it
    store.unassign("p", "lan")

    # undo would re-activate the judged pair (and a claim hand it back): refused
    with pytest.raises(NotAssigned):
        store.undo_last("p", "lan")
    with pytest.raises(NotAssigned):
        store.change_judgement("lan", done.pair.pair_id, _j(done, "lan", 3))
    with pytest.raises(NotAssigned):
        store.withdraw("lan", done.pair.pair_id)
    (kept,) = store.judgements("p")
    assert kept.annotator == "lan" and kept.choice() == -3  # exactly as recorded
    assert _counters(store)[done.pair.pair_id] == (1, 0, 1)
    # an admin may label every project, assigned or not
    a = store.claim("p", "boss")
    assert store.submit(a.id, "boss", _j(a, "boss")).annotator == "boss"
    # put back on the project, lan may change their judgement again
    store.assign("p", "lan")
    assert store.change_judgement("lan", done.pair.pair_id, _j(done, "lan", 3)).choice() == 3


def test_a_disabled_annotator_cannot_change_or_withdraw(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(1))
    store.add_user("lan")
    a = store.claim("p", "lan")
    store.submit(a.id, "lan", _j(a, "lan"))
    store.disable_user("lan")
    for write in (
        lambda: store.change_judgement("lan", a.pair.pair_id, _j(a, "lan", 3)),
        lambda: store.withdraw("lan", a.pair.pair_id),
        lambda: store.undo_last("p", "lan"),
    ):
        with pytest.raises(ConfigError, match="'lan' is disabled"):
            write()
    assert _counters(store)[a.pair.pair_id] == (1, 0, 1)


def test_a_lease_held_by_someone_no_longer_on_the_project_is_put_down(store, make_pairs):
    """An undo racing an unassign (PostgreSQL, read committed) can leave an active lease with no
    membership behind it: the next claim gives the pair back instead of showing it."""
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(1))
    store.add_user("lan")
    store.add_user("minh")
    store.assign("p", "minh")  # lan is not a member
    store.assign("p", "lan")
    a = store.claim("p", "lan")
    store.unassign("p", "lan")
    with store.engine.begin() as c:  # what the race leaves: lan's lease active again, its slot held
        c.execute(update(AssignmentRow).where(AssignmentRow.id == a.id).values(status=ACTIVE))
        c.execute(update(PairRow).values(held=PairRow.held + 1))
    with pytest.raises(NotAssigned):
        store.claim("p", "lan")
    assert _counters(store)[a.pair.pair_id] == (0, 0, 1)  # given back
    assert store.claim("p", "minh").pair.pair_id == a.pair.pair_id


def test_a_late_judgement_counts_only_while_the_pair_still_needs_it(store, clock, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(2))
    store.add_user("lan")
    store.add_user("minh")
    first = store.claim("p", "lan", lease_seconds=60)
    clock.advance(61)
    taken = store.claim("p", "minh")  # the reap frees lan's slot; minh takes it
    assert taken.pair.pair_id == first.pair.pair_id
    with pytest.raises(LeaseLost) as refused:
        store.submit(first.id, "lan", _j(first, "lan"))
    assert isinstance(refused.value, ClaimRefused) and first.pair.pair_id in str(refused.value)
    store.submit(taken.id, "minh", _j(taken, "minh"))
    assert _counters(store)[first.pair.pair_id] == (1, 0, 1)

    second = store.claim("p", "lan", lease_seconds=60)
    clock.advance(61)
    store.skip(store.claim("p", "minh").id, "minh")  # minh gets it after the reap, and gives it back
    late = store.submit(second.id, "lan", _j(second, "lan"))  # nothing is exceeded: kept
    assert late.annotator == "lan" and _counters(store)[second.pair.pair_id] == (1, 0, 1)


def test_no_pair_ends_over_its_overlap_while_an_admin_moves_people(db_url, make_pairs):
    """Four annotators claim, submit, skip and undo in threads while an admin takes them off the
    project and puts them back; short leases run out under them. Every refusal is a
    `ClaimRefused`, and at the end no pair has more judgements than its overlap asks for, and the
    counters match the rows. An undo of a skip whose pair others filled meanwhile is refused
    (`DataError`, as documented); on PostgreSQL under load this once let a pair end at 3 of 2
    (`test_undoing_a_skip_waits_for_a_claim_racing_it` pins that race down)."""
    from prefkit.annotate.tables import JudgementRow

    with Store.open(db_url) as setup:
        setup.create_project("p", overlap=2)
        setup.import_pairs("p", make_pairs(20))
        users = ["an", "binh", "chi", "dung"]
        for u in users:
            setup.add_user(u)
            setup.assign("p", u)
    stop = threading.Event()
    errors: list[BaseException] = []

    def annotator(name: str, seed: int) -> None:
        rnd = random.Random(seed)
        with Store.open(db_url) as s:
            while not stop.is_set():
                try:
                    a = s.claim("p", name, lease_seconds=rnd.choice([0.02, 30]))
                    if a is None:
                        return
                    if rnd.random() < 0.3:  # reading the pair for a while: a short lease runs out
                        time.sleep(rnd.uniform(0.03, 0.1))
                    if rnd.random() < 0.1:
                        s.skip(a.id, name)
                    else:
                        s.submit(a.id, name, _j(a, name, rnd.choice([-3, -1, 2])))
                    if rnd.random() < 0.1:
                        s.undo_last("p", name)
                except ClaimRefused:
                    continue
                except DataError as e:  # undoing a skip whose pair others filled since: refused
                    if "was taken by other annotators since" not in str(e):
                        errors.append(e)
                        return
                except BaseException as e:  # anything else fails the test
                    errors.append(e)
                    return

    def admin() -> None:
        rnd = random.Random(7)
        with Store.open(db_url) as s:
            for _ in range(40):
                if stop.is_set():
                    return
                u = rnd.choice(users)
                s.unassign("p", u)
                s.assign("p", rnd.choice(users))
        for u in users:
            with Store.open(db_url) as s:
                s.assign("p", u)

    threads = [threading.Thread(target=annotator, args=(u, i)) for i, u in enumerate(users)]
    threads.append(threading.Thread(target=admin))
    for t in threads:
        t.start()
    threads[-1].join(timeout=120)
    for t in threads[:-1]:
        t.join(timeout=120)
    stop.set()
    assert not errors, errors
    with Store.open(db_url) as s:
        counters = _counters(s)
        with s.engine.connect() as c:
            rows = c.execute(select(PairRow.pair_id).join(JudgementRow, JudgementRow.pair_row_id == PairRow.id))
            per_pair: dict[str, int] = {}
            for (pid,) in rows:
                per_pair[pid] = per_pair.get(pid, 0) + 1
    assert sum(per_pair.values()) > 0
    for pid, (done, held, required) in counters.items():
        assert done <= required, (pid, done, required)
        assert per_pair.get(pid, 0) == done
        assert done + held <= required


def test_undoing_a_skip_waits_for_a_claim_racing_it(db_url, make_pairs):
    """The race the stress test above found on PostgreSQL: an undo of a skip read the pair's
    counters (room for one more), then a claim committed its hold, then the undo held the pair too:
    three slots on a pair of overlap 2. Here the claim's hold is a transaction left open while the
    undo runs; once it commits, the undo must see the pair full and refuse, on both databases."""
    with Store.open(db_url) as s:
        s.create_project("p", overlap=2)
        s.import_pairs("p", make_pairs(1))
        for u in ("an", "binh"):
            s.add_user(u)
        a = s.claim("p", "an")
        s.skip(a.id, "an")
        s.claim("p", "binh")  # done 0, held 1: an's undo would fit, until a third annotator comes
        with s.engine.connect() as c:
            prid = c.execute(select(PairRow.id)).scalar_one()

        outcome: list[BaseException | str | None] = []

        def undo() -> None:
            with Store.open(db_url) as other:
                try:
                    outcome.append(other.undo_last("p", "an"))
                except BaseException as e:
                    outcome.append(e)

        racer = s.engine.connect()  # a third annotator's claim, holding the pair's last slot
        racer.execute(update(PairRow).where(PairRow.id == prid).values(held=PairRow.held + 1))
        worker = threading.Thread(target=undo)
        worker.start()
        if s.engine.dialect.name == "postgresql":  # wait until the undo is blocked behind the claim
            deadline = time.monotonic() + 60
            with s.engine.connect() as watch:
                while True:
                    if watch.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar():
                        break
                    watch.rollback()
                    if time.monotonic() > deadline:
                        pytest.fail("the undo never reached the pair's row")
                    time.sleep(0.05)
        else:  # SQLite: the undo's BEGIN IMMEDIATE waits for the racer's write lock
            time.sleep(0.5)
        racer.commit()
        racer.close()
        worker.join(timeout=60)
        assert len(outcome) == 1
        assert isinstance(outcome[0], DataError), outcome
        assert "was taken by other annotators since" in str(outcome[0])
        assert _counters(s)[a.pair.pair_id] == (0, 2, 2)
