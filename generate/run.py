"""A generation run: prompts in, annotated-ready pairs out, in resumable steps of `shard_size` prompts.

Order of work, so that mistakes surface before anything slow: settings are checked, prompts read,
the output folder checked (resume or fresh), then models loaded (one engine per base model, all
loaded up front), then each step formats, samples, pairs, filters and writes one shard.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.core.config import to_dict
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.readers import read_prompts
from prefkit.data.schema import Pair, Prompt, Response, content_id
from prefkit.generate.chat import asked_prompt, format_prompt
from prefkit.generate.config import GenerateConfig
from prefkit.generate.engines.base import Engine, Request
from prefkit.generate.pairs import build_pairs
from prefkit.generate.plan import SamplingPlan
from prefkit.generate.shards import ShardWriter, StepStats

log = logging.getLogger(__name__)


def open_engine(
    cfg: GenerateConfig, model: str, *, adapter: str | None = None, adapters: Sequence[str] = (), n_models: int = 1
) -> Engine:
    """The engine `cfg.engine` names, for one base model (LoRA adapters are per request).

    `adapters` are the ones its requests will name (vLLM sizes its LoRA slots and rank from them).
    vLLM engines of `n_models` base models loaded together split `gpu_memory_utilization`.
    """
    if cfg.engine == "vllm":
        from prefkit.generate.engines.vllm import VLLMEngine

        return VLLMEngine(
            model,
            adapter,
            adapters=adapters,
            dtype=cfg.dtype,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization / n_models,
            max_lora_rank=cfg.max_lora_rank,
            max_model_len=cfg.max_model_len,
            seed=cfg.seed,
        )
    if cfg.engine == "openai":
        from prefkit.generate.engines.openai_api import OpenAIEngine

        return OpenAIEngine(
            model,
            adapter,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            tokenizer=cfg.tokenizer,
            concurrency=cfg.concurrency,
            retries=cfg.retries,
            timeout=cfg.request_timeout,
        )
    from prefkit.generate.engines.hf import HFEngine

    return HFEngine(model, adapter, dtype=cfg.dtype, batch_size=cfg.batch_size, device=cfg.device)


class RunProgress:
    """A tqdm bar over prompts (its rate is prompts/s) with tokens/s beside it."""

    def __init__(self, total: int, enabled: bool, *, desc: str = "generate", unit: str = "prompt") -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit=unit, desc=desc, disable=not enabled, dynamic_ncols=True)
        self.start = time.perf_counter()
        self.tokens = 0

    def on_batch(self, tokens: int) -> None:
        self.tokens += tokens
        elapsed = time.perf_counter() - self.start
        self.bar.set_postfix_str(f"{self.tokens / elapsed:.1f} tok/s" if elapsed else "", refresh=True)

    def prompts_done(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _steps(prompts: Sequence[Prompt], size: int) -> Iterator[list[Prompt]]:
    for i in range(0, len(prompts), size):
        yield list(prompts[i : i + size])


def fingerprint(cfg: GenerateConfig, plan: SamplingPlan) -> dict[str, Any]:
    """Settings that must match between a run and its resume (engine and batch size may change)."""
    return {
        **plan.fingerprint(),
        "max_tokens": cfg.max_tokens,
        "system_prompt": cfg.system_prompt,
        "near_duplicate_threshold": cfg.near_duplicate_threshold,
        "drop_truncated": cfg.drop_truncated,
    }


def run_step(
    chunk: Sequence[Prompt],
    plan: SamplingPlan,
    engines: dict[str, Engine],
    cfg: GenerateConfig,
    progress: RunProgress | None = None,
) -> tuple[list[Pair], StepStats]:
    """Sample every draw of every prompt in `chunk` (one engine call per model), pair and filter."""
    started = time.perf_counter()
    on_batch = (lambda _completions, tokens: progress.on_batch(tokens)) if progress else None
    stats = StepStats(prompt_ids=[p.id for p in chunk])
    jobs: dict[str, list[tuple[int, int, Request]]] = defaultdict(list)  # model -> (prompt, draw, request)
    assignments = {}
    asked = [asked_prompt(p, cfg.system_prompt) for p in chunk]
    for pi, prompt in enumerate(asked):
        assignment = plan.assign(prompt.id)
        texts: dict[str, str] = {}
        too_long = None
        for draw in assignment.draws:
            model = draw.setting.model
            if model in texts:
                continue
            texts[model] = format_prompt(engines[model].tokenizer, prompt.question, prompt.system, prompt.history)
            too_long = engines[model].too_long(texts[model], cfg.max_tokens)
            if too_long:
                break
        if too_long:
            stats.skipped.append({"prompt_id": prompt.id, "reason": "prompt_too_long", "detail": too_long})
            continue
        assignments[pi] = assignment
        for di, draw in enumerate(assignment.draws):
            s = draw.setting
            request = Request(
                texts[s.model],
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=cfg.max_tokens,
                seed=draw.seed,
                adapter=s.adapter,
            )
            jobs[s.model].append((pi, di, request))

    responses: dict[tuple[int, int], Response] = {}
    for model, items in jobs.items():
        results = engines[model].generate([r for _, _, r in items], progress=on_batch)
        for (pi, di, request), result in zip(items, results, strict=True):
            c = result.completions[0]
            responses[(pi, di)] = Response(
                text=c.text,
                model=model,
                adapter=request.adapter,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=c.seed,
                finish_reason=c.finish_reason,
                n_tokens=c.n_tokens,
            )
            stats.responses += 1
            stats.tokens += c.n_tokens
            stats.truncated += c.finish_reason == "length"

    kept: list[Pair] = []
    for pi, assignment in assignments.items():
        pairs, dropped = build_pairs(
            asked[pi],  # the pair records the system prompt its answers were generated under
            [responses[(pi, di)] for di in range(len(assignment.draws))],
            [d.setting.label for d in assignment.draws],
            assignment.pairs,
            near_duplicate_threshold=cfg.near_duplicate_threshold,
            drop_truncated=cfg.drop_truncated,
        )
        kept.extend(pairs)
        stats.dropped.extend(d.to_dict() for d in dropped)
    stats.pairs = len(kept)
    stats.truncated_pairs = sum(p.a.truncated or p.b.truncated for p in kept)
    stats.seconds = time.perf_counter() - started
    return kept, stats


def prompt_part(prompt_id: str, parts: int) -> int:
    """Which of `parts` data-parallel parts answers a prompt: from its id alone, so N runs given
    the same prompts split them disjointly and completely, in any order, on any machine."""
    return int(content_id("part", prompt_id, length=15), 16) % parts


def _read(cfg: GenerateConfig) -> tuple[list[Prompt], list[dict[str, Any]]]:
    if not cfg.prompts:
        raise ConfigError("no prompts: pass PROMPTS (a file, save_to_disk folder or Hub id)")
    errors: list[DataError] = []
    prompts = read_prompts(cfg.prompts, cfg.split, errors=errors, columns=cfg.columns)
    unreadable = [{"where": str(e), "reason": "unreadable_row", "detail": e.message} for e in errors]
    if not prompts:
        first = f"; first problem: {errors[0]}" if errors else ""
        raise DataError(f"no usable prompts ({len(errors)} unreadable rows){first}", file=cfg.prompts)
    if cfg.limit:
        prompts = prompts[: cfg.limit]
    return prompts, unreadable


@dataclass(frozen=True)
class Generated:
    """What a run left: its folder (shards, report.json, manifest.json) and the report written there."""

    out: Path
    report: dict[str, Any]


def generate_pairs(cfg: GenerateConfig, *, resume: bool = False) -> Generated:
    """Run generation as `cfg` says; returns the output folder and its final report.

    With `resume`, an interrupted run in `cfg.out` continues where its last finished shard ended.
    """
    plan = cfg.sampling_plan()
    if not cfg.out:
        raise ConfigError("no output folder: pass OUT")
    out = Path(cfg.out)
    prompts, unreadable = _read(cfg)
    part = cfg.shard_part()
    if part is not None:  # data-parallel: this run answers its own disjoint part of the prompts
        prompts = [p for p in prompts if prompt_part(p.id, part[1]) == part[0]]
    writer = ShardWriter(out, fingerprint(cfg, plan), resume=resume, part=part)
    pending = [p for p in prompts if p.id not in writer.done_ids]
    if resume:
        log.info(
            "resume %s: %d of %d prompts already answered, %d to go",
            out,
            len(prompts) - len(pending),
            len(prompts),
            len(pending),
        )
    adapters = {
        m: list(dict.fromkeys(s.adapter for s in plan.settings if s.model == m and s.adapter))
        for m in {s.model for s in plan.settings}
    }
    engines: dict[str, Engine] = {}
    progress = None
    try:
        if pending:  # models load before the manifest is touched: a bad model changes nothing on disk
            models = list(dict.fromkeys(s.model for s in plan.settings))
            for model in models:
                log.debug("loading %s on the %s engine (adapters: %s)", model, cfg.engine, adapters[model] or "none")
                engines[model] = open_engine(cfg, model, adapters=adapters[model], n_models=len(models))
        writer.set_input(prompts=len(prompts), unreadable=unreadable, config=to_dict(cfg))
        progress = RunProgress(len(pending), cfg.progress)
        for chunk in _steps(pending, cfg.shard_size):
            pairs, stats = run_step(chunk, plan, engines, cfg, progress)
            writer.write(pairs, stats)
            log.debug("step of %d prompts: %d pairs written", len(chunk), len(pairs))
            progress.prompts_done(len(chunk))
        report = writer.finish()
    finally:
        if progress is not None:
            progress.close()
        for engine in engines.values():
            engine.close()
    return Generated(out, report)
