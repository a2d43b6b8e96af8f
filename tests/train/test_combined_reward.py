"""Llama 2's combined reward (safety score when the prompt is adversarial or R_s < 0.15, else
helpfulness; the logit of the pick, optionally whitened) with rules whose combination is known by
hand and with two tiny reward models; the TRL adapter keeps the prompt's tag; best-of-K and GRPO
run on it."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from prefkit.core.errors import ConfigError
from prefkit.data.schema import Prompt
from prefkit.train.scoring import CombinedReward, RewardModelScorer, RewardSection, load_reward, whiten

RULES = textwrap.dedent(
    """
    def helpful(prompts, completions):
        return [float(len(c.split())) for c in completions]          # longer is more helpful

    def safety(prompts, completions):
        return [-3.0 if "bomb" in c else (-1.7 if "knife" in c else (-1.8 if "gun" in c else 2.0))
                for c in completions]
    """
)


@pytest.fixture
def rules(tmp_path, monkeypatch) -> str:
    (tmp_path / "llama_rules.py").write_text(RULES, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "llama_rules"


def test_combination_by_hand(rules):
    fn = load_reward(RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety"))
    assert isinstance(fn, CombinedReward)
    benign, adversarial = Prompt("How do I cook rice?"), Prompt("How do I hurt someone?", adversarial=True)
    prompts = [benign, benign, benign, benign, adversarial, adversarial]
    completions = [
        "rinse it then boil it",
        "a bomb recipe here",
        "use a sharp knife",
        "a gun",
        "I will not help with that request",
        "a bomb",
    ]
    # by hand: sigmoid(2) = .88 -> helpfulness (5 words); sigmoid(-3) = .047 < .15 -> safety (-3);
    # sigmoid(-1.7) = .154 >= .15 -> helpfulness (4 words); sigmoid(-1.8) = .142 < .15 -> safety (-1.8);
    # adversarial prompts always take the safety score (2.0 and -3.0) though helpfulness is higher
    assert fn(prompts, completions) == [5.0, -3.0, 4.0, -1.8, 2.0, -3.0]
    assert fn.last_choice == ["helpfulness", "safety", "helpfulness", "safety", "safety", "safety"]
    # a stricter threshold (0.2) moves the knife answer (R_s = .154) to its safety score
    strict = load_reward(
        RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety", safety_threshold=0.2)
    )
    assert strict(prompts, completions)[2] == -1.7
    # whitened: the same picks, mean 0 and std 1 over the batch
    white = load_reward(RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety", whiten=True))
    raw = [5.0, -3.0, 4.0, -1.8, 2.0, -3.0]
    mean = sum(raw) / 6
    std = math.sqrt(sum((x - mean) ** 2 for x in raw) / 6)
    assert white(prompts, completions) == pytest.approx([(x - mean) / std for x in raw])
    assert whiten([3.0]) == [0.0] and whiten([]) == []


def test_config_errors(rules):
    with pytest.raises(ConfigError, match="at most one"):
        RewardSection(function=f"{rules}:helpful", safety_model="x", safety_function=f"{rules}:safety")
    with pytest.raises(ConfigError, match="safety_threshold"):
        RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety", safety_threshold=1.5)
    with pytest.raises(ConfigError, match="exactly one"):
        load_reward(RewardSection(safety_function=f"{rules}:safety"))


def test_two_tiny_reward_models(tiny_model_path, tmp_path):
    """Two real (random-headed) sequence classifiers: the combination picks, per answer, exactly
    the model the rule names, at a threshold that splits the answers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folders = {}
    for name, seed in (("help", 1), ("safe", 2)):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        torch.nn.init.normal_(model.score.weight, std=2.0)
        folders[name] = tmp_path / name
        model.save_pretrained(folders[name])
        AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(folders[name])
    prompts = [
        Prompt(q, adversarial=i == 0, history=(("user", "Chào"), ("assistant", "Chào bạn")) if i == 1 else ())
        for i, q in enumerate(["Kể về phở.", "Còn trà?", "Nói về Hà Nội.", "Tả mùa thu.", "Viết về lúa."])
    ]
    completions = ["Phở ngon.", "Trà xanh thơm.", "Hà Nội đẹp lắm.", "Lá vàng rơi.", "Lúa chín vàng đồng."]
    h = RewardModelScorer(folders["help"])(prompts, completions)
    s = RewardModelScorer(folders["safe"])(prompts, completions)
    probs = sorted(1 / (1 + math.exp(-x)) for x in s)
    threshold = (probs[1] + probs[2]) / 2  # two answers below, three above
    section = RewardSection(model=str(folders["help"]), safety_model=str(folders["safe"]), safety_threshold=threshold)
    combined = load_reward(section)
    got = combined(prompts, completions)
    expected = [s[i] if prompts[i].adversarial or 1 / (1 + math.exp(-s[i])) < threshold else h[i] for i in range(5)]
    assert got == pytest.approx(expected, abs=1e-5)
    assert "helpfulness" in combined.last_choice and "safety" in combined.last_choice
    # the history changes what the models read: the same answer scores differently without it
    alone = RewardModelScorer(folders["help"])([Prompt("Còn trà?")], [completions[1]])[0]
    assert alone != pytest.approx(h[1], abs=1e-6)


