"""Rewards for the online stages (PPO, GRPO, RLOO, best-of-K, rounds): a trained reward model or a
rule, or Llama 2's combination of a helpfulness and a safety reward.

A reward function takes the prompts (`prefkit.data.schema.Prompt`) and the completions (plain text, in the
same order) and returns one float per completion. `RewardModelScorer` wraps the `reward` stage's
saved sequence classifier (a full model folder or a LoRA adapter over its base) and scores the
whole conversation [system?, user, assistant, …, user: question, assistant: completion] exactly
as that stage does.

`CombinedReward` is Llama 2's (section 3.2.3): with R_s the safety score and R_h the helpfulness
score, each the sigmoid of its reward model's output, R_c = R_s when the prompt is tagged
adversarial or R_s < `safety_threshold`, else R_h; the reward is logit(R_c), i.e. the chosen
model's raw output (the sigmoid undone), whitened over the call's batch with `whiten: true`
(PPO's own `whiten: sequence` whitens the final scores with the rollout batch's mean and std, all
processes' rows, before the KL penalty is added). The paper's threshold, 0.15, was chosen for
Meta's safety model (a precision of 0.89 and a recall of 0.55 on its safety test set); pick yours
on your safety model's test set: `prefkit train score` reports the sigmoid's quantiles and, where
the rows carry unsafe flags, the precision and recall of "R_s below t" per threshold
(`safety_threshold_table`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Prompt

RewardFn = Callable[[list[Prompt], list[str]], list[float]]


@dataclass
class RewardSection:
    """Where rewards come from: exactly one of `model` (the reward stage's output) or `function`."""

    model: str | None = setting(
        None, "A reward model folder (the reward stage's: full, or a LoRA adapter with adapter_config.json)."
    )
    function: str | None = setting(None, "A rule instead: package.module:function, called as f(prompts, completions).")
    batch_size: int = setting(16, "Conversations scored per forward pass.")
    max_length: int = setting(
        512, "Most tokens scored; longer conversations keep their end (the head reads the last token)."
    )
    safety_model: str | None = setting(
        None,
        "Llama 2's second reward model: with it (or safety_function), model/function is the helpfulness "
        "reward and the two combine as CombinedReward describes.",
    )
    safety_function: str | None = setting(None, "A rule as the safety reward (package.module:function).")
    safety_threshold: float = setting(
        0.15,
        "Below this safety reward R_s (the sigmoid of the safety score), R_s is the reward (Llama 2's 0.15, "
        "chosen for Meta's safety model: pick yours with `prefkit train score` on the safety test set).",
    )
    whiten: bool = setting(False, "Whiten the combined logits over each call's batch (mean 0, std 1).")

    def __post_init__(self) -> None:
        if self.safety_model and self.safety_function:
            raise ConfigError("reward: set at most one of reward.safety_model or reward.safety_function")
        if not 0 < self.safety_threshold < 1:
            raise ConfigError(f"reward.safety_threshold must be in (0, 1), got {self.safety_threshold}")


def messages(prompt: Prompt, completion: str | None = None) -> list[dict[str, str]]:
    """The conversation every stage feeds the chat template: [system?, user, assistant, …, user,
    assistant=completion?] (`Prompt.messages`)."""
    return prompt.messages(completion)


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

    def __init__(
        self, path: str | Path, *, base_model: str | None = None, batch_size: int = 16, max_length: int = 512
    ) -> None:
        from prefkit.train.reward import load_trained_reward_model

        # on the GPU in bf16 where there is one (the stages' rule), else the CPU in fp32
        self.model, self.tokenizer = load_trained_reward_model(path, base_model)
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> list[float]:
        from prefkit.train.reward import score_conversations

        conversations = [messages(p, c) for p, c in zip(prompts, completions, strict=True)]
        return score_conversations(
            self.model, self.tokenizer, conversations, batch_size=self.batch_size, max_length=self.max_length
        )


def sigmoid(x: float) -> float:
    """σ(x), without overflow for large |x|."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def whiten(values: list[float]) -> list[float]:
    """(x − mean) / std over the batch; a batch of one, or of equal values, is only centred."""
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return [(v - mean) / std if std > 1e-8 else v - mean for v in values]


class CombinedReward:
    """Llama 2's combined reward of a helpfulness and a safety reward function (module docstring).

    Each function's output is a logit (a reward model's raw score; a rule should return the same
    kind of number): R = sigmoid(output). Per answer, the safety score is used when the prompt is
    adversarial (`Prompt.adversarial`) or R_s < `threshold`, else the helpfulness score; the result
    is logit(R_c), that function's raw output, optionally whitened over the batch.
    `last_choice` holds, per answer of the last call, "safety" or "helpfulness".
    """

    def __init__(
        self, helpfulness: RewardFn, safety: RewardFn, *, threshold: float = 0.15, whiten_batch: bool = False
    ) -> None:
        self.helpfulness, self.safety = helpfulness, safety
        self.threshold = threshold
        self.whiten_batch = whiten_batch
        self.last_choice: list[str] = []

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> list[float]:
        helpful = [float(x) for x in self.helpfulness(prompts, completions)]
        safe = [float(x) for x in self.safety(prompts, completions)]
        if not len(helpful) == len(safe) == len(completions):
            raise ValueError(
                f"reward functions returned {len(helpful)} and {len(safe)} scores for {len(completions)} completions"
            )
        combined, self.last_choice = [], []
        for p, h, s in zip(prompts, helpful, safe, strict=True):
            use_safety = p.adversarial or sigmoid(s) < self.threshold
            self.last_choice.append("safety" if use_safety else "helpfulness")
            combined.append(s if use_safety else h)  # logit(sigmoid(x)) == x: the chosen raw score
        return whiten(combined) if self.whiten_batch else combined


# thresholds on R = sigmoid(score) at which `safety_threshold_table` reports precision and recall
SAFETY_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def sigmoid_quantiles(scores: list[float]) -> dict[str, float]:
    """Quantiles of R = sigmoid(score) over the scored answers (`p05` … `p95`, nearest rank): where a
    threshold on R falls among a reward model's answers."""
    if not scores:
        return {}
    rs = sorted(sigmoid(s) for s in scores)
    return {f"p{round(q * 100):02d}": rs[min(len(rs) - 1, math.ceil(q * len(rs)) - 1)] for q in QUANTILES}


