"""Generate room: sample response pairs at varied temperatures (vLLM or Hugging Face) for annotation.

Public API, imported on first use so that `import prefkit.generate` (and `prefkit data ...`) stays instant:

- `generate_pairs(cfg, resume=False) -> Generated` runs a whole generation into Parquet shards
  (`.out` the folder, `.report` what report.json holds);
- `GenerateConfig`, `SamplingPlan`, `Setting` describe it;
- `HFEngine` / `VLLMEngine` `.generate(requests) -> list[Result]` serve `Request`s directly
  (K samples of a prompt: one `Request(prompt, n=K, seed=s)`), `open_engine(cfg, model)` picks one;
- `asked_prompt(prompt, default_system)` is the prompt with the system prompt it is asked under, and
  `format_prompt(tokenizer, question, system)` applies the chat template (or the plain format);
- `engine.too_long(formatted_prompt, max_tokens)` says why a prompt does not fit (None: it fits);
- `engine.close()` releases the model (idempotent; a closed engine raises `EngineClosed`), and
  `free_accelerator_memory()` hands cached CUDA memory back between stages of one process.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_pairs": "prefkit.generate.run",
    "open_engine": "prefkit.generate.run",
    "Generated": "prefkit.generate.run",
    "GenerateConfig": "prefkit.generate.config",
    "SamplingPlan": "prefkit.generate.plan",
    "Setting": "prefkit.generate.plan",
    "Request": "prefkit.generate.engines.base",
    "Result": "prefkit.generate.engines.base",
    "Completion": "prefkit.generate.engines.base",
    "EngineClosed": "prefkit.generate.engines.base",
    "GenerationFailed": "prefkit.generate.engines.base",
    "free_accelerator_memory": "prefkit.generate.engines.base",
    "HFEngine": "prefkit.generate.engines.hf",
    "VLLMEngine": "prefkit.generate.engines.vllm",
    "format_prompt": "prefkit.generate.chat",
    "asked_prompt": "prefkit.generate.chat",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'generate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
