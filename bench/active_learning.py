"""Active learning, measured: does a queue ordered by the reward model's uncertainty reach a given
held-out reward accuracy with fewer labels than the seeded-random queue?

A simulation on real human preferences (Anthropic hh-rlhf, harmless-base test split, in
`../shared/data`): the file's own chosen/rejected labels play the annotators. Per seed, the pairs
are split once into a held-out test set and a pool; the pool is imported into a fresh annotation
store (overlap 1, each pair's answers in a seeded random a/b order) for each arm:

- random: the store's plain queue (its seeded shuffle), never prioritised;
- uncertainty: after each round, the round's reward model scores the open pairs and the store
  ranks them (`prefkit.train.prioritise.prioritise`, the code behind `prefkit annotate
  prioritise`, with its default 20 % random share), so the claim serves the most uncertain first.

Both arms start from the same seed set (the first `--seed-set` pairs of the same seeded shuffle),
then alternate rounds of `--batch` labels: a simulated annotator claims pairs through the store
(`Store.claim`) and submits the file's label; the reward model is retrained from scratch on every
label so far and its accuracy measured on the held-out pairs. The arms run one after the other
for each seed, in alternating order, in one run.

Models (`--model`):

- `bow` (default, CPU, seconds): a linear Bradley–Terry reward model trained from scratch,
  r(answer) = w·φ(answer), φ = hashed binary unigrams and bigrams of the final answer (lower-cased
  words, 2^20 buckets) plus log(1 + characters); the loss −log σ(r_chosen − r_rejected) + λ/2·|w|²
  (λ = 3, fixed in advance, not tuned on the test set), fitted with L-BFGS. The script checks that
  it beats chance and a length-only rule (the better of "shorter wins" / "longer wins", chosen on
  the pool's labels) on the held-out pairs when trained on the whole pool.
- `hf`: prefkit's reward stage (`prefkit train reward` with `--reward-config`, default
  configs/train/reward-gpu.yaml: QLoRA, one epoch) on `--base-model`, retrained every round,
  scored with `prefkit.train.prioritise.reward_model_scorer`: for a 1B reward model on a GPU, e.g.
  `--model hf --base-model meta-llama/Llama-3.2-1B-Instruct --seed-set 200 --batch 200`.

    .venv/bin/python bench/active_learning.py                       # bow, 5 seeds, CPU
    .venv/bin/python bench/active_learning.py --seeds 3 --rounds 6 --json out.json --svg curve.svg
    .venv/bin/python bench/active_learning.py --model hf --base-model PATH --set lr=2e-5   # a GPU

Prints the curve (held-out accuracy against labels used, mean and standard deviation over seeds,
and the per-seed paired difference uncertainty − random) and, with `--json` / `--svg`, writes the
figures and a plot. Without the data file it says so and exits 0 (nothing to measure).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prefkit.annotate.store import Store  # noqa: E402
from prefkit.data.schema import Judgement, Pair, PreferenceRow, Strength  # noqa: E402
from prefkit.train.prioritise import RewardPairScorer, prioritise  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh_rlhf_harmless_test.jsonl.gz"
ARMS = ("random", "uncertainty")
ANNOTATOR = "sim"


# ---------------------------------------------------------------------------------------------
# The from-scratch model: hashed bag of words, Bradley–Terry, L2, L-BFGS
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9']+")
BUCKETS = 2**20
LAMBDA = 3.0


def features(text: str) -> dict[int, float]:
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    out = {zlib.crc32(g.encode("utf-8")) % BUCKETS: 1.0 for g in grams}
    out[BUCKETS] = math.log1p(len(text))  # the length, as one more feature
    return out


class BowModel:
    """r(text) = w·φ(text); trained on (winner, loser) texts."""

    def __init__(self, lam: float = LAMBDA) -> None:
        self.lam = lam
        self.w: dict[int, float] = {}
        self._cache: dict[str, dict[int, float]] = {}

    def phi(self, text: str) -> dict[int, float]:
        f = self._cache.get(text)
        if f is None:
            f = self._cache[text] = features(text)
        return f

    def fit(self, won: list[str], lost: list[str], _rows: Any = None, _tag: str = "") -> BowModel:
        import numpy as np
        import scipy.sparse as sp
        from scipy.optimize import minimize

        rows, cols, vals = [], [], []
        for i, (a, b) in enumerate(zip(won, lost, strict=True)):
            diff: dict[int, float] = dict(self.phi(a))
            for k, v in self.phi(b).items():
                diff[k] = diff.get(k, 0.0) - v
            for k, v in diff.items():
                if v:
                    rows.append(i)
                    cols.append(k)
                    vals.append(v)
        used, local = np.unique(np.array(cols, dtype=np.int64), return_inverse=True)
        x = sp.csr_matrix((vals, (rows, local)), shape=(len(won), len(used)))

        def loss(w: Any) -> tuple[float, Any]:
            z = x @ w
            value = float(np.logaddexp(0.0, -z).sum() + 0.5 * self.lam * w @ w)
            grad = -(x.T @ (1.0 / (1.0 + np.exp(z)))) + self.lam * w
            return value, grad

        w = minimize(loss, np.zeros(len(used)), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
        self.w = dict(zip(used.tolist(), w.tolist(), strict=True))
        return self

    def reward(self, text: str) -> float:
        return sum(self.w.get(k, 0.0) * v for k, v in self.phi(text).items())

    def rewards(self, _prompts: list[Any], texts: list[str]) -> list[float]:
        return [self.reward(t) for t in texts]

    def identity(self, tag: str) -> dict[str, Any]:
        blob = json.dumps(sorted(self.w.items())).encode("utf-8")
        return {"path": f"bench:bow {tag}", "weights": "in memory", "sha256": hashlib.sha256(blob).hexdigest()}


# ---------------------------------------------------------------------------------------------
# The GPU model: prefkit's reward stage, retrained every round
# ---------------------------------------------------------------------------------------------


class HfModel:
    """`prefkit train reward` on the labels so far; scored as `prefkit annotate prioritise` scores."""

    def __init__(self, base_model: str, config: str, overrides: list[str], workdir: Path) -> None:
        self.base_model, self.config, self.overrides, self.workdir = base_model, config, overrides, workdir
        self.scorer: RewardPairScorer | None = None

    def fit(self, won: list[str], lost: list[str], questions: list[PreferenceRow], tag: str) -> HfModel:
        from prefkit.core.config import load_config
        from prefkit.data.export import export_dataset
        from prefkit.train import reward
        from prefkit.train.config import RewardConfig
        from prefkit.train.prioritise import reward_model_scorer
        from prefkit.train.rounds import free_memory

        self.scorer = None
        free_memory()
        data = self.workdir / tag / "labels"
        rows = [
            PreferenceRow(
                question=q.question, system=q.system, history=q.history, chosen=a, rejected=b, strength=Strength.BETTER
            )
            for q, a, b in zip(questions, won, lost, strict=True)
        ]
        export_dataset(rows, data, test_size=0.0, seed=0)
        cfg = load_config(
            RewardConfig,
            self.config,
            [
                f"model.path={self.base_model}",
                f"data.source={data}",
                "data.test_split=null",
                f"output_dir={self.workdir / tag / 'reward'}",
                "report_to=none",
                *self.overrides,
            ],
        )
        summary = reward.run(cfg)
        self.scorer = reward_model_scorer(summary["model_dir"])
        return self

    def rewards(self, prompts: list[Any], texts: list[str]) -> list[float]:
        assert self.scorer is not None
        return self.scorer.reward(prompts, texts)

    def identity(self, tag: str) -> dict[str, Any]:
        assert self.scorer is not None
        return self.scorer.identity


# ---------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------


@dataclass
class Curve:
    seed: int
    arm: str
    labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    selected_by: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def accuracy(model: Any, test: list[PreferenceRow]) -> float:
    prompts = [r.prompt for r in test for _ in (0, 1)]
    texts = [t for r in test for t in (r.chosen, r.rejected)]
    scores = model.rewards(prompts, texts)
    return sum(scores[2 * i] > scores[2 * i + 1] for i in range(len(test))) / len(test)


def length_baseline(pool: list[PreferenceRow], test: list[PreferenceRow]) -> tuple[str, float]:
    """The better length rule on the pool's labels ("shorter wins" or "longer wins"), on the test
    set (a tie in length counts half)."""
    shorter = sum(len(r.chosen) < len(r.rejected) for r in pool) > sum(len(r.chosen) > len(r.rejected) for r in pool)
    rule = "shorter wins" if shorter else "longer wins"
    score = 0.0
    for r in test:
        if len(r.chosen) == len(r.rejected):
            score += 0.5
        else:
            score += (len(r.chosen) < len(r.rejected)) == shorter
    return rule, score / len(test)


def as_pair(row: PreferenceRow, rng: random.Random) -> Pair:
    """The labelled row as an unlabelled pair, its answers in a random a/b order."""
    pair = row.to_pair()
    if rng.random() < 0.5:
        pair = Pair(pair.prompt, pair.b, pair.a)
    return pair


def run_arm(
    arm: str,
    seed: int,
    pool: list[PreferenceRow],
    test: list[PreferenceRow],
    args: argparse.Namespace,
    make_model: Any,
    workdir: Path,
) -> Curve:
    curve = Curve(seed, arm)
    started = time.perf_counter()
    rng = random.Random(seed)
    pairs = [as_pair(r, rng) for r in pool]
    winner = {p.pair_id: (p.a.id if p.a.text == r.chosen else p.b.id) for p, r in zip(pairs, pool, strict=True)}
    by_id = dict(zip((p.pair_id for p in pairs), pool, strict=True))
    db = workdir / f"seed{seed}-{arm}.db"
    with Store.open(str(db)) as store:
        store.import_project("al", pairs, overlap=1, calibration=0.0, seed=seed)
        store.add_user(ANNOTATOR)
        labelled, want = 0, args.seed_set
        for rnd in range(args.rounds + 1):
            while labelled < want and (a := store.claim("al", ANNOTATOR)) is not None:
                answer = Judgement(a.pair.pair_id, ANNOTATOR, winner[a.pair.pair_id], Strength.BETTER, a.shown_order)
                store.submit(a.id, ANNOTATOR, answer)
                labelled += 1
            rows = [by_id[j.pair_id] for j in store.judgements("al")]
            tag = f"seed{seed}-{arm}-round{rnd}"
            model = make_model().fit([r.chosen for r in rows], [r.rejected for r in rows], rows, tag)
            curve.labels.append(len(rows))
            curve.accuracy.append(accuracy(model, test))
            print(
                f"  seed {seed} {arm:<11} labels {len(rows):>5}  held-out accuracy {curve.accuracy[-1]:.3f}", flush=True
            )
            if rnd == args.rounds or len(rows) >= len(pool):
                break
            if arm == "uncertainty":
                scorer = RewardPairScorer(model.rewards, model.identity(tag))
                prioritise(store, "al", [scorer], random_share=args.random_share, chunk=4096)
            want = len(rows) + args.batch
        how = store.selected_by("al")
        judged_ids = {j.pair_id for j in store.judgements("al")}
        for pid in judged_ids:
            curve.selected_by[how[pid]] = curve.selected_by.get(how[pid], 0) + 1
    curve.seconds = time.perf_counter() - started
    return curve


def summarise(curves: list[Curve]) -> list[dict[str, Any]]:
    """Per round: labels, each arm's mean and sd accuracy over seeds, and the paired difference."""
    out = []
    seeds = sorted({c.seed for c in curves})
    get = {(c.seed, c.arm): c for c in curves}
    n_rounds = min(len(c.labels) for c in curves)
    for i in range(n_rounds):
        row: dict[str, Any] = {"labels": get[(seeds[0], "random")].labels[i]}
        for arm in ARMS:
            accs = [get[(s, arm)].accuracy[i] for s in seeds]
            row[arm] = {"mean": statistics.fmean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0}
        diffs = [get[(s, "uncertainty")].accuracy[i] - get[(s, "random")].accuracy[i] for s in seeds]
        row["difference"] = {
            "mean": statistics.fmean(diffs),
            "sd": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "per_seed": diffs,
        }
        out.append(row)
    return out


