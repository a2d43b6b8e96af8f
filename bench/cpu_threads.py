"""Benchmark: the README's CPU round (`prefkit train chain` on the tiny model) as a user runs it,
with torch's default thread count against the one thread prefkit now picks for a small model.

    .venv/bin/python bench/cpu_threads.py             # 2 alternating runs of each
    .venv/bin/python bench/cpu_threads.py --runs 3

First it makes what the chain reads, as the README's block does (the tiny model, dedup, generate,
a store judged by a script in place of the browser, `annotate export`), in a fresh folder. Then it
runs `prefkit train chain --config configs/train/chain-tiny.yaml` from a shell (`bash -c`, the
`prefkit` command of the Python running this script), alternately:

- `default`: `OMP_NUM_THREADS` set to the machine's core count, which is what torch starts with
  when nothing is set (and what every `prefkit` command got before it picked threads itself);
- `picked`: `OMP_NUM_THREADS` unset, so prefkit picks one thread for a model under 20 M parameters
  (`prefkit.core.threads`).

Prints each run's wall-clock seconds, the median of each, their ratio, and the load average at the
start and end (the machine may be shared: the ratio of alternating runs is the figure to quote).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

JUDGE = """
import random
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement
rng = random.Random(0)
store = Store.open("runs/annotate.db")
while (a := store.claim("r1", "alice")) is not None:
    point = rng.choice([-3, -2, -1, 1, 2, 3])
    store.submit(a.id, "alice", Judgement.from_seven_point(a.pair.pair_id, "alice", point, a.shown_order))
store.close()
"""

SETUP = [
    "python -c \"from prefkit.train.tiny_model import build_tiny_model; build_tiny_model('runs/tiny-model')\"",
    "prefkit data dedup data/samples/vi_preference_sample.jsonl runs/prompts.jsonl --on prompt",
    "prefkit generate runs/prompts.jsonl runs/pairs --model runs/tiny-model --temperatures 0.7,1.0 "
    "--config configs/generate/tiny-cpu.yaml",
    "prefkit annotate init --db runs/annotate.db",
    "prefkit annotate import runs/pairs --project r1 --db runs/annotate.db --overlap 1",
    "prefkit annotate users add alice --db runs/annotate.db",
    f"python - <<'EOF'\n{JUDGE}\nEOF",
    "prefkit annotate export --project r1 runs/export --db runs/annotate.db",
]


def shell(command: str, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {command}\n{proc.stdout}\n{proc.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="Runs of each setting, alternating.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="prefkit-threads-"))
    shutil.copytree(REPO / "configs", work / "configs")
    shutil.copytree(REPO / "data" / "samples", work / "data" / "samples")
    bindir = str(Path(sys.executable).parent)
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PREFKIT_DB")}
    base.update(PATH=f"{bindir}:{base.get('PATH', '')}", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    for command in SETUP:
        shell(command, work, base)
    cores = os.cpu_count() or 1
    settings = {"default": {**base, "OMP_NUM_THREADS": str(cores)}, "picked": base}
    times: dict[str, list[float]] = {name: [] for name in settings}
    load_before = os.getloadavg()[0]
    for i in range(args.runs):
        for name, env in settings.items():
            command = (
                f"prefkit train chain --config configs/train/chain-tiny.yaml --set output_dir=runs/chain-{name}-{i}"
            )
            seconds = shell(command, work, env)
            times[name].append(seconds)
            print(f"run {i + 1} {name:8s} {seconds:7.1f} s", flush=True)
    load_after = os.getloadavg()[0]
    default, picked = statistics.median(times["default"]), statistics.median(times["picked"])
    print(
        f"prefkit train chain (tiny model, {cores} cores): torch's default {cores} thread(s) median {default:.1f} s, "
        f"one thread (picked) median {picked:.1f} s: x{default / picked:.2f} faster; "
        f"load average {load_before:.1f} at the start, {load_after:.1f} at the end"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
