"""Aggregation rules on simulated annotators whose truth is known (`dev/annotator_sim.py`): how
many pairs each rule recovers (exports with the true better response as `chosen`; a pair left
out counts as not recovered), in brackets the share right among the pairs it exported, and
whether the `ability` rule's estimated reliabilities rank the annotators by kind (good >
careless > always-A > adversarial).

    .venv/bin/python bench/ability_sim.py                       # 800 pairs, overlap 2 and 3, seeds 0-4
    .venv/bin/python bench/ability_sim.py --pairs 2000 --seeds 10 --overlaps 2,3,4
    .venv/bin/python bench/ability_sim.py --large       # eight annotators, fewer judgements each

Prints one line per (overlap, seed) and the mean per overlap; no timing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dev.annotator_sim import DEFAULT_POOL, LARGE_POOL, ranks_right, recovery, right_rows, simulate  # noqa: E402
from prefkit.data.aggregate import aggregate  # noqa: E402

RULES = ("majority", "mean", "ability")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=800)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--overlaps", default="2,3")
    ap.add_argument(
        "--large", action="store_true", help="eight annotators (3 good, 2 careless, 2 always-A, 1 adversarial)"
    )
    args = ap.parse_args()
    team = LARGE_POOL if args.large else DEFAULT_POOL
    pool = ", ".join(f"{name} ({kind})" for name, kind in team)
    print(f"{args.pairs} pairs per run; annotators: {pool}")
    print(f"{'overlap':>7} {'seed':>4} " + " ".join(f"{r:>16}" for r in RULES) + "  reliability ranks the kinds")
    for overlap in (int(o) for o in args.overlaps.split(",")):
        totals = {r: [0.0, 0.0] for r in RULES}
        right = 0
        for seed in range(args.seeds):
            sim = simulate(args.pairs, overlap, seed, team)
            figures = {}
            for rule in RULES:
                rows, report = aggregate(sim.pairs, sim.judgements, rule=rule)
                figures[rule] = (recovery(rows, sim), right_rows(rows, sim) / max(len(rows), 1))
                totals[rule] = [t + f for t, f in zip(totals[rule], figures[rule], strict=True)]
                if rule == "ability":
                    assert report.reliability is not None
                    ranked = ranks_right(report.reliability, sim.kinds)
                    right += ranked
            line = " ".join(f"{figures[r][0]:>9.3f} ({figures[r][1]:.3f})" for r in RULES)
            print(f"{overlap:>7} {seed:>4} {line}  {'yes' if ranked else 'NO'}")
        means = " ".join(f"{totals[r][0] / args.seeds:>9.3f} ({totals[r][1] / args.seeds:.3f})" for r in RULES)
        print(f"{overlap:>7} {'mean':>4} {means}  {right}/{args.seeds}")


if __name__ == "__main__":
    main()
