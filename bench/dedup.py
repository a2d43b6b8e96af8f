"""Benchmark: prefkit's MinHash dedup against a plain datasketch loop, on the same rows.

    .venv/bin/python bench/dedup.py                # all 45,000 rows of ../shared/data/vi_alpaca_prompts.jsonl
    .venv/bin/python bench/dedup.py --rows 10000   # both on the first 10,000 rows (plain loop is slow)
    .venv/bin/python bench/dedup.py --scale 23 --skip-plain   # prefkit alone on 1,035,000 rows
    .venv/bin/python bench/dedup.py --engine ray --rows 20000  # Ray Data engine next to local, same rows

With `--engine ray` the local engine and the Ray engine (a local Ray instance with --workers CPUs,
or the cluster at --address) run alternately on the same rows; Ray's start-up is timed once,
apart, and each engine's rate is printed with the ratio and whether their results are identical.

Both dedup on prompt+response with the same threshold, num_perm, normalisation and shingles
(`prefkit.data.shingles`, n chosen by prefkit from the median length). The plain loop is what one writes
from datasketch's documentation: one `MinHash` per row, `update` per shingle, then `MinHashLSH`
`query` (a row with a candidate whose estimated Jaccard reaches the threshold is a duplicate)
and `insert` of the rows kept. Reading the file and importing datasketch/scipy (about a second)
are not timed for either. Prints rows/s for each,
the ratio, how far the two agree on what to remove, and prefkit's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prefkit.data.dedup import _cpu_count, dedup_records  # noqa: E402
from prefkit.data.shingles import shingles  # noqa: E402

DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "vi_alpaca_prompts.jsonl"
KEY = ["prompt", "response"]


def plain_datasketch_loop(
    rows: list[dict], ngram: dict[str, int], threshold: float, num_perm: int, seed: int
) -> set[int]:
    """The rows a straightforward datasketch loop removes."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, MinHash] = {}
    removed = set()
    for i, row in enumerate(rows):
        m = MinHash(num_perm=num_perm, seed=seed)
        for f, field in enumerate(KEY):  # field-tagged, as prefkit keeps fields apart
            for s in shingles(row[field], ngram[field]):
                m.update(f"{f}:{s}".encode())
        if any(m.jaccard(kept[j]) >= threshold for j in lsh.query(m)):
            removed.add(i)
        else:
            lsh.insert(i, m)
            kept[i] = m
    return removed