def svg(summary: list[dict[str, Any]], title: str) -> str:
    """A small line plot (no plotting library needed): accuracy ± sd against labels, per arm."""
    w, h, left, right, top, bottom = 640, 380, 60, 20, 40, 50
    xs = [r["labels"] for r in summary]
    lows = [r[a]["mean"] - r[a]["sd"] for r in summary for a in ARMS]
    highs = [r[a]["mean"] + r[a]["sd"] for r in summary for a in ARMS]
    y0, y1 = math.floor(min(lows) * 50) / 50, math.ceil(max(highs) * 50) / 50
    x0, x1 = 0, max(xs)

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (w - left - right)

    def py(y: float) -> float:
        return top + (y1 - y) / ((y1 - y0) or 1) * (h - top - bottom)

    colours = {"random": "#777777", "uncertainty": "#1f6fb4"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">labels used</text>',
        f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">held-out accuracy</text>',
    ]
    steps = max(1, round((y1 - y0) / 0.02))
    for k in range(steps + 1):
        y = y0 + (y1 - y0) * k / steps
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{w - right}" y2="{py(y):.1f}" stroke="#eeeeee"/>')
    for x in xs:
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">{x}</text>')
    for i, arm in enumerate(ARMS):
        c = colours[arm]
        band = [(px(r["labels"]), py(r[arm]["mean"] + r[arm]["sd"])) for r in summary]
        band += [(px(r["labels"]), py(r[arm]["mean"] - r[arm]["sd"])) for r in reversed(summary)]
        parts.append(
            f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in band)}" fill="{c}" fill-opacity="0.15"/>'
        )
        line = " ".join(f"{px(r['labels']):.1f},{py(r[arm]['mean']):.1f}" for r in summary)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        parts.append(f'<text x="{w - right - 150}" y="{h - bottom - 40 + 16 * i}" fill="{c}">— {arm}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled preference file (default: hh-rlhf)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds (each its own test/pool split and store)")
    ap.add_argument("--test", type=int, default=700, help="held-out pairs per seed")
    ap.add_argument("--seed-set", type=int, default=100, help="labels before the first model (the same in both arms)")
    ap.add_argument("--batch", type=int, default=100, help="labels per round")
    ap.add_argument("--rounds", type=int, default=8, help="rounds after the seed set")
    ap.add_argument("--random-share", type=float, default=0.2, help="the uncertainty queue's random share")
    ap.add_argument("--model", choices=["bow", "hf"], default="bow")
    ap.add_argument("--base-model", help="hf: the model the reward model starts from (e.g. a 1B instruct model)")
    ap.add_argument("--reward-config", default=str(REPO / "configs/train/reward-gpu.yaml"), help="hf: reward config")
    ap.add_argument("--set", action="append", default=[], help="hf: extra reward config override (repeatable)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--svg", type=Path, help="write the plot here")
    args = ap.parse_args()

    if not args.data.exists():
        print(f"skipped: {args.data} is absent (the hh-rlhf file in ../shared/data; or pass --data FILE)")
        return
    if args.model == "hf" and not args.base_model:
        ap.error("--model hf needs --base-model")
    from prefkit.data.readers import read_preferences

    errors: list[Any] = []
    rows = [r for r in read_preferences(args.data, errors=errors) if r.chosen != r.rejected]
    print(f"{args.data.name}: {len(rows)} labelled pairs ({len(errors)} unreadable rows left out)")
    if len(rows) <= args.test + args.seed_set:
        sys.exit(f"{len(rows)} pairs: too few for --test {args.test} and --seed-set {args.seed_set}")

    curves: list[Curve] = []
    checks: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="active-learning-") as tmp:
        workdir = Path(tmp)
        for seed in range(args.seeds):
            order = list(range(len(rows)))
            random.Random(1000 + seed).shuffle(order)
            test = [rows[i] for i in order[: args.test]]
            pool = [rows[i] for i in order[args.test :]]
            if args.model == "bow":
                full = accuracy(BowModel().fit([r.chosen for r in pool], [r.rejected for r in pool]), test)
                rule, length_acc = length_baseline(pool, test)
                checks.append({"seed": seed, "whole_pool": full, "length_rule": rule, "length_only": length_acc})
                print(
                    f"seed {seed}: {len(pool)} pool / {len(test)} held out; trained on the whole pool "
                    f"{full:.3f}, length only ({rule}) {length_acc:.3f}, chance 0.5",
                    flush=True,
                )

            def make_model() -> Any:
                if args.model == "bow":
                    return BowModel()
                return HfModel(args.base_model, args.reward_config, args.set, workdir)

            arms = ARMS if seed % 2 == 0 else ARMS[::-1]  # alternate which arm runs first
            for arm in arms:
                curves.append(run_arm(arm, seed, pool, test, args, make_model, workdir))

    summary = summarise(curves)
    print("\nheld-out accuracy (mean ± sd over seeds) against labels used")
    print(f"{'labels':>7}  {'random':>15}  {'uncertainty':>15}  {'uncertainty - random':>22}")
    for r in summary:
        d = r["difference"]
        print(
            f"{r['labels']:>7}  {r['random']['mean']:.3f} ± {r['random']['sd']:.3f}    "
            f"{r['uncertainty']['mean']:.3f} ± {r['uncertainty']['sd']:.3f}    {d['mean']:+.3f} ± {d['sd']:.3f}"
        )
    sel = {arm: {} for arm in ARMS}
    for c in curves:
        for k, v in c.selected_by.items():
            sel[c.arm][k] = sel[c.arm].get(k, 0) + v
    print(f"labels by how the queue chose them, all seeds: {json.dumps(sel)}")
    if checks:
        beats = all(c["whole_pool"] > 0.5 and c["whole_pool"] > c["length_only"] for c in checks)
        print(f"check: the model beats chance and the length-only rule on held-out pairs in every seed: {beats}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
                    "command": " ".join(sys.argv),
                    "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                    "checks": checks,
                    "summary": summary,
                    "selected_by": sel,
                    "curves": [c.__dict__ for c in curves],
                },
                indent=1,
            )
            + "\n"
        )
    if args.svg:
        args.svg.write_text(svg(summary, f"{args.data.name}: {args.model} reward model, {args.seeds} seeds"))


if __name__ == "__main__":
    main()
