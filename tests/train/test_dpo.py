"""DPO on the tiny model: the implicit reward margin and accuracy rise; merged saving works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.config import load_config
from data.export import export_dataset
from train import dpo
from train.config import DpoConfig


@pytest.mark.slow
def test_dpo_raises_reward_margin_and_accuracy(tiny_model_path, make_marker_rows, tmp_path):
    export_dataset(make_marker_rows(48, seed=3), tmp_path / "ds", test_size=0.2, seed=1)
    cfg = load_config(
        DpoConfig,
        None,
        [f"model.path={tiny_model_path}", f"data.source={tmp_path / 'ds'}", f"output_dir={tmp_path / 'run'}",
         "max_steps=12", "lr=5e-3", "batch_size=8", "logging_steps=1", "beta=0.1", "lora.r=8", "lora.dropout=0",
         "save=merged"],
    )
    summary = dpo.run(cfg)
    m = summary["metrics"]
    # step 1 starts at the reference (adapter-less) model: margin ~0; DPO moves it up
    assert m["last"]["rewards/margins"] > m["first"]["rewards/margins"] + 0.2
    assert m["last"]["rewards/accuracies"] > m["first"]["rewards/accuracies"]
    assert m["last"]["rewards/chosen"] > m["last"]["rewards/rejected"]
    assert m["eval_rewards/accuracies"] >= 0.8 and m["eval_rewards/margins"] > 0
    assert summary["losses"]["final_train_loss"] < summary["losses"]["first_train_loss"]

    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["stage"] == "dpo" and written["config"]["beta"] == 0.1
    # save: merged gives a plain model folder (LoRA folded in), loadable without peft
    model_dir = Path(written["model_dir"])
    assert not (model_dir / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(model_dir).config.vocab_size > 0
