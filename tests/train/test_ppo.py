"""prefkit's PPO on the tiny model: reward rises with bounded KL, and an interrupted run resumes."""

import json
import math
from pathlib import Path

import pytest

from data.schema import Prompt

PROMPTS = [Prompt(q) for q in ("Xin chào", "Viết một câu", "Tính tổng", "Giải thích", "Hà Nội", "mùa thu",
                               "phở bò", "cảm ơn")]
# lm_head in the targets: the random tiny model's near-uniform output can only sharpen through it
TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]


def count_a(prompts, completions):
    """Rule-based reward: how many times the letter 'a' appears in the response."""
    return [float(c.count("a")) for c in completions]


def ppo_config(model_path, out, **kw):
    from train.config import LoraSection, ModelConfig
    from train.ppo import PpoConfig

    base = dict(output_dir=Path(out), model=ModelConfig(path=str(model_path)),
                lora=LoraSection(r=8, alpha=16, dropout=0.0, target_modules=TARGETS),
                batch_size=16, mini_batch_size=8, ppo_epochs=4, max_steps=15, lr=1e-2, max_new_tokens=16,
                kl_coef=0.05, save_steps=0, seed=0)
    return PpoConfig(**{**base, **kw})


@pytest.mark.slow
def test_ppo_raises_rule_based_reward_with_bounded_kl(tiny_model_path, tmp_path):
    from train.ppo import run

    summary = run(ppo_config(tiny_model_path, tmp_path / "ppo"), reward_fn=count_a, prompts=PROMPTS)
    hist = summary["log_history"]
    assert len(hist) == 15
    first = sum(h["reward"] for h in hist[:3]) / 3
    last = sum(h["reward"] for h in hist[-3:]) / 3
    assert last > first + 1.0, (first, last)
    assert all(h["kl"] < 30.0 for h in hist), [h["kl"] for h in hist]  # nats per response of 16 tokens
    for key in ("entropy", "clipfrac", "value_loss", "policy_loss"):
        assert key in hist[-1]
    on_disk = json.loads((tmp_path / "ppo" / "summary.json").read_text())
    assert on_disk["stage"] == "ppo" and on_disk["steps"] == 15 and on_disk["steps_per_s"] > 0
    assert (tmp_path / "ppo" / "model" / "adapter_config.json").exists()


def test_ppo_resumes_after_interruption_from_its_checkpoint(tiny_model_path, tmp_path):
    import torch
    from peft import load_peft_weights

    from train.ppo import run

    calls = {"n": 0}

    def crashing_reward(prompts, completions):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("judge went away")
        return count_a(prompts, completions)

    out = tmp_path / "ppo"
    cfg = ppo_config(tiny_model_path, out, batch_size=4, mini_batch_size=4, ppo_epochs=1, max_steps=5,
                     max_new_tokens=8, save_steps=2, save_total_limit=None)
    with pytest.raises(RuntimeError, match="judge went away"):
        run(cfg, reward_fn=crashing_reward, prompts=PROMPTS)
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    assert not (out / "summary.json").exists() and not (out / "model").exists()
    saved = load_peft_weights(str(out / "checkpoint-2" / "policy"))

    resumed = ppo_config(tiny_model_path, out, batch_size=4, mini_batch_size=4, ppo_epochs=1, max_steps=5,
                         max_new_tokens=8, save_steps=2, save_total_limit=None, resume_from_checkpoint="latest")
    from train.ppo import PpoTrainer

    trainer = PpoTrainer(resumed, reward_fn=count_a, prompts=PROMPTS)
    trainer.load_checkpoint(out / "checkpoint-2")
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(trainer._peft, adapter_name="default")
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k].cpu(), saved[k].cpu()) for k in saved)
    assert trainer.step == 2 and [h["step"] for h in trainer.history] == [1, 2]

    summary = trainer.train()
    assert summary["metrics"]["resumed_from_step"] == 2
    assert [h["step"] for h in summary["log_history"]] == [1, 2, 3, 4, 5]
    assert calls["n"] == 4  # the resumed run used its own reward function for steps 3..5


@pytest.mark.slow
def test_ppo_raises_a_trained_reward_models_score(tiny_model_path, marker_dataset, tmp_path):
    from data.config import load_config
    from train import reward
    from train.config import RewardConfig
    from train.ppo import run
    from train.scoring import RewardSection

    rm_cfg = load_config(RewardConfig, None, [
        f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={tmp_path / 'rm'}",
        "max_steps=20", "lr=3e-3", "batch_size=8", "save_steps=1000", "lora.r=8", "lora.dropout=0"])
    rm_dir = reward.run(rm_cfg)["model_dir"]

    cfg = ppo_config(tiny_model_path, tmp_path / "ppo", reward=RewardSection(model=rm_dir), max_steps=20,
                     kl_coef=0.02)
    summary = run(cfg, prompts=PROMPTS)  # the reward comes from the config: the saved reward model
    hist = summary["log_history"]
    first = sum(h["reward"] for h in hist[:3]) / 3
    last = sum(h["reward"] for h in hist[-3:]) / 3
    # the rise must exceed twice the standard error of a 3-batch mean of the first batches' scores
    std_err = max(h["reward_std"] for h in hist[:3]) / math.sqrt(3 * cfg.batch_size)
    assert last - first > 2 * std_err, (first, last, std_err)
    assert all(h["kl"] < 30.0 for h in hist)


def test_whiten_configs_and_the_old_whiten_rewards_key(tmp_path):
    from data.config import load_config
    from data.errors import ConfigError
    from train.ppo import PpoConfig

    repo = Path(__file__).resolve().parents[2]
    assert load_config(PpoConfig, repo / "configs/train/ppo-gpu.yaml").whiten == "sequence"  # Llama 2
    assert load_config(PpoConfig, repo / "configs/train/ppo-tiny.yaml").whiten == "none"
    old = tmp_path / "old.yaml"
    old.write_text("model: {path: m}\nwhiten_rewards: true\n")
    with pytest.raises(ConfigError, match="whiten_rewards: true is replaced by whiten: sequence") as err:
        load_config(PpoConfig, old)
    assert "tokens (the old whiten_rewards: true" in str(err.value)
    with pytest.raises(ConfigError, match="rollout_batch_size"):
        load_config(PpoConfig, None, ["model.path=m", "rollout_batch_size=0"])
