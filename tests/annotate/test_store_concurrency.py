"""Many annotators at once: 32 threads, and several processes, claim and submit until the queue
is empty. Nothing is lost, nothing is recorded twice, nobody judges a pair twice, and the
counters the queue relies on match the rows."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

from sqlalchemy import func, select

from annotate.models import AssignmentRow, JudgementRow, PairRow
from annotate.store import Store
from data.schema import Judgement


def _work(store: Store, project: str, user: str, barrier: threading.Barrier | None = None) -> int:
    """Claim and submit until nothing is left; every third pair is submitted twice (a double
    click). Returns how many judgements this annotator made."""
    if barrier is not None:
        barrier.wait()
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
        assert c.execute(
            select(func.count()).select_from(AssignmentRow).where(AssignmentRow.status == "active")
        ).scalar_one() == 0


def test_32_threads_claim_and_submit_without_loss_or_duplicates(db_url, make_pairs):
    store = Store.open(db_url)
    n_pairs, overlap, users = 150, 3, [f"ann{i:02d}" for i in range(32)]
    store.create_project("p", overlap=overlap)
    store.import_pairs("p", make_pairs(n_pairs))
    for u in users:
        store.add_user(u)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def run(u: str) -> None:
        try:
            counts[u] = _work(store, "p", u, barrier)
        except BaseException as e:  # surfaced below: a thread's failure must fail the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check_invariants(store, "p", n_pairs, overlap, counts)
    store.close()


def _process_worker(url: str, users: list[str], out: "multiprocessing.Queue[tuple[str, int | str]]") -> None:
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


def test_several_processes_claim_and_submit_without_loss_or_duplicates(db_url, make_pairs):
    store = Store.open(db_url)
    n_pairs, overlap = 60, 4
    groups = [[f"p{p}u{i}" for i in range(2)] for p in range(4)]  # 4 processes × 2 annotators
    store.create_project("p", overlap=overlap)
    store.import_pairs("p", make_pairs(n_pairs))
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
    store.close()
