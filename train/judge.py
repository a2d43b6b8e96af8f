"""An AI judge as a first pass (AI feedback): `prefkit annotate judge`.

A model reads each pair of a project, with the project's guidelines, and answers on the project's
own scale — Llama 2's four levels with a side, or unsure — exactly the nine choices people have
on the Label page. Its answers are stored as judgements of a model annotator
(`Store.record_model_judgements`): apart from people's, never counted toward a pair's overlap,
exported only when asked (`--include-model-judgements`), and compared with people on the
dashboard and in the export card.

Position bias: LLM judges favour a position (Zheng et al. 2023, "Judging LLM-as-a-judge with
MT-Bench and Chatbot Arena", section 3.3; Wang et al. 2023, "Large language models are not fair
evaluators"). Each pair is judged in both orders — a shown left, then b shown left — and the two
answers, mapped back to the pair's own order, are combined:

- the same side in both orders: that side, at the weaker of the two levels;
- unsure in both: unsure;
- different sides, or a side in one order and unsure in the other: unsure (the verdict moved
  with the position, so it is not a preference);
- an answer that names none of the nine choices: unsure (counted as unreadable).

The model runs through the generate room's engines (`hf`, `vllm`, `openai`), greedy by default;
this orchestration lives in `train` because it uses both the engines and the annotation store
(`annotate` may not import `generate`). A pair the same model annotator judged before is skipped
(a stopped run continues where it stopped) unless `rejudge`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefkit.core.config import default_of, field_help, setting
from prefkit.core.errors import ConfigError
from prefkit.data.schema import CHOICE_LABELS, Judgement, Pair, Strength
from prefkit.generate.config import Dtype, GenerateConfig

log = logging.getLogger(__name__)

JUDGE_SYSTEM = (
    "You are a careful annotator of AI assistants' answers. You compare two responses to the same "
    "conversation and say which one is better, following the annotation guidelines you are given."
)
SCALE = " / ".join(CHOICE_LABELS[c] for c in sorted(CHOICE_LABELS))
_LEVEL_WORDS = {"significantly": 3, "slightly": 1, "negligibly": 0}
_VERDICT = re.compile(r"\b(?:(?P<side>[ab])\s+(?:(?P<level>significantly|slightly|negligibly)\s+)?better|unsure)\b")
_MARK = re.compile(r"verdict\s*[:：]")
_ROLES = {"user": "User", "assistant": "Assistant", "system": "System"}


@dataclass
class JudgeConfig:
    """Every setting of `prefkit annotate judge`: a YAML key, a `--set key=value`, and (for most) an option."""

    project: str = setting("", "The project whose pairs the model judges.")
    db: str = setting("annotations.db", "Store: a SQLite file path or a SQLAlchemy URL (postgresql+psycopg://…).")
    model: str = setting("", "The judge: a model path or Hub id (engine openai: the served model's name).")
    engine: Literal["hf", "vllm", "openai"] = setting(
        default_of(GenerateConfig, "engine"), field_help(GenerateConfig, "engine")
    )
    name: str | None = setting(
        None, "The model annotator's name in the store (default: judge:ENGINE:MODEL); one name per judge."
    )
    only_judged: bool = setting(
        False, "Judge only pairs people have judged: enough to measure the judge against people before trusting it."
    )
    limit: int | None = setting(None, "Judge at most N pairs (in import order).")
    rejudge: bool = setting(False, "Judge again pairs this model annotator has judged (its earlier answers go).")
    max_tokens: int = setting(64, "Most new tokens per answer (the verdict is read from the answer's text).")
    temperature: float = setting(0.0, "Sampling temperature; 0 is greedy (the same answer every time).")
    seed: int = setting(0, "Seed of sampled answers (temperature above 0).")
    step: int = setting(32, "Pairs per engine call and per store transaction (a stopped run keeps whole steps).")
    # The engines' settings, as `prefkit generate` has them (the same defaults and help).
    dtype: Dtype = setting(default_of(GenerateConfig, "dtype"), field_help(GenerateConfig, "dtype"))
    batch_size: int = setting(default_of(GenerateConfig, "batch_size"), field_help(GenerateConfig, "batch_size"))
    device: str = setting(default_of(GenerateConfig, "device"), field_help(GenerateConfig, "device"))
    tensor_parallel_size: int = setting(
        default_of(GenerateConfig, "tensor_parallel_size"), field_help(GenerateConfig, "tensor_parallel_size")
    )
    gpu_memory_utilization: float = setting(
        default_of(GenerateConfig, "gpu_memory_utilization"), field_help(GenerateConfig, "gpu_memory_utilization")
    )
    max_model_len: int | None = setting(
        default_of(GenerateConfig, "max_model_len"), field_help(GenerateConfig, "max_model_len")
    )
    base_url: str | None = setting(default_of(GenerateConfig, "base_url"), field_help(GenerateConfig, "base_url"))
    api_key_env: str = setting(default_of(GenerateConfig, "api_key_env"), field_help(GenerateConfig, "api_key_env"))
    tokenizer: str | None = setting(default_of(GenerateConfig, "tokenizer"), field_help(GenerateConfig, "tokenizer"))
    concurrency: int = setting(default_of(GenerateConfig, "concurrency"), field_help(GenerateConfig, "concurrency"))
    retries: int = setting(default_of(GenerateConfig, "retries"), field_help(GenerateConfig, "retries"))
    request_timeout: float = setting(
        default_of(GenerateConfig, "request_timeout"), field_help(GenerateConfig, "request_timeout")
    )
    progress: bool = setting(True, "Show the progress bar.")

    def __post_init__(self) -> None:
        if not self.project:
            raise ConfigError("no project: pass --project")
        if not self.model:
            raise ConfigError("no judge model: pass --model")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.step < 1:
            raise ConfigError(f"step must be >= 1, got {self.step}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        from prefkit.generate.config import check_temperature

        self.temperature = check_temperature(self.temperature, "temperature")

    @property
    def annotator(self) -> str:
        return self.name or f"judge:{self.engine}:{self.model}"


def judge_prompt(pair: Pair, shown: tuple[str, str], guidelines: str) -> str:
    """The user message asking the judge about `pair` with response `shown[0]` as A and
    `shown[1]` as B, the project's guidelines first."""
    from prefkit.annotate.render import dialogue_turns

    prompt = pair.prompt
    turns = list(prompt.turns) if prompt.history else dialogue_turns(prompt.question)
    conversation = "\n\n".join(f"{_ROLES.get(role, role.capitalize())}: {text}" for role, text in turns)
    if prompt.system:
        conversation = f"(The assistant's system prompt: {prompt.system})\n\n{conversation}"
    left, right = (pair.response(r).text for r in shown)
    return (
        "Annotation guidelines of this project:\n"
        f"{guidelines.strip() or '(none given: prefer the more helpful, honest and harmless response)'}\n\n"
        f"Conversation:\n{conversation}\n\n"
        f"Response A:\n{left}\n\n"
        f"Response B:\n{right}\n\n"
        "Which response is better? Answer with exactly one of these nine choices:\n"
        f"{SCALE}\n"
        'End your answer with a line "Verdict: <your choice>".'
    )


