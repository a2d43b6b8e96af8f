"""The vLLM adapter: request building on any machine; the engine itself only where vLLM and a GPU are."""

from __future__ import annotations

import importlib.util

import pytest

from generate.engines.base import Request
from generate.engines.vllm import LoraRegistry, finish_reason, sampling_kwargs


def test_settings_become_sampling_params_kwargs():
    r = Request("p", temperature=0.6, top_p=0.9, max_tokens=128, seed=40)
    assert sampling_kwargs(r) == [{"temperature": 0.6, "top_p": 0.9, "max_tokens": 128, "n": 1, "seed": 40}]


def test_seeded_n_samples_become_n_seeded_requests():
    # Sample i is seeded seed + i, as on the Hugging Face engine.
    r = Request("p", temperature=1.2, top_p=1.0, max_tokens=64, seed=7, n=3)
    assert [kw["seed"] for kw in sampling_kwargs(r)] == [7, 8, 9]
    assert {kw["n"] for kw in sampling_kwargs(r)} == {1}


def test_unseeded_n_samples_stay_one_request():
    r = Request("p", temperature=0.0, max_tokens=8, n=4)
    assert sampling_kwargs(r) == [{"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "n": 4, "seed": None}]


def test_lora_request_args_are_stable_per_adapter():
    reg = LoraRegistry()
    assert reg.args(None) is None
    first = reg.args("/runs/round-1/adapter")
    assert first == ("adapter-1", 1, "/runs/round-1/adapter")
    assert reg.args("/runs/round-2/policy") == ("policy-2", 2, "/runs/round-2/policy")
    assert reg.args("/runs/round-1/adapter") == first


def test_finish_reasons_map_to_stop_or_length():
    assert [finish_reason(x) for x in ("stop", "length", "abort", None)] == ["stop", "length", "stop", "stop"]


def _vllm_gpu_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'prefkit[gpu]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_vllm_gpu_reason() is not None, reason=_vllm_gpu_reason() or "")
def test_vllm_engine_end_to_end_on_the_tiny_model(tiny_model_path):
    from generate.chat import format_prompt
    from generate.engines.vllm import VLLMEngine

    engine = VLLMEngine(tiny_model_path, gpu_memory_utilization=0.3, max_model_len=512)
    p = format_prompt(engine.tokenizer, "Xin chào?", "Trả lời ngắn gọn.")
    results = engine.generate([Request(p, temperature=1.0, max_tokens=8, seed=3, n=2), Request(p, temperature=0.0, max_tokens=8)])
    assert [len(r.completions) for r in results] == [2, 1]
    assert [c.seed for c in results[0].completions] == [3, 4]
    for r in results:
        for c in r.completions:
            assert c.finish_reason in ("stop", "length") and 1 <= c.n_tokens <= 8
    again = engine.generate([Request(p, temperature=1.0, max_tokens=8, seed=3)])
    assert again[0].completions[0] == results[0].completions[0]
    engine.close()
