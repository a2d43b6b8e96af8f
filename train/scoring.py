"""Rewards for the online stages (PPO, best-of-K, rounds): a trained reward model or a rule.

A reward function takes the prompts (`data.schema.Prompt`) and the completions (plain text, in the
same order) and returns one float per completion. `RewardModelScorer` wraps the `reward` stage's saved
sequence classifier (a full model folder or a LoRA adapter over one) and scores the same
conversation the reward stage was trained on: [system?, user: question, assistant: completion]
through the tokenizer's chat template.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from data.errors import ConfigError
from data.schema import Prompt

RewardFn = Callable[[list[Prompt], list[str]], list[float]]


@dataclass
class RewardSection:
    """Where rewards come from: exactly one of `model` (the reward stage's output) or `function`."""

    model: str | None = None  # a reward model folder (full, or a LoRA adapter with adapter_config.json)
    function: str | None = None  # "package.module:function", called as f(prompts, completions)
    batch_size: int = 16
    max_length: int = 512


def messages(prompt: Prompt, completion: str | None = None) -> list[dict[str, str]]:
    """The conversation every stage feeds the chat template: [system?, user, assistant?]."""
    out = [{"role": "system", "content": prompt.system}] if prompt.system else []
    out.append({"role": "user", "content": prompt.question})
    if completion is not None:
        out.append({"role": "assistant", "content": completion})
    return out


def import_reward_function(spec: str) -> RewardFn:
    """`"package.module:function"` -> the function (a rule-based reward)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"reward.function {spec!r}: expected 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"reward.function {spec!r}: cannot import: {e}") from None
    if not callable(fn):
        raise ConfigError(f"reward.function {spec!r} is not callable")
    return fn


class RewardModelScorer:
    """Scores (question, completion) pairs with a saved one-label sequence classifier."""

    def __init__(self, path: str | Path, *, device: Any = None, dtype: Any = None, batch_size: int = 16,
                 max_length: int = 512) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"reward.model {str(path)!r}: no such folder")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or torch.float32
        if (path / "adapter_config.json").exists():
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
            model = model.merge_and_unload()
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        model.config.pad_token_id = self.tokenizer.pad_token_id  # the head reads the last non-pad token
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> list[float]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(messages(p, c), tokenize=False)
            for p, c in zip(prompts, completions, strict=True)
        ]
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False).to(self.device)
            with torch.no_grad():
                out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out


def load_reward(section: RewardSection, **scorer_kw: Any) -> RewardFn:
    """The reward function a config names (a model folder or an importable rule)."""
    if bool(section.model) == bool(section.function):
        raise ConfigError("reward: set exactly one of reward.model (a reward model folder) or reward.function")
    if section.function:
        return import_reward_function(section.function)
    return RewardModelScorer(section.model, batch_size=section.batch_size, max_length=section.max_length, **scorer_kw)
