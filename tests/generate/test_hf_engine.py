"""The Hugging Face engine on the tiny model: seeded per-row sampling, batching, finish reasons, LoRA."""

from __future__ import annotations

import pytest

from prefkit.generate.chat import format_prompt
from prefkit.generate.engines.base import Request
from prefkit.generate.engines.hf import HFEngine

QUESTIONS = ["Xin chào?", "Hãy giải thích quang hợp là gì một cách thật đơn giản và dễ hiểu.", "1 + 1 = ?"]


def prompts(engine) -> list[str]:
    return [format_prompt(engine.tokenizer, q, "Trả lời ngắn gọn.") for q in QUESTIONS]


@pytest.mark.parametrize(
    "temperature, top_p, expected",
    [
        (1.0, 1.0, [0.5, 0.3, 0.15, 0.05]),
        (0.5, 1.0, [0.25 / 0.365, 0.09 / 0.365, 0.0225 / 0.365, 0.0025 / 0.365]),  # p^2, renormalised
        (1.0, 0.7, [0.625, 0.375, 0.0, 0.0]),  # the nucleus of mass 0.7 is the first two tokens
        (0.0, 1.0, [1.0, 0.0, 0.0, 0.0]),  # greedy
    ],
)
def test_row_sampler_draws_from_the_tempered_nucleus(temperature, top_p, expected):
    import torch

    from prefkit.generate.engines.hf import RowSampler

    rows = 4000
    scores = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).repeat(rows, 1)
    sampler = RowSampler([temperature] * rows, [top_p] * rows, list(range(rows)), torch.device("cpu"))
    picks = sampler(None, scores).argmax(dim=-1)
    frequencies = torch.bincount(picks, minlength=4).float() / rows
    assert torch.allclose(frequencies, torch.tensor(expected), atol=0.03)


def test_batched_equals_one_by_one_with_mixed_settings(tiny_model_path, hf_engine):
    # Different prompt lengths (left padding), temperatures, top-p and seeds share one batch.
    settings = ((0.6, 0.9), (1.2, 1.0))
    requests = [
        Request(p, temperature=t, top_p=tp, max_tokens=10, seed=10 * i + j)
        for i, p in enumerate(prompts(hf_engine))
        for j, (t, tp) in enumerate(settings)
    ]
    batched = hf_engine.generate(requests)
    single = HFEngine(tiny_model_path, batch_size=1, device="cpu", dtype="float32").generate(requests)
    assert [r.completions for r in batched] == [r.completions for r in single]
    assert [r.request for r in batched] == requests
    assert len({r.completions[0].text for r in batched}) == len(requests)


def test_seeds_make_samples_reproducible_and_n_samples_distinct(hf_engine):
    p = prompts(hf_engine)[0]
    calls = []
    one = hf_engine.generate(
        [Request(p, temperature=1.0, max_tokens=8, seed=5, n=3)], progress=lambda n, t: calls.append((n, t))
    )[0]
    assert [c.seed for c in one.completions] == [5, 6, 7]
    assert len({c.text for c in one.completions}) == 3
    # Sample i of a request is the same as a request seeded seed + i.
    again = hf_engine.generate([Request(p, temperature=1.0, max_tokens=8, seed=6)])[0]
    assert again.completions[0] == one.completions[1]
    assert calls == [(3, sum(c.n_tokens for c in one.completions))]  # one progress call: rows and tokens
    for c in one.completions:  # 8 tokens, or fewer ending in the end-of-turn token
        assert (c.finish_reason, c.n_tokens) == ("length", 8) or (c.finish_reason == "stop" and c.n_tokens <= 8)