def scaled(rows: list[dict], copies: int) -> list[dict]:
    """`copies` versions of every row; each copy after the first has its words shuffled, so the
    copies are new texts (not duplicates) of the same length and vocabulary."""
    rng = random.Random(0)
    out = list(rows)
    for _ in range(copies - 1):
        for r in rows:
            p, a = r["prompt"].split(), r["response"].split()
            rng.shuffle(p)
            rng.shuffle(a)
            out.append({"prompt": " ".join(p), "response": " ".join(a)})
    return out


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished worker, in MiB."""
    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers (load on a shared machine inflates wall
    time, much less CPU time)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--rows", type=int, default=0, help="rows for both runs (0: all)")
    ap.add_argument("--scale", type=int, default=1, help="prefkit on this many (shuffled) copies of the rows")
    ap.add_argument("--skip-plain", action="store_true", help="run prefkit only")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verify", default="exact", choices=["exact", "estimate"])
    ap.add_argument("--workers", type=int, default=0, help="prefkit worker processes (0: all cores)")
    ap.add_argument("--repeat", type=int, default=3, help="prefkit runs; the median is reported")
    ap.add_argument("--engine", default="local", choices=["local", "ray"], help="ray: also time the Ray engine")
    ap.add_argument("--address", default=None, help="--engine ray: a cluster to join (default: a local instance)")
    args = ap.parse_args()

    if not args.source.exists():
        print(f"SKIP: {args.source} is absent (the shared data set lives in ../shared/data)")
        return 0
    with args.source.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if args.rows:
        rows = rows[: args.rows]
    if args.scale > 1:
        rows = scaled(rows, args.scale)
    print(
        f"{len(rows):,} rows of {args.source.name}, key {'+'.join(KEY)}, threshold {args.threshold}, "
        f"num_perm {args.num_perm}; dedup uses {args.workers or _cpu_count()} of {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    import datasketch  # noqa: F401 -- imports (scipy's, mostly) are not what is measured
    import scipy.sparse.csgraph  # noqa: F401

    if args.engine == "ray":
        return ray_vs_local(rows, args)

    runs = []  # prefkit takes seconds, so a burst of load from other jobs skews one run: median of --repeat
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), cpu_seconds()
        kept, report = dedup_records(
            rows,
            KEY,
            threshold=args.threshold,
            num_perm=args.num_perm,
            seed=args.seed,
            verify=args.verify,
            workers=args.workers,
            progress=sys.stderr.isatty(),
        )
        runs.append((time.perf_counter() - t0, cpu_seconds() - c0))
    fast_s, fast_cpu = sorted(runs)[len(runs) // 2]
    fast_rate = len(rows) / fast_s
    rss, child_rss = peak_rss_mib()
    print(
        f"prefkit dedup:        {fast_s:8.2f} s  {fast_rate:10,.0f} rows/s  ({fast_cpu:.2f} CPU-s, all processes)  "
        f"removed {len(rows) - len(kept):,} "
        f"({report.exact_removed} exact, {report.near_removed} near; n-gram {report.ngram}, "
        f"bands {report.bands}x{report.rows_per_band}, verify {report.verify}); "
        f"runs: {', '.join(f'{w:.2f}' for w, _ in runs)} s"
    )
    print(
        f"prefkit peak memory:  {rss:8.0f} MiB main process (rows included), {child_rss:.0f} MiB largest worker "
        "(a forked worker's resident size counts the pages it shares with the main process)"
    )
    if args.skip_plain or args.scale > 1:
        return 0

    t0, c0 = time.perf_counter(), cpu_seconds()
    plain_removed = plain_datasketch_loop(rows, report.ngram, args.threshold, args.num_perm, args.seed)
    plain_s, plain_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    plain_rate = len(rows) / plain_s
    print(
        f"plain datasketch loop:{plain_s:8.2f} s  {plain_rate:10,.0f} rows/s  ({plain_cpu:.2f} CPU-s)  "
        f"removed {len(plain_removed):,}"
    )
    print(f"speed-up:             {fast_rate / plain_rate:8.1f}x wall-clock, {plain_cpu / fast_cpu:.1f}x in CPU time")

    ours = {r.row for r in report.removed}
    both = ours & plain_removed
    print(
        f"agreement: {len(both)} removed by both, {len(ours - plain_removed)} by prefkit only, "
        f"{len(plain_removed - ours)} by the plain loop only"
    )
    for label, rows_only in (("prefkit only", ours - plain_removed), ("plain loop only", plain_removed - ours)):
        for i in sorted(rows_only)[:3]:
            print(f"  {label}: row {i}: {rows[i]['prompt'][:70]!r}")
    return 0


CHUNK = 2_000


def ray_vs_local(rows: list[dict], args: argparse.Namespace) -> int:
    """Local and Ray engines alternately on the same rows (median of --repeat runs each)."""
    from prefkit.data.dedup_ray import RayEngine

    t0 = time.perf_counter()
    engine = RayEngine(address=args.address, num_cpus=args.workers or None)
    start_s = time.perf_counter() - t0
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    kw = dict(threshold=args.threshold, num_perm=args.num_perm, seed=args.seed, verify=args.verify)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    results = {}
    try:
        t0 = time.perf_counter()  # the first job starts the workers and ships the code: timed apart
        dedup_records(rows[:CHUNK], KEY, engine=engine, **kw)
        warm_s = time.perf_counter() - t0
        for _ in range(args.repeat):
            for name in ("local", "ray"):
                t0 = time.perf_counter()
                results[name] = dedup_records(
                    rows, KEY, workers=args.workers, engine=engine if name == "ray" else "local", **kw
                )
                times[name].append(time.perf_counter() - t0)
    finally:
        engine.close()
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    same = results["local"][0] == results["ray"][0] and results["local"][1].removed == results["ray"][1].removed
    print(
        f"ray start-up (not in the rates): {start_s:.1f} s, then {warm_s:.1f} s for a first job of {CHUNK} rows; "
        f"cluster CPUs: {cpus}"
    )
    for name in ("local", "ray"):
        print(
            f"{name:5s} engine: {med[name]:8.2f} s  {len(rows) / med[name]:10,.0f} rows/s  "
            f"runs: {', '.join(f'{t:.2f}' for t in times[name])} s"
        )
    print(f"ray / local rate: {med['local'] / med['ray']:.2f}x; identical kept rows and removals: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