def test_trl_adapter_keeps_the_adversarial_tag_and_the_history(rules):
    from prefkit.train.online import _prompt_dataset, trl_reward

    combined = load_reward(RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety"))
    prompts = [Prompt("Q one?", adversarial=True), Prompt("Q two?", history=(("user", "hi"), ("assistant", "yo")))]
    ds = _prompt_dataset(prompts)
    assert ds["adversarial"] == [True, False] and len(ds[1]["prompt"]) == 3
    reward = trl_reward(combined)
    scores = reward(
        prompts=ds["prompt"],
        completions=[[{"role": "assistant", "content": "one two three"}]] * 2,
        adversarial=ds["adversarial"],
    )
    assert scores == [2.0, 3.0]  # adversarial: safety (2.0); benign: helpfulness (3 words)


def test_best_of_k_with_the_combined_reward(tiny_model_path, rules, tmp_path):
    from datasets import load_from_disk

    from prefkit.train.best_of_k import BestOfKConfig, run
    from prefkit.train.config import ModelConfig

    prompts = [Prompt("Tell me a story.", adversarial=True), Prompt("Name a fruit."), Prompt("Say hi.")]
    cfg = BestOfKConfig(
        output_dir=tmp_path / "bok",
        model=ModelConfig(path=str(tiny_model_path)),
        k=4,
        max_new_tokens=10,
        seed=1,
        batch_size=8,
        device="cpu",
        reward=RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety"),
    )
    summary = run(cfg, prompts=prompts)
    samples = [json.loads(line) for line in (tmp_path / "bok" / "samples.jsonl").read_text().splitlines()]
    assert summary["metrics"]["kept"] >= 1 and len(samples) == 3
    for s in samples:
        adversarial = s["question"] == "Tell me a story."
        by_hand = load_reward(cfg.reward)(
            [Prompt(s["question"], adversarial=adversarial)] * len(s["samples"]), s["samples"]
        )
        assert s["scores"] == by_hand
        if adversarial:  # the random tiny model writes no "bomb": every sample gets the safety score 2.0
            assert all(x == 2.0 or x < 0 for x in s["scores"])
    assert load_from_disk(str(tmp_path / "bok" / "dataset"))["train"].num_rows == summary["metrics"]["kept"]


@pytest.mark.slow
def test_grpo_passes_the_adversarial_tag_to_the_combined_reward(tiny_model_path, rules, tmp_path):
    """Through TRL's real GRPOTrainer: answers to the adversarial prompt always get the safety score."""
    from prefkit.train.config import LoraSection, ModelConfig
    from prefkit.train.online import GrpoConfig, run_grpo

    combined = load_reward(RewardSection(function=f"{rules}:helpful", safety_function=f"{rules}:safety"))
    seen: list[tuple[str, str]] = []

    def spy(prompts, completions):
        scores = combined(prompts, completions)
        seen.extend(zip((p.question for p in prompts), combined.last_choice, strict=True))
        return scores

    prompts = [
        Prompt("Hurt someone?", adversarial=True),
        Prompt("Cook rice?"),
        Prompt("And tea?", history=(("user", "Cook rice?"), ("assistant", "Boil it."))),
    ]
    cfg = GrpoConfig(
        output_dir=tmp_path / "grpo",
        model=ModelConfig(path=str(tiny_model_path)),
        lora=LoraSection(r=4, alpha=8, dropout=0.0),
        batch_size=8,
        num_generations=4,
        max_steps=2,
        max_new_tokens=6,
        lr=1e-3,
        save_steps=100,
        seed=0,
    )
    run_grpo(cfg, reward_fn=spy, prompts=prompts)
    assert {q for q, _ in seen} == {p.question for p in prompts}  # two steps of two prompts cover all three
    for question, choice in seen:
        if question == "Hurt someone?":
            assert choice == "safety"
        else:  # the random model writes no "bomb"/"knife"/"gun": safety is high, helpfulness is used
            assert choice == "helpfulness"


def test_the_safety_threshold_table_and_sigmoid_quantiles_by_hand():
    """What `train score` reports to pick `safety_threshold`: with R = sigmoid(score), precision and recall
    of "R < t" as a detector of the answers flagged unsafe (unflagged answers left out), per threshold."""
    from prefkit.train.scoring import safety_threshold_table, sigmoid_quantiles, threshold_report

    logit = lambda r: math.log(r / (1 - r))  # noqa: E731
    # R: 0.03 unsafe, 0.12 unsafe, 0.12 safe, 0.18 unsafe, 0.6 safe, 0.9 safe, 0.01 (no flag)
    rs = [0.03, 0.12, 0.12, 0.18, 0.6, 0.9, 0.01]
    unsafe = [True, True, False, True, False, False, None]
    table = {row["threshold"]: row for row in safety_threshold_table([logit(r) for r in rs], unsafe)}
    assert table[0.05] == {"threshold": 0.05, "below": 1, "precision": 1.0, "recall": pytest.approx(1 / 3)}
    assert table[0.15] == {
        "threshold": 0.15,
        "below": 3,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
    }
    assert table[0.2]["below"] == 4 and table[0.2]["precision"] == 0.75 and table[0.2]["recall"] == 1.0
    assert table[0.5] == table[0.2] | {"threshold": 0.5}
    q = sigmoid_quantiles([logit(r) for r in rs])
    assert q["p50"] == pytest.approx(0.12) and q["p05"] == pytest.approx(0.01) and q["p95"] == pytest.approx(0.9)
    assert list(q) == ["p05", "p10", "p25", "p50", "p75", "p90", "p95"]
    assert "safety_threshold_table" not in threshold_report([0.0, 1.0], [None, None])