def parse_verdict(text: str) -> int | None:
    """The choice-row value (-4 = A significantly better … 0 unsure … 4 = B significantly better)
    an answer names, or None when it names none. The choice after the last "Verdict:" wins; an
    answer without one is read by its last choice."""
    low = " ".join(text.lower().split())
    marks = list(_MARK.finditer(low))
    tail = low[marks[-1].end() :] if marks else low
    found = list(_VERDICT.finditer(tail))
    if not found:
        return None
    m = found[0] if marks else found[-1]
    if m.group("side") is None:
        return 0
    level = _LEVEL_WORDS.get(m.group("level") or "", 2)  # a bare "A better" is "better"
    return (level + 1) * (-1 if m.group("side") == "a" else 1)


def to_signed(choice: int, shown: tuple[str, str], pair: Pair) -> int:
    """A choice as shown (negative: the left response) in the pair's own order (negative: a)."""
    return choice if shown[0] == pair.a.id else -choice


def combine(first: int | None, second: int | None) -> int:
    """Two verdicts in generation order (-4..4, None unreadable) -> one: the shared side at the
    weaker level, else 0 (unsure; see the module docstring)."""
    if first is None or second is None or first == 0 or second == 0:
        return 0
    if (first > 0) != (second > 0):
        return 0
    return min(abs(first), abs(second)) * (1 if first > 0 else -1)


def verdict_judgement(pair: Pair, annotator: str, signed: int) -> Judgement:
    """A model annotator's judgement of `pair` from a signed level in generation order."""
    preferred = None if signed == 0 else (pair.a.id if signed < 0 else pair.b.id)
    strength = Strength.NEGLIGIBLY_BETTER if signed == 0 else Strength.from_level(abs(signed) - 1)
    return Judgement(pair.pair_id, annotator, preferred, strength, shown_order=(pair.a.id, pair.b.id), kind="model")


