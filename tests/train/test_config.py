"""Train configs: every shipped YAML parses; bad configs give a clear ConfigError; settings map
onto the real TRL / peft objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prefkit.core.config import load_config
from prefkit.core.errors import ConfigError
from prefkit.train.chain import ChainConfig
from prefkit.train.config import STAGE_CONFIGS, DpoConfig, RewardConfig, SftConfig
from prefkit.train.models import peft_config, quantization_config, trainer_kwargs, use_bf16

# this room's stages (PPO, best-of-K and rounds test their own configs)
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml")
    if p.name.split("-")[0] in (*STAGE_CONFIGS, "chain")
)
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse(path):
    stage = path.name.split("-")[0]
    cfg = load_config(ChainConfig if stage == "chain" else STAGE_CONFIGS[stage], path)
    assert cfg.model.path and cfg.data.source


def test_shipped_configs_cover_every_stage_tiny_and_gpu():
    names = {p.stem for p in CONFIGS}
    assert {f"{s}-{k}" for s in ("sft", "reward", "dpo", "chain") for k in ("tiny", "gpu")} <= names


def test_overrides_reach_nested_sections_and_types():
    cfg = load_config(
        RewardConfig,
        CONFIGS[0].parent / "reward-tiny.yaml",
        ["lora.r=4", "lora.target_modules=q_proj,v_proj", "margin=large", "bf16=false", "data.max_rows=10"],
    )
    assert cfg.lora.r == 4 and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.margin == "large" and cfg.bf16 is False and cfg.data.max_rows == 10


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "dpo.yaml"
    bad.write_text("beta: 0.1\nbetta: 0.2\n")
    with pytest.raises(ConfigError, match=r"dpo\.yaml.*unknown key\(s\) betta"):
        load_config(DpoConfig, bad)
    with pytest.raises(ConfigError, match=r"lora.*unknown key\(s\) rank"):
        load_config(SftConfig, None, ["lora.rank=8"])


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="margin"):
        load_config(RewardConfig, None, ["margin=huge"])
    with pytest.raises(ConfigError, match="lr"):
        load_config(SftConfig, None, ["lr=fast"])
    with pytest.raises(ConfigError, match="qlora needs lora"):
        load_config(SftConfig, None, ["quant.qlora=true", "lora.enabled=false"])


def test_chain_rejects_per_stage_model_or_data():
    with pytest.raises(ConfigError, match=r"sft\.model"):
        load_config(ChainConfig, None, ["sft.model.path=elsewhere"])


@no_cuda
def test_qlora_on_cpu_is_a_clear_error():
    cfg = load_config(SftConfig, None, ["quant.qlora=true", "model.path=x"])
    with pytest.raises(ConfigError, match=r"qlora.*CUDA GPU"):
        quantization_config(cfg)


@no_cuda
def test_bf16_auto_is_off_on_cpu_and_forced_bf16_is_an_error():
    assert use_bf16(load_config(SftConfig)) is False
    with pytest.raises(ConfigError, match="bf16"):
        use_bf16(load_config(SftConfig, None, ["bf16=true"]))


def test_lora_section_becomes_a_peft_config():
    cfg = load_config(RewardConfig, None, ["lora.r=4", "lora.alpha=8", "lora.modules_to_save=[norm]"])
    lora = peft_config(cfg, task_type="SEQ_CLS", modules_to_save=["score"])
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (4, 8, "all-linear")
    assert set(lora.modules_to_save) >= {"norm", "score"}
    assert peft_config(load_config(SftConfig, None, ["lora.enabled=false"])) is None


def test_trainer_kwargs_build_real_trl_configs(tmp_path):
    from trl import DPOConfig, SFTConfig
    from trl import RewardConfig as TrlRewardConfig

    cfg = load_config(
        DpoConfig,
        None,
        [f"output_dir={tmp_path}", "max_steps=7", "grad_accum=3", "warmup=0.1", "report_to=tensorboard"],
    )
    for cls in (SFTConfig, TrlRewardConfig, DPOConfig):
        args = cls(**trainer_kwargs(cfg))
        assert args.max_steps == 7 and args.gradient_accumulation_steps == 3 and args.seed == cfg.seed
        assert args.report_to == ["tensorboard"] and args.output_dir == str(tmp_path)
        assert args.include_num_input_tokens_seen == "non_padding"


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb is installed")
def test_report_to_a_missing_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match="report_to: wandb needs the wandb package"):
        trainer_kwargs(load_config(SftConfig, None, ["report_to=wandb"]))


def test_missing_adapter_is_a_config_error(tiny_model_path, tmp_path):
    from prefkit.train.models import load_policy

    cfg = load_config(SftConfig, None, [f"model.path={tiny_model_path}", f"model.adapter={tmp_path / 'no-adapter'}"])
    with pytest.raises(ConfigError, match=r"model\.adapter.*cannot load a peft adapter"):
        load_policy(cfg)


@pytest.mark.parametrize("env", ["ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"])
def test_merged_save_under_deepspeed_or_fsdp_is_a_config_error_before_training(env, monkeypatch):
    """Sharded runs save only the adapter: `save: merged` must not silently become an adapter folder.
    A model.adapter is continued and saved as an adapter, so it is fine there."""
    monkeypatch.setenv(env, "true")
    with pytest.raises(ConfigError, match="save: merged under DeepSpeed/FSDP"):
        trainer_kwargs(load_config(SftConfig, None, ["model.path=m", "save=merged"]))
    assert trainer_kwargs(load_config(DpoConfig, None, ["model.path=m", "model.adapter=sft/model"]))["output_dir"]
    assert trainer_kwargs(load_config(SftConfig, None, ["model.path=m"]))["output_dir"]  # adapter save: fine
    assert trainer_kwargs(load_config(SftConfig, None, ["model.path=m", "save=merged", "lora.enabled=false"]))


def test_optimizer_and_scheduler_keys_are_checked():
    cfg = load_config(
        SftConfig,
        None,
        [
            "model.path=m",
            "optim=adafactor",
            "max_grad_norm=0.3",
            "adam_beta1=0.8",
            "adam_beta2=0.95",
            "lr_scheduler=cosine",
            "neftune_noise_alpha=5",
        ],
    )
    kw = trainer_kwargs(cfg)
    assert (kw["optim"], kw["max_grad_norm"], kw["adam_beta1"], kw["adam_beta2"], kw["lr_scheduler_type"]) == (
        "adafactor",
        0.3,
        0.8,
        0.95,
        "cosine",
    )
    with pytest.raises(ConfigError, match="optim: unknown optimizer 'adamw_8bitt'"):
        load_config(SftConfig, None, ["model.path=m", "optim=adamw_8bitt"])
    with pytest.raises(ConfigError, match="lr_scheduler: unknown scheduler"):
        load_config(DpoConfig, None, ["model.path=m", "lr_scheduler=cosinus"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(DpoConfig, None, ["model.path=m", "neftune_noise_alpha=5"])  # SFT's key only
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="paged_adamw_8bit needs bitsandbytes"):
            trainer_kwargs(load_config(DpoConfig, None, ["model.path=m", "optim=paged_adamw_8bit"]))
