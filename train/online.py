"""Critic-free online RL with TRL's maintained trainers: RLOO and GRPO.

Both sample `num_generations` answers per prompt, score them with the same reward function PPO
and best-of-K use (the `reward` stage's model or a rule, `prefkit.train.scoring`), and use the group of
answers as its own baseline instead of a value model. The reference for the KL term (`beta`) is,
as in DPO, the adapter-disabled model when the run trains a new adapter, and a frozen copy of the
adapter (TRL's `ref`) when it continues `model.adapter` (e.g. the SFT model); with `beta: 0` there
is no reference. `batch_size` counts completions per device step and must be a multiple of
`num_generations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError
from prefkit.data.schema import Prompt
from prefkit.train.config import RunConfig
from prefkit.train.scoring import RewardFn, RewardSection, load_reward, messages


@dataclass
class OnlineConfig(RunConfig):
    """Settings RLOO and GRPO share (TRL's names where they exist)."""

    reward: RewardSection = setting(help="Where rewards come from (see RewardSection).", factory=RewardSection)
    num_generations: int = setting(4, "Answers sampled per prompt: the group that is its own baseline.")
    max_new_tokens: int = setting(64, "Most new tokens per answer.")
    temperature: float = setting(1.0, "Sampling temperature.")
    top_p: float = setting(1.0, "Nucleus sampling top-p.")
    beta: float = setting(0.05, "KL coefficient against the reference (0: no reference forward).")
    num_iterations: int = setting(1, "Optimisation passes per generated batch.")
    epsilon: float = setting(0.2, "Ratio clipping.")
    lr: float = setting(1e-5, "Peak learning rate.")
    logging_steps: int = setting(1, "Log the metrics every N steps.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2: the group is the baseline")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ConfigError(
                f"batch_size × grad_accum ({self.batch_size * self.grad_accum}) must be a multiple of "
                f"num_generations ({self.num_generations})"
            )


@dataclass
class RlooConfig(OnlineConfig):
    """RLOO: each answer's baseline is the mean reward of the other answers to its prompt."""

    normalize_advantages: bool = setting(False, "Standardise the advantages over the batch (TRL's option).")


@dataclass
class GrpoConfig(OnlineConfig):
    """GRPO: advantages are rewards less their group's mean, scaled as `scale_rewards` says."""

    loss_type: str = setting("dapo", "TRL's GRPO loss types: grpo, dr_grpo, dapo, bnpo, ...")
    scale_rewards: str = setting(
        "group", "Divide advantages by the reward std of the group, of the batch, or none (Dr. GRPO)."
    )


def _prompt_of(conversation: list[dict[str, str]], adversarial: bool = False) -> Prompt:
    return Prompt.from_messages(conversation, adversarial=adversarial)


def trl_reward(reward_fn: RewardFn) -> Callable[..., list[float]]:
    """Adapt prefkit's `(prompts, completions) -> scores` to TRL's conversational reward signature
    (TRL passes the dataset's other columns as keywords: `adversarial` keeps the prompt's tag)."""

    def reward(prompts: list[Any], completions: list[Any], **kw: Any) -> list[float]:
        tags = kw.get("adversarial") or [False] * len(prompts)
        ps = [
            _prompt_of(p, bool(t)) if isinstance(p, list) else Prompt(p, adversarial=bool(t))
            for p, t in zip(prompts, tags, strict=True)
        ]
        cs = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(x) for x in reward_fn(ps, cs)]

    reward.__name__ = "reward"  # TRL logs rewards/<name>/mean
    return reward


def _prompt_dataset(prompts: list[Prompt]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": messages(p), "adversarial": p.adversarial} for p in prompts])


def _run(stage: str, cfg: OnlineConfig, reward_fn: RewardFn | None, prompts: list[Prompt] | None) -> dict[str, Any]:
    import trl

    from prefkit.train.datasets import load_prompts
    from prefkit.train.models import load_policy, load_tokenizer, resolve_resume, trainer_kwargs, trainer_peft_config
    from prefkit.train.output_dir import claim_output_dir
    from prefkit.train.summary import ThroughputCallback, finish_run

    started = time.perf_counter()
    claim_output_dir(cfg, stage)
    prompts = prompts if prompts is not None else load_prompts(cfg.data)
    reward_fn = reward_fn or load_reward(cfg.reward)
    common = {
        **trainer_kwargs(cfg),
        "eval_strategy": "no",
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "beta": cfg.beta,
        "num_iterations": cfg.num_iterations,
        "epsilon": cfg.epsilon,
    }
    if isinstance(cfg, GrpoConfig):
        args: Any = trl.GRPOConfig(**common, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards)
        trainer_cls: Any = trl.GRPOTrainer
    elif isinstance(cfg, RlooConfig):
        args = trl.RLOOConfig(**common, normalize_advantages=cfg.normalize_advantages)
        trainer_cls = trl.RLOOTrainer
    else:
        raise ConfigError(f"{stage}: expected an RlooConfig or a GrpoConfig")
    throughput = ThroughputCallback()
    trainer = trainer_cls(
        model=load_policy(cfg),
        reward_funcs=[trl_reward(reward_fn)],
        args=args,
        train_dataset=_prompt_dataset(prompts),
        processing_class=load_tokenizer(cfg, padding_side="left"),
        peft_config=trainer_peft_config(cfg),
        callbacks=[throughput],
    )
    trainer.train(resume_from_checkpoint=resolve_resume(cfg))
    logged = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "first_reward": logged[0]["reward"] if logged else None,
        "final_reward": logged[-1]["reward"] if logged else None,
        "final_kl": logged[-1].get("kl") if logged else None,
        "steps_per_s": throughput.steps / throughput.train_seconds if throughput.train_seconds else None,
    }
    return finish_run(stage, cfg, trainer, throughput, metrics, started=started)


def run_rloo(
    cfg: RlooConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None
) -> dict[str, Any]:
    """TRL's RLOOTrainer with prefkit's reward; returns the summary."""
    return _run("rloo", cfg, reward_fn, prompts)


def run_grpo(
    cfg: GrpoConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None
) -> dict[str, Any]:
    """TRL's GRPOTrainer with prefkit's reward; returns the summary."""
    return _run("grpo", cfg, reward_fn, prompts)
