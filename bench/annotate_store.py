"""Annotation store under load: 100,000 pairs, 32 concurrent annotators claiming and submitting.

Prints judgements per second, p50/p95/p99 claim+submit latency and a check that no judgement was
lost or recorded twice, on SQLite and (when a server can be started) PostgreSQL. The baseline in
this script is one annotator working alone (a 5,000-pair project of its own in the same database):
the ratios say what 32 at once cost each of them and how much the store's throughput scales.

Two loads, because they answer different questions:
- saturated: every annotator claims the next pair the moment they submit (no reading time), the
  worst case and the throughput ceiling;
- paced: each annotator spends a random 0.5–1.5 × `--think` seconds per pair, as people do (and
  once more with `--fast-think`, an offered load above the 500/s target), so latency is
  measured at a given load rather than at a queue the bench itself keeps full.

    .venv/bin/python bench/annotate_store.py                       # both backends, 100k pairs
    .venv/bin/python bench/annotate_store.py --backend sqlite --pairs 20000 --seconds 10
    .venv/bin/python bench/annotate_store.py --pg-url postgresql+psycopg://user@host/db
    .venv/bin/python bench/annotate_store.py --only pool --backend postgresql   # just the pool
    .venv/bin/python bench/annotate_store.py --only priority --backend sqlite   # ranked vs shuffled queue
    .venv/bin/python bench/annotate_store.py --only claim --backend both        # one claim's cost, call by call
    .venv/bin/python bench/annotate_store.py --only ranking --pairs 100000      # storing scores, ranking

The pool section (`--only pool`): the same saturated load with the connection pool (the default,
`--db-pool`/`?pool=N`) and without it (`pool=0`: a new connection per transaction), alternated
in one run, each several times; it prints connections opened and the ratio pooled ÷ unpooled.

The priority section (`--only priority`): the same saturated load on a project whose queue is
ranked by planted priorities (`Store.set_priorities`: the claim walks the ranked queue, as after
`prefkit annotate prioritise`) and on one served in the seeded shuffle, alternated, each several
times; it prints the ratio ranked ÷ shuffled for throughput, p95 claim+submit latency and the
open-pair count (`Store.progress`).

The claim section (`--only claim`): one annotator's claim + submit, and the open-pair count,
alternated call by call between three queues of `--priority-pairs` pairs: the seeded shuffle
served by the claim without its ranked walk (the claim as it was before prioritised queues, the
baseline), the same served by today's claim (which first looks for a ranked pair), and a queue
ranked by planted priorities. The machine's load drifts over all three alike; it prints medians
and each one's ratio to the baseline.

The ranking section (`--only ranking`): how long `prefkit annotate prioritise` spends in the store
for `--pairs` pairs, model time aside: listing the pairs to score, recording scores in chunks of
256, and the ranking (one transaction: on SQLite claims wait for it), twice (the second re-ranks).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event, func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # dev/ (the throwaway PostgreSQL server) is not installed with prefkit

from dev.pgserver import NoPostgres, throwaway_postgres  # noqa: E402
from prefkit.annotate.store import Store, with_pool  # noqa: E402
from prefkit.annotate.tables import AssignmentRow, JudgementRow, PairRow  # noqa: E402
from prefkit.data.schema import Judgement, Pair, Prompt, Response  # noqa: E402

TARGET_P95_MS = 20.0
TARGET_RATE = 500.0
SOLO_PAIRS = 5_000


@dataclass
class Run:
    label: str
    annotators: int
    seconds: float
    latencies_ms: list[float]
    errors: list[str]

    @property
    def judgements(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.judgements / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    def line(self) -> str:
        return (
            f"  {self.label:<26} {self.annotators:>3} annotators  {self.judgements:>6} judgements  "
            f"{self.rate:8.1f}/s  p50 {self.pct(0.5):7.2f} ms  p95 {self.pct(0.95):7.2f} ms  "
            f"p99 {self.pct(0.99):7.2f} ms  errors {len(self.errors)}"
        )


def make_pairs(n: int) -> Iterator[Pair]:
    words = [
        "trả",
        "lời",
        "câu",
        "hỏi",
        "về",
        "lịch",
        "sử",
        "văn",
        "hoá",
        "khoa",
        "học",
        "toán",
        "học",
        "lập",
        "trình",
        "nấu",
        "ăn",
        "du",
        "lịch",
    ]
    rng = random.Random(0)
    for i in range(n):
        body = " ".join(rng.choices(words, k=60))
        yield Pair(
            Prompt(f"Câu hỏi {i}: {' '.join(rng.choices(words, k=12))}?", source="bench"),
            Response(f"A{i}: {body}", model="bench-a", temperature=0.7, seed=i, finish_reason="stop", n_tokens=120),
            Response(
                f"B{i}: {body[::-1]}", model="bench-b", temperature=1.0, seed=i, finish_reason="stop", n_tokens=118
            ),
        )


def annotate(store: Store, project: str, users: list[str], label: str, seconds: float, think: float) -> Run:
    """Each user in its own thread: claim, (think), submit, until `seconds` have passed."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(users) + 1)
    stop_at = [0.0]

    def work(user: str) -> None:
        rng = random.Random(user)
        mine: list[float] = []
        barrier.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                a = store.claim(project, user)
                if a is None:
                    break
                t_claim = time.perf_counter() - t0
                if think:
                    time.sleep(think * rng.uniform(0.5, 1.5))
                point = rng.choice((-3, -2, -1, 0, 1, 2, 3))
                t1 = time.perf_counter()
                store.submit(a.id, user, Judgement.from_seven_point(a.pair.pair_id, user, point, a.shown_order))
                mine.append((t_claim + time.perf_counter() - t1) * 1000)
        except Exception as e:  # counted and printed: the bench reports failures instead of dying
            errors.append(f"{user}: {e!r}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t_start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return Run(label, len(users), time.perf_counter() - t_start, latencies, errors)


def check(store: Store, project: str, submitted: int) -> str:
    """Zero lost, zero duplicated, counters equal to the rows."""
    pid = store.get_project(project).id
    with store.engine.connect() as c:
        n = c.execute(select(func.count()).select_from(JudgementRow).where(JudgementRow.project_id == pid)).scalar_one()
        dup = c.execute(
            select(func.count()).select_from(
                select(JudgementRow.pair_row_id, JudgementRow.user_id)
                .where(JudgementRow.project_id == pid)
                .group_by(JudgementRow.pair_row_id, JudgementRow.user_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        done = c.execute(select(func.coalesce(func.sum(PairRow.done), 0)).where(PairRow.project_id == pid)).scalar_one()
        over = c.execute(
            select(func.count()).select_from(PairRow).where(PairRow.project_id == pid, PairRow.done > PairRow.required)
        ).scalar_one()
        active = c.execute(
            select(func.count())
            .select_from(AssignmentRow)
            .where(AssignmentRow.project_id == pid, AssignmentRow.status == "active")
        ).scalar_one()
        held = c.execute(select(func.coalesce(func.sum(PairRow.held), 0)).where(PairRow.project_id == pid)).scalar_one()
    lost = submitted - n
    ok = lost == 0 and dup == 0 and done == n and over == 0 and held == active
    return (
        f"  check: {submitted} submitted, {n} stored, lost {lost}, duplicated {dup}, pairs over overlap {over}, "
        f"counters {'match' if done == n and held == active else 'DIFFER'} → {'OK' if ok else 'FAILED'}"
    )


def bench(
    url: str, name: str, n_pairs: int, n_annotators: int, seconds: float, think: float, fast_think: float
) -> None:
    print(f"\n== {name}: {n_pairs:,} pairs ==")
    store = Store.open(url)
    store.create_project("bench", overlap=2, calibration=0.05)
    t0 = time.perf_counter()
    result = store.import_pairs("bench", make_pairs(n_pairs))
    t_import = time.perf_counter() - t0
    print(f"  import: {result.added:,} pairs in {t_import:.1f} s ({result.added / t_import:,.0f} pairs/s)")
    t0 = time.perf_counter()
    again = store.import_pairs("bench", make_pairs(n_pairs))
    print(f"  re-import: added {again.added}, skipped {again.skipped:,} in {time.perf_counter() - t0:.1f} s")
    users = [f"ann{i:02d}" for i in range(n_annotators)]
    for u in ["solo", *users]:
        store.add_user(u)
    # The baseline annotator works alone on a project of its own (overlap 1, same pairs table),
    # so nobody's backlog but its own is in its way.
    store.create_project("solo", overlap=1)
    store.import_pairs("solo", make_pairs(SOLO_PAIRS))

    runs = [
        annotate(store, "solo", ["solo"], "baseline: 1, saturated", seconds, 0.0),
        annotate(store, "bench", users, f"{n_annotators}, saturated", seconds, 0.0),
        annotate(store, "bench", users, f"{n_annotators}, paced ({think:g} s/pair)", seconds * 2, think),
        annotate(store, "bench", users, f"{n_annotators}, paced ({fast_think:g} s/pair)", seconds * 2, fast_think),
    ]
    for r in runs:
        print(r.line())
        for e in r.errors[:3]:
            print(f"    error: {e}")
    base, sat, paced, fast = runs
    print(
        f"  ratio vs baseline: throughput ×{sat.rate / base.rate:.2f} (saturated); p95 latency "
        f"×{sat.pct(0.95) / base.pct(0.95):.1f} (saturated), ×{paced.pct(0.95) / base.pct(0.95):.1f} "
        f"(paced {think:g} s), ×{fast.pct(0.95) / base.pct(0.95):.1f} (paced {fast_think:g} s)"
    )
    print(
        f"  targets (≤1 meets): {TARGET_RATE:.0f}/s ÷ rate → saturated ×{TARGET_RATE / sat.rate:.2f}, "
        f"paced {fast_think:g} s ×{TARGET_RATE / fast.rate:.2f}; "
        f"p95 ÷ {TARGET_P95_MS:.0f} ms → saturated ×{sat.pct(0.95) / TARGET_P95_MS:.2f}, "
        f"paced {think:g} s ×{paced.pct(0.95) / TARGET_P95_MS:.2f}, "
        f"paced {fast_think:g} s ×{fast.pct(0.95) / TARGET_P95_MS:.2f}"
    )
    print(check(store, "bench", sum(r.judgements for r in runs[1:])))
    print(check(store, "solo", base.judgements))
    store.close()


def pooled(runs: list[Run]) -> tuple[float, float]:
    """Judgements per second and p95 latency over several runs taken together."""
    judged = sum(r.judgements for r in runs)
    rate = judged / sum(r.seconds for r in runs)
    p95 = sorted(x for r in runs for x in r.latencies_ms)[int(0.95 * judged)] if judged else float("nan")
    return rate, p95


def pool_effect(url: str, name: str, n_annotators: int, seconds: float, rounds: int, pool: int) -> None:
    """Saturated claim+submit by `n_annotators`, with the store's pool of `pool` connections and
    without a pool (pool=0), alternated `rounds` times each in this one process: judgements per
    second, p95 latency and server connections opened per run, and the pooled ÷ unpooled ratios."""
    print(f"\n== {name}: connection pool ({n_annotators} annotators, {rounds} × {seconds:g} s each way) ==")
    setup = Store.open(url)
    users = [f"pool{i:02d}" for i in range(n_annotators)]
    for u in users:
        setup.add_user(u)
    setup.close()
    results: dict[int, list[tuple[Run, int]]] = {pool: [], 0: []}
    for r in range(rounds):
        for size in (0, pool) if r % 2 == 0 else (pool, 0):  # alternate which goes first
            project = f"pool-{size}-{r}"
            store = Store.open(with_pool(url, size))
            store.create_project(project, overlap=2)
            store.import_pairs(project, make_pairs(20_000))
            opened = [0]

            @event.listens_for(store.engine, "connect")
            def _count(*_args: object, opened: list[int] = opened) -> None:  # this run's counter
                opened[0] += 1

            run = annotate(store, project, users, f"pool={size}", seconds, 0.0)
            store.close()
            results[size].append((run, opened[0]))
            print(run.line() + f"  connections opened {opened[0]}")

    def total(size: int) -> tuple[float, float, float]:
        runs = [r for r, _ in results[size]]
        rate, p95 = pooled(runs)
        return rate, p95, sum(c for _, c in results[size]) / max(sum(r.judgements for r in runs), 1)

    (rate_p, p95_p, conn_p), (rate_u, p95_u, conn_u) = total(pool), total(0)
    print(
        f"  pooled (pool={pool}) ÷ unpooled: throughput ×{rate_p / rate_u:.2f}, p95 latency ×{p95_p / p95_u:.2f}, "
        f"connections opened per judgement {conn_p:.3f} vs {conn_u:.3f}"
    )


def priority_effect(url: str, name: str, n_annotators: int, seconds: float, rounds: int, n_pairs: int) -> None:
    """Saturated claim+submit by `n_annotators` on a queue ranked by planted priorities and on the
    seeded shuffle, alternated `rounds` times each (a fresh project each run): judgements per
    second, p95 latency, the open-pair count's time, and the ranked ÷ shuffled ratios."""
    print(f"\n== {name}: ranked vs shuffled queue ({n_annotators} annotators, {rounds} × {seconds:g} s each way) ==")
    store = Store.open(url)
    users = [f"prio{i:02d}" for i in range(n_annotators)]
    for u in users:
        store.add_user(u)
    results: dict[str, list[tuple[Run, list[float]]]] = {"ranked": [], "shuffled": []}
    for r in range(rounds):
        for kind in ("shuffled", "ranked") if r % 2 == 0 else ("ranked", "shuffled"):  # alternate which goes first
            project = f"prio-{kind}-{r}"
            store.create_project(project, overlap=2, calibration=0.05)
            pairs = list(make_pairs(n_pairs))
            store.import_pairs(project, pairs)
            if kind == "ranked":
                rng = random.Random(r)
                t0 = time.perf_counter()
                store.set_priorities(project, {p.pair_id: rng.random() for p in pairs})
                print(f"  ranking {n_pairs:,} pairs (scores stored, queue ranked): {time.perf_counter() - t0:.1f} s")
            run = annotate(store, project, users, kind, seconds, 0.0)
            counts = []
            for u in users[:8]:  # the open-pair count, as the Label page asks for it
                t0 = time.perf_counter()
                store.progress(project, u, pairs=n_pairs)
                counts.append((time.perf_counter() - t0) * 1000)
            results[kind].append((run, counts))
            print(run.line() + f"  open-pair count median {statistics.median(counts):.2f} ms")

    def total(kind: str) -> tuple[float, float, float]:
        rate, p95 = pooled([r for r, _ in results[kind]])
        return rate, p95, statistics.median(x for _, c in results[kind] for x in c)

    (rate_r, p95_r, count_r), (rate_s, p95_s, count_s) = total("ranked"), total("shuffled")
    print(
        f"  ranked ÷ shuffled: throughput ×{rate_r / rate_s:.2f}, p95 latency ×{p95_r / p95_s:.2f}, "
        f"open-pair count ×{count_r / count_s:.2f}"
    )
    store.close()


def claim_cost(url: str, name: str, n_pairs: int, calls: int) -> None:
    """Single-annotator claim + submit and `progress` latency, alternated call by call (module
    docstring, "claim section")."""
    print(f"\n== {name}: one claim's cost, {calls} calls each, alternated call by call ==")
    before = Store.open(url)  # the claim without the ranked walk: as before prioritised queues
    before._pick_ranked = lambda *args, **kwargs: None  # type: ignore[method-assign]
    now = Store.open(url)
    variants = {"before (no ranked walk)": before, "shuffled": now, "ranked": now}
    pairs = list(make_pairs(n_pairs))
    for i in range(len(variants)):
        now.create_project(f"claim-{i}", overlap=1, calibration=0.05)
        now.import_pairs(f"claim-{i}", pairs)
        now.add_user(f"claimer{i}")
    rng = random.Random(0)
    now.set_priorities("claim-2", {p.pair_id: rng.random() for p in pairs})
    times: dict[str, list[float]] = {k: [] for k in variants}
    counts: dict[str, list[float]] = {k: [] for k in variants}
    order = list(enumerate(variants.items()))
    for c in range(calls):
        for i, (label, store) in order[c % 3 :] + order[: c % 3]:  # rotate which goes first
            user, project = f"claimer{i}", f"claim-{i}"
            t0 = time.perf_counter()
            a = store.claim(project, user)
            assert a is not None, "the bench ran out of pairs: use more --priority-pairs"
            store.submit(a.id, user, Judgement.from_seven_point(a.pair.pair_id, user, 1, a.shown_order))
            t1 = time.perf_counter()
            store.progress(project, user, pairs=n_pairs)
            t2 = time.perf_counter()
            times[label].append((t1 - t0) * 1000)
            counts[label].append((t2 - t1) * 1000)
    base = "before (no ranked walk)"
    for label in variants:
        xs, ys = sorted(times[label]), sorted(counts[label])
        p95 = xs[int(0.95 * len(xs))]
        print(
            f"  {label:<24} claim+submit median {statistics.median(xs):6.2f} ms  p95 {p95:6.2f} ms  "
            f"(×{statistics.median(xs) / statistics.median(times[base]):.2f} median, "
            f"×{p95 / sorted(times[base])[int(0.95 * len(xs))]:.2f} p95)  open-pair count median "
            f"{statistics.median(ys):6.2f} ms (×{statistics.median(ys) / statistics.median(counts[base]):.2f})"
        )
    before.close()
    now.close()


def ranking_cost(url: str, name: str, n_pairs: int) -> None:
    """The store's part of a scoring run on `n_pairs` pairs, twice (module docstring)."""
    print(f"\n== {name}: storing scores and ranking {n_pairs:,} pairs ==")
    store = Store.open(url)
    store.create_project("rank", overlap=2, calibration=0.05)
    store.import_pairs("rank", make_pairs(n_pairs))
    rng = random.Random(0)
    for k in range(2):
        t0 = time.perf_counter()
        run = store.start_priority_run("rank", [{"path": "bench", "weights": None, "sha256": str(k)}], "uncertainty")
        todo = store.pairs_to_score(run.id)
        t1 = time.perf_counter()
        for i in range(0, len(todo), 256):
            store.record_scores(run.id, [(p.pair_id, rng.random(), [0.5]) for p in todo[i : i + 256]])
        t2 = time.perf_counter()
        store.finish_priority_run(run.id)
        t3 = time.perf_counter()
        print(
            f"  run {k + 1}: pairs to score {t1 - t0:.1f} s, scores recorded (chunks of 256) {t2 - t1:.1f} s, "
            f"ranking (one transaction) {t3 - t2:.1f} s"
        )
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--annotators", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each saturated run (paced: twice this)")
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds an annotator spends per pair (paced run)")
    ap.add_argument(
        "--fast-think",
        type=float,
        default=0.05,
        help="the same for a second paced run near the 500/s target (32 × 1/0.05 s = 640/s offered)",
    )
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--pg-url", help="use this PostgreSQL database instead of starting a throwaway server")
    ap.add_argument(
        "--only",
        choices=["load", "pool", "priority", "claim", "ranking"],
        help="run only the load bench, the pool, the priority or the claim-cost comparison, or the ranking's time",
    )
    ap.add_argument("--claim-calls", type=int, default=2000, help="claims per queue in the claim-cost comparison")
    ap.add_argument("--pool", type=int, default=16, help="pool size for the pooled side of the pool comparison")
    ap.add_argument("--pool-rounds", type=int, default=3, help="runs each way in the pool comparison (alternated)")
    ap.add_argument("--pool-seconds", type=float, default=4.0, help="length of each pool-comparison run")
    ap.add_argument("--priority-rounds", type=int, default=3, help="runs each way in the priority comparison")
    ap.add_argument("--priority-pairs", type=int, default=20_000, help="pairs per project in the priority comparison")
    args = ap.parse_args()
    run = dict(
        n_pairs=args.pairs,
        n_annotators=args.annotators,
        seconds=args.seconds,
        think=args.think,
        fast_think=args.fast_think,
    )

    def both(url: str, name: str, fresh_url: str | None = None) -> None:
        if args.only in (None, "load"):
            bench(url, name, **run)
        if args.only in (None, "pool"):
            pool_effect(fresh_url or url, name, args.annotators, args.pool_seconds, args.pool_rounds, args.pool)
        if args.only == "priority":
            priority_effect(url, name, args.annotators, args.pool_seconds, args.priority_rounds, args.priority_pairs)
        if args.only == "claim":
            claim_cost(url, name, args.priority_pairs, args.claim_calls)
        if args.only == "ranking":
            ranking_cost(url, name, args.pairs)

    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as d:
            both(f"sqlite:///{d}/bench.db", "SQLite (WAL)", f"sqlite:///{d}/pool.db")
    if args.backend in ("postgresql", "both"):
        if args.pg_url:
            both(args.pg_url, "PostgreSQL")
            return
        try:
            with throwaway_postgres() as server:
                both(server.new_database(), "PostgreSQL (throwaway server, fsync off)", server.new_database())
        except NoPostgres as e:
            print(f"\n== PostgreSQL: skipped: {e}")


if __name__ == "__main__":
    main()
