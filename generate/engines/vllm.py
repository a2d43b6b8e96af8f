"""The vLLM engine: one offline `vllm.LLM` for all requests, a thin adapter over `Request`/`Result`.

Every request becomes vLLM requests with their own `SamplingParams`; LoRA adapters go through
`LoRARequest`, so a round's policy can be a base model plus adapter on the same `LLM`. A seeded
request with n samples becomes n seeded vLLM requests (seed, seed+1, ...) so that sample i means
the same thing on both engines; prefix caching shares their prompt. Prompts are passed as token
ids (tokenized here without special tokens) so that vLLM does not add a second BOS.

The request building (`sampling_kwargs`, `LoraRegistry`) is plain Python and is tested on any
machine; `VLLMEngine` itself needs vllm and a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from data.errors import ConfigError
from generate.config import Dtype
from generate.engines.base import Completion, Engine, ProgressFn, Request, Result


def sampling_kwargs(request: Request) -> list[dict[str, Any]]:
    """`SamplingParams` keyword arguments for a request: one dict per vLLM request it becomes."""
    base = {"temperature": request.temperature, "top_p": request.top_p, "max_tokens": request.max_tokens}
    if request.seed is None:
        return [{**base, "n": request.n, "seed": None}]
    return [{**base, "n": 1, "seed": request.sample_seed(i)} for i in range(request.n)]


class LoraRegistry:
    """Stable `LoRARequest(name, int_id, path)` arguments: vLLM caches adapters by `int_id` (>= 1)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def args(self, adapter: str | None) -> tuple[str, int, str] | None:
        if adapter is None:
            return None
        path = str(adapter)
        if path not in self._ids:
            self._ids[path] = len(self._ids) + 1
        int_id = self._ids[path]
        return (f"{Path(path).name or 'adapter'}-{int_id}", int_id, path)


def finish_reason(vllm_reason: str | None) -> str:
    """vLLM says "stop" (EOS or stop string), "length", or "abort"; ours is stop or length."""
    return "length" if vllm_reason == "length" else "stop"


class VLLMEngine(Engine):
    """A `vllm.LLM` (tensor parallel, GPU memory share and LoRA from the config) serving `Request`s."""

    def __init__(
        self,
        model_path: str | Path,
        adapter: str | Path | None = None,
        *,
        dtype: Dtype = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        max_model_len: int | None = None,
        seed: int = 0,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "engine vllm needs the vllm package and a GPU: pip install 'prefkit[gpu]', or use --engine hf"
            ) from None
        from generate.engines.hf import load_tokenizer

        self.model = str(model_path)
        self.adapter = str(adapter) if adapter else None
        self.tokenizer = load_tokenizer(self.model)
        self.loras = LoraRegistry()
        self.llm = LLM(
            model=self.model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_lora=enable_lora or self.adapter is not None,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            seed=seed,
        )
        # The context vLLM settled on (it may shorten the model's own to fit the KV cache).
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.max_context = getattr(model_config, "max_model_len", None) or max_model_len

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Result]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        prompts: list[dict[str, Any]] = []
        params: list[Any] = []
        loras: list[Any] = []
        owner: list[tuple[int, int]] = []  # (request index, first sample index) per vLLM request
        for i, r in enumerate(requests):
            ids = self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
            lora_args = self.loras.args(r.adapter if r.adapter is not None else self.adapter)
            for k, kw in enumerate(sampling_kwargs(r)):
                prompts.append({"prompt_token_ids": ids})
                params.append(SamplingParams(**kw))
                loras.append(LoRARequest(*lora_args) if lora_args else None)
                owner.append((i, k))
        outputs = self.llm.generate(prompts, sampling_params=params, lora_request=loras, use_tqdm=False)
        done: dict[int, list[Completion]] = {i: [] for i in range(len(requests))}
        n_tokens = 0
        for (i, k), out in zip(owner, outputs):
            r = requests[i]
            for o in out.outputs:
                n_tokens += len(o.token_ids)
                done[i].append(
                    Completion(
                        text=o.text,
                        n_tokens=len(o.token_ids),
                        finish_reason=finish_reason(o.finish_reason),
                        seed=r.sample_seed(k),
                    )
                )
        if progress is not None:
            progress(sum(len(c) for c in done.values()), n_tokens)
        return [Result(request=r, completions=tuple(done[i])) for i, r in enumerate(requests)]

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()
