"""SFT on the tiny model: the loss falls on a memorisable set, the summary says so, ROUGE is
reported, and a run resumes from its last checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.core.config import load_config
from prefkit.train import sft
from prefkit.train.config import SftConfig


def _cfg(tiny_model_path, dataset, out, *extra):
    return load_config(
        SftConfig,
        None,
        [
            f"model.path={tiny_model_path}",
            f"data.source={dataset}",
            f"output_dir={out}",
            "lr=1e-2",
            "batch_size=4",
            "logging_steps=2",
            "lora.r=16",
            "lora.dropout=0",
            *extra,
        ],
    )


@pytest.mark.slow
def test_sft_memorises_a_small_set(tiny_model_path, memorise_dataset, tmp_path):
    # a random tiny model's output layer gives near-uniform logits; LoRA alone cannot sharpen
    # them quickly, so the head is trained too (as `modules_to_save`, the way vocab changes are)
    summary = sft.run(
        _cfg(
            tiny_model_path,
            memorise_dataset,
            tmp_path / "run",
            "max_steps=24",
            "lora.modules_to_save=[lm_head]",
            "rouge=true",
            "rouge_samples=1",
            "rouge_max_new_tokens=24",
        )
    )
    losses = summary["losses"]
    assert losses["final_train_loss"] < 0.3 * losses["first_train_loss"]
    m = summary["metrics"]
    assert m["eval_loss"] > 0 and m["train_loss"] > 0
    assert {"rouge_1", "rouge_2", "rouge_L"} <= set(m) and all(
        0 <= m[k] <= 1 for k in ("rouge_1", "rouge_2", "rouge_L")
    )

    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["stage"] == "sft" and written["steps"] == 24 and written["tokens_per_s"] > 0
    assert written["config"]["assistant_only_loss"] is True
    assert (Path(written["model_dir"]) / "adapter_config.json").exists()
    assert (Path(written["model_dir"]) / "tokenizer_config.json").exists()


def test_assistant_only_loss_masks_the_prompt(tiny_model_path, memorise_dataset, tmp_path):
    """What the SFT stage feeds the trainer: only assistant tokens carry loss."""
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from prefkit.train.datasets import load_split, sft_dataset
    from prefkit.train.models import load_policy

    cfg = _cfg(tiny_model_path, memorise_dataset, tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    ds = sft_dataset(load_split(cfg.data, "train"), cfg.data)
    trainer = SFTTrainer(
        model=load_policy(cfg),
        args=SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, use_cpu=True, report_to="none"),
        train_dataset=ds,
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    answer = ds[0]["messages"][-1]["content"]
    assert tok.decode(labelled).strip() == answer + "<|end|>"


@pytest.mark.slow
def test_resume_from_latest_checkpoint(tiny_model_path, memorise_dataset, tmp_path):
    out = tmp_path / "run"
    # the first run also takes the gradient-checkpointing and tensorboard paths
    first = sft.run(
        _cfg(
            tiny_model_path,
            memorise_dataset,
            out,
            "max_steps=4",
            "save_steps=2",
            "data.test_split=null",
            "gradient_checkpointing=true",
            "report_to=tensorboard",
        )
    )
    assert first["steps"] == 4 and (out / "checkpoint-4").is_dir()
    assert list(out.rglob("events.out.tfevents.*"))
    resumed = sft.run(
        _cfg(
            tiny_model_path,
            memorise_dataset,
            out,
            "max_steps=6",
            "save_steps=2",
            "data.test_split=null",
            "resume_from_checkpoint=latest",
        )
    )
    assert resumed["steps"] == 6
    # the log history goes on from the checkpoint: steps 2 and 4 came from the first run
    assert [h["step"] for h in resumed["losses"]["train"]] == [2, 4, 6]
    assert resumed["losses"]["train"][:2] == first["losses"]["train"][:2]
    # tokens/s counts this session only: 2 steps of the same 3 rows vs the first run's 4
    assert 0 < resumed["tokens"] < first["tokens"]


@pytest.mark.slow
def test_sft_rouge_beats_the_untrained_model_on_held_out_rows(tiny_model_path, make_sft_rows, tmp_path):
    """Answers are '<topic> là một chủ đề hay. <3 words> <marker>': held-out questions name topics seen in
    training, so most of each answer can be learnt; ROUGE of generated answers vs the references must
    rise well above the untrained model's on the same rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.data.export import export_dataset
    from prefkit.train.datasets import load_split

    export_dataset(make_sft_rows(40, seed=2), tmp_path / "ds", test_size=0.2, seed=1)
    cfg = _cfg(
        tiny_model_path,
        tmp_path / "ds",
        tmp_path / "run",
        "max_steps=40",
        "lora.modules_to_save=[lm_head]",
        "rouge=true",
        "rouge_samples=8",
        "rouge_max_new_tokens=24",
        "rouge_tokenizer=whitespace",
        "logging_steps=10",
    )
    test_raw = load_split(cfg.data, "test")
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    before = sft.rouge(AutoModelForCausalLM.from_pretrained(tiny_model_path), tok, test_raw, cfg)
    after = sft.run(cfg)["metrics"]
    assert after["rouge_1"] >= before["rouge_1"] + 0.3, (before, after)
    assert after["rouge_L"] > before["rouge_L"] and after["rouge_2"] > before["rouge_2"]
