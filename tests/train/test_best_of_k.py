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


def test_best_of_k_asks_as_generate_does_skips_too_long_prompts_and_never_reuses_seeds(tiny_model_path, tmp_path):
    from datasets import load_from_disk

    from generate.config import DEFAULT_SYSTEM_PROMPT
    from train.best_of_k import BestOfKConfig, run
    from train.config import ModelConfig

    seen: list[Prompt] = []

    def reward(prompts, completions):
        seen.extend(prompts)
        return count_a(prompts, completions)

    long = Prompt("Hà Nội mùa thu " * 300)
    prompts = [Prompt("Xin chào"), long, Prompt("Viết một câu về phở", system="Trả lời ngắn.")]
    seeds = {}
    for seed in (1, 2):  # two rounds
        cfg = BestOfKConfig(output_dir=tmp_path / f"bok-{seed}", model=ModelConfig(path=str(tiny_model_path)), k=3,
                            max_new_tokens=8, seed=seed, batch_size=8, device="cpu")
        summary = run(cfg, reward_fn=reward, prompts=prompts)
        assert summary["metrics"]["skipped_too_long"] == 1
        assert summary["skipped"][0]["prompt_id"] == long.id and summary["skipped"][0]["reason"] == "prompt_too_long"
        assert "exceeds the context" in summary["skipped"][0]["detail"]
        samples = [json.loads(line) for line in (tmp_path / f"bok-{seed}" / "samples.jsonl").read_text().splitlines()]
        assert [s["system"] for s in samples] == [DEFAULT_SYSTEM_PROMPT, "Trả lời ngắn."]
        seeds[seed] = {x for s in samples for x in s["seeds"]}
        for row in load_from_disk(str(tmp_path / f"bok-{seed}" / "dataset"))["train"]:
            assert row["system"] == (DEFAULT_SYSTEM_PROMPT if row["question"] == "Xin chào" else "Trả lời ngắn.")
    assert {p.system for p in seen} == {DEFAULT_SYSTEM_PROMPT, "Trả lời ngắn."}  # scored as asked
    assert seeds[1] and seeds[2] and not seeds[1] & seeds[2]
