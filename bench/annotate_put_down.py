"""What the undo mark in the store costs each claim: the claim now looks for a pair the user put
down by an undo (`assignments.put_down_at`) before the walk. The baseline is the same store with
that look switched off (as before the mark), alternated with it in one run, on SQLite and (when a
server can be started) PostgreSQL.

One annotator per side claims and submits `--pairs` pairs of a fresh project per round (no other
load), the two sides' calls alternating one by one, so the figure is the per-claim cost of the
extra statement, not queueing or the machine's drift. Prints the median and p95 claim + submit
time of each side and the ratio with ÷ without per round.

    .venv/bin/python bench/annotate_put_down.py                     # both backends
    .venv/bin/python bench/annotate_put_down.py --backend sqlite --rounds 5 --pairs 1500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # dev/ (the throwaway PostgreSQL server) is not installed with prefkit

from dev.pgserver import NoPostgres, throwaway_postgres  # noqa: E402
from prefkit.annotate.store import Store  # noqa: E402
from prefkit.data.schema import Judgement, Pair, Prompt, Response  # noqa: E402


def _no_mark(self: Store, conn: Any, params: dict[str, Any]) -> None:
    """The claim as it was before the mark: no look for a put-down pair."""
    return None


def _claim_submit(store: Store, project: str, user: str) -> float | None:
    """One claim + submit in ms; None when the project is done."""
    t0 = time.perf_counter()
    a = store.claim(project, user)
    if a is None:
        return None
    store.submit(a.id, user, Judgement.from_choice(a.pair.pair_id, user, 2, a.shown_order))
    return (time.perf_counter() - t0) * 1000


def compare(url: str, label: str, rounds: int, pairs: int) -> None:
    """Each round: two fresh projects, one served by a store with the mark's look, one by a store
    without it; their claim + submit calls alternate one by one (who goes first swaps each time),
    so the machine's load drifts over both sides alike."""
    print(f"\n{label}: {pairs} claims + submits per side and round, alternated call by call")
    ratios = []
    with Store.open(url) as mark, Store.open(url) as base:
        base._pick_put_down = _no_mark.__get__(base)  # type: ignore[method-assign]
        for r in range(rounds):
            sides = {"base": (base, f"base{r}"), "mark": (mark, f"mark{r}")}
            for store, project in sides.values():
                store.create_project(project, overlap=1)
                store.import_pairs(
                    project,
                    [Pair(Prompt(f"{project} q{i}?"), Response(f"a{i}"), Response(f"b{i}")) for i in range(pairs)],
                )
                store.add_user(f"u-{project}")
            times: dict[str, list[float]] = {"base": [], "mark": []}
            for i in range(pairs):
                for side in ("base", "mark") if i % 2 == 0 else ("mark", "base"):
                    store, project = sides[side]
                    ms = _claim_submit(store, project, f"u-{project}")
                    if ms is not None:
                        times[side].append(ms)
            b_med, m_med = statistics.median(times["base"]), statistics.median(times["mark"])
            b_p95 = statistics.quantiles(times["base"], n=20)[-1]
            m_p95 = statistics.quantiles(times["mark"], n=20)[-1]
            ratios.append(m_med / b_med)
            print(
                f"  round {r + 1}: without the look median {b_med:.2f} ms p95 {b_p95:.2f} ms · "
                f"with it median {m_med:.2f} ms p95 {m_p95:.2f} ms · median ratio ×{m_med / b_med:.2f}"
            )
    spread = f"×{min(ratios):.2f}–{max(ratios):.2f}"
    print(f"  median ratio with ÷ without: {spread} (median over rounds ×{statistics.median(ratios):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="prefkit-bench-") as tmp:
            compare(f"sqlite:///{tmp}/store.db", "SQLite (WAL)", args.rounds, args.pairs)
    if args.backend in ("postgresql", "both"):
        try:
            with throwaway_postgres() as server:
                compare(server.new_database(), "PostgreSQL (throwaway server, fsync off)", args.rounds, args.pairs)
        except NoPostgres as e:
            print(f"\nPostgreSQL skipped: {e}")


if __name__ == "__main__":
    main()
