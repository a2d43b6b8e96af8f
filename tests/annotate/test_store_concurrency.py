"""Many annotators at once: 32 threads, and several processes, claim and submit until the queue
is empty. Nothing is lost, nothing is recorded twice, nobody judges a pair twice, and the
counters the queue relies on match the rows. Every test runs on the seeded-shuffle queue and on a
prioritised one (a reward model's priorities set: the claim walks the ranked queue)."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
from sqlalchemy import func, select

from dev.store_setup import bulk_users, claim_together_then_finish, together
from prefkit.annotate.store import Store
from prefkit.annotate.tables import AssignmentRow, JudgementRow, PairRow
from prefkit.data.schema import Judgement


@pytest.fixture(params=["shuffle", "prioritised"])
def order(request: pytest.FixtureRequest) -> str:
    """The queue's order: the seeded shuffle, or ranked by planted priorities."""
    return request.param


def _import(store: Store, project: str, pairs: list, order: str) -> None:
    """Import `pairs`; for a prioritised queue, plant a priority per pair (by its index, so the
    ranked order is not the seeded shuffle's) and rank them."""
    store.import_pairs(project, pairs)
    if order == "prioritised":
        run = store.set_priorities(project, {p.pair_id: float((i * 37) % len(pairs)) for i, p in enumerate(pairs)})
        assert run.ranked == len(pairs)


def _served_front_first(store: Store, project: str, n: int) -> None:
    """On a prioritised queue, the first `n` claims went to pairs at the front of the ranked queue
    (within its first 2n ranks): the claims walked the ranking, not the seeded shuffle."""
    from prefkit.annotate.tables import QueueRankRow

    pid = store.get_project(project).id
    with store.engine.connect() as c:
        ranks = dict(c.execute(select(QueueRankRow.pair_row_id, QueueRankRow.rank)).all())
        first = c.execute(
            select(AssignmentRow.pair_row_id).where(AssignmentRow.project_id == pid).order_by(AssignmentRow.id).limit(n)
        ).scalars()
        lowest = min(r for r in ranks.values() if r is not None) if ranks else 0
        assert all(ranks.get(prid) is not None and ranks[prid] - lowest < 2 * n for prid in first)


def _work(store: Store, project: str, user: str) -> int:
    """Claim and submit until nothing is left; every third pair is submitted twice (a double
    click). Returns how many judgements this annotator made."""
    n = 0
    while (a := store.claim(project, user)) is not None:
        point = (hash((a.pair.pair_id, user)) % 7) - 3
        j = Judgement.from_seven_point(a.pair.pair_id, user, point, a.shown_order)
        store.submit(a.id, user, j)
        if n % 3 == 0:
            assert store.submit(a.id, user, j).pair_id == a.pair.pair_id
        n += 1
    return n


def _check_invariants(store: Store, project: str, n_pairs: int, overlap: int, counts: dict[str, int]) -> None:
    js = store.judgements(project)
    assert len(js) == n_pairs * overlap == sum(counts.values())  # nothing lost, nothing extra
    assert len({(j.pair_id, j.annotator) for j in js}) == len(js)  # nobody judged a pair twice
    assert set(Counter(j.pair_id for j in js).values()) == {overlap}
    assert Counter(j.annotator for j in js) == Counter({u: n for u, n in counts.items() if n})
    with store.engine.connect() as c:
        rows = c.execute(select(PairRow.done, PairRow.held, PairRow.complete, PairRow.required)).all()
        assert all(done == req and held == 0 and complete for done, held, complete, req in rows)
        assert c.execute(select(func.count()).select_from(JudgementRow)).scalar_one() == len(js)
        assert (
            c.execute(
                select(func.count()).select_from(AssignmentRow).where(AssignmentRow.status == "active")
            ).scalar_one()
            == 0
        )


def test_32_threads_claim_and_submit_without_loss_or_duplicates(db_url, make_pairs, order):
    store = Store.open(db_url)
    n_pairs, overlap, users = 150, 3, [f"ann{i:02d}" for i in range(32)]
    store.create_project("p", overlap=overlap)
    _import(store, "p", make_pairs(n_pairs), order)
    for u in users:
        store.add_user(u)
    counts = dict(zip(users, together(lambda u: _work(store, "p", u), [(u,) for u in users]), strict=True))
    _check_invariants(store, "p", n_pairs, overlap, counts)
    if order == "prioritised":
        _served_front_first(store, "p", len(users))
    store.close()


