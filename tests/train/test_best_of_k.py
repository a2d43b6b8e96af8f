"""Best-of-K rejection sampling through the generate room's engine on the tiny model."""

import json

from data.schema import Prompt


def count_a(prompts, completions):
    return [float(c.count("a")) + len(c) * 1e-3 for c in completions]  # the length term breaks ties


def test_best_of_k_keeps_the_top_scored_sample(tiny_model_path, tmp_path):
    from datasets import load_from_disk

    from train.best_of_k import BestOfKConfig, run
    from train.config import ModelConfig

    prompts = [Prompt(q) for q in ("Xin chào", "Viết một câu về phở", "Tính tổng 1 đến 100", "Hà Nội mùa thu")]
    cfg = BestOfKConfig(output_dir=tmp_path / "bok", model=ModelConfig(path=str(tiny_model_path)), k=4,
                        max_new_tokens=12, seed=3, batch_size=8, device="cpu")
    summary = run(cfg, reward_fn=count_a, prompts=prompts)

    samples = [json.loads(line) for line in (tmp_path / "bok" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    assert summary["splits"] == list(load_from_disk(str(tmp_path / "bok" / "dataset"))) == ["train"]  # rounds read it
    ds = load_from_disk(str(tmp_path / "bok" / "dataset"))["train"]
    kept = {r["question"]: r for r in ds}
    assert summary["metrics"]["kept"] == len(kept) > 0
    for s in samples:
        assert len(s["samples"]) == len(s["scores"]) and len(s["samples"]) <= 4
        # every score is the reward of its own sample, and the best is the arg-max
        assert s["scores"] == count_a(None, s["samples"])
        best = max(range(len(s["scores"])), key=s["scores"].__getitem__)
        assert s["best"] == best
        if s["question"] in kept:
            row = kept[s["question"]]
            assert row["chosen"] == s["samples"][best]
            assert count_a(None, [row["rejected"]])[0] == min(s["scores"])
            assert row["chosen_model"] == str(tiny_model_path)
    assert summary["metrics"]["mean_best_reward"] >= summary["metrics"]["mean_reward"]
