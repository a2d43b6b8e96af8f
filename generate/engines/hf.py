"""The Hugging Face engine: `transformers` batched `generate` with left padding, on any machine.

Requests with different temperatures, top-p values and seeds share a batch: a logits processor
samples every row from its own seeded generator (Gumbel-max over the row's temperature-scaled,
top-p-filtered logits) and greedy decoding then picks that sample. So a completion depends on its
own seed, not on which other requests happened to share its batch, and K samples of a prompt are
one call. LoRA adapters are loaded with peft; rows are grouped by adapter.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from prefkit.core.errors import ConfigError
from prefkit.core.threads import one_thread_for_small_models
from prefkit.data.hub import check_model_source
from prefkit.generate.config import Dtype
from prefkit.generate.engines.base import Completion, Engine, ProgressFn, Request, Result, free_accelerator_memory


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on a GPU that supports it, else fp32 (half precision is slow or unsupported on CPUs).

    The name is checked where the settings are read (`GenerateConfig.dtype` is a Literal)."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def load_tokenizer(model: str):
    """The model's tokenizer, or a ConfigError that says which model and why."""
    from transformers import AutoTokenizer

    check_model_source(model, "model")
    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"model {model!r}: cannot load its tokenizer ({first})") from None


class RowSampler(LogitsProcessor):
    """Turns each row's scores into a sample from that row's own distribution and generator.

    Returns scores whose argmax is the sampled token, so `generate(do_sample=False)` emits it.
    Rows with temperature 0 keep their scores (greedy).
    """

    def __init__(
        self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int | None], device: torch.device
    ):
        self.device = device
        self.temperature = torch.tensor(temperatures, dtype=torch.float32, device=device)
        self.top_p = torch.tensor(top_ps, dtype=torch.float32, device=device)
        self.greedy = self.temperature == 0
        self.generators = [torch.Generator(device=device).manual_seed(s) if s is not None else None for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        greedy = scores.float()
        logits = greedy / self.temperature.clamp_min(1e-5).unsqueeze(1)
        # Top-p per row: keep the smallest set of tokens whose probability reaches p (at least one).
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # (top_p 1 filters nothing: a cumulative sum that rounds to 1 early must not cut the tail.)
        drop = ((probs.cumsum(dim=-1) - probs) >= self.top_p.unsqueeze(1)) & (self.top_p < 1).unsqueeze(1)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
        vocab = logits.shape[1]
        uniform = torch.stack([torch.rand(vocab, generator=g, device=self.device) for g in self.generators]).clamp_(
            torch.finfo(torch.float32).tiny, 1.0 - 1e-7
        )
        gumbel = -torch.log(-torch.log(uniform))
        # transformers' LogitsProcessor says torch.FloatTensor (the legacy name) for any float tensor
        return cast(torch.FloatTensor, torch.where(self.greedy.unsqueeze(1), greedy, logits + gumbel))


@dataclass(frozen=True)
class _Row:
    request: int  # index into the requests
    sample: int  # index within the request's n
    adapter: str | None


class HFEngine(Engine):
    """One base model (plus LoRA adapters) answering `Request`s in batches of `batch_size` rows."""

    def __init__(
        self,
        model_path: str | Path,
        adapter: str | Path | None = None,
        *,
        dtype: Dtype = "auto",
        batch_size: int = 16,
        device: str = "auto",
    ) -> None:
        from transformers import AutoModelForCausalLM

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = str(model_path)
        self.adapter = str(adapter) if adapter else None
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(self.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            # Straight onto the device: a 7B model is not staged in CPU memory first.
            # Any: a transformers model, then a PeftModel around it once an adapter loads (whose
            # methods are looked up at run time); their annotations reject valid calls (.to(device), .generate)
            self.net: Any = AutoModelForCausalLM.from_pretrained(
                self.model, dtype=resolve_dtype(dtype, self.device), device_map=str(self.device)
            )
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"model {self.model!r}: cannot load it ({first})") from None
        self.net.eval()
        one_thread_for_small_models(self.net)
        self.max_context = getattr(self.net.config, "max_position_embeddings", None)
        eos = self.net.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._adapter_names: dict[str, str] = {}
        if self.adapter:
            self._load_adapter(self.adapter)

    # -- adapters ---------------------------------------------------------------------------

    def _load_adapter(self, path: str) -> str:
        if path in self._adapter_names:
            return self._adapter_names[path]
        from peft import PeftModel

        name = f"adapter{len(self._adapter_names)}"
        if not Path(path).exists():
            raise ConfigError(f"adapter {path!r}: no such folder")
        try:
            if isinstance(self.net, PeftModel):
                self.net.load_adapter(path, adapter_name=name)
            else:
                self.net = PeftModel.from_pretrained(self.net, path, adapter_name=name)
        except (OSError, ValueError) as e:
            raise ConfigError(f"adapter {path!r}: cannot load it on {self.model!r} ({e})") from None
        self.net.to(self.device).eval()
        self._adapter_names[path] = name
        return name

    @contextlib.contextmanager
    def _using(self, adapter: str | None) -> Iterator[None]:
        """Run with `adapter` active, or with every adapter off for the base model."""
        if adapter is None:
            ctx = self.net.disable_adapter() if self._adapter_names else contextlib.nullcontext()
            with ctx:
                yield
            return
        name = self._load_adapter(adapter)  # may wrap self.net in a PeftModel: look it up after
        self.net.set_adapter(name)
        yield

    # -- generation -------------------------------------------------------------------------

    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Result]:
        requests = list(requests)
        lengths = [len(ids) for ids in self.encode_requests(requests)]  # refuses closed / too long
        rows = [
            _Row(i, s, r.adapter if r.adapter is not None else self.adapter)
            for i, r in enumerate(requests)
            for s in range(r.n)
        ]
        # Same adapter and max_tokens per batch; similar lengths together so padding stays small.
        rows.sort(key=lambda w: (w.adapter or "", requests[w.request].max_tokens, lengths[w.request]))
        done: dict[tuple[int, int], Completion] = {}
        start = 0
        while start < len(rows):
            first = rows[start]
            batch = [first]
            for w in rows[start + 1 : start + self.batch_size]:
                if w.adapter != first.adapter or requests[w.request].max_tokens != requests[first.request].max_tokens:
                    break
                batch.append(w)
            start += len(batch)
            completions = self._generate_batch(requests, batch)
            for w, c in zip(batch, completions, strict=True):
                done[(w.request, w.sample)] = c
            if progress is not None:
                progress(len(batch), sum(c.n_tokens for c in completions))
        return [Result(request=r, completions=tuple(done[(i, s)] for s in range(r.n))) for i, r in enumerate(requests)]

    def _generate_batch(self, requests: list[Request], batch: list[_Row]) -> list[Completion]:
        reqs = [requests[w.request] for w in batch]
        seeds = [r.sample_seed(w.sample) for r, w in zip(reqs, batch, strict=True)]
        enc = self.tokenizer([r.prompt for r in reqs], add_special_tokens=False, padding=True, return_tensors="pt").to(
            self.device
        )
        sampler = RowSampler([r.temperature for r in reqs], [r.top_p for r in reqs], seeds, self.device)
        gen_config = copy.deepcopy(self.net.generation_config)
        # Sampling happens in RowSampler; generate itself must only take the argmax.
        gen_config.update(
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            max_new_tokens=reqs[0].max_tokens,
            max_length=None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
        )
        with torch.inference_mode(), self._using(batch[0].adapter):
            out = self.net.generate(
                **enc, generation_config=gen_config, logits_processor=LogitsProcessorList([sampler])
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        completions = []
        for tokens, seed in zip(new, seeds, strict=True):
            stop = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
            kept = tokens if stop is None else tokens[:stop]
            completions.append(
                Completion(
                    text=self.tokenizer.decode(kept, skip_special_tokens=True),
                    n_tokens=len(tokens) if stop is None else stop + 1,
                    finish_reason="length" if stop is None else "stop",
                    seed=seed,
                )
            )
        return completions

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        del self.net
        free_accelerator_memory()