def _steps(items: Sequence[Pair], size: int) -> Iterator[Sequence[Pair]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_judge(cfg: JudgeConfig) -> dict[str, Any]:
    """Judge the project's pairs (see the module docstring); returns the run's counts: pairs
    considered, judged, already judged (skipped), with a side, unsure, orders that disagreed,
    unreadable answers, pairs too long for the model's context (skipped), requests sent."""
    from prefkit.annotate.store import Store, one_line_errors
    from prefkit.generate.chat import format_prompt
    from prefkit.generate.engines.base import Request
    from prefkit.generate.run import RunProgress, open_engine

    annotator = cfg.annotator
    counts: Counter[str] = Counter()
    with one_line_errors(cfg.db):
        store = Store.open(cfg.db)
    try:
        with one_line_errors(cfg.db):
            project = store.get_project(cfg.project)
            pairs = store.pairs(cfg.project)
            if cfg.only_judged:
                judged = {j.pair_id for j in store.judgements(cfg.project)}
                pairs = [p for p in pairs if p.pair_id in judged]
            counts["pairs"] = len(pairs)
            if not cfg.rejudge:
                done = set(store.model_verdicts(cfg.project, annotator))
                counts["already"] = sum(p.pair_id in done for p in pairs)
                pairs = [p for p in pairs if p.pair_id not in done]
            if cfg.limit is not None:
                pairs = pairs[: cfg.limit]
        if not pairs:
            return _summary(cfg, annotator, counts)
        gen = GenerateConfig(
            engine=cfg.engine,
            dtype=cfg.dtype,
            batch_size=cfg.batch_size,
            device=cfg.device,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            tokenizer=cfg.tokenizer,
            concurrency=cfg.concurrency,
            retries=cfg.retries,
            request_timeout=cfg.request_timeout,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
            progress=False,
        )
        engine = open_engine(gen, cfg.model)
        progress = RunProgress(len(pairs), cfg.progress, desc="judge", unit="pair")
        try:
            for step in _steps(pairs, cfg.step):
                asked: list[tuple[Pair, tuple[tuple[str, str], ...]]] = []
                requests: list[Request] = []
                for pair in step:
                    orders = ((pair.a.id, pair.b.id), (pair.b.id, pair.a.id))
                    texts = [
                        format_prompt(engine.tokenizer, judge_prompt(pair, o, project.guidelines), JUDGE_SYSTEM)
                        for o in orders
                    ]
                    why = next((w for t in texts if (w := engine.too_long(t, cfg.max_tokens)) is not None), None)
                    if why is not None:
                        counts["too_long"] += 1
                        log.debug("pair %s skipped: %s", pair.pair_id, why)
                        continue
                    asked.append((pair, orders))
                    requests += [
                        Request(t, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed) for t in texts
                    ]
                on_batch = lambda _n, tokens: progress.on_batch(tokens)  # noqa: E731
                results = engine.generate(requests, progress=on_batch) if requests else []
                counts["requests"] += len(requests)
                answers = iter(r.completions[0].text for r in results)
                items = []
                for pair, asks in asked:
                    answered = [(shown, next(answers)) for shown in asks]
                    choices = [parse_verdict(answer) for _, answer in answered]
                    signs = [
                        None if c is None else to_signed(c, shown, pair)
                        for c, (shown, _) in zip(choices, answered, strict=True)
                    ]
                    verdicts = [
                        {"shown": list(shown), "answer": answer[:2000], "choice": c, "signed": s}
                        for (shown, answer), c, s in zip(answered, choices, signs, strict=True)
                    ]
                    signed = combine(signs[0], signs[1])
                    items.append((verdict_judgement(pair, annotator, signed), verdicts))
                    _count(counts, signed, signs)
                with one_line_errors(cfg.db):
                    counts["judged"] += store.record_model_judgements(cfg.project, annotator, items)
                progress.prompts_done(len(step))
        finally:
            progress.close()
            engine.close()
    finally:
        store.close()
    return _summary(cfg, annotator, counts)


def _count(counts: Counter[str], signed: int, verdicts: list[int | None]) -> None:
    if any(v is None for v in verdicts):
        counts["unreadable"] += 1
    if signed:
        counts["with_side"] += 1
        return
    counts["unsure"] += 1
    if all(v is not None for v in verdicts) and len({(v > 0) - (v < 0) for v in verdicts if v is not None}) > 1:
        counts["orders_disagree"] += 1


def _summary(cfg: JudgeConfig, annotator: str, counts: Counter[str]) -> dict[str, Any]:
    keys = (
        "pairs",
        "already",
        "judged",
        "with_side",
        "unsure",
        "orders_disagree",
        "unreadable",
        "too_long",
        "requests",
    )
    return {"project": cfg.project, "annotator": annotator, **{k: int(counts.get(k, 0)) for k in keys}}