def _process_worker(url: str, users: list[str], out: multiprocessing.Queue[tuple[str, int | str]]) -> None:
    """One OS process with its own engine; its annotators take turns claim by claim."""
    store = Store.open(url)
    try:
        done = {u: 0 for u in users}
        active = list(users)
        while active:
            for u in list(active):
                a = store.claim("p", u)
                if a is None:
                    active.remove(u)
                    continue
                store.submit(a.id, u, Judgement.from_seven_point(a.pair.pair_id, u, 1, a.shown_order))
                done[u] += 1
        for u, n in done.items():
            out.put((u, n))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put(("error", repr(e)))
    finally:
        store.close()


def test_several_processes_claim_and_submit_without_loss_or_duplicates(db_url, make_pairs, order):
    store = Store.open(db_url)
    n_pairs, overlap = 60, 4
    groups = [[f"p{p}u{i}" for i in range(2)] for p in range(4)]  # 4 processes × 2 annotators
    store.create_project("p", overlap=overlap)
    _import(store, "p", make_pairs(n_pairs), order)
    for g in groups:
        for u in g:
            store.add_user(u)
    ctx = multiprocessing.get_context("fork")  # the worker lives in this test file
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(db_url, g, out)) for g in groups]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in range(sum(len(g) for g in groups))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert not [r for r in results if r[0] == "error"], results
    _check_invariants(store, "p", n_pairs, overlap, dict(results))
    if order == "prioritised":
        _served_front_first(store, "p", 8)
    store.close()


def test_claimers_right_after_expiry_are_never_told_nothing_is_left(db_url, make_pairs, clock, order):
    """160 leases run out at once; 32 annotators (on two stores, as two processes) claim at the
    same moment. Every one of them gets a pair, and together they finish all 160: nobody is told
    "nothing left" while freed pairs sit unclaimed. Three rounds, each a fresh race."""
    stores = [Store.open(db_url, clock=clock), Store.open(db_url, clock=clock)]
    n_pairs, rounds = 160, 3 if order == "shuffle" else 2
    holders = [f"h{i:03d}" for i in range(n_pairs)]
    claimers = [f"c{i:02d}" for i in range(32)]
    bulk_users(stores[0], holders + claimers)
    for r in range(rounds):
        project = f"p{r}"
        stores[0].create_project(project, overlap=1)
        _import(stores[0], project, make_pairs(n_pairs), order)
        held = [stores[0].claim(project, h, lease_seconds=60) for h in holders]
        assert all(held)
        clock.advance(61)  # every lease has run out; nobody has reaped them yet
        first = claim_together_then_finish(
            stores,
            project,
            claimers,
            lambda a, user: Judgement.from_seven_point(a.pair.pair_id, user, 1, a.shown_order),
        )
        told_nothing = [u for u, a in first.items() if a is None]
        assert not told_nothing, f"round {r}: {len(told_nothing)} of 32 told nothing is left"
        pid = stores[0].get_project(project).id
        with stores[0].engine.connect() as c:
            done, held_now = c.execute(
                select(func.sum(PairRow.done), func.sum(PairRow.held)).where(PairRow.project_id == pid)
            ).one()
        assert (done, held_now) == (n_pairs, 0), f"round {r}: freed pairs left unclaimed"
        js = stores[0].judgements(project)  # each freed pair taken once, by the claimers
        assert len({j.pair_id for j in js}) == len(js) == n_pairs and {j.annotator for j in js} <= set(claimers)
    for s in stores:
        s.close()


def test_two_simultaneous_claims_by_one_user_get_the_same_pair(db_url, make_pairs, order):
    """Two tabs of one annotator claim at the same instant: one claim, the same pair for both."""
    stores = [Store.open(db_url), Store.open(db_url)]
    stores[0].create_project("p", overlap=1)
    _import(stores[0], "p", make_pairs(40), order)
    stores[0].add_user("lan")
    for _ in range(10):
        got = together(lambda i: stores[i].claim("p", "lan"), [(0,), (1,)])
        a, b = got
        assert a is not None and b is not None and a.id == b.id and a.pair.pair_id == b.pair.pair_id
        stores[0].submit(a.id, "lan", Judgement.from_seven_point(a.pair.pair_id, "lan", 2, a.shown_order))
    with stores[0].engine.connect() as c:
        assert c.execute(select(func.count()).select_from(AssignmentRow)).scalar_one() == 10
    for s in stores:
        s.close()
