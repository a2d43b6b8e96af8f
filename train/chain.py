"""The common chain on one dataset: SFT → reward model → DPO, one call, all summaries.

`model`, `data` and `seed` are given once at the top and copied into every stage; each stage's
section (`sft:`, `reward:`, `dpo:`) holds the rest of its config. Stage outputs go to
`<output_dir>/<stage>`. DPO (and the reward model, with `reward_from: sft`) start from the SFT
result: they keep training its adapter over the bare (4-bit with QLoRA) base, which also makes it
DPO's reference (`train.models.continues_adapter`); or they start from its merged folder. All summaries are also written
together to `<output_dir>/summary.json`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data.errors import ConfigError
from train.config import DataConfig, DpoConfig, ModelConfig, RewardConfig, RunConfig, SftConfig

STAGES = ("sft", "reward", "dpo")


@dataclass
class ChainConfig:
    output_dir: Path = Path("runs/chain")
    seed: int = 42
    stages: list[Literal["sft", "reward", "dpo"]] = field(default_factory=lambda: list(STAGES))
    reward_from: Literal["base", "sft"] = "sft"  # InstructGPT starts the reward model from the SFT model
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)

    def __post_init__(self) -> None:
        # the top-level model/data/output_dir/seed win; a stage section setting them would be ignored
        for name in STAGES:
            stage = getattr(self, name)
            default = type(stage)()
            for key in ("model", "data", "output_dir", "seed"):
                if getattr(stage, key) != getattr(default, key):
                    raise ConfigError(f"{name}.{key}: set {key} once at the top of a chain config, not per stage")


def _stage(cfg: ChainConfig, name: str, model: ModelConfig) -> RunConfig:
    return dataclasses.replace(
        getattr(cfg, name), output_dir=cfg.output_dir / name, seed=cfg.seed, model=model, data=cfg.data
    )


def _after_sft(base: ModelConfig, sft_cfg: SftConfig, sft_summary: dict[str, Any]) -> ModelConfig:
    """The model the later stages start from: the SFT adapter (continued by them), or the merged folder."""
    from train.models import saved_as

    model_dir = sft_summary["model_dir"]
    if saved_as(sft_cfg) == "merged":
        return dataclasses.replace(base, path=model_dir, adapter=None)
    return dataclasses.replace(base, adapter=model_dir)


def run(cfg: ChainConfig) -> dict[str, dict[str, Any]]:
    """Run the configured stages in order; returns {stage: summary}."""
    from train import dpo, reward, sft
    from data.writers import write_json

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
    write_json(Path(cfg.output_dir) / "summary.json", {"total_s": time.perf_counter() - started, "stages": summaries})
    return summaries
