"""SFT with the loss on the assistant part, on the tiny model carrying real families' chat templates
(Llama 3 / 3.1 / 3.2, Qwen 2.5 / 3, Gemma / Gemma 3: the template texts TRL ships; nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefkit.core.config import load_config
from prefkit.core.errors import ConfigError
from prefkit.train import sft
from prefkit.train.chat_templates import training_chat_template
from prefkit.train.config import SftConfig
from prefkit.train.tiny_model import FAMILIES, build_tokenizer, family_template

SYSTEM = "You are a helpful assistant."


def _cfg(model, dataset, out, *extra):
    return load_config(
        SftConfig,
        None,
        [
            f"model.path={model}",
            f"data.source={dataset}",
            f"output_dir={out}",
            "batch_size=4",
            "lora.r=4",
            "lora.dropout=0",
            *extra,
        ],
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sft_masks_all_but_the_assistant_answer(family, tiny_model_factory, memorise_dataset, tmp_path):
    model = tiny_model_factory(family=family, hidden_size=32, num_layers=1)
    # Gemma's template refuses a system message (as the real one does): no system prompt there
    extra = [] if family == "gemma" else [f"data.system_prompt={SYSTEM}"]
    trainer, _, _, record = sft.build_trainer(_cfg(model, memorise_dataset, tmp_path, *extra))
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    batch = trainer.data_collator([row])
    labels = batch["labels"][0]
    labelled = tok.decode(labels[labels != -100])
    full = tok.decode(batch["input_ids"][0])
    eos = FAMILIES[family][3]
    answer_end = labelled.strip().removeprefix("<think>").strip().removeprefix("</think>").strip()
    # the loss covers the answer and the end-of-turn token, nothing of the prompt
    assert answer_end.endswith(eos) and answer_end.removesuffix(eos).strip().endswith("Cảm ơn bạn rất nhiều!")
    assert "Giải thích" not in labelled and "Mô tả" not in labelled and SYSTEM not in labelled
    if extra:
        assert SYSTEM in full  # the configured system prompt is in the conversation the model sees
    assert record["chat_template"]["training_template"] == (
        "model"
        if family == "tiny"
        else "prefkit:" + family + "_training"
        if family in ("llama3_1", "llama3_2")
        else "trl"
    )
    assert record["system_prompt"] == (SYSTEM if extra else None)


def test_a_template_without_markers_and_no_training_variant_is_a_config_error():
    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="assistant_only_loss"):
        training_chat_template(tok)


def test_training_templates_render_the_models_own_text():
    for family in FAMILIES:
        tok = build_tokenizer(family=family)
        choice = training_chat_template(tok)
        msgs = [{"role": "user", "content": "Tóm tắt: trời mưa. TL;DR:"}, {"role": "assistant", "content": "Mưa."}]
        assert tok.apply_chat_template(msgs, tokenize=False, chat_template=choice.template) == tok.apply_chat_template(
            msgs, tokenize=False
        )
        # Qwen3's TRL training variant re-renders earlier turns' thinking blocks: recorded, not hidden
        assert choice.same_multi_turn == (family != "qwen3")


@pytest.mark.slow
def test_llama3_2_sft_run_records_its_template_and_saves_the_models_own(tiny_model_factory, memorise_dataset, tmp_path):
    model = tiny_model_factory(family="llama3_2", hidden_size=32, num_layers=1)
    summary = sft.run(
        _cfg(
            model,
            memorise_dataset,
            tmp_path / "run",
            "max_steps=2",
            "logging_steps=1",
            f"data.system_prompt={SYSTEM}",
            "optim=adafactor",
            "max_grad_norm=0.5",
            "adam_beta2=0.99",
            "lr_scheduler=cosine",
            "neftune_noise_alpha=5",
        )
    )
    m = summary["metrics"]
    assert m["chat_template"]["training_template"] == "prefkit:llama3_2_training" and m["system_prompt"] == SYSTEM
    saved = json.loads((Path(summary["model_dir"]) / "tokenizer_config.json").read_text())
    template = saved.get("chat_template") or (Path(summary["model_dir"]) / "chat_template.jinja").read_text()
    assert template == family_template("llama3_2")  # the model's own template, not the training one
    args = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]
    assert args["optim"] == "adafactor" and args["neftune_noise_alpha"] == 5
