"""Stages in one call: SFT → reward model → DPO and/or PPO, all summaries together.

`model`, `data`, `seed` and `output_dir` are given once at the top and copied into every stage;
each stage's section (`sft:`, `reward:`, `dpo:`, `ppo:`) holds the rest of its config. A stage may
give its own `data:` section, which then replaces the top one for that stage entirely (the TL;DR
recipe: SFT on prompt → label, the reward model on comparisons, PPO on the prompts). Stage
outputs go to `<output_dir>/<stage>`. DPO, PPO (and the reward model, with `reward_from: sft`)
start from the SFT result: they keep training its adapter over the bare (4-bit with QLoRA) base,
which also makes it DPO's and PPO's reference (`prefkit.train.models.continues_adapter`); or they start
from its merged folder. PPO is rewarded by the reward stage's model unless `ppo.reward` names one.
All summaries are also written together to `<output_dir>/summary.json`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError
from prefkit.train.config import DataConfig, DpoConfig, ModelConfig, RewardConfig, RunConfig, SftConfig
from prefkit.train.ppo import PpoConfig

STAGES = ("sft", "reward", "dpo", "ppo")


@dataclass
class ChainConfig:
    """SFT → reward → DPO and/or PPO in one run: each stage's section is its own config, and the
    top-level model, data, output_dir and seed are set once for all."""

    output_dir: Path = setting(Path("runs/chain"), "Folder holding one sub-folder per stage and the chain's summary.")
    seed: int = setting(42, "Seed of every stage.")
    stages: list[Literal["sft", "reward", "dpo", "ppo"]] = setting(
        help="Stages to run, in order.", factory=lambda: ["sft", "reward", "dpo"]
    )
    reward_from: Literal["base", "sft"] = setting(
        "sft", "Start the reward model from the base or the SFT model (InstructGPT starts it from SFT)."
    )
    model: ModelConfig = setting(help="The base model every stage starts from.", factory=ModelConfig)
    data: DataConfig = setting(help="The dataset of every stage without a data section of its own.", factory=DataConfig)
    sft: SftConfig = setting(help="The SFT stage's settings (SftConfig).", factory=SftConfig)
    reward: RewardConfig = setting(help="The reward stage's settings (RewardConfig).", factory=RewardConfig)
    dpo: DpoConfig = setting(help="The DPO stage's settings (DpoConfig).", factory=DpoConfig)
    ppo: PpoConfig = setting(help="The PPO stage's settings (PpoConfig).", factory=PpoConfig)

    def __post_init__(self) -> None:
        # the top-level model/output_dir/seed win; a stage section setting them would be ignored
        for name in STAGES:
            stage = getattr(self, name)
            default = type(stage)()
            for key in ("model", "output_dir", "seed"):
                if getattr(stage, key) != getattr(default, key):
                    raise ConfigError(f"{name}.{key}: set {key} once at the top of a chain config, not per stage")
        if (
            "ppo" in self.stages
            and "reward" not in self.stages
            and not (self.ppo.reward.model or self.ppo.reward.function)
        ):
            raise ConfigError(
                "ppo without a reward stage: set ppo.reward.model (a trained reward model) or ppo.reward.function"
            )


def _data(cfg: ChainConfig, name: str) -> DataConfig:
    """The stage's own `data` section if it has one, else the chain's."""
    own = getattr(cfg, name).data
    return own if own != DataConfig() else cfg.data


@overload
def _stage(cfg: ChainConfig, name: Literal["sft"], model: ModelConfig) -> SftConfig: ...
@overload
def _stage(cfg: ChainConfig, name: Literal["reward"], model: ModelConfig) -> RewardConfig: ...
@overload
def _stage(cfg: ChainConfig, name: Literal["dpo"], model: ModelConfig) -> DpoConfig: ...
@overload
def _stage(cfg: ChainConfig, name: Literal["ppo"], model: ModelConfig) -> PpoConfig: ...
@overload
def _stage(cfg: ChainConfig, name: str, model: ModelConfig) -> RunConfig: ...
def _stage(cfg: ChainConfig, name: str, model: ModelConfig) -> RunConfig:
    """The `name` section (of its own config class) wired to the chain's model, data, seed and folder."""
    stage: RunConfig = getattr(cfg, name)
    return dataclasses.replace(
        stage, output_dir=cfg.output_dir / name, seed=cfg.seed, model=model, data=_data(cfg, name)
    )


def _after_sft(base: ModelConfig, sft_cfg: SftConfig, sft_summary: dict[str, Any]) -> ModelConfig:
    """The model the later stages start from: the SFT adapter (continued by them), or the merged folder."""
    from prefkit.train.models import saved_as

    model_dir = sft_summary["model_dir"]
    if saved_as(sft_cfg) == "merged":
        return dataclasses.replace(base, path=model_dir, adapter=None)
    return dataclasses.replace(base, adapter=model_dir)


def run(cfg: ChainConfig) -> dict[str, dict[str, Any]]:
    """Run the configured stages in order; returns {stage: summary}."""
    from prefkit.core.writers import write_json
    from prefkit.train import dpo, reward, sft
    from prefkit.train.output_dir import claim_output_dir, run_inputs

    stages = [_stage(cfg, name, cfg.model) for name in cfg.stages]
    claim_output_dir(cfg, "chain", inputs=[p for stage in stages for p in run_inputs(stage)])
    started = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    start_model = cfg.model
    if "sft" in cfg.stages:
        sft_cfg = _stage(cfg, "sft", cfg.model)
        summaries["sft"] = sft.run(sft_cfg)
        start_model = _after_sft(cfg.model, sft_cfg, summaries["sft"])
    if "reward" in cfg.stages:
        summaries["reward"] = reward.run(_stage(cfg, "reward", start_model if cfg.reward_from == "sft" else cfg.model))
    if "dpo" in cfg.stages:
        summaries["dpo"] = dpo.run(_stage(cfg, "dpo", start_model))
    if "ppo" in cfg.stages:
        from prefkit.train import ppo

        ppo_cfg = _stage(cfg, "ppo", start_model)
        if "reward" in summaries and not (ppo_cfg.reward.model or ppo_cfg.reward.function):
            ppo_cfg = dataclasses.replace(
                ppo_cfg, reward=dataclasses.replace(ppo_cfg.reward, model=summaries["reward"]["model_dir"])
            )
        summaries["ppo"] = ppo.run(ppo_cfg)
    write_json(Path(cfg.output_dir) / "summary.json", {"total_s": time.perf_counter() - started, "stages": summaries})
    return summaries
