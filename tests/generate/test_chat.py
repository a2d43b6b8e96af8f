"""Chat-template application: the model's template, the run's system prompt, and the fallbacks."""

from __future__ import annotations

import pytest

from prefkit.data.schema import Prompt
from prefkit.generate.chat import asked_prompt, format_prompt


@pytest.fixture
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_template_with_system_and_generation_prompt(tokenizer):
    text = format_prompt(tokenizer, "Xin chào?", "Trả lời bằng tiếng Việt.")
    assert text == "<|system|>\nTrả lời bằng tiếng Việt.<|end|>\n<|user|>\nXin chào?<|end|>\n<|assistant|>\n"
    # The template's special tokens are single tokens, and no BOS/EOS is added on top.
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|system|>")
    assert ids[-2:] == [tokenizer.convert_tokens_to_ids("<|assistant|>"), ids[-1]]


def test_prompt_system_beats_the_default_and_blank_means_none(tokenizer):
    def fmt(prompt: Prompt, default: str | None = "Mặc định.") -> str:
        asked = asked_prompt(prompt, default)
        return format_prompt(tokenizer, asked.question, asked.system)

    own = fmt(Prompt("Câu hỏi?", system="Riêng."))
    assert "Riêng." in own and "Mặc định." not in own
    assert "<|system|>\nMặc định." in fmt(Prompt("Câu hỏi?"))
    assert "<|system|>" not in fmt(Prompt("Câu hỏi?"), None)
    assert "<|system|>" not in format_prompt(tokenizer, "Câu hỏi?", "   ")


def test_asked_prompt_keeps_the_id_and_records_the_system_used():
    own = Prompt("Câu hỏi?", id="p1", system="Riêng.", source="s")
    assert asked_prompt(own, "Mặc định.") == own
    asked = asked_prompt(Prompt("Câu hỏi?", id="p2", source="s"), "Mặc định.")
    assert (asked.id, asked.question, asked.system, asked.source) == ("p2", "Câu hỏi?", "Mặc định.", "s")


def test_plain_format_when_the_model_has_no_template(tokenizer):
    tokenizer.chat_template = None
    asked = asked_prompt(Prompt("  Câu hỏi?  "), "Hệ thống.")
    text = format_prompt(tokenizer, asked.question, asked.system)
    assert text == "<s>Hệ thống.\n\n### Instruction:\nCâu hỏi?\n\n### Response:\n"
    assert tokenizer(text, add_special_tokens=False)["input_ids"][0] == tokenizer.bos_token_id


def test_template_that_refuses_a_system_role_gets_it_in_the_user_turn(tokenizer):
    # Like Gemma's: raises on a system message.
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<turn>{{ m['role'] }}\n{{ m['content'] }}</turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<turn>model\n{% endif %}"
    )
    text = format_prompt(tokenizer, "Câu hỏi?", "Hệ thống.")
    assert text == "<turn>user\nHệ thống.\n\nCâu hỏi?</turn>\n<turn>model\n"


def test_multi_turn_prompt_is_formatted_whole(tokenizer):
    prompt = Prompt(
        "Còn mùa đông?",
        system="Ngắn gọn.",
        history=(("user", "Vì sao trời xanh?"), ("assistant", "Do tán xạ ánh sáng.")),
    )
    text = format_prompt(tokenizer, prompt.question, prompt.system, prompt.history)
    assert text == (
        "<|system|>\nNgắn gọn.<|end|>\n<|user|>\nVì sao trời xanh?<|end|>\n"
        "<|assistant|>\nDo tán xạ ánh sáng.<|end|>\n<|user|>\nCòn mùa đông?<|end|>\n<|assistant|>\n"
    )
    # the same as the template over the prompt's messages: what training applies
    assert text == tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)


def test_multi_turn_with_a_real_template_and_the_plain_format(tokenizer):
    from pathlib import Path

    import trl

    history = (("user", "Hi"), ("assistant", "Hello!"))
    tokenizer.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    text = format_prompt(tokenizer, "And 2+2?", None, history)
    assert (
        text.index("<|im_start|>user\nHi<|im_end|>")
        < text.index("<|im_start|>assistant\nHello!<|im_end|>")
        < text.index("<|im_start|>user\nAnd 2+2?<|im_end|>")
    )
    assert text.endswith("<|im_start|>assistant\n")
    tokenizer.chat_template = None
    plain = format_prompt(tokenizer, "And 2+2?", None, history)
    assert plain == "<s>### Instruction:\nHi\n\n### Response:\nHello!\n\n### Instruction:\nAnd 2+2?\n\n### Response:\n"
