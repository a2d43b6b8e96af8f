"""QLoRA (4-bit NF4 base, bf16) reward and DPO runs on the tiny model: only where a CUDA GPU and
bitsandbytes are (skipped on the CPU-only CI). The data is `marker_dataset`: length-balanced pairs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from prefkit.core.config import load_config
from prefkit.train import dpo, reward
from prefkit.train.config import DpoConfig, RewardConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes (prefkit[gpu])"),
]


def _sets(tiny_model_path, marker_dataset, out):
    return [
        f"model.path={tiny_model_path}",
        f"data.source={marker_dataset}",
        f"output_dir={out}",
        "max_steps=10",
        "lr=3e-3",
        "batch_size=8",
        "logging_steps=2",
        "quant.qlora=true",
        "bf16=auto",
        "gradient_checkpointing=true",
    ]


def test_qlora_reward_model_learns_on_gpu(tiny_model_path, marker_dataset, held_out, tmp_path):
    """QLoRA reward model on the length-balanced marker pairs: held-out accuracy ≥ 0.85 with at most
    half the error of the start model (the 4-bit base with the same seed's head) on the same pairs
    (`HeldOut.learned`). Not run in this round (no GPU): the CPU test's steps and lr, which pass at
    20 of 20 seeds there in fp32."""
    from transformers import AutoTokenizer, set_seed

    from prefkit.train.models import load_reward_model

    cfg = load_config(RewardConfig, None, [*_sets(tiny_model_path, marker_dataset, tmp_path / "rm"), "max_steps=30"])
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    pairs = held_out.pairs(marker_dataset)
    set_seed(cfg.seed)  # as the stage does before it draws the head
    start = load_reward_model(cfg, pad_token_id=tok.pad_token_id)
    before = held_out.reward_margins(start, tok, pairs)
    del start
    summary = reward.run(cfg)
    assert summary["config"]["quant"]["qlora"] and summary["peak_gpu_memory_gb"] > 0
    model, tok = reward.load_trained_reward_model(summary["model_dir"])
    held_out.learned(before, held_out.reward_margins(model, tok, pairs))


def test_qlora_dpo_learns_on_gpu_with_merged_save(tiny_model_path, marker_dataset, held_out, tmp_path):
    """QLoRA DPO on the length-balanced marker pairs, saved merged (a bf16 folder over the full-precision
    base): on the held-out pairs, the merged model's preference accuracy (log-likelihoods, fp32 on the
    CPU) ≥ 0.85 with at most half the error of the base model's (`HeldOut.learned`). Not run in this
    round (no GPU): the CPU test's lr, batch and β, twice its steps (4-bit, bf16)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sets = [
        *_sets(tiny_model_path, marker_dataset, tmp_path / "dpo"),
        "save=merged",
        "max_steps=20",
        "lr=5e-3",
        "beta=0.1",
    ]
    summary = dpo.run(load_config(DpoConfig, None, sets))
    assert summary["peak_gpu_memory_gb"] > 0
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    pairs = held_out.pairs(marker_dataset)
    fp32 = {"dtype": torch.float32}
    before = held_out.logratios(AutoModelForCausalLM.from_pretrained(tiny_model_path, **fp32), tok, pairs)
    after = held_out.logratios(AutoModelForCausalLM.from_pretrained(summary["model_dir"], **fp32), tok, pairs)
    held_out.learned(before, after)


def test_qlora_dpo_from_a_qlora_sft_adapter_starts_at_the_sft_model(tiny_model_path, marker_dataset, tmp_path):
    """Real 4-bit: SFT with QLoRA, then DPO from its adapter. The DPO policy before its first step is
    the SFT model (4-bit base + SFT adapter), and so is its reference: first implicit rewards are 0."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prefkit.train import sft
    from prefkit.train.config import SftConfig
    from prefkit.train.models import load_policy

    sets = _sets(tiny_model_path, marker_dataset, tmp_path / "sft")
    sft_summary = sft.run(load_config(SftConfig, None, sets))
    adapter = sft_summary["model_dir"]
    dpo_sets = [
        *_sets(tiny_model_path, marker_dataset, tmp_path / "dpo"),
        f"model.adapter={adapter}",
        "logging_steps=1",
    ]
    cfg = load_config(DpoConfig, None, dpo_sets)
    ids = torch.randint(10, 300, (2, 16), device="cuda")
    policy = load_policy(cfg)
    base4 = load_policy(load_config(DpoConfig, None, _sets(tiny_model_path, marker_dataset, tmp_path / "x")))
    want = PeftModel.from_pretrained(base4, adapter)
    with torch.no_grad():
        policy.eval(), want.eval()
        torch.testing.assert_close(
            policy(input_ids=ids).logits.float(), want(input_ids=ids).logits.float(), rtol=0, atol=1e-2
        )
    del policy, want, base4
    summary = dpo.run(cfg)
    # ~0: the policy and its reference are the same SFT adapter (TRL keeps the trained copy in bf16 under QLoRA)
    assert abs(summary["metrics"]["first"]["rewards/chosen"]) < 0.05
    assert (tmp_path / "dpo" / "model" / "adapter_config.json").exists()
    merged = dpo.run(load_config(DpoConfig, None, [*dpo_sets, "save=merged", f"output_dir={tmp_path / 'dpo-m'}"]))
    assert AutoModelForCausalLM.from_pretrained(merged["model_dir"]).dtype == torch.bfloat16  # never a 4-bit save
