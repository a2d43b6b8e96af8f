"""`GenerateConfig`: every setting of a generation run, from YAML, the command line, or code.

Settings are either `models` x `temperatures` (each at `top_p`), or an explicit `settings` list
for full control (a different top-p or adapter per setting). A model may be written
`BASE@ADAPTER` to answer with a LoRA adapter on top of BASE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from prefkit.core.config import setting
from prefkit.core.errors import ConfigError
from prefkit.data.formats import COLUMNS_HELP
from prefkit.generate.plan import MAX_TEMPERATURE, PlanMode, SamplingPlan, Setting

# Weights' dtype; auto: bf16 on a GPU that supports it, else fp32 (half precision is slow on CPUs).
Dtype = Literal["auto", "float32", "bfloat16", "float16"]


def check_temperature(value: object, key: str) -> float:
    """`value` as a temperature, or a ConfigError naming `key`: 0 (greedy) to 2 on both engines.

    vLLM 0.33 refuses a temperature above 2 (`SamplingParams`); beyond 2 the text is noise anyway.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0 <= value <= MAX_TEMPERATURE
    ):
        raise ConfigError(
            f"{key}: temperature {value!r} is out of range (0 = greedy, to {MAX_TEMPERATURE:g}; "
            f"vLLM refuses more than {MAX_TEMPERATURE:g})"
        )
    return float(value)


DEFAULT_SYSTEM_PROMPT = (
    "Bạn là một trợ lý AI hữu ích, trung thực và an toàn. Hãy trả lời bằng tiếng Việt, rõ ràng và chính xác."
)


@dataclass
class SettingConfig:
    """One sampling setting of `settings:` (a model at a temperature, with its own top-p / adapter)."""

    model: str = setting(help="Model path or Hub id.")
    temperature: float = setting(help="Sampling temperature, 0 (greedy) to 2.")
    top_p: float = setting(1.0, "Nucleus sampling top-p.")
    adapter: str | None = setting(None, "A LoRA adapter folder or Hub id to answer with, on top of `model`.")


