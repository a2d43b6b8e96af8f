"""What the claim's gold step costs: one annotator claims and submits on a SQLite store (a file in a
temporary folder), in three set-ups run alternately, each several times:

- `baseline`: the claim with its gold step switched off (the claim as it was before gold pairs);
- `no gold`: a project without gold pairs or a qualification (the step costs one query);
- `gold`: a project with 200 gold pairs served at a rate of 0.1, a pause configured (the step reads
  the annotator's gold answers on every claim).

    .venv/bin/python bench/gold_claim.py                 # 400 judgements per run, 5 rounds
    .venv/bin/python bench/gold_claim.py --judgements 1000 --rounds 9

Each set-up has a project of its own with enough pairs for all its runs (overlap 1).

Prints judgements per second (claim + submit) of each run, the median per set-up, and the ratios
to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dev.annotator_sim import simulate  # noqa: E402
from prefkit.annotate.gold import GoldAnswer, GoldItem  # noqa: E402
from prefkit.annotate.store import Store  # noqa: E402
from prefkit.annotate.store.gold import GoldStore  # noqa: E402
from prefkit.data.schema import Judgement, Strength  # noqa: E402
from prefkit.data.sources import Location  # noqa: E402


def _run(store: Store, project: str, user: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        a = store.claim(project, user)
        assert a is not None, "the project ran out of pairs"
        # response a, "better": right on every gold pair, so nobody is paused
        store.submit(
            a.id, user, Judgement(a.pair.pair_id, user, a.pair.a.id, Strength.BETTER, shown_order=a.shown_order)
        )
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judgements", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    pairs = simulate(args.rounds * args.judgements + 100, 1, seed=0, pool=(("x", "good"),)).pairs
    gold = simulate(200, 1, seed=1, pool=(("x", "good"),)).pairs
    items = [GoldItem(g, GoldAnswer("a", Strength.BETTER), Location("gold", i + 1)) for i, g in enumerate(gold)]
    real_step = GoldStore._gold_step
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.import_project("baseline", pairs, overlap=1)
        store.import_project("no gold", pairs, overlap=1)
        store.import_gold("gold", items, pairs=pairs, overlap=1)
        store.set_quality("gold", gold_rate=0.1, pause_below=0.5, pause_window=10)
        rates: dict[str, list[float]] = {"baseline": [], "no gold": [], "gold": []}
        for r in range(args.rounds):
            for setup in rates:
                user = f"{setup.replace(' ', '-')}-{r}"
                store.add_user(user)
                GoldStore._gold_step = (lambda *a, **k: None) if setup == "baseline" else real_step  # type: ignore[method-assign]
                rate = _run(store, setup, user, args.judgements)
                rates[setup].append(rate)
                print(f"round {r}  {setup:<9} {rate:8.1f} judgements/s", flush=True)
        GoldStore._gold_step = real_step  # type: ignore[method-assign]
        store.close()
    base = statistics.median(rates["baseline"])
    for setup, values in rates.items():
        med = statistics.median(values)
        print(f"{setup:<9} median {med:8.1f} judgements/s  ×{med / base:.2f} of the baseline")


if __name__ == "__main__":
    main()
