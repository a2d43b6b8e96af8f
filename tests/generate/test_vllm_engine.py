"""The vLLM adapter: what it would send vLLM 0.33 (on any machine); the engine itself only where vLLM and a GPU are.

On the CPU, `VLLMEngine` is built with `start=` a stand-in for `vllm.LLM` (`FakeLLM`): it holds
only what our engine reads from vLLM's `LLM` (the context it settled on, the engine core's
`shutdown()`). What is tested is our engine: its request building, its refusals, its `close()`.
"""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest

from prefkit.core.errors import ConfigError
from prefkit.generate.engines.base import EngineClosed, GenerationFailed, Request
from prefkit.generate.engines.vllm import (
    LORA_RANKS,
    LoraRegistry,
    VLLMEngine,
    adapter_rank,
    finish_reason,
    llm_kwargs,
    lora_rank_for,
    sampling_kwargs,
    unavailable_reason,
)


def test_settings_become_sampling_params_kwargs():
    r = Request("p", temperature=0.6, top_p=0.9, max_tokens=128, seed=40)
    assert sampling_kwargs(r) == [{"temperature": 0.6, "top_p": 0.9, "max_tokens": 128, "n": 1, "seed": 40}]


def test_seeded_n_samples_become_n_seeded_requests():
    # Sample i is seeded seed + i, as on the Hugging Face engine.
    r = Request("p", temperature=1.2, top_p=1.0, max_tokens=64, seed=7, n=3)
    assert [kw["seed"] for kw in sampling_kwargs(r)] == [7, 8, 9]
    assert {kw["n"] for kw in sampling_kwargs(r)} == {1}


def test_unseeded_n_samples_stay_one_request():
    r = Request("p", temperature=0.8, max_tokens=8, n=4)
    assert sampling_kwargs(r) == [{"temperature": 0.8, "top_p": 1.0, "max_tokens": 8, "n": 4, "seed": None}]


