"""QLoRA (4-bit NF4 base, bf16) reward and DPO runs on the tiny model: only where a CUDA GPU and
bitsandbytes are (skipped on the CPU-only CI)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from data.config import load_config
from train import dpo, reward
from train.config import DpoConfig, RewardConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes (prefkit[gpu])"),
]


def _sets(tiny_model_path, marker_dataset, out):
    return [f"model.path={tiny_model_path}", f"data.source={marker_dataset}", f"output_dir={out}", "max_steps=10",
            "lr=3e-3", "batch_size=8", "logging_steps=2", "quant.qlora=true", "bf16=auto", "gradient_checkpointing=true"]


def test_qlora_reward_model_on_gpu(tiny_model_path, marker_dataset, tmp_path):
    summary = reward.run(load_config(RewardConfig, None, _sets(tiny_model_path, marker_dataset, tmp_path / "rm")))
    assert summary["config"]["quant"]["qlora"] and summary["peak_gpu_memory_gb"] > 0
    assert summary["metrics"]["test_accuracy"] > 0.5


def test_qlora_dpo_on_gpu_with_merged_save(tiny_model_path, marker_dataset, tmp_path):
    summary = dpo.run(load_config(DpoConfig, None, [*_sets(tiny_model_path, marker_dataset, tmp_path / "dpo"), "save=merged"]))
    assert summary["metrics"]["last"]["rewards/margins"] > summary["metrics"]["first"]["rewards/margins"]
    assert summary["peak_gpu_memory_gb"] > 0
