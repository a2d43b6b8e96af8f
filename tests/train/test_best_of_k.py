"""Best-of-K rejection sampling through the generate room's engine on the tiny model.

The order-of-work tests wrap (never replace) the real engine opener and reward loader to record
what happens when.
"""

import json

import pytest

from prefkit.data.schema import Prompt
from prefkit.generate.engines.vllm import unavailable_reason


def count_a(prompts, completions):
    return [float(c.count("a")) + len(c) * 1e-3 for c in completions]  # the length term breaks ties


def test_best_of_k_keeps_the_top_scored_sample(tiny_model_path, tmp_path):
    from datasets import load_from_disk

    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig

    prompts = [Prompt(q) for q in ("Xin chào", "Viết một câu về phở", "Tính tổng 1 đến 100", "Hà Nội mùa thu")]
    cfg = BestOfKConfig(
        output_dir=tmp_path / "bok",
        model=ModelConfig(path=str(tiny_model_path)),
        k=4,
        max_new_tokens=12,
        seed=3,
        batch_size=8,
        device="cpu",
    )
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

    from prefkit.generate.config import DEFAULT_SYSTEM_PROMPT
    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig

    seen: list[Prompt] = []

    def reward(prompts, completions):
        seen.extend(prompts)
        return count_a(prompts, completions)

    long = Prompt("Hà Nội mùa thu " * 300)
    prompts = [Prompt("Xin chào"), long, Prompt("Viết một câu về phở", system="Trả lời ngắn.")]
    seeds = {}
    for seed in (1, 2):  # two rounds
        cfg = BestOfKConfig(
            output_dir=tmp_path / f"bok-{seed}",
            model=ModelConfig(path=str(tiny_model_path)),
            k=3,
            max_new_tokens=8,
            seed=seed,
            batch_size=8,
            device="cpu",
        )
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


