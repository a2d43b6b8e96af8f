"""The vLLM engine: one offline `vllm.LLM` for all requests, a thin adapter over `Request`/`Result`.

Written against vLLM 0.33.0 as released (the `gpu` extra pins it; see
docs/guides/data-engineers/generate.md, "vLLM engine").
Every request becomes vLLM requests with their own `SamplingParams`; LoRA adapters go through
`LoRARequest`, so a round's policy can be a base model plus adapter on the same `LLM`. A seeded
request with n samples becomes n seeded vLLM requests (seed, seed+1, ...) so that sample i means
the same thing on both engines; prefix caching shares their prompt. Greedy requests with n > 1
(which vLLM refuses) become n requests of one sample each. Prompts are passed as token ids
(tokenized here without special tokens) so that vLLM does not add a second BOS.

What the engine would send (`VLLMEngine.build`: token ids, `SamplingParams` keyword arguments,
`LoRARequest` arguments; `llm_kwargs`: the `LLM(...)` arguments) is plain Python and is tested on
any machine; only `vllm.LLM` itself needs vllm and a GPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.core.errors import ConfigError
from prefkit.generate.config import Dtype
from prefkit.generate.engines.base import (
    Completion,
    Engine,
    GenerationFailed,
    ProgressFn,
    Request,
    Result,
    free_accelerator_memory,
)

# vLLM 0.33 `vllm.config.lora.MaxLoRARanks`: the only values `max_lora_rank` may take.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vLLM 0.33 `SamplingParams._verify_args`: temperature must be in [0, 2].
VLLM_MAX_TEMPERATURE = 2.0


def sampling_kwargs(request: Request) -> list[dict[str, Any]]:
    """`SamplingParams` keyword arguments for a request: one dict per vLLM request it becomes.

    Seeded: n requests seeded seed, seed+1, ... (sample i as on the HF engine). Greedy
    (temperature 0) with n > 1: n requests of n=1, since vLLM 0.33 raises on greedy n > 1 (the n
    answers are the same greedy decoding, each computed). Unseeded sampling: one request of n.
    """
    if not 0 <= request.temperature <= VLLM_MAX_TEMPERATURE:
        raise ValueError(f"temperature {request.temperature!r}: vLLM accepts 0 to {VLLM_MAX_TEMPERATURE:g}")
    base = {"temperature": request.temperature, "top_p": request.top_p, "max_tokens": request.max_tokens}
    if request.seed is None and request.temperature > 0:
        return [{**base, "n": request.n, "seed": None}]
    return [{**base, "n": 1, "seed": request.sample_seed(i)} for i in range(request.n)]


def adapter_rank(path: str | Path) -> int:
    """The largest LoRA rank in an adapter folder: `r` and any `rank_pattern` value (as vLLM reads it)."""
    config = Path(path) / "adapter_config.json"
    try:
        data = json.loads(config.read_text())
        ranks = [int(data["r"]), *(int(v) for v in (data.get("rank_pattern") or {}).values())]
    except FileNotFoundError:
        raise ConfigError(f"adapter {str(path)!r}: no adapter_config.json (not a LoRA adapter folder)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"adapter {str(path)!r}: cannot read its LoRA rank from {config} ({e})") from None
    return max(ranks)


def lora_rank_for(adapters: Sequence[str], configured: int | None = None) -> int:
    """`max_lora_rank` for these adapters: their largest rank rounded up to a value vLLM accepts.

    `configured` (a config's `max_lora_rank`) must itself be accepted and at least that large; it
    leaves room for adapters asked for later than the engine started.
    """
    if configured is not None and configured not in LORA_RANKS:
        raise ConfigError(f"max_lora_rank {configured!r}: vLLM accepts {', '.join(map(str, LORA_RANKS))}")
    need = max((adapter_rank(a) for a in adapters), default=1)
    if need > LORA_RANKS[-1]:
        raise ConfigError(f"LoRA rank {need} of {list(adapters)}: vLLM serves ranks up to {LORA_RANKS[-1]}")
    rounded = next(r for r in LORA_RANKS if r >= need)
    if configured is None:
        return rounded
    if configured < need:
        raise ConfigError(f"max_lora_rank {configured} is below the rank {need} of an adapter in {list(adapters)}")
    return configured


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
    """vLLM 0.33's "stop" (EOS, stop token or string) and "length" are ours; anything else failed.

    vLLM's other reasons are "abort" (the request was aborted), "error" (a request-level internal
    error) and "repetition" (only with repetition detection, which we never ask for); None means
    the request did not finish. None of them is an answer.
    """
    if vllm_reason in ("stop", "length"):
        return vllm_reason
    raise GenerationFailed(f"vLLM ended a request with finish reason {vllm_reason!r} instead of an answer")


def llm_kwargs(
    model: str,
    *,
    dtype: Dtype = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    adapters: Sequence[str] = (),
    max_lora_rank: int | None = None,
    max_model_len: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The `vllm.LLM(...)` arguments for one base model serving `adapters` (LoRA on when any).

    `max_loras` (adapters in one batch; vLLM's default is 1) is the number of adapters, so a plan
    that mixes several runs them side by side rather than one at a time.
    """
    kwargs: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "seed": seed,
    }
    if adapters:
        kwargs.update(enable_lora=True, max_lora_rank=lora_rank_for(adapters, max_lora_rank), max_loras=len(adapters))
    return kwargs


