"""Rejection sampling as in Llama 2: sample K answers per prompt, score them, keep the best.

The policy (base + optional LoRA adapter) answers through the `generate` room's engine (Hugging
Face here, vLLM on a GPU), the reward function scores every answer, and the top-scored answer of
each prompt becomes new SFT data. The output is an exported dataset (the same layout
`prefkit data export` writes, so `prefkit train sft` reads it as is) whose `chosen` is the best
sample and `rejected` the worst, plus `samples.jsonl` with all K answers, their seeds and scores.
Prompts are asked, scored and kept with the system prompt generate uses; prompts too long for the
model's context are skipped and listed in the summary, as generate reports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefkit.core.config import setting, to_dict
from prefkit.core.errors import ConfigError
from prefkit.data.schema import PreferenceRow, Prompt, Response
from prefkit.generate.config import DEFAULT_SYSTEM_PROMPT
from prefkit.generate.engines.base import free_accelerator_memory
from prefkit.train.config import DataConfig, ModelConfig
from prefkit.train.scoring import RewardFn, RewardSection, import_reward_function, load_reward

SAMPLES_FILE = "samples.jsonl"
DATASET_DIR = "dataset"


@dataclass
class BestOfKConfig:
    """Sample `k` answers per prompt of `data.source` from `model` (+ `model.adapter`), keep the best."""

    output_dir: Path = setting(
        Path("runs/best-of-k"), "Folder for samples.jsonl, the new SFT dataset and summary.json."
    )
    model: ModelConfig = setting(help="The policy to sample from (path, adapter).", factory=ModelConfig)
    data: DataConfig = setting(
        help="The prompts (data.source, any prompt format) and their columns.", factory=DataConfig
    )
    reward: RewardSection = setting(help="What scores the samples (see RewardSection).", factory=RewardSection)
    k: int = setting(4, "Answers sampled per prompt; the best-scored one is kept.")
    temperature: float = setting(1.0, "Sampling temperature, 0 to 2.")
    top_p: float = setting(1.0, "Nucleus sampling top-p.")
    max_new_tokens: int = setting(256, "Most new tokens per answer.")
    seed: int = setting(
        0, "Per-prompt seeds derive from it and the prompt: rounds with different seeds never share one."
    )
    system_prompt: str | None = setting(
        DEFAULT_SYSTEM_PROMPT,
        "System prompt for prompts without one, as generate asks; a prompt's own system text wins.",
    )
    test_size: float = setting(0.0, "Share of prompts held out as a test split of the new SFT data.")
    engine: Literal["hf", "vllm"] = setting("hf", "hf (transformers, any machine) or vllm (GPU).")
    batch_size: int = setting(16, "hf engine: rows per generate call.")
    device: str = setting("auto", "hf engine: cuda, cpu or auto.")
    tensor_parallel_size: int = setting(1, "vllm engine: GPUs for the policy.")
    gpu_memory_utilization: float = setting(
        0.9, "vllm engine: its share of the GPU (the reward model loads after it closes)."
    )
    max_model_len: int | None = setting(None, "vllm engine: context length (default: the model's).")
    max_lora_rank: int | None = setting(
        None, "vllm engine: default model.adapter's rank, rounded up to a value vLLM accepts."
    )

    def __post_init__(self) -> None:
        from prefkit.generate.config import check_temperature, check_vllm_settings

        if self.k < 2:
            raise ConfigError(f"k must be at least 2 (best of one is no choice), got {self.k}")
        if not self.model.path:
            raise ConfigError("model.path is empty: the policy to sample from")
        self.temperature = check_temperature(self.temperature, "temperature")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        check_vllm_settings(self.max_lora_rank, self.max_model_len)


def check_reward(section: RewardSection) -> None:
    """What `load_reward(section)` would refuse that can be seen without loading a model."""
    if bool(section.model) == bool(section.function):
        raise ConfigError("reward: set exactly one of reward.model (a reward model folder) or reward.function")
    if section.function:
        import_reward_function(section.function)
    elif section.model is not None and not Path(section.model).is_dir():
        raise ConfigError(f"reward.model {section.model!r}: no such folder")


@dataclass
class Scored:
    prompt: Prompt
    responses: list[Response]
    scores: list[float]

    def best(self) -> int:
        return max(range(len(self.scores)), key=lambda i: self.scores[i])

    def worst(self) -> int:
        return min(range(len(self.scores)), key=lambda i: self.scores[i])


def sample_and_score(
    cfg: BestOfKConfig, prompts: list[Prompt], reward_fn: RewardFn | None = None
) -> tuple[list[Scored], list[dict[str, str]]]:
    """K answers per prompt through the generate room's engine, each scored by the reward.

    Sampling comes first and the engine is closed (its accelerator memory released) before the
    reward is scored: without `reward_fn`, `cfg.reward` is loaded only then, so a reward model
    never shares the GPU with a vLLM engine. Each prompt is asked (and scored, and
    kept) with the system prompt generate would use. Prompts too long for the model's context are
    skipped and returned as `{"prompt_id", "reason", "detail"}` (generate's report entries). Empty
    answers (an immediate end of turn) are dropped before scoring: they make no SFT data.
    """
    from prefkit.generate.chat import asked_prompt, format_prompt
    from prefkit.generate.config import GenerateConfig
    from prefkit.generate.engines.base import Request
    from prefkit.generate.plan import derive_seed
    from prefkit.generate.run import open_engine

    gen = GenerateConfig(
        engine=cfg.engine,
        batch_size=cfg.batch_size,
        device=cfg.device,
        dtype=cfg.model.dtype,
        seed=cfg.seed,
        max_tokens=cfg.max_new_tokens,
        progress=False,
        tensor_parallel_size=cfg.tensor_parallel_size,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        max_model_len=cfg.max_model_len,
        max_lora_rank=cfg.max_lora_rank,
    )
    engine = open_engine(gen, cfg.model.path, adapter=cfg.model.adapter)
    asked: list[Prompt] = []
    requests: list[Request] = []
    skipped: list[dict[str, str]] = []
    try:
        for p in prompts:
            prompt = asked_prompt(p, cfg.system_prompt)
            text = format_prompt(engine.tokenizer, prompt.question, prompt.system, prompt.history)
            if (why := engine.too_long(text, cfg.max_new_tokens)) is not None:
                skipped.append({"prompt_id": p.id, "reason": "prompt_too_long", "detail": why})
                continue
            asked.append(prompt)
            requests.append(
                Request(
                    text,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    max_tokens=cfg.max_new_tokens,
                    seed=derive_seed("best-of-k", cfg.seed, prompt.id),
                    n=cfg.k,
                )
            )
        results = engine.generate(requests) if requests else []
    finally:
        engine.close()
    out: list[Scored] = []
    for prompt, result in zip(asked, results, strict=True):
        responses = [
            Response(
                c.text,
                model=cfg.model.path,
                adapter=cfg.model.adapter,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=c.seed,
                finish_reason=c.finish_reason,
                n_tokens=c.n_tokens,
            )
            for c in result.completions
            if c.text.strip()
        ]
        out.append(Scored(prompt, responses, []))
    flat = [(s.prompt, r) for s in out for r in s.responses]
    if not flat:
        return out, skipped
    reward_fn = reward_fn or load_reward(cfg.reward)  # the engine is closed: its memory is free
    scores = iter(reward_fn([p for p, _ in flat], [r.text for _, r in flat]))
    for s in out:
        s.scores = [float(next(scores)) for _ in s.responses]
    return out, skipped


def _meta(r: Response) -> dict[str, Any]:
    return {k: v for k, v in r.to_row().items() if k != "text"}


def best_rows(scored: list[Scored]) -> list[PreferenceRow]:
    """Best answer as `chosen`, worst as `rejected`, for every prompt with two or more answers."""
    rows = []
    for s in scored:
        if len(s.responses) < 2:
            continue
        best, worst = s.responses[s.best()], s.responses[s.worst()]
        if best.text == worst.text:
            continue
        rows.append(
            PreferenceRow(
                question=s.prompt.question,
                chosen=best.text,
                rejected=worst.text,
                system=s.prompt.system,
                source="best-of-k",
                chosen_meta=_meta(best),
                rejected_meta=_meta(worst),
            )
        )
    return rows


def run(
    cfg: BestOfKConfig, *, reward_fn: RewardFn | None = None, prompts: list[Prompt] | None = None
) -> dict[str, Any]:
    """Sample, score, keep the best; writes `dataset/`, `samples.jsonl`, `summary.json`."""
    from prefkit.core.writers import write_rows
    from prefkit.data.export import export_dataset
    from prefkit.train.datasets import load_prompts
    from prefkit.train.output_dir import claim_output_dir
    from prefkit.train.summary import write_summary

    started = time.perf_counter()
    if reward_fn is None:
        check_reward(cfg.reward)  # a wrong reward section fails now, not after the sampling
    claim_output_dir(cfg, "best-of-k")
    if prompts is None:
        prompts = load_prompts(cfg.data)
    scored, skipped = sample_and_score(cfg, prompts, reward_fn)
    reward_fn = None  # a reward model loaded for scoring: its memory is freed below
    free_accelerator_memory()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(
        (
            {
                "prompt_id": s.prompt.id,
                "system": s.prompt.system,
                "question": s.prompt.question,
                "samples": [r.text for r in s.responses],
                "scores": s.scores,
                "seeds": [r.seed for r in s.responses],
                "best": s.best() if s.scores else None,
            }
            for s in scored
        ),
        out / SAMPLES_FILE,
    )
    rows = best_rows(scored)
    dataset = export_dataset(
        rows,
        out / DATASET_DIR,
        test_size=cfg.test_size,
        seed=cfg.seed,
        margin="none",
        provenance={"stage": "best-of-k", "model": cfg.model.path, "adapter": cfg.model.adapter, "k": cfg.k},
    )
    best = [s.scores[s.best()] for s in scored if s.scores]
    mean = [sum(s.scores) / len(s.scores) for s in scored if s.scores]
    summary = {
        "stage": "best-of-k",
        "output_dir": str(out),
        "model_dir": None,
        "dataset_dir": str(out / DATASET_DIR),
        "splits": list(dataset),  # "test" only with test_size > 0 and enough prompts
        "metrics": {
            "prompts": len(prompts),
            "skipped_too_long": len(skipped),
            "kept": len(rows),
            "samples": sum(len(s.responses) for s in scored),
            "mean_reward": sum(mean) / len(mean) if mean else None,
            "mean_best_reward": sum(best) / len(best) if best else None,
        },
        "skipped": skipped,
        "durations": {"total_s": time.perf_counter() - started},
        "config": to_dict(cfg),
    }
    write_summary(out, summary)
    return summary


CONFIG = BestOfKConfig