# -- order of work: sample, close the engine, then load the reward model and score ----------------


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_path, tmp_path_factory):
    """A (randomly initialised) sequence classifier on the tiny model, saved as the reward stage saves one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = tmp_path_factory.mktemp("rm") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def watched(monkeypatch):
    """Records, around the real engine and the real reward loader, what best-of-K does in which order."""
    import prefkit.generate.run as generate_run
    import prefkit.train.best_of_k as bok

    events, engines, configs = [], [], []
    real_open, real_load = generate_run.open_engine, bok.load_reward

    def open_engine(cfg, *args, **kwargs):
        engine = real_open(cfg, *args, **kwargs)
        configs.append(cfg)
        engines.append(engine)
        events.append("open")
        real_close = engine.close

        def close():
            events.append("close")
            real_close()

        engine.close = close
        return engine

    def load_reward(section):
        events.append(("load_reward", [e.closed for e in engines]))
        return real_load(section)

    monkeypatch.setattr(generate_run, "open_engine", open_engine)
    monkeypatch.setattr(bok, "load_reward", load_reward)
    return events, engines, configs


def test_best_of_k_closes_the_engine_before_it_loads_the_reward_model(
    tiny_model_path, reward_model_dir, watched, tmp_path
):
    from prefkit.generate.engines.base import EngineClosed, Request
    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig
    from prefkit.train.scoring import RewardSection

    events, engines, configs = watched
    cfg = BestOfKConfig(
        output_dir=tmp_path / "bok",
        model=ModelConfig(path=str(tiny_model_path)),
        k=3,
        max_new_tokens=8,
        seed=1,
        batch_size=8,
        device="cpu",
        reward=RewardSection(model=str(reward_model_dir)),
        gpu_memory_utilization=0.42,
        tensor_parallel_size=2,
        max_model_len=1024,
        max_lora_rank=64,
    )
    summary = run(cfg, prompts=[Prompt("Xin chào"), Prompt("Viết một câu về phở")])
    assert events == ["open", "close", ("load_reward", [True])]  # sampled, closed, then the reward loaded
    with pytest.raises(EngineClosed):
        engines[0].generate([Request("Xin chào", max_tokens=4)])
    samples = [json.loads(line) for line in (tmp_path / "bok" / "samples.jsonl").read_text().splitlines()]
    assert summary["metrics"]["samples"] == sum(len(s["scores"]) for s in samples) > 0  # every sample scored
    # best-of-K's vLLM settings reach the engine's config
    gen = configs[0]
    assert (gen.gpu_memory_utilization, gen.tensor_parallel_size, gen.max_model_len, gen.max_lora_rank) == (
        0.42,
        2,
        1024,
        64,
    )


def test_a_wrong_reward_section_fails_before_any_sampling(tiny_model_path, watched, tmp_path):
    from prefkit.core.errors import ConfigError
    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig
    from prefkit.train.scoring import RewardSection

    events, _, _ = watched
    for reward, message in [
        (RewardSection(model=str(tmp_path / "nowhere")), "reward.model .*nowhere.*: no such folder"),
        (RewardSection(function="no_such_module:score"), "reward.function 'no_such_module:score': cannot import"),
        (RewardSection(), "set exactly one of"),
    ]:
        cfg = BestOfKConfig(output_dir=tmp_path / "bok", model=ModelConfig(path=str(tiny_model_path)), reward=reward)
        with pytest.raises(ConfigError, match=message):
            run(cfg, prompts=[Prompt("Xin chào")])
    assert events == [] and not (tmp_path / "bok").exists()


def test_best_of_k_config_checks_temperature_and_vllm_settings_by_key(tmp_path):
    from prefkit.core.config import load_config
    from prefkit.core.errors import ConfigError
    from prefkit.train.best_of_k import BestOfKConfig

    path = tmp_path / "bok.yaml"
    path.write_text("model: {path: m}\nengine: vllm\ntemperature: 2.5\n")
    with pytest.raises(ConfigError, match=r"temperature: temperature 2.5 is out of range .*vLLM refuses more than 2"):
        load_config(BestOfKConfig, path)
    with pytest.raises(ConfigError, match="max_lora_rank: 48 is not one vLLM accepts"):
        load_config(BestOfKConfig, path, ["temperature=1.0", "max_lora_rank=48"])
    with pytest.raises(ConfigError, match="gpu_memory_utilization must be in"):
        load_config(BestOfKConfig, path, ["temperature=1.0", "gpu_memory_utilization=1.5"])
    cfg = load_config(BestOfKConfig, path, ["temperature=0", "max_model_len=2048", "tensor_parallel_size=2"])
    assert (cfg.temperature, cfg.max_model_len, cfg.tensor_parallel_size, cfg.max_lora_rank) == (0.0, 2048, 2, None)


@pytest.mark.gpu
@pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
def test_best_of_k_with_vllm_then_reward_scoring_in_one_process(tiny_model_path, reward_model_dir, tmp_path):
    """vLLM samples, its engine core shuts down, the reward model loads on the same GPU and scores."""
    import math

    import torch

    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig
    from prefkit.train.scoring import RewardSection

    cfg = BestOfKConfig(
        output_dir=tmp_path / "bok",
        model=ModelConfig(path=str(tiny_model_path)),
        k=4,
        max_new_tokens=16,
        seed=0,
        engine="vllm",
        gpu_memory_utilization=0.9,
        max_model_len=512,
        reward=RewardSection(model=str(reward_model_dir)),
    )
    # 0.9 of the GPU for vLLM: it starts only if this process holds (almost) nothing, and the reward
    # model loads only after vLLM handed its share back.
    summary = run(cfg, prompts=[Prompt(q) for q in ("Xin chào", "Viết một câu về phở", "Hà Nội mùa thu")])
    samples = [json.loads(line) for line in (tmp_path / "bok" / "samples.jsonl").read_text().splitlines()]
    assert summary["metrics"]["samples"] == sum(len(s["scores"]) for s in samples) > 0
    assert all(math.isfinite(x) for s in samples for x in s["scores"])
    free, total = torch.cuda.mem_get_info()
    assert free > 0.5 * total  # vLLM's 90 % share was handed back
    # a second vLLM engine starts in the same process after the first was closed
    summary = run(cfg, prompts=[Prompt("Xin chào")])
    assert summary["metrics"]["samples"] > 0
