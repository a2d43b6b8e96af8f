"""RLOO and GRPO (TRL's trainers) driven by prefkit's reward function on the tiny model."""

import json

import pytest

from prefkit.data.schema import Prompt

PROMPTS = [Prompt(q, system="Trả lời ngắn.") for q in ("Xin chào", "Viết một câu", "Tính tổng", "Hà Nội")]


@pytest.mark.parametrize("stage", [pytest.param("rloo", marks=pytest.mark.slow), "grpo"])
def test_online_trainer_scores_with_prefkit_reward(stage, tiny_model_path, tmp_path):
    from prefkit.train.config import LoraSection, ModelConfig
    from prefkit.train.online import GrpoConfig, RlooConfig, run_grpo, run_rloo

    seen: list[tuple[str, str | None]] = []

    def count_a(prompts, completions):
        seen.extend((p.question, p.system) for p in prompts)
        return [float(c.count("a")) for c in completions]

    cls, run = (RlooConfig, run_rloo) if stage == "rloo" else (GrpoConfig, run_grpo)
    cfg = cls(
        output_dir=tmp_path / stage,
        model=ModelConfig(path=str(tiny_model_path)),
        lora=LoraSection(r=4, alpha=8, dropout=0.0),
        batch_size=8,
        num_generations=4,
        max_steps=2,
        max_new_tokens=8,
        lr=1e-3,
        save_steps=100,
        seed=0,
    )
    summary = run(cfg, reward_fn=count_a, prompts=PROMPTS)

    # the trainer called our reward with the prompts as written (system included), 4 answers each
    assert len(seen) == 2 * 8
    assert {q for q, _ in seen} <= {p.question for p in PROMPTS}
    assert {s for _, s in seen} == {"Trả lời ngắn."}
    assert summary["stage"] == stage and summary["steps"] == 2
    assert summary["metrics"]["final_reward"] is not None
    assert json.loads((tmp_path / stage / "summary.json").read_text())["stage"] == stage
    assert (tmp_path / stage / "model" / "adapter_config.json").exists()


def test_online_config_rejects_a_batch_that_splits_groups(tiny_model_path):
    from prefkit.core.errors import ConfigError
    from prefkit.train.config import ModelConfig
    from prefkit.train.online import GrpoConfig

    with pytest.raises(ConfigError, match="multiple of num_generations"):
        GrpoConfig(model=ModelConfig(path=str(tiny_model_path)), batch_size=6, num_generations=4)