def test_greedy_n_samples_become_n_single_requests():
    # vLLM 0.33 raises on greedy sampling with n > 1 (SamplingParams._verify_greedy_sampling).
    unseeded = sampling_kwargs(Request("p", temperature=0.0, max_tokens=8, n=3))
    assert unseeded == [{"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "n": 1, "seed": None}] * 3
    seeded = sampling_kwargs(Request("p", temperature=0.0, max_tokens=8, seed=5, n=2))
    assert [(kw["n"], kw["seed"]) for kw in seeded] == [(1, 5), (1, 6)]


def test_a_temperature_vllm_refuses_is_refused_before_sending():
    assert sampling_kwargs(Request("p", temperature=2.0))[0]["temperature"] == 2.0
    with pytest.raises(ValueError, match="vLLM accepts 0 to 2"):
        sampling_kwargs(Request("p", temperature=2.5))


def test_lora_request_args_are_stable_per_adapter():
    reg = LoraRegistry()
    assert reg.args(None) is None
    first = reg.args("/runs/round-1/adapter")
    assert first == ("adapter-1", 1, "/runs/round-1/adapter")
    assert reg.args("/runs/round-2/policy") == ("policy-2", 2, "/runs/round-2/policy")
    assert reg.args("/runs/round-1/adapter") == first


def test_stop_and_length_are_answers_abort_and_error_are_failures():
    assert [finish_reason(x) for x in ("stop", "length")] == ["stop", "length"]
    for reason in ("abort", "error", "repetition", None):
        with pytest.raises(GenerationFailed, match=repr(reason)):
            finish_reason(reason)


def test_config_temperatures_are_checked_naming_the_key():
    from prefkit.generate.config import GenerateConfig, SettingConfig

    assert GenerateConfig(temperatures=[0, 2]).temperatures == [0.0, 2.0]
    with pytest.raises(ConfigError, match=r"^temperatures\[1\]: temperature 2.5 is out of range .*vLLM refuses"):
        GenerateConfig(temperatures=[0.7, 2.5])
    with pytest.raises(ConfigError, match=r"^settings\[0\]\.temperature: temperature -0.1 is out of range"):
        GenerateConfig(settings=[SettingConfig("m", -0.1)])
    with pytest.raises(ConfigError, match=r"^max_lora_rank: 24 is not one vLLM accepts"):
        GenerateConfig(max_lora_rank=24)


# -- LoRA: max_lora_rank from the adapters, max_loras from their number ---------------------------


@pytest.fixture(scope="module")
def wide_adapter(tiny_model_path, tmp_path_factory):
    """A real peft adapter of rank 12 with v_proj at rank 40 (`rank_pattern`): vLLM needs rank 64."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_path),
        LoraConfig(r=12, lora_alpha=16, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 40}),
    )
    out = tmp_path_factory.mktemp("lora") / "wide"
    model.save_pretrained(out)
    return out


def adapter_of_rank(path, r):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 16, "target_modules": ["q_proj"]}))
    return str(path)


def test_adapter_rank_reads_r_and_rank_pattern(wide_adapter, lora_adapter, tmp_path):
    assert adapter_rank(wide_adapter) == 40
    assert adapter_rank(lora_adapter) == 4
    with pytest.raises(ConfigError, match=r"no adapter_config\.json"):
        adapter_rank(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot read its LoRA rank"):
        adapter_rank(tmp_path)


def test_lora_rank_rounds_up_to_a_value_vllm_accepts(wide_adapter, lora_adapter, tmp_path):
    assert lora_rank_for([str(lora_adapter)]) == 8
    assert lora_rank_for([str(lora_adapter), str(wide_adapter)]) == 64
    assert lora_rank_for([adapter_of_rank(tmp_path / "a", 16)]) == 16
    assert lora_rank_for([adapter_of_rank(tmp_path / "b", 300)]) == 320
    assert lora_rank_for([str(wide_adapter)], configured=128) == 128  # room for larger adapters later
    with pytest.raises(ConfigError, match="below the rank 40"):
        lora_rank_for([str(wide_adapter)], configured=32)
    with pytest.raises(ConfigError, match="vLLM accepts 1, 8, 16"):
        lora_rank_for([str(lora_adapter)], configured=24)
    with pytest.raises(ConfigError, match="up to 512"):
        lora_rank_for([adapter_of_rank(tmp_path / "c", 1024)])
    assert all(lora_rank_for([adapter_of_rank(tmp_path / f"r{r}", r)]) == r for r in LORA_RANKS)


def test_llm_kwargs_size_lora_from_the_adapters(wide_adapter, lora_adapter):
    plain = llm_kwargs("m", gpu_memory_utilization=0.45, max_model_len=4096, seed=3)
    assert plain == {
        "model": "m",
        "dtype": "auto",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.45,
        "max_model_len": 4096,
        "seed": 3,
    }
    both = llm_kwargs("m", adapters=[str(lora_adapter), str(wide_adapter)])
    assert (both["enable_lora"], both["max_lora_rank"], both["max_loras"]) == (True, 64, 2)


# -- the engine, started with a stand-in for vllm.LLM ----------------------------------------------


class FakeLLM:
    """Stands in for `vllm.LLM`: the context vLLM settled on, and an engine core that counts shutdowns."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.shutdowns = 0
        core = SimpleNamespace(shutdown=self._shutdown)
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(max_model_len=kwargs["max_model_len"]), engine_core=core
        )

    def _shutdown(self, timeout=None):
        self.shutdowns += 1


def fake_engine(tiny_model_path, **kw):
    started = []

    def start(**kwargs):
        started.append(FakeLLM(**kwargs))
        return started[-1]

    engine = VLLMEngine(tiny_model_path, max_model_len=kw.pop("max_model_len", 64), start=start, **kw)
    return engine, started[0]


def test_engine_starts_vllm_with_lora_sized_from_its_adapters(tiny_model_path, lora_adapter, wide_adapter):
    engine, llm = fake_engine(
        tiny_model_path,
        adapter=lora_adapter,
        adapters=[str(wide_adapter), str(lora_adapter)],
        gpu_memory_utilization=0.5,
    )
    assert llm.kwargs["enable_lora"] and llm.kwargs["max_lora_rank"] == 64 and llm.kwargs["max_loras"] == 2
    assert llm.kwargs["gpu_memory_utilization"] == 0.5
    assert engine.max_context == 64  # what vLLM settled on


def test_build_sends_token_ids_one_sampling_per_request_and_the_adapter(tiny_model_path, lora_adapter):
    engine, _ = fake_engine(tiny_model_path, adapter=lora_adapter)
    prompt = "<|user|>Xin chào<|assistant|>"
    ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    calls = engine.build(
        [
            Request(prompt, temperature=0.0, max_tokens=8, n=2),
            Request(prompt, temperature=1.0, max_tokens=8, seed=3, n=2, adapter=None),
        ]
    )
    assert [(c.request, c.first_sample, c.sampling["n"], c.sampling["seed"]) for c in calls] == [
        (0, 0, 1, None),
        (0, 1, 1, None),
        (1, 0, 1, 3),
        (1, 1, 1, 4),
    ]
    assert all(c.prompt_token_ids == ids for c in calls)  # the formatted prompt, no second BOS
    assert {c.lora for c in calls} == {("adapter-1", 1, str(lora_adapter))}  # the engine's own adapter


def test_build_refuses_an_adapter_the_engine_cannot_serve(tiny_model_path, lora_adapter, wide_adapter):
    plain, _ = fake_engine(tiny_model_path)
    with pytest.raises(ConfigError, match="started without LoRA"):
        plain.build([Request("p", adapter=str(lora_adapter), max_tokens=4)])
    narrow, _ = fake_engine(tiny_model_path, adapter=lora_adapter)  # rank 4 -> max_lora_rank 8
    with pytest.raises(ConfigError, match="LoRA rank 40 is above this engine's max_lora_rank 8"):
        narrow.build([Request("p", adapter=str(wide_adapter), max_tokens=4)])
    roomy, _ = fake_engine(tiny_model_path, adapter=lora_adapter, max_lora_rank=64)
    assert roomy.build([Request("p", adapter=str(wide_adapter), max_tokens=4)])[0].lora[2] == str(wide_adapter)


def test_generate_refuses_a_prompt_too_long_for_the_context(tiny_model_path):
    engine, _ = fake_engine(tiny_model_path, max_model_len=64)
    fits, long = "Xin chào " * 5, "Xin chào " * 40
    assert engine.too_long(fits, 8) is None and engine.too_long(long, 8) is not None
    with pytest.raises(ValueError, match=r"request 1: prompt of \d+ tokens \+ max_tokens 8 exceeds the context of 64"):
        engine.generate([Request(fits, max_tokens=8), Request(long, max_tokens=8)])
    with pytest.raises(ValueError, match="exceeds the context"):  # the prompt fits, its answer would not
        engine.build([Request(fits, max_tokens=64)])


def test_close_shuts_the_engine_core_down_once_and_a_closed_engine_refuses_work(tiny_model_path):
    engine, llm = fake_engine(tiny_model_path)
    assert engine.build([Request("Xin chào", max_tokens=4)])  # open: builds
    engine.close()
    assert llm.shutdowns == 1 and engine.llm is None and engine.closed
    engine.close()  # idempotent: nothing left to shut down, no error
    assert llm.shutdowns == 1
    with pytest.raises(EngineClosed, match="is closed: it takes no more requests"):
        engine.generate([Request("Xin chào", max_tokens=4)])
    with pytest.raises(EngineClosed):
        engine.build([Request("Xin chào", max_tokens=4)])


def test_close_releases_even_when_the_engine_core_shutdown_fails(tiny_model_path):
    engine, llm = fake_engine(tiny_model_path)

    def broken(timeout=None):
        raise RuntimeError("engine core died")

    llm.llm_engine.engine_core.shutdown = broken
    with pytest.raises(RuntimeError, match="engine core died"):
        engine.close()
    assert engine.closed and engine.llm is None
    engine.close()  # a second close does not try again


def test_opening_the_vllm_engine_without_vllm_says_how_to_get_it(tiny_model_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from prefkit.generate.config import GenerateConfig
    from prefkit.generate.run import open_engine

    with pytest.raises(ConfigError, match=r"pip install 'prefkit\[gpu\]'"):
        open_engine(GenerateConfig(engine="vllm"), str(tiny_model_path))


# -- on a GPU with vLLM --------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
def test_vllm_engine_end_to_end_on_the_tiny_model(tiny_model_path):
    from prefkit.generate.chat import format_prompt

    engine = VLLMEngine(tiny_model_path, gpu_memory_utilization=0.3, max_model_len=512)
    p = format_prompt(engine.tokenizer, "Xin chào?", "Trả lời ngắn gọn.")
    results = engine.generate(
        [
            Request(p, temperature=1.0, max_tokens=8, seed=3, n=2),
            Request(p, temperature=0.0, max_tokens=8),
            Request(p, temperature=0.0, max_tokens=8, n=2),  # greedy n > 1: split, vLLM would refuse it whole
        ]
    )
    assert [len(r.completions) for r in results] == [2, 1, 2]
    assert [c.seed for c in results[0].completions] == [3, 4]
    for r in results:
        for c in r.completions:
            assert c.finish_reason in ("stop", "length") and 1 <= c.n_tokens <= 8
    # No repeat-equality check: without vLLM's batch-invariant mode (VLLM_BATCH_INVARIANT=1) a
    # seeded sample may differ with the batch it shares.
    engine.close()
    engine.close()
    with pytest.raises(EngineClosed):
        engine.generate([Request(p, max_tokens=4)])
