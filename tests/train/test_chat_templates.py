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
        if family in ("llama3_1", "llama3_2", "qwen3")
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
        # several turns too: Qwen 3's (prefkit's variant) keeps its think block out of earlier answers
        assert choice.same_multi_turn and choice.summary()["renders_same_text_multi_turn"], family
        assert choice.summary()["samples_compared"] >= 2, family


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


def test_qwen3_several_turn_rows_train_on_the_models_own_rendering(tiny_model_factory, tmp_path):
    """A Qwen 3 row with history: the text SFT trains on is exactly what the model's own template renders
    (no think block in the earlier answer), and the loss covers the answers, not the questions."""
    model = tiny_model_factory(family="qwen3", hidden_size=32, num_layers=1)
    rows = [
        {"question": "Hai?", "chosen": "Hai.", "history": json.dumps([["user", "Một?"], ["assistant", "Một."]])},
        {"question": "Ba?", "chosen": "Ba.", "history": json.dumps([["user", "Bốn?"], ["assistant", "Bốn."]])},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    trainer, _, _, record = sft.build_trainer(_cfg(model, data, tmp_path / "run", "data.test_split=null"))
    assert record["chat_template"]["training_template"] == "prefkit:qwen3_training"
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[0]])
    own = tok.apply_chat_template(
        [
            {"role": "user", "content": "Một?"},
            {"role": "assistant", "content": "Một."},
            {"role": "user", "content": "Hai?"},
            {"role": "assistant", "content": "Hai."},
        ],
        tokenize=False,
        chat_template=family_template("qwen3"),
    )
    assert tok.decode(batch["input_ids"][0]) == own and own.count("<think>") == 1
    labels = batch["labels"][0]
    labelled = tok.decode(labels[labels != -100])
    assert "Hai." in labelled and "Một?" not in labelled and "Hai?" not in labelled


def test_sft_refuses_several_turn_rows_a_training_template_renders_differently(
    tiny_model_copy, memorise_dataset, tmp_path
):
    """TRL's Qwen 3.6 training variant renders earlier answers differently from the model's own template
    (recorded as such): one-turn rows train with it, a row with history is refused naming split and row."""
    import trl
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_copy)
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_6.jinja").read_text()
    tok.save_pretrained(tiny_model_copy)
    choice = training_chat_template(tok)
    assert choice.source == "trl" and choice.summary()["renders_same_text"]
    assert not choice.summary()["renders_same_text_multi_turn"]
    _, _, _, record = sft.build_trainer(_cfg(tiny_model_copy, memorise_dataset, tmp_path / "one-turn"))
    assert record["chat_template"]["renders_same_text_multi_turn"] is False
    rows = [{"question": "Một?", "chosen": "Một."}, {"question": "Hai?", "chosen": "Hai.", "history": HISTORY}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="train row 1 has earlier turns"):
        sft.build_trainer(_cfg(tiny_model_copy, data, tmp_path / "run", "data.test_split=null"))


HISTORY = json.dumps([["user", "Bốn?"], ["assistant", "Bốn."]], ensure_ascii=False)