def test_temperature_zero_is_greedy_whatever_the_seed(hf_engine):
    p = prompts(hf_engine)[1]
    results = hf_engine.generate([Request(p, temperature=0.0, max_tokens=8, seed=s) for s in (1, 2, 3)])
    assert len({r.completions[0].text for r in results}) == 1
    import torch

    ids = hf_engine.tokenizer(p, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        greedy = hf_engine.net.generate(**ids, do_sample=False, max_new_tokens=8)
    expected = hf_engine.tokenizer.decode(greedy[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert results[0].completions[0].text == expected


def test_finish_reasons_and_token_counts(stopping_model):
    engine = HFEngine(stopping_model, batch_size=16, device="cpu", dtype="float32")
    p = format_prompt(engine.tokenizer, "Xin chào?")
    short = engine.generate([Request(p, temperature=1.0, max_tokens=6, seed=s) for s in range(16)])
    reasons = [r.completions[0].finish_reason for r in short]
    assert {"stop", "length"} <= set(reasons)
    longer = engine.generate([Request(p, temperature=1.0, max_tokens=12, seed=s) for s in range(16)])
    for a, b in zip(short, longer, strict=True):
        ca, cb = a.completions[0], b.completions[0]
        if ca.finish_reason == "stop":
            # A finished answer does not depend on the budget; the end-of-turn token is counted.
            assert ca == cb and 1 <= ca.n_tokens <= 6
        else:
            assert ca.n_tokens == 6 and cb.n_tokens > 6


def test_every_answer_empty_on_a_model_that_always_stops(mute_model):
    engine = HFEngine(mute_model, device="cpu", dtype="float32")
    result = engine.generate([Request(format_prompt(engine.tokenizer, "Xin chào?"), max_tokens=5, seed=1, n=2)])[0]
    assert [(c.text, c.finish_reason, c.n_tokens) for c in result.completions] == [("", "stop", 1)] * 2


def test_prompt_longer_than_the_context_is_refused(hf_engine):
    long_prompt = format_prompt(hf_engine.tokenizer, "Xin chào " * 400)
    with pytest.raises(ValueError, match="exceeds the context of 512 tokens"):
        hf_engine.generate([Request(long_prompt, max_tokens=8)])


def test_too_long_is_the_one_context_rule(hf_engine):
    long_prompt = format_prompt(hf_engine.tokenizer, "Xin chào " * 400)
    n = hf_engine.prompt_tokens(long_prompt)
    assert n > 512
    assert hf_engine.too_long(long_prompt, 8) == (
        f"prompt of {n} tokens + max_tokens 8 exceeds the context of 512 tokens of {hf_engine.model!r}"
    )
    short = format_prompt(hf_engine.tokenizer, "Xin chào?")
    fits = 512 - hf_engine.prompt_tokens(short)
    assert hf_engine.too_long(short, fits) is None  # exactly filling the context fits
    assert "exceeds the context" in hf_engine.too_long(short, fits + 1)


def test_lora_adapter_changes_answers_and_base_stays_available(tiny_model_path, lora_adapter, hf_engine):
    p = prompts(hf_engine)[0]
    request = Request(p, temperature=0.0, max_tokens=8)
    base = hf_engine.generate([request])[0].completions[0].text
    tuned = HFEngine(tiny_model_path, lora_adapter, device="cpu", dtype="float32")
    with_adapter = tuned.generate([request])[0].completions[0].text
    assert with_adapter != base
    # On one engine: base rows (adapter off) and adapter rows in the same call.
    both = HFEngine(tiny_model_path, device="cpu", dtype="float32").generate(
        [request, Request(p, temperature=0.0, max_tokens=8, adapter=str(lora_adapter))]
    )
    assert [r.completions[0].text for r in both] == [base, with_adapter]


def test_close_is_idempotent_and_a_closed_engine_refuses_work(tiny_model_path):
    from prefkit.generate.engines.base import EngineClosed

    engine = HFEngine(tiny_model_path, device="cpu", dtype="float32")
    [result] = engine.generate([Request("Xin chào", max_tokens=2)])
    assert len(result.completions) == 1
    engine.close()
    engine.close()
    assert engine.closed and not hasattr(engine, "net")
    with pytest.raises(EngineClosed, match="is closed"):
        engine.generate([Request("Xin chào", max_tokens=2)])