def safety_threshold_table(scores: list[float], unsafe: list[bool | None]) -> list[dict[str, float | None]]:
    """For each threshold t in `SAFETY_THRESHOLDS`, how well "R_s = sigmoid(score) < t" finds the answers
    flagged unsafe (answers without a flag are left out): `precision` (share of the answers below t that
    are unsafe), `recall` (share of the unsafe answers below t) and `below` (how many are below t).
    Llama 2 took 0.15 for Meta's safety model: precision 0.89, recall 0.55 on its safety test set."""
    known = [(sigmoid(s), u) for s, u in zip(scores, unsafe, strict=True) if u is not None]
    n_unsafe = sum(u for _, u in known)
    table: list[dict[str, float | None]] = []
    for t in SAFETY_THRESHOLDS:
        below = [u for r, u in known if r < t]
        hits = sum(below)
        table.append(
            {
                "threshold": t,
                "below": len(below),
                "precision": hits / len(below) if below else None,
                "recall": hits / n_unsafe if n_unsafe else None,
            }
        )
    return table


def unsafe_flags(records: list[dict[str, Any]], fields: list[str], source: str) -> list[bool | None]:
    """The rows' unsafe flags, field after field (e.g. every `chosen_unsafe`, then every `rejected_unsafe`);
    None where a row has none. A flag that is not a boolean is a `DataError` naming the row and field."""
    from prefkit.core.errors import DataError
    from prefkit.data.schema import parse_bool

    flags: list[bool | None] = []
    for field in fields:
        for i, rec in enumerate(records):
            try:
                flags.append(parse_bool(rec.get(field), field))
            except ValueError as e:
                raise DataError(str(e), file=source, row=i, field=field) from None
    return flags


def threshold_report(scores: list[float], flags: list[bool | None]) -> dict[str, Any]:
    """What `prefkit train score` adds to pick `reward.safety_threshold`: the `sigmoid_quantiles` of the
    scores and, where any answer carries an unsafe flag, the `safety_threshold_table`."""
    out: dict[str, Any] = {"sigmoid_quantiles": sigmoid_quantiles(scores)}
    if any(f is not None for f in flags):
        out["safety_threshold_table"] = safety_threshold_table(scores, flags)
    return out


def _single(model: str | None, function: str | None, section: RewardSection) -> RewardFn:
    if function:
        return import_reward_function(function)
    assert model, "load_reward names a model wherever it names no function"
    return RewardModelScorer(model, batch_size=section.batch_size, max_length=section.max_length)


def load_reward(section: RewardSection) -> RewardFn:
    """The reward function a config names (a model folder or an importable rule), or Llama 2's
    combination when a safety model or rule is named too."""
    if bool(section.model) == bool(section.function):
        raise ConfigError("reward: set exactly one of reward.model (a reward model folder) or reward.function")
    helpfulness = _single(section.model, section.function, section)
    if not (section.safety_model or section.safety_function):
        if section.whiten:
            return lambda prompts, completions: whiten([float(x) for x in helpfulness(prompts, completions)])
        return helpfulness
    safety = _single(section.safety_model, section.safety_function, section)
    return CombinedReward(helpfulness, safety, threshold=section.safety_threshold, whiten_batch=section.whiten)
