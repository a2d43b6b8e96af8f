"""Strength-aware DPO (`strength: offset | weight`) vs plain DPO, held-out accuracy per strength level.

The marker task the learning tests use (`tests/train/conftest.py`, `balanced_marker_rows`): the better
answer holds polite words where the other holds distractors of the same token count, so only the
content tells them apart, never the length. The strength level is how clear the difference is: a
"significantly better" pair differs in three slots, "better" in two, "slightly" and "negligibly"
in one (`graded_rows`). Labels are made the way an overlap project makes them:
each training pair is judged by three simulated annotators who pick the marker answer with a
probability that falls with the pair's strength level (the level is the pair's true difficulty:
`FLIP` below), the majority side is exported as chosen (so some pairs are flipped) with the votes
(`votes_chosen`, `n_annotators`) and the level as `strength`. The test pairs are clean (every
chosen holds the marker). Each mode trains on the same data from the same seed; the modes run
alternately within a seed. Reported: the implicit reward's held-out accuracy (β·Δ > 0) overall and
per level, mean ± sd over seeds, and the mean margin β·Δ.

    python bench/dpo_strength.py                       # CPU: tiny model, 5 seeds
    python bench/dpo_strength.py --seeds 3 --steps 20  # quicker
    python bench/dpo_strength.py --gpu                 # GPU: a Llama-3.2-1B-shaped model, bf16
    python bench/dpo_strength.py --gpu --model PATH    # GPU: a real checkpoint (e.g. Llama-3.2-1B-Instruct)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# chance a simulated annotator picks the worse answer, by strength level (3 significantly … 0 negligibly);
# --flip replaces it
FLIP = {3: 0.05, 2: 0.2, 1: 0.35, 0: 0.45}
MODES = ("none", "offset", "weight")


SLOTS = {3: 3, 2: 2, 1: 1, 0: 1}  # marker slots per strength level


def graded_rows(n: int, tok, seed: int) -> list:
    """`balanced_marker_rows` with SLOTS[level] marker/distractor slots (same token count each)."""
    import importlib.util

    from prefkit.data.schema import PreferenceRow, Strength

    # the learning tests' vocabulary (tests/train/conftest.py), read from its file
    spec = importlib.util.spec_from_file_location("train_test_fixtures", REPO / "tests" / "train" / "conftest.py")
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    DISTRACTORS, MARKERS, TOPICS, VERBS = fixtures.DISTRACTORS, fixtures.MARKERS, fixtures.TOPICS, fixtures.VERBS

    rng = random.Random(seed)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rows: list = []
    i = 0
    while len(rows) < n:
        level = [3, 2, 1, 0][len(rows) % 4]
        topic = TOPICS[i % len(TOPICS)]
        question = f"{VERBS[(i // len(TOPICS)) % len(VERBS)]} {topic} (câu {i})."
        chosen = [topic, *rng.sample(["tốt", "đẹp", "ngon", "xanh", "lớn", "nhỏ", "hay", "vui"], 4)]
        rejected = list(chosen)
        ok = True
        for _ in range(SLOTS[level]):
            pos = rng.randrange(len(chosen) + 1)
            marker = rng.choice(MARKERS)
            match = [d for d in rng.sample(DISTRACTORS, len(DISTRACTORS)) if count(d) == count(marker)]
            if not match:
                ok = False
                break
            chosen.insert(pos, marker)
            rejected.insert(pos, match[0])
        i += 1
        if ok and count(" ".join(chosen)) == count(" ".join(rejected)):
            rows.append(
                PreferenceRow(question, " ".join(chosen), " ".join(rejected), strength=Strength.from_level(level))
            )
    return rows


def make_data(
    folder: Path, model: Path, n_train: int, n_test: int, seed: int, flip: dict[int, float]
) -> dict[str, int]:
    """train.jsonl (three simulated votes per pair, majority exported) and test.jsonl (clean)."""
    from transformers import AutoTokenizer

    from prefkit.data.schema import Strength
    from prefkit.data.writers import write_preferences

    tok = AutoTokenizer.from_pretrained(model)
    rows = graded_rows(n_train + n_test, tok, seed=seed)
    rng = random.Random(seed)
    flipped = 0
    train = rows[:n_train]
    for r in train:
        assert r.strength is not None
        right = sum(rng.random() >= flip[r.strength.level] for _ in range(3))
        if right < 2:  # the majority preferred the distractor: exported flipped
            r.chosen, r.rejected = r.rejected, r.chosen
            flipped += 1
        r.n_annotators, r.votes_chosen = 3, max(right, 3 - right)
        r.votes_rejected, r.agreement = 3 - r.votes_chosen, r.votes_chosen / 3
        r.strength = Strength.from_level(r.strength.level)
    folder.mkdir(parents=True, exist_ok=True)
    write_preferences(train, folder / "train.jsonl")
    write_preferences(rows[n_train:], folder / "test.jsonl")
    return {"train": n_train, "test": n_test, "flipped": flipped}


def run_mode(mode: str, model: Path, data: Path, out: Path, seed: int, args: argparse.Namespace) -> dict:
    from prefkit.core.config import load_config
    from prefkit.train import dpo
    from prefkit.train.config import DpoConfig

    cfg = load_config(
        DpoConfig,
        None,
        [
            f"model.path={model}",
            f"data.source={data}",
            f"output_dir={out}",
            f"max_steps={args.steps}",
            f"lr={args.lr}",
            f"batch_size={args.batch_size}",
            f"beta={args.beta}",
            f"seed={seed}",
            "lora.r=8",
            "lora.dropout=0",
            "logging_steps=1000",
            "save_steps=100000",
            f"strength={mode}",
            f"offset_scale={args.offset_scale}",
            "audit=off",
            *(["gradient_checkpointing=true"] if args.gpu else []),
        ],
    )
    started = time.perf_counter()
    metrics = dpo.run(cfg)["metrics"]
    return {
        "accuracy": metrics["eval_implicit_accuracy"],
        "by_strength": metrics["eval_implicit_accuracy_by_strength"],
        "margin_by_strength": metrics["eval_implicit_margin_by_strength"],
        "seconds": time.perf_counter() - started,
    }


def summarise(results: dict[str, list[dict]]) -> str:
    from prefkit.data.schema import Strength

    levels = [s.value for s in Strength]

    def cell(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"

    head = "| mode | all | " + " | ".join(lv.replace("_", " ") for lv in levels) + " |"
    lines = [head, "|" + " --- |" * (len(levels) + 2)]
    for mode, runs in results.items():
        row = [cell([r["accuracy"] for r in runs])]
        row += [cell([r["by_strength"][lv] for r in runs]) for lv in levels]
        lines.append(f"| {mode} | " + " | ".join(row) + " |")
    lines += ["", "mean held-out margin β·Δ per level:", ""]
    lines += [head, "|" + " --- |" * (len(levels) + 2)]
    for mode, runs in results.items():
        row = ["–"] + [f"{statistics.mean(r['margin_by_strength'][lv] for r in runs):+.3f}" for lv in levels]
        lines.append(f"| {mode} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train", type=int, default=160, help="training pairs (40 per level)")
    parser.add_argument("--test", type=int, default=80, help="clean held-out pairs (20 per level)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--offset-scale", type=float, default=1.0, help="ODPO's α (offset = α × small margin)")
    parser.add_argument("--gpu", action="store_true", help="a Llama-3.2-1B-shaped model (or --model) on the GPU")
    parser.add_argument("--model", type=Path, help="a model folder to use instead of the tiny / 1B-shaped one")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument(
        "--flip",
        default=",".join(str(FLIP[lv]) for lv in (3, 2, 1, 0)),
        help="chance an annotator picks the worse answer: significantly, better, slightly, negligibly",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="which modes to run (none,offset,weight)")
    args = parser.parse_args()
    if args.gpu and args.lr == 1e-3:
        args.lr = 1e-4  # a LoRA learning rate for a 1B model

    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        if args.model is not None:
            model = args.model
        elif args.gpu:
            from train_gpu import build_model  # bench/train_gpu.py: Llama-3.2-1B's shapes, random weights

            model = build_model(tmp / "model", tiny=False)
        else:
            from prefkit.train.tiny_model import build_tiny_model

            model = build_tiny_model(tmp / "model")
        flip = dict(zip((3, 2, 1, 0), (float(x) for x in args.flip.split(",")), strict=True))
        modes = tuple(m for m in args.modes.split(",") if m)
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for seed in range(args.seeds):
            data = tmp / f"data{seed}"
            made = make_data(data, model, args.train, args.test, seed, flip)
            order = modes if seed % 2 == 0 else modes[::-1]  # alternate which mode runs first
            for mode in order:
                r = run_mode(mode, model, data, tmp / f"run-{mode}-{seed}", seed, args)
                results[mode].append(r)
                print(f"seed {seed} {mode:6s} acc {r['accuracy']:.3f} ({made['flipped']} flipped) {r['seconds']:.0f}s")
        print()
        print(summarise(results))
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
