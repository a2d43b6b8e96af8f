"""What an engine is asked (`Request`) and what it returns (`Result`), and the `Engine` base class.

Both engines serve the same objects, so the run, the pair builder and `train`'s best-of-K do not
care which one produced a response. A request's prompt is already formatted (chat template
applied, see `prefkit.generate.chat`); engines tokenize it without adding special tokens again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefkit.core.errors import RunFailed

# Called after each finished batch with (completions in it, tokens generated in it).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Request:
    """Sample `n` completions of `prompt`. Completion i uses seed `seed + i` (None: unseeded).

    `adapter` is a LoRA adapter path; None means the engine's own adapter (the one it was built
    with, if any). `temperature == 0` is greedy decoding.
    """

    prompt: str
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    n: int = 1
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError("request prompt is empty")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n!r}")

    def sample_seed(self, i: int) -> int | None:
        return None if self.seed is None else self.seed + i


@dataclass(frozen=True)
class Completion:
    """One sampled answer. `finish_reason` is "stop" (end of turn) or "length" (hit max_tokens);
    an engine that ends a request any other way raises `GenerationFailed` instead.

    `n_tokens` counts generated tokens including the end-of-turn token; `seed` is the seed that
    drove this sample (None when unseeded).
    """

    text: str
    n_tokens: int
    finish_reason: str
    seed: int | None


@dataclass(frozen=True)
class Result:
    request: Request
    completions: tuple[Completion, ...]


class EngineClosed(RuntimeError):
    """Work was asked of an engine after `close()` (a caller's bug: open a new engine)."""


class GenerationFailed(RunFailed, RuntimeError):
    """The engine ended a request without an answer (vLLM's finish reasons `abort` / `error`):
    `prefkit generate` says so in one line, exit 1; the finished shards stay for `--resume`."""


def free_accelerator_memory() -> None:
    """Collect unreachable objects and hand cached CUDA memory back to the driver.

    Call it between stages that load models in one process: PyTorch's caching allocator keeps
    freed blocks, and a vLLM engine (its own process) measures the device's free memory at start.
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Engine:
    """A loaded model that turns requests into results, in request order (the base of both engines).

    `tokenizer` is the model's (for chat formatting); `max_context` its context length in tokens
    (None when unknown). `too_long` is the one "does this prompt fit" rule: callers skip and report
    the prompts it names, and `generate` refuses them (`encode_requests`). After `close()` the
    engine refuses work with `EngineClosed`; closing twice is harmless.
    """

    model: str
    adapter: str | None
    tokenizer: Any
    max_context: int | None
    closed: bool = False

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens of a formatted prompt as the engine counts them (no special tokens added)."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def too_long(self, prompt: str, max_tokens: int) -> str | None:
        """Why `prompt` plus `max_tokens` new tokens does not fit the context, or None when it does."""
        return self._overflow(self.prompt_tokens(prompt), max_tokens)

    def _overflow(self, n_prompt: int, max_tokens: int) -> str | None:
        if self.max_context and n_prompt + max_tokens > self.max_context:
            return (
                f"prompt of {n_prompt} tokens + max_tokens {max_tokens} exceeds the context of "
                f"{self.max_context} tokens of {self.model!r}"
            )
        return None

    def check_open(self) -> None:
        if self.closed:
            raise EngineClosed(f"the engine for {self.model!r} is closed: it takes no more requests")

    def encode_requests(self, requests: Sequence[Request]) -> list[list[int]]:
        """Each request's prompt token ids; refuses a closed engine and any prompt `too_long` names.

        Callers skip what `too_long` names, so a refusal here is a caller's bug, not bad input.
        """
        self.check_open()
        ids = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in requests]
        for i, (r, x) in enumerate(zip(requests, ids, strict=True)):
            if (overflow := self._overflow(len(x), r.max_tokens)) is not None:
                raise ValueError(f"request {i}: {overflow} (check Engine.too_long first)")
        return ids

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Result]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model and its accelerator memory; idempotent."""
        raise NotImplementedError
