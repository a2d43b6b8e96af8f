"""The queue's guarantees with gold pairs served (`tests/annotate/test_store_concurrency.py`, again,
on a project with gold pairs, a qualification and a gold rate), on SQLite and PostgreSQL: many
threads and processes finish the queue with every ordinary pair judged exactly `overlap` times,
nobody judging a pair twice, every gold answer recorded once, counters matching the rows;
claimers right after leases ran out are never told nothing is left; two tabs of one annotator
claiming at once get one claim."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from sqlalchemy import func, select

from dev.store_setup import bulk_users, claim_together_then_finish, together
from prefkit.annotate.gold import GoldAnswer, GoldItem
from prefkit.annotate.store import Store
from prefkit.annotate.tables import AssignmentRow, GoldAnswerRow, GoldPairRow, JudgementRow, PairRow
from prefkit.data.schema import Judgement, Strength
from prefkit.data.sources import Location

QUALIFY = 2


def _setup(store: Store, make_pairs, n_pairs: int, overlap: int, n_gold: int, users: list[str]) -> set[str]:
    gold = make_pairs(n_gold, start=10_000)
    items = [GoldItem(g, GoldAnswer("a", Strength.BETTER), Location("gold.jsonl", i + 1)) for i, g in enumerate(gold)]
    store.import_gold("p", items, pairs=make_pairs(n_pairs), overlap=overlap)
    # Everyone qualifies (any answer passes), then about one pair in four is gold.
    store.set_quality("p", qualify=QUALIFY, qualify_accuracy=0.0, gold_rate=0.25)
    bulk_users(store, users)
    return {g.pair_id for g in gold}


def _work(store: Store, user: str, gold: set[str]) -> list[str]:
    """Claim and submit until nothing is left (every third pair submitted twice, a double
    click). Returns the pair ids this annotator judged, in order."""
    done: list[str] = []
    while (a := store.claim("p", user)) is not None:
        j = Judgement.from_choice(a.pair.pair_id, user, (hash((a.pair.pair_id, user)) % 9) - 4, a.shown_order)
        store.submit(a.id, user, j)
        if len(done) % 3 == 0:
            assert store.submit(a.id, user, j).pair_id == a.pair.pair_id
        done.append(a.pair.pair_id)
    return done


def _check(store: Store, n_pairs: int, overlap: int, gold: set[str], done: dict[str, list[str]]) -> None:
    js = store.judgements("p")
    ordinary = [j for j in js if j.pair_id not in gold]
    assert len(ordinary) == n_pairs * overlap  # nothing lost, nothing extra: overlap holds
    assert set(Counter(j.pair_id for j in ordinary).values()) == {overlap}
    assert len({(j.pair_id, j.annotator) for j in js}) == len(js)  # nobody judged a pair twice
    assert Counter(j.annotator for j in js) == Counter({u: len(d) for u, d in done.items() if d})
    for user, ids in done.items():
        if ids:  # the qualification came first: gold pairs only
            assert all(pid in gold for pid in ids[:QUALIFY]), (user, ids[:QUALIFY])
    gold_js = [j for j in js if j.pair_id in gold]
    with store.engine.connect() as c:
        rows = c.execute(select(PairRow.pair_id, PairRow.done, PairRow.held, PairRow.complete, PairRow.required)).all()
        for pair_id, n, held, complete, required in rows:
            assert held == 0 and complete, pair_id
            assert n == (Counter(j.pair_id for j in gold_js)[pair_id] if pair_id in gold else required), pair_id
        assert c.execute(select(func.count()).select_from(JudgementRow)).scalar_one() == len(js)
        assert c.execute(select(func.count()).select_from(GoldAnswerRow)).scalar_one() == len(gold_js)
        assert c.execute(select(func.count()).select_from(GoldPairRow)).scalar_one() == len(gold)
        active = select(func.count()).select_from(AssignmentRow).where(AssignmentRow.status == "active")
        assert c.execute(active).scalar_one() == 0


def test_threads_with_gold_keep_overlap_and_record_once(db_url, make_pairs):
    store = Store.open(db_url)
    users = [f"ann{i:02d}" for i in range(16)]
    gold = _setup(store, make_pairs, 60, 3, 10, users)
    done = dict(zip(users, together(lambda u: _work(store, u, gold), [(u,) for u in users]), strict=True))
    _check(store, 60, 3, gold, done)
    assert sum(1 for ids in done.values() for pid in ids if pid in gold) > QUALIFY * len(users)  # the rate served some
    store.close()


def _process_worker(url: str, users: list[str], gold: set[str], out: multiprocessing.Queue) -> None:
    store = Store.open(url)
    try:
        for u in users:
            out.put((u, _work(store, u, gold)))
    except BaseException as e:  # reported to the parent, which fails the test
        out.put(("error", repr(e)))
    finally:
        store.close()


def test_processes_with_gold_keep_overlap_and_record_once(db_url, make_pairs):
    store = Store.open(db_url)
    groups = [[f"p{p}u{i}" for i in range(2)] for p in range(3)]
    gold = _setup(store, make_pairs, 30, 3, 8, [u for g in groups for u in g])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(db_url, g, gold, out)) for g in groups]
    for p in procs:
        p.start()
    results = [out.get(timeout=240) for _ in range(sum(len(g) for g in groups))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert not [r for r in results if r[0] == "error"], results
    _check(store, 30, 3, gold, dict(results))
    store.close()


def test_claimers_right_after_expiry_with_gold_are_never_told_nothing_is_left(db_url, make_pairs, clock):
    """48 ordinary leases run out at once; 16 annotators on two stores, each due a gold pair now
    and then, claim at the same moment: every one gets a pair, and together they finish all 48."""
    stores = [Store.open(db_url, clock=clock), Store.open(db_url, clock=clock)]
    holders, claimers = [f"h{i:02d}" for i in range(48)], [f"c{i:02d}" for i in range(16)]
    gold = _setup(stores[0], make_pairs, 48, 1, 6, holders + claimers)
    stores[0].set_quality("p", qualify=0, gold_rate=0.0)  # the holders hold ordinary pairs
    assert all(stores[0].claim("p", h, lease_seconds=60).pair.pair_id not in gold for h in holders)
    stores[0].set_quality("p", gold_rate=0.3)
    clock.advance(61)
    first = claim_together_then_finish(
        stores, "p", claimers, lambda a, user: Judgement.from_choice(a.pair.pair_id, user, 1, a.shown_order)
    )
    assert not [u for u, a in first.items() if a is None]
    js = stores[0].judgements("p")
    ordinary = [j for j in js if j.pair_id not in gold]
    assert len(ordinary) == len({j.pair_id for j in ordinary}) == 48 and {j.annotator for j in js} <= set(claimers)
    assert any(j.pair_id in gold for j in js)
    with stores[0].engine.connect() as c:
        assert c.execute(select(func.sum(PairRow.held))).scalar_one() == 0
    for s in stores:
        s.close()


def test_two_tabs_claiming_at_once_get_one_claim_gold_or_not(db_url, make_pairs):
    stores = [Store.open(db_url), Store.open(db_url)]
    gold = _setup(stores[0], make_pairs, 20, 1, 4, ["lan"])
    stores[0].set_quality("p", gold_rate=0.5)
    kinds = set()
    for _ in range(8):
        got = together(lambda i: stores[i].claim("p", "lan"), [(0,), (1,)])
        a, b = got
        assert a is not None and b is not None and a.id == b.id
        kinds.add(a.pair.pair_id in gold)
        stores[0].submit(a.id, "lan", Judgement.from_choice(a.pair.pair_id, "lan", 2, a.shown_order))
    assert kinds == {True, False}
    with stores[0].engine.connect() as c:
        assert c.execute(select(func.count()).select_from(AssignmentRow)).scalar_one() == 8
    for s in stores:
        s.close()
