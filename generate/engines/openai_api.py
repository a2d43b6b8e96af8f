"""The `openai` engine: requests to any OpenAI-compatible server (vLLM, TGI, SGLang, llama.cpp, Ollama...).

A data engineer on a laptop drives a GPU server: `prefkit generate ... --engine openai --base-url
http://gpu-box:8000/v1 --model NAME`. The engine posts the already formatted prompt (chat template
applied here, with the model's tokenizer, exactly as the local engines do) to `/v1/completions`,
one HTTP request per sample, with that sample's temperature, top-p, max_tokens and seed, so the
same plan means the same thing on every engine (as far as the server honours `seed`).

- Concurrency: at most `concurrency` requests in flight (a thread pool; the server batches them).
- Retries: connection errors, timeouts, 408/409/429 and 5xx are retried with exponential backoff
  (a `Retry-After` header wins); other 4xx answers are the caller's mistake and fail at once with
  the server's message. When retries run out the run stops; the shards written so far stay and
  `--resume` continues from them, as with the other engines.
- The API key is read from the environment (`OPENAI_API_KEY` by default), never from the config,
  so it is not written into the run's manifest.

Only the standard library speaks HTTP here: the engine adds no dependency.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from prefkit.core.errors import ConfigError
from prefkit.generate.engines.base import Completion, Engine, ProgressFn, Request, Result

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServerError(ConfigError):
    """The server could not be reached, or refused a request (the message names the URL and why)."""


def completion_body(model: str, request: Request, sample: int) -> dict[str, Any]:
    """The `/v1/completions` JSON body of sample `sample` of `request` (one completion per body)."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": 1,
        "stream": False,
    }
    seed = request.sample_seed(sample)
    if seed is not None:
        body["seed"] = seed
    return body


@dataclass
class _Call:
    request: int
    sample: int
    body: dict[str, Any]


class OpenAIEngine(Engine):
    """One served model name at `base_url`, answering `Request`s through `/v1/completions`.

    `tokenizer` is a local folder or Hub id of the served model's tokenizer (default: `model`):
    prompts are formatted and measured with it. LoRA adapters are served by the server under
    names of their own (e.g. `vllm serve --lora-modules NAME=PATH`): pass that name as the model.
    """

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        tokenizer: str | None = None,
        concurrency: int = 8,
        retries: int = 5,
        timeout: float = 600.0,
        backoff: float = 0.5,
    ) -> None:
        from prefkit.generate.engines.hf import load_tokenizer

        if adapter:
            raise ConfigError(
                f"engine openai: adapter {adapter!r} — serve the adapter on the server under a name of its own "
                "(vllm: --lora-modules NAME=PATH) and pass that name as the model"
            )
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, got {retries}")
        self.model = str(model)
        self.adapter = None
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.concurrency = concurrency
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        try:
            self.tokenizer = load_tokenizer(tokenizer or self.model)
        except ConfigError as e:
            raise ConfigError(
                f"{e}; engine openai formats prompts with the served model's tokenizer: "
                "pass its local folder or Hub id with --set tokenizer=PATH"
            ) from None
        self.max_context = self._served_context()
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}

    # -- HTTP ---------------------------------------------------------------------------------

    def _post_once(self, path: str, body: dict[str, Any] | None, timeout: float | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST `body` (GET when None) to `base_url + path`, retrying what is worth retrying."""
        url = self.base_url + path
        last = ""
        for attempt in range(self.retries + 1):
            wait_s = min(self.backoff * 2**attempt, 30.0)
            try:
                with self._lock:
                    self.stats["requests"] += 1
                return self._post_once(path, body)
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code not in RETRY_STATUS:
                    raise ServerError(f"{url}: HTTP {e.code}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait_s = min(float(retry_after), 60.0)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}"
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                last = f"unreadable answer ({e})"
            if attempt < self.retries:
                with self._lock:
                    self.stats["retries"] += 1
                time.sleep(wait_s)
        raise ServerError(f"{url}: no answer after {self.retries + 1} tries (last: {last})")

    def _served_context(self) -> int | None:
        """The served context length when `/v1/models` tells it (vLLM's `max_model_len`), else the
        tokenizer's own limit when it states a real one, else None (the server then decides)."""
        try:
            models = self._post_once("/models", None, timeout=min(self.timeout, 30.0)).get("data", [])
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            models = []
        for m in models if isinstance(models, list) else []:
            if isinstance(m, dict) and m.get("id") == self.model and isinstance(m.get("max_model_len"), int):
                return m["max_model_len"]
        limit = getattr(self.tokenizer, "model_max_length", None)
        return limit if isinstance(limit, int) and 0 < limit < 10**7 else None

    # -- generation -----------------------------------------------------------------------------

    def _complete(self, call: _Call) -> Completion:
        answer = self.call("/completions", call.body)
        try:
            choice = answer["choices"][0]
            text = choice.get("text")
            if not isinstance(text, str):
                raise TypeError("choices[0].text is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise ServerError(
                f"{self.base_url}/completions: not a completion answer ({e}): {str(answer)[:200]}"
            ) from None
        usage = answer.get("usage") or {}
        n_tokens = usage.get("completion_tokens")
        if not isinstance(n_tokens, int):
            n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return Completion(
            text=text,
            n_tokens=n_tokens,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            seed=call.body.get("seed"),
        )

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Result]:
        requests = list(requests)
        for r in requests:
            if r.adapter is not None:
                raise ConfigError(
                    f"engine openai: adapter {r.adapter!r} — serve it under a name of its own"
                    " and pass that name as the model"
                )
        calls = [_Call(i, k, completion_body(self.model, r, k)) for i, r in enumerate(requests) for k in range(r.n)]
        done: dict[tuple[int, int], Completion] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            pending = {pool.submit(self._complete, c): c for c in calls}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in finished:
                        c = pending.pop(fut)
                        completion = fut.result()  # raises the first failure: the step is not written
                        done[(c.request, c.sample)] = completion
                        if progress is not None:
                            progress(1, completion.n_tokens)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
        return [Result(request=r, completions=tuple(done[(i, k)] for k in range(r.n))) for i, r in enumerate(requests)]

    def close(self) -> None:
        pass


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI's {"error": {"message": ...}} or FastAPI's {"detail": ...})."""
    try:
        raw = e.read().decode("utf-8", "replace")
    except OSError:
        return str(e.reason)
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:300] or str(e.reason)
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if payload.get("detail"):
            return str(payload["detail"])[:300]
        if isinstance(err, str):
            return err[:300]
    return raw.strip()[:300]