@dataclass
class GenerateConfig:
    """Every setting of `prefkit generate`: a YAML key, a `--set key=value`, and (for most) an option."""

    prompts: str = setting(
        "", "Prompts: a file (JSONL, JSON, Parquet), a save_to_disk folder or a Hub id, any format the data room reads."
    )
    out: str = setting("", "Output folder: shard-*.parquet, report.json, manifest.json.")
    models: list[str] = setting(
        help="Model path or Hub id; MODEL@ADAPTER adds a LoRA adapter. Repeat for several.", factory=list
    )
    temperatures: list[float] = setting(
        help="Comma-separated temperatures, e.g. 0.6,0.9,1.2 (0 to 2).", factory=lambda: [0.6, 0.9, 1.2]
    )
    top_p: float = setting(0.95, "Nucleus sampling top-p for every setting.")
    settings: list[SettingConfig] = setting(
        help="Explicit sampling settings (model, temperature, top_p, adapter each); replaces models x temperatures.",
        factory=list,
    )
    plan: PlanMode = setting(
        "random_pair", "all_pairs (every two settings), random_pair (two settings per prompt) or samples (N of one)."
    )
    samples: int = setting(2, "Answers per prompt with plan samples.")
    seed: int = setting(0, "Seed of the plan and of every draw.")
    max_tokens: int = setting(512, "Most new tokens per response.")
    system_prompt: str | None = setting(
        DEFAULT_SYSTEM_PROMPT, "System prompt for prompts without one ('' for none); a prompt's own system text wins."
    )
    split: str | None = setting(None, "Split of a DatasetDict folder or Hub id to read the prompts from.")
    limit: int | None = setting(None, "Use only the first N prompts.")
    shard_size: int = setting(256, "Prompts per Parquet shard (and per resumable step).")
    # Pair filters
    near_duplicate_threshold: float = setting(
        0.9,
        "Jaccard similarity of word shingles at or above which a pair's two answers count as one and it is dropped.",
    )
    drop_truncated: bool = setting(False, "Drop pairs with a truncated answer (by default they are kept and flagged).")
    # Engines
    engine: Literal["hf", "vllm", "openai"] = setting(
        "hf", "hf (transformers, any machine), vllm (GPU) or openai (any OpenAI-compatible server, see --base-url)."
    )
    dtype: Dtype = setting(
        "auto", "Weights' dtype: auto (bf16 on a GPU that supports it, else fp32), float32, bfloat16 or float16."
    )
    batch_size: int = setting(16, "hf engine: rows per batch.")
    device: str = setting("auto", "hf engine: cuda, cpu or auto.")
    tensor_parallel_size: int = setting(1, "vllm engine: GPUs per model.")
    gpu_memory_utilization: float = setting(0.9, "vllm engine: share of the GPU for all base models together.")
    max_lora_rank: int | None = setting(
        None, "vllm engine: largest LoRA rank (default: the adapters' largest, rounded up to 1, 8, 16, 32, ... 512)."
    )
    max_model_len: int | None = setting(None, "vllm engine: context length (default: the model's).")
    base_url: str | None = setting(
        None,
        "openai engine: the server's /v1 URL (default $OPENAI_BASE_URL, else http://127.0.0.1:8000/v1); "
        "key from $OPENAI_API_KEY.",
    )
    api_key_env: str = setting(
        "OPENAI_API_KEY", "openai engine: environment variable holding the API key (never the key itself)."
    )
    tokenizer: str | None = setting(
        None, "openai engine: local folder or Hub id of the served model's tokenizer (default: the model)."
    )
    concurrency: int = setting(8, "openai engine: requests in flight at once.")
    retries: int = setting(5, "openai engine: tries after the first on connection errors, timeouts, 429 and 5xx.")
    request_timeout: float = setting(600.0, "openai engine: seconds to wait for one answer.")
    # Data-parallel runs
    shard: str | None = setting(
        None,
        "I/N: answer only part I of N of the prompts (0 <= I < N); N runs can share one OUT folder "
        "(each writes its shards, manifest and report under part-specific names).",
    )
    progress: bool = setting(True, "Show the progress bar.")
    columns: dict[str, str] = setting(help=COLUMNS_HELP, factory=dict)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ConfigError(f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        self.temperatures = [check_temperature(t, f"temperatures[{i}]") for i, t in enumerate(self.temperatures)]
        for i, st in enumerate(self.settings):
            st.temperature = check_temperature(st.temperature, f"settings[{i}].temperature")
        check_vllm_settings(self.max_lora_rank, self.max_model_len)
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if not self.request_timeout > 0:
            raise ConfigError(f"request_timeout must be > 0, got {self.request_timeout}")
        if self.shard is not None:
            self.shard_part()  # checks the form
        if self.system_prompt is not None and not self.system_prompt.strip():
            self.system_prompt = None

    def sampling_settings(self) -> tuple[Setting, ...]:
        if self.settings:
            if self.models:
                raise ConfigError("give either `settings` or `models` (with temperatures), not both")
            return tuple(Setting(s.model, s.temperature, s.top_p, s.adapter) for s in self.settings)
        if not self.models:
            raise ConfigError("no model: pass --model (or `models:` / `settings:` in the config)")
        if not self.temperatures:
            raise ConfigError("no temperature: pass --temperatures (or `temperatures:` in the config)")
        out: list[Setting] = []
        for m in self.models:
            base, _, adapter = m.partition("@")
            out.extend(Setting(base, t, self.top_p, adapter or None) for t in self.temperatures)
        return tuple(out)

    def shard_part(self) -> tuple[int, int] | None:
        """`shard` "I/N" as (I, N) with 0 <= I < N; None for a whole (unsharded) run."""
        if self.shard is None:
            return None
        i, sep, n = str(self.shard).partition("/")
        try:
            part, parts = int(i), int(n)
        except ValueError:
            part = parts = -1
        if not sep or parts < 1 or not 0 <= part < parts:
            raise ConfigError(f"shard must be I/N with 0 <= I < N (e.g. 0/4), got {self.shard!r}")
        return part, parts

    def sampling_plan(self) -> SamplingPlan:
        return SamplingPlan(self.sampling_settings(), mode=self.plan, samples=self.samples, seed=self.seed)


def check_vllm_settings(max_lora_rank: int | None, max_model_len: int | None) -> None:
    """The vLLM settings a config can get wrong before anything loads (generate's and best-of-K's)."""
    from prefkit.generate.engines.vllm import LORA_RANKS

    if max_lora_rank is not None and max_lora_rank not in LORA_RANKS:
        raise ConfigError(
            f"max_lora_rank: {max_lora_rank!r} is not one vLLM accepts ({', '.join(map(str, LORA_RANKS))})"
        )
    if max_model_len is not None and max_model_len < 1:
        raise ConfigError(f"max_model_len must be >= 1, got {max_model_len}")
