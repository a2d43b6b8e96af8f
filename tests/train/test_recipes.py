"""The seeds' two recipes (configs/recipes/): exactly the seed settings, the readers of their data
shapes (hand-written sample files in tests/train/samples/), and each recipe run end to end on the
tiny model with one command, shrunk with --set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli import app
from prefkit.core.config import load_config
from prefkit.train.chain import ChainConfig
from prefkit.train.datasets import load_prompts, load_split, preference_dataset, sft_dataset

REPO = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).parent / "samples"
VI = REPO / "configs/recipes/vi-dpo-llama3.2-1b.yaml"
TLDR = REPO / "configs/recipes/tldr-rlhf.yaml"


def test_vi_dpo_recipe_is_the_seed_recipe():
    cfg = load_config(ChainConfig, VI)
    assert cfg.stages == ["sft", "dpo"] and cfg.model.path == "meta-llama/Llama-3.2-1B-Instruct"
    assert cfg.data.source == "thainq107/Vi-Alpaca-Preference" and (cfg.data.split, cfg.data.test_split) == (
        "train",
        "test",
    )
    assert cfg.data.max_length == 512 and cfg.data.system_prompt == "You are a helpful assistant."
    for stage in (cfg.sft, cfg.dpo):
        assert stage.quant.qlora and stage.quant.quant_type == "nf4" and stage.quant.double_quant
        assert stage.quant.compute_dtype == "bfloat16" and stage.bf16 is True
        assert (stage.lora.r, stage.lora.alpha, stage.lora.dropout) == (16, 16, 0.05)
        assert stage.lora.target_modules == [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        assert stage.gradient_checkpointing and stage.optim == "paged_adamw_8bit" and stage.lr == 3e-5
        assert (stage.max_steps, stage.batch_size, stage.grad_accum, stage.warmup) == (5000, 2, 8, 500)


def test_tldr_recipe_reads_the_carperai_shapes():
    cfg = load_config(
        ChainConfig,
        TLDR,
        [
            f"sft.data.source={SAMPLES / 'tldr'}",
            f"reward.data.source={SAMPLES / 'tldr_comparisons'}",
            f"ppo.data.source={SAMPLES / 'tldr' / 'train.jsonl'}",
        ],
    )
    assert cfg.stages == ["sft", "reward", "ppo"] and cfg.sft.rouge and cfg.sft.rouge_tokenizer == "standard"
    sft_rows = sft_dataset(load_split(cfg.sft.data, "test"), cfg.sft.data)
    user, answer = sft_rows[0]["messages"]
    assert user["role"] == "user" and user["content"].startswith("SUBREDDIT: r/") and user["content"].endswith("TL;DR:")
    assert (
        answer["role"] == "assistant"
        and answer["content"].strip() == "boss wants unpaid Saturdays though my contract says weekdays only."
    )
    # the comparisons as they are on the Hub: the post without "TL;DR:", each answer "TL;DR: <summary>"
    raw = load_split(cfg.reward.data, "train")
    assert not raw[0]["prompt"].endswith("TL;DR:") and raw[0]["chosen"].startswith("TL;DR: ")
    for split in ("train", "valid1", "test"):  # the comparisons' three splits
        pairs = preference_dataset(load_split(dataclass_split(cfg.reward.data, split), split), cfg.reward.data)
        assert len(pairs) > 0 and all(p[-1]["content"].endswith("\nTL;DR:") for p in pairs["prompt"])
        assert not any(c[0]["content"].startswith("TL;DR") for c in [*pairs["chosen"], *pairs["rejected"]])
    prompts = load_prompts(cfg.ppo.data)
    assert len(prompts) == 5 and all(p.question.endswith("TL;DR:") for p in prompts)
    # the reward model is trained on the conversation PPO scores: the same post reads the same in both
    pairs = preference_dataset(raw, cfg.reward.data)
    assert pairs[0]["prompt"] == [{"role": "user", "content": prompts[0].question}]
    assert cfg.ppo.reward.max_length == cfg.reward.data.max_length == 1024


def dataclass_split(data, split):
    import dataclasses

    return dataclasses.replace(data, split=split)


def test_rouge_is_computed_with_stemming_the_standard_way():
    from prefkit.train.sft import rouge_scores

    ref, ans = "the cats are running home", "cat runs home"
    standard, plain = (
        rouge_scores([ref], [ans], tokenizer="standard"),
        rouge_scores([ref], [ans], tokenizer="whitespace"),
    )
    # Porter stemming matches cats/cat and running/runs: 3 of 3 answer words, without it 1
    assert standard["rouge_1"] == pytest.approx(2 * 1.0 * 0.6 / 1.6)
    assert plain["rouge_1"] < standard["rouge_1"]


def _cpu_sets(stages: list[str], model: Path) -> list[str]:
    sets = [f"model.path={model}", "model.dtype=float32"]
    for s in stages:
        sets += [
            f"{s}.quant.qlora=false",
            f"{s}.optim=adamw_torch",
            f"{s}.bf16=false",
            f"{s}.report_to=none",
            f"{s}.gradient_checkpointing=false",
            f"{s}.max_steps=2",
            f"{s}.logging_steps=1",
            f"{s}.warmup=0",
        ]
    return sets


def _chain(config: Path, sets: list[str]):
    args = ["train", "chain", "--config", str(config)]
    for s in sets:
        args += ["--set", s]
    return CliRunner().invoke(app, args)


@pytest.mark.slow
def test_vi_dpo_recipe_runs_on_the_tiny_model(tiny_model_factory, tmp_path):
    model = tiny_model_factory(family="llama3_2", hidden_size=32, num_layers=1)
    result = _chain(
        VI,
        [
            *_cpu_sets(["sft", "dpo"], model),
            f"output_dir={tmp_path / 'run'}",
            f"data.source={SAMPLES / 'vi_alpaca_preference'}",
            "sft.batch_size=4",
            "dpo.batch_size=4",
        ],
    )
    assert result.exit_code == 0, result.output
    chain = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]
    assert chain["sft"]["metrics"]["chat_template"]["training_template"] == "prefkit:llama3_2_training"
    assert chain["sft"]["metrics"]["system_prompt"] == "You are a helpful assistant."
    assert chain["dpo"]["config"]["model"]["adapter"] == chain["sft"]["model_dir"]
    assert abs(chain["dpo"]["metrics"]["first"]["rewards/chosen"]) < 1e-4  # reference = the SFT model


@pytest.mark.slow
def test_tldr_recipe_runs_sft_reward_ppo_on_the_tiny_model(tiny_model_factory, tmp_path):
    model = tiny_model_factory(family="llama3_2", hidden_size=32, num_layers=1)
    sets = [
        *_cpu_sets(["sft", "reward", "ppo"], model),
        f"output_dir={tmp_path / 'run'}",
        f"sft.data.source={SAMPLES / 'tldr'}",
        f"reward.data.source={SAMPLES / 'tldr_comparisons'}",
        f"ppo.data.source={SAMPLES / 'tldr' / 'train.jsonl'}",
        "sft.batch_size=4",
        "reward.batch_size=4",
        "sft.rouge_samples=2",
        "sft.rouge_max_new_tokens=8",
        "ppo.batch_size=4",
        "ppo.mini_batch_size=2",
        "ppo.ppo_epochs=1",
        "ppo.max_new_tokens=8",
    ]
    result = _chain(TLDR, sets)
    assert result.exit_code == 0, result.output
    chain = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"]
    assert list(chain) == ["sft", "reward", "ppo"]
    assert {"rouge_1", "rouge_2", "rouge_L"} <= set(chain["sft"]["metrics"])
    assert chain["ppo"]["config"]["reward"]["model"] == chain["reward"]["model_dir"]
    assert chain["ppo"]["config"]["model"]["adapter"] == chain["sft"]["model_dir"]
