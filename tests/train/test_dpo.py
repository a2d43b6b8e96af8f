"""DPO on the tiny model: the implicit reward margin and accuracy rise; merged saving works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.core.config import load_config
from prefkit.data.export import export_dataset
from prefkit.train import dpo
from prefkit.train.config import DpoConfig


@pytest.mark.slow
def test_dpo_raises_reward_margin_and_accuracy(tiny_model_path, make_marker_rows, tmp_path):
    export_dataset(make_marker_rows(48, seed=3), tmp_path / "ds", test_size=0.2, seed=1)
    cfg = load_config(
        DpoConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'run'}",
            "max_steps=12",
            "lr=5e-3",
            "batch_size=8",
            "logging_steps=1",
            "beta=0.1",
            "lora.r=8",
            "lora.dropout=0",
            "save=merged",
        ],
    )
    summary = dpo.run(cfg)
    m = summary["metrics"]
    # step 1 starts at the reference (adapter-less) model: margin ~0; DPO moves it up
    assert m["last"]["rewards/margins"] > m["first"]["rewards/margins"] + 0.2
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


def _pair_logratios(model, tok, test) -> list[float]:
    """log π(chosen | prompt) − log π(rejected | prompt) of each held-out pair, with the chat template."""
    import torch

    out = []
    model.eval()
    for prompt, chosen, rejected in zip(test["prompt"], test["chosen"], test["rejected"], strict=True):
        n_prompt = len(
            tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        )
        total = []
        for answer in (chosen, rejected):
            ids = torch.tensor([tok.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            tokens = ids[0, 1:]
            total.append(logp.gather(-1, tokens[:, None]).squeeze(-1)[n_prompt - 1 :].sum().item())
        out.append(total[0] - total[1])
    return out


@pytest.mark.slow
def test_dpo_raises_held_out_preference_accuracy_over_the_start_model(tiny_model_path, make_balanced_rows, tmp_path):
    """Held-out pairs of equal token length whose chosen answer holds a marker where the rejected one
    holds a distractor: the share of pairs where the policy gives chosen the higher log-likelihood,
    and the mean log-likelihood margin, before (the start model) vs after DPO."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.train.datasets import load_split, preference_dataset

    export_dataset(make_balanced_rows(96, seed=4), tmp_path / "ds", test_size=0.25, seed=1)
    cfg = load_config(
        DpoConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={tmp_path / 'ds'}",
            f"output_dir={tmp_path / 'run'}",
            "max_steps=30",
            "lr=5e-3",
            "batch_size=8",
            "logging_steps=10",
            "beta=0.1",
            "lora.r=8",
            "lora.dropout=0",
        ],
    )
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    test = preference_dataset(load_split(cfg.data, "test"), cfg.data)
    before = _pair_logratios(AutoModelForCausalLM.from_pretrained(tiny_model_path), tok, test)
    summary = dpo.run(cfg)
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), summary["model_dir"])
    after = _pair_logratios(trained, tok, test)
    acc_before = sum(x > 0 for x in before) / len(before)
    acc_after = sum(x > 0 for x in after) / len(after)
    assert acc_after >= 0.85 and acc_after >= acc_before + 0.2, (acc_before, acc_after)
    assert sum(after) / len(after) > sum(before) / len(before) + 1.0
