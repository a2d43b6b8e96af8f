"""Benchmark: the Hugging Face engine's tokens/s, batched against one request at a time.

    .venv/bin/python bench/generate_batching.py                       # small random Llama on the CPU
    .venv/bin/python bench/generate_batching.py --size 1b --device cuda --dtype bfloat16 --requests 256

Builds a random-weight Llama locally (`prefkit.train.tiny_model.build_tiny_model`, nothing downloaded):
`small` (hidden 256, 4 layers) for CPUs, `1b` (Llama-3.2-1B shape: hidden 2048, 16 layers,
32 heads, 8 KV heads; the vocabulary is the local tokenizer's, so the embedding is smaller)
for a GPU. The same requests (Vietnamese prompts, one seed each, fixed `max_tokens` with end
of turn ignored so every row generates the same number of tokens) go through `HFEngine` with
batch size 1 (the baseline) and each `--batch-sizes` value. Prints tokens/s, the ratio to the
baseline, and whether the completions equal the baseline's (they should: every row samples from
its own seeded generator, whatever shares its batch); last, transformers' own sampling at the
largest batch size, to show what the per-row seeded sampler costs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data" / "vi_alpaca_prompts.jsonl"
FALLBACK = ["Hãy giải thích quang hợp là gì.", "Viết một đoạn văn về mùa thu ở Hà Nội.", "Làm thế nào để nấu phở bò?"]
SIZES = {
    "small": dict(hidden_size=256, num_layers=4, num_heads=8),
    "1b": dict(hidden_size=2048, num_layers=16, num_heads=32),
}


def questions(n: int) -> list[str]:
    from prefkit.data.readers import read_prompts

    found = [p.question[:400] for p in read_prompts(SHARED)[:n]] if SHARED.exists() else []
    return found or [FALLBACK[i % len(FALLBACK)] for i in range(n)]


def build_model(size: str, out: Path) -> Path:
    from transformers import GenerationConfig

    from prefkit.train.tiny_model import build_tiny_model

    shape = SIZES[size]
    path = build_tiny_model(
        out,
        **shape,
        intermediate_size=shape["hidden_size"] * 4,
        num_kv_heads=max(1, shape["num_heads"] // 4),
        max_length=2048,
    )
    # No end of turn: every row generates exactly max_tokens, so tokens/s compare like with like.
    pad = GenerationConfig.from_pretrained(path).pad_token_id
    GenerationConfig(pad_token_id=pad, eos_token_id=[]).save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="8,32")
    args = ap.parse_args()

    from prefkit.generate.chat import format_prompt
    from prefkit.generate.engines.base import Request
    from prefkit.generate.engines.hf import HFEngine

    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(args.size, Path(tmp) / "model")
        engine = HFEngine(path, batch_size=1, device=args.device, dtype=args.dtype)
        requests = [
            Request(
                format_prompt(engine.tokenizer, q, "Trả lời bằng tiếng Việt."),
                temperature=0.9,
                top_p=0.95,
                max_tokens=args.max_tokens,
                seed=i,
            )
            for i, q in enumerate(questions(args.requests))
        ]
        engine.generate(requests[:2])  # warm-up

        def timed(batch_size: int) -> tuple[float, list]:
            engine.batch_size = batch_size
            if engine.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            start = time.perf_counter()
            results = engine.generate(requests)
            if engine.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            return sum(c.n_tokens for r in results for c in r.completions) / seconds, results

        def transformers_sampling(batch_size: int) -> float:
            """transformers' own sampling (one temperature per call, one global RNG): the reference
            for what per-row seeded sampling costs."""
            import torch

            tok = engine.tokenizer
            start = time.perf_counter()
            tokens = 0
            for i in range(0, len(requests), batch_size):
                enc = tok(
                    [r.prompt for r in requests[i : i + batch_size]],
                    add_special_tokens=False,
                    padding=True,
                    return_tensors="pt",
                ).to(engine.device)
                with torch.inference_mode():
                    out = engine.net.generate(
                        **enc,
                        do_sample=True,
                        temperature=0.9,
                        top_p=0.95,
                        max_new_tokens=args.max_tokens,
                        min_new_tokens=args.max_tokens,
                    )
                tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            return tokens / (time.perf_counter() - start)

        base_rate, base = timed(1)
        print(f"model {args.size} on {args.device} ({args.dtype}), {args.requests} requests x {args.max_tokens} tokens")
        print(f"batch  1: {base_rate:9.1f} tokens/s  (baseline: one request at a time)")
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            rate, results = timed(bs)
            same = sum(a.completions == b.completions for a, b in zip(results, base, strict=True))
            print(
                f"batch {bs:2d}: {rate:9.1f} tokens/s  x{rate / base_rate:.2f}  completions equal to baseline: "
                f"{same}/{len(results)}"
            )
        largest = max(int(b) for b in args.batch_sizes.split(","))
        ref = transformers_sampling(largest)
        print(
            f"batch {largest:2d}, transformers' own sampling (no per-row seeds): {ref:9.1f} tokens/s  "
            f"x{ref / base_rate:.2f}"
        )


if __name__ == "__main__":
    main()
