"""The tiny-model builder that tests and the CPU demo share."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefkit.train.tiny_model import build_tiny_model


def test_builds_a_loadable_model_and_tokenizer(tiny_model_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert tok.pad_token == "<pad>" and tok.eos_token == "<|end|>"
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    ids = tok("Xin chào các bạn", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "Xin chào các bạn"  # byte-level BPE round-trips Vietnamese
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]


def test_chat_template_marks_only_the_assistant_turn(tiny_model_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    messages = [
        {"role": "system", "content": "Bạn là trợ lý."},
        {"role": "user", "content": "Xin chào"},
        {"role": "assistant", "content": "Chào bạn!"},
    ]
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    # The reply and its end-of-turn token are trained on; nothing else is.
    assert tok.decode(kept) == "Chào bạn!<|end|>"
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")


def test_same_seed_same_weights(tmp_path):
    texts = ["một hai ba bốn năm", "sáu bảy tám chín mười"] * 5
    a = build_tiny_model(tmp_path / "a", texts=texts, seed=3, vocab_size=300)
    b = build_tiny_model(tmp_path / "b", texts=texts, seed=3, vocab_size=300)
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