@dataclass(frozen=True)
class VLLMCall:
    """One vLLM request as it would be sent: prompt ids, `SamplingParams` and `LoRARequest` arguments."""

    request: int  # index into the requests
    first_sample: int  # the sample index its first output is
    prompt_token_ids: list[int]
    sampling: dict[str, Any]
    lora: tuple[str, int, str] | None


def unavailable_reason() -> str | None:
    """Why the vLLM engine cannot run in this process (None: it can): vllm missing, or no CUDA GPU."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'prefkit[gpu]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible"
    return None


def start_llm(**kwargs: Any) -> Any:
    """`vllm.LLM(**kwargs)`, or a ConfigError that says how to get vLLM."""
    try:
        from vllm import LLM
    except ImportError:
        raise ConfigError(
            "engine vllm needs the vllm package and a GPU: pip install 'prefkit[gpu]', or use --engine hf"
        ) from None
    return LLM(**kwargs)


def distributed_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def release_distributed_state(*, process_group: bool) -> None:
    """vLLM's model-parallel groups, and with `process_group` its world and torch.distributed's group.

    With vLLM's default multiprocessing the groups live in the engine-core process (gone after its
    shutdown) and these find nothing to destroy; in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) they
    are this process's (the same calls as vLLM's own `cleanup_dist_env_and_memory`). A process
    group that existed before vLLM started (a launcher's) is not ours to destroy: `process_group`
    is False then.
    """
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel
    except ImportError:
        return
    destroy_model_parallel()
    if process_group:
        destroy_distributed_environment()


class VLLMEngine(Engine):
    """A `vllm.LLM` (tensor parallel, GPU memory share and LoRA from the config) serving `Request`s.

    `adapters` are the LoRA adapters this engine will serve besides its own `adapter`: their
    `adapter_config.json` ranks set `max_lora_rank` (rounded up to what vLLM accepts, or the
    configured value) and their number `max_loras`. A request may still name another adapter
    whose rank fits. `start` makes the `LLM` from `llm_kwargs` (default: `vllm.LLM`).
    """

    def __init__(
        self,
        model_path: str | Path,
        adapter: str | Path | None = None,
        *,
        adapters: Sequence[str | Path] = (),
        dtype: Dtype = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_lora_rank: int | None = None,
        max_model_len: int | None = None,
        seed: int = 0,
        start: Callable[..., Any] = start_llm,
    ) -> None:
        from prefkit.generate.engines.hf import load_tokenizer

        self.model = str(model_path)
        self.adapter = str(adapter) if adapter else None
        served = list(dict.fromkeys([*([self.adapter] if self.adapter else []), *map(str, adapters)]))
        self.tokenizer = load_tokenizer(self.model)
        self.loras = LoraRegistry()
        self.llm_kwargs = llm_kwargs(
            self.model,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            adapters=served,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            seed=seed,
        )
        self.max_lora_rank: int | None = self.llm_kwargs.get("max_lora_rank")
        self._ranks = {a: adapter_rank(a) for a in served}
        # vLLM checks at start that its share of the device is free: memory this process's caching
        # allocator still holds (a model trained just before, in a round) must go back first.
        free_accelerator_memory()
        self._owns_process_group = not distributed_initialized()
        self.llm = start(**self.llm_kwargs)
        # The context vLLM settled on (it may shorten the model's own to fit the KV cache).
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.max_context = getattr(model_config, "max_model_len", None) or max_model_len

    def _lora(self, adapter: str | None) -> tuple[str, int, str] | None:
        if adapter is None:
            return None
        if adapter not in self._ranks:
            if self.max_lora_rank is None:
                raise ConfigError(
                    f"adapter {adapter!r}: this vLLM engine of {self.model!r} was started "
                    "without LoRA (name its adapters when opening it)"
                )
            self._ranks[adapter] = adapter_rank(adapter)
        if self.max_lora_rank is None or self._ranks[adapter] > self.max_lora_rank:
            raise ConfigError(
                f"adapter {adapter!r}: LoRA rank {self._ranks[adapter]} is above this engine's "
                f"max_lora_rank {self.max_lora_rank} (set max_lora_rank, or name it when opening)"
            )
        return self.loras.args(adapter)

    def build(self, requests: Sequence[Request]) -> list[VLLMCall]:
        """What `generate` sends vLLM for `requests`, in order; refuses what `encode_requests` refuses."""
        ids = self.encode_requests(requests)
        calls = []
        for i, (r, x) in enumerate(zip(requests, ids, strict=True)):
            lora = self._lora(r.adapter if r.adapter is not None else self.adapter)
            first = 0
            for kw in sampling_kwargs(r):
                calls.append(VLLMCall(i, first, x, kw, lora))
                first += kw["n"]
        return calls

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Result]:
        calls = self.build(requests)
        if not calls:
            return []
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        outputs = self.llm.generate(
            [{"prompt_token_ids": c.prompt_token_ids} for c in calls],
            sampling_params=[SamplingParams(**c.sampling) for c in calls],
            lora_request=[LoRARequest(*c.lora) if c.lora else None for c in calls],
            use_tqdm=False,
        )  # in input order (vLLM sorts its outputs by request id)
        done: dict[int, list[Completion]] = {i: [] for i in range(len(requests))}
        n_tokens = 0
        for c, out in zip(calls, outputs, strict=True):
            r = requests[c.request]
            for k, o in enumerate(out.outputs):
                try:
                    reason = finish_reason(o.finish_reason)
                except GenerationFailed as e:
                    raise GenerationFailed(f"request {c.request}, sample {c.first_sample + k}: {e}") from None
                n_tokens += len(o.token_ids)
                # unseeded samples of one vLLM request carry no seed; seeded ones are seed + i
                done[c.request].append(
                    Completion(
                        text=o.text,
                        n_tokens=len(o.token_ids),
                        finish_reason=reason,
                        seed=r.sample_seed(c.first_sample + k),
                    )
                )
        if progress is not None:
            progress(sum(len(c) for c in done.values()), n_tokens)
        return [Result(request=r, completions=tuple(done[i])) for i, r in enumerate(requests)]

    def close(self) -> None:
        """Shut vLLM's engine core down, release distributed state, empty the CUDA cache; idempotent.

        vLLM 0.33's `LLM` has no `shutdown()`: its engine core client has (`llm.llm_engine.
        engine_core.shutdown()`: stops the engine-core process and its workers, or the in-process
        executor). Then the `LLM` is dropped, vLLM's model-parallel groups destroyed (and the
        torch.distributed group, unless it existed before vLLM started), garbage collected and the
        CUDA cache emptied.
        """
        if self.closed:
            return
        self.closed = True
        llm, self.llm = self.llm, None
        try:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None:
                core.shutdown()
        finally:
            del llm
            release_distributed_state(process_group=self._owns_process_group)
            free_accelerator_memory()
