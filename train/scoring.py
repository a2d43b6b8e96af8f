"""Rewards for the online stages (PPO, best-of-K, rounds): a trained reward model or a rule.

A reward function takes the prompts (`data.schema.Prompt`) and the completions (plain text, in the
same order) and returns one float per completion. `RewardModelScorer` wraps the `reward` stage's
saved sequence classifier (a full model folder or a LoRA adapter over its base) and scores the
conversation [system?, user: question, assistant: completion] exactly as that stage does.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data.errors import ConfigError
from data.schema import Prompt

RewardFn = Callable[[list[Prompt], list[str]], list[float]]


@dataclass
class RewardSection:
    """Where rewards come from: exactly one of `model` (the reward stage's output) or `function`."""

    model: str | None = None  # a reward model folder (full, or a LoRA adapter with adapter_config.json)
    function: str | None = None  # "package.module:function", called as f(prompts, completions)
    batch_size: int = 16
    max_length: int = 512  # tokens; longer conversations keep their end (the head reads the last token)


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
    """Scores (prompt, completion) pairs with the reward stage's saved model, as that stage scores."""

    def __init__(self, path: str | Path, *, base_model: str | None = None, batch_size: int = 16,
                 max_length: int = 512) -> None:
        from train.reward import load_trained_reward_model

        # on the GPU in bf16 where there is one (the stages' rule), else the CPU in fp32
        self.model, self.tokenizer = load_trained_reward_model(path, base_model)
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> list[float]:
        from train.reward import score_conversations

        conversations = [messages(p, c) for p, c in zip(prompts, completions, strict=True)]
        return score_conversations(self.model, self.tokenizer, conversations, batch_size=self.batch_size,
                                   max_length=self.max_length)


def load_reward(section: RewardSection) -> RewardFn:
    """The reward function a config names (a model folder or an importable rule)."""
    if bool(section.model) == bool(section.function):
        raise ConfigError("reward: set exactly one of reward.model (a reward model folder) or reward.function")
    if section.function:
        return import_reward_function(section.function)
    return RewardModelScorer(section.model, batch_size=section.batch_size, max_length=section.max_length)
